"""Snapshots: `snapshot_create` (checks the request, queues the build) and `snapshot_build` (the task body).

A build reads the project inside one REPEATABLE READ, READ ONLY transaction on PostgreSQL, so every
query of the export (the counts, the rows, the labels a filter needs, the agreement report) sees the
same moment; it streams the rows from server-side cursors into the files as it goes, then hands the
files to the media storage and records counts, hashes and the agreement report on the snapshot, once.
A succeeded snapshot is never built again (docs/exports.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from annotate.exporting import storage
from annotate.exporting.card import build_card, build_manifest
from annotate.exporting.filters import parse_filters
from annotate.exporting.selectors import latest_agreement_payload
from annotate.exporting.sources import RowSource, source_for
from annotate.exporting.split import SPLITS, Splitter
from annotate.exporting.writers import FileWriter, JsonLinesWriter, ParquetFileWriter, sha256_of
from annotate.models import ExportFormat, FileFormat, Project, Snapshot, SnapshotStatus

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# How often a running build records its progress on the snapshot row.
PROGRESS_INTERVAL_S = 1.0
# Rows between two looks at the clock.
PROGRESS_EVERY_ROWS = 5000
MAX_SEED = 2**31 - 1
# A build takes seconds to minutes (330,000 rows: under ten seconds); one still `running` after this
# has lost its worker.
ABANDONED_AFTER = dt.timedelta(hours=6)


class SnapshotRefused(ValidationError):
    """The snapshot is built or being built: a snapshot is written once."""


@transaction.atomic
def snapshot_create(
    *,
    project: Project,
    user: Any,
    format: str,
    file_format: str = FileFormat.JSONL,
    compress: bool = False,
    filters: dict[str, Any] | None = None,
    test_ratio: float = 0.1,
    seed: int = 42,
    license: str | None = None,
    enqueue: bool = True,
) -> Snapshot:
    """Record a snapshot request and queue its build (after commit). The caller checked that `user`
    may export from `project` (a researcher or admin of it).

    enqueue=False leaves the build to the caller (the export_data command builds in the foreground).
    """
    problems: dict[str, list[str]] = {}
    if format not in ExportFormat.values:
        problems["format"] = [f"Unknown format {format!r}; use one of {', '.join(ExportFormat.values)}."]
    if file_format not in FileFormat.values:
        problems["file_format"] = [
            f"Unknown file format {file_format!r}; use one of {', '.join(FileFormat.values)}."
        ]
    if compress and file_format == FileFormat.PARQUET:
        problems["compress"] = ["gzip applies to JSON lines; Parquet files are compressed inside (snappy)."]
    if isinstance(test_ratio, bool) or not isinstance(test_ratio, int | float) or not 0 <= test_ratio < 1:
        problems["test_ratio"] = ["The share of prompts in the test split: at least 0 and below 1."]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        problems["seed"] = [f"A whole number from 0 to {MAX_SEED}."]
    if license is not None and (not isinstance(license, str) or not license.strip() or len(license) > 100):
        problems["license"] = ["A licence name or SPDX identifier, at most 100 characters."]
    try:
        checked = parse_filters(format, filters) if "format" not in problems else None
    except ValidationError as exc:
        problems.update(exc.message_dict)
        checked = None
    if problems or checked is None:
        raise ValidationError(problems)

    snapshot = Snapshot(
        project=project,
        created_by=user if user is not None and getattr(user, "is_authenticated", False) else None,
        format=format,
        file_format=file_format,
        compress=compress,
        filters=checked.as_dict(),
        test_ratio=float(test_ratio),
        seed=seed,
    )
    if license is not None:
        snapshot.license = license.strip()
    snapshot.save()
    if enqueue:
        from annotate.tasks import export_snapshot

        snapshot_id = snapshot.pk
        transaction.on_commit(lambda: export_snapshot.delay(snapshot_id))
    return snapshot


def _claim(snapshot: Snapshot) -> str:
    """Mark the snapshot running, unless it is running or done: only a queued (or failed) one builds.
    Returns this build's token, which fences every later write of the build.

    A snapshot left `running` for longer than ABANDONED_AFTER lost its worker (killed mid-build; the
    broker hands the message out again): it may be claimed again. Should the first build still be alive
    after all, its token no longer matches: it can neither record its result nor touch the new build's
    files (each build stores under its own token's folder).
    """
    now = timezone.now()
    token = uuid.uuid4().hex
    claimable = Q(status__in=[SnapshotStatus.QUEUED, SnapshotStatus.FAILED]) | Q(
        status=SnapshotStatus.RUNNING, started_at__lt=now - ABANDONED_AFTER
    )
    claimed = Snapshot.objects.filter(claimable, pk=snapshot.pk).update(
        status=SnapshotStatus.RUNNING,
        started_at=now,
        progress=0.0,
        error="",
        finished_at=None,
        build_token=token,
    )
    if not claimed:
        status = Snapshot.objects.filter(pk=snapshot.pk).values_list("status", flat=True).first()
        raise SnapshotRefused(
            f"Snapshot {snapshot.pk} is {status or 'gone'}; a snapshot is built once. Create a new one."
        )
    snapshot.status, snapshot.started_at, snapshot.progress, snapshot.error, snapshot.build_token = (
        SnapshotStatus.RUNNING,
        now,
        0.0,
        "",
        token,
    )
    return token


class _ProgressRecorder:
    """Writes the build's progress to the snapshot row at most once a PROGRESS_INTERVAL_S.

    While the rows are read inside the build's read-only transaction, the progress goes through a
    second connection, so pollers see it at once; when the caller already holds a transaction (a test,
    an atomic block around a synchronous build) it goes through the caller's connection.
    """

    def __init__(self, snapshot_id: int, token: str, *, separate: bool, callback: Progress | None) -> None:
        self.snapshot_id = snapshot_id
        self.token = token
        self.callback = callback
        self.connection = connections.create_connection(DEFAULT_DB_ALIAS) if separate else None
        self._last = 0.0

    def __call__(self, done: int, total: int, *, force: bool = False) -> None:
        if self.callback is not None:
            self.callback(done, total)
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        # The last few percent are storing and hashing the files.
        fraction = min(0.95, 0.95 * done / total) if total else 0.0
        if self.connection is None:
            Snapshot.objects.filter(
                pk=self.snapshot_id, status=SnapshotStatus.RUNNING, build_token=self.token
            ).update(progress=fraction)
            return
        table = self.connection.ops.quote_name(Snapshot._meta.db_table)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET progress = %s WHERE id = %s AND status = %s AND build_token = %s",
                [fraction, self.snapshot_id, SnapshotStatus.RUNNING.value, self.token],
            )

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


@contextlib.contextmanager
def _consistent_read() -> Iterator[bool]:
    """One REPEATABLE READ, READ ONLY transaction for all the build's reads (PostgreSQL); yields
    whether it opened one. Inside a caller's transaction, or on SQLite (whose transactions are
    serializable), the reads run where they are."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield False
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # The export reads every row of its cursors: plan for all of them, not the first 10%.
            cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        yield True


def _write_rows(
    *, snapshot: Snapshot, source: RowSource, folder: Path, progress: _ProgressRecorder
) -> tuple[list[dict[str, Any]], dict[str, Counter[str]]]:
    """Stream the source's rows into one file per (file spec, split); the files' descriptions, and the
    rows per split by where their label came from."""
    splitter = Splitter(seed=snapshot.seed, test_ratio=snapshot.test_ratio)
    splits = SPLITS if snapshot.test_ratio > 0 else SPLITS[:1]
    parquet = snapshot.file_format == FileFormat.PARQUET
    extension = ".parquet" if parquet else (".jsonl.gz" if snapshot.compress else ".jsonl")
    writers: dict[tuple[str, str], FileWriter] = {}
    described: list[dict[str, Any]] = []
    for spec in source.files:
        for split in splits:
            path = folder / spec.file_name(split, extension)
            writers[(spec.key, split)] = (
                ParquetFileWriter(path, spec.columns)
                if parquet
                else JsonLinesWriter(path, spec.columns, compress=snapshot.compress)
            )
            described.append({"name": path.name, "config": spec.config_name, "split": split, "key": spec.key})
    stats = {spec.key: source.stats_for(spec.key) for spec in source.files}
    try:
        split_of = splitter.split_of if len(splits) > 1 else (lambda _hash: splits[0])
        # The loop runs once per row: look-ups are prepared here, nested by key then split.
        write = {key: {split: writers[(key, split)].write for split in splits} for key in stats}
        observe = {key: stat.observe for key, stat in stats.items()}
        by_source = {split: Counter[str]() for split in splits}
        for written, (key, prompt_hash, row) in enumerate(source.rows(), 1):
            split = split_of(prompt_hash)
            write[key][split](row)
            observe[key](split, row)
            by_source[split][source.last_source] += 1
            if written % PROGRESS_EVERY_ROWS == 0:
                progress(source.seen, source.total)
        progress(source.seen, source.total, force=True)
    finally:
        for writer in writers.values():
            writer.close()
    for file in described:
        writer = writers[(file["key"], file["split"])]
        file.update(rows=writer.rows, bytes=writer.bytes, sha256=writer.sha256)
    return described, by_source


def _describe(
    folder: Path, snapshot_id: int, token: str, name: str, *, sha256: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A finished local file's entry in the manifest (hashed before it is handed to the storage, unless
    its writer hashed it as it wrote)."""
    path = folder / name
    return {
        "name": name,
        **extra,
        "bytes": path.stat().st_size,
        "sha256": sha256 or sha256_of(path),
        "content_type": storage.content_type_for(name),
        "path": storage.snapshot_path(snapshot_id, name, token),
    }


def _row_counts(
    source: RowSource, files: list[dict[str, Any]], by_source: dict[str, Counter[str]]
) -> dict[str, Any]:
    by_split = dict.fromkeys(SPLITS, 0)
    for file in files:
        by_split[file["split"]] += file["rows"]
    counts: dict[str, Any] = {
        **by_split,
        "total": sum(by_split.values()),
        "by_file": {file["name"]: file["rows"] for file in files},
        "excluded": {reason: n for reason, n in sorted(source.excluded.items()) if n},
        "consensus_sources": dict(sorted(source.sources.items())),
        "sources": {},
    }
    # Per split, the rows by where their label came from (raw: labels by the kind of item they were
    # given on), with every source the export could have drawn on, zeros too (docs/exports.md).
    for split in SPLITS:
        counted = by_source.get(split, Counter())
        names = [*source.source_names, *sorted(set(counted) - set(source.source_names))]
        counts["sources"][split] = {name: counted.get(name, 0) for name in names}
    counts.update(source.extra())
    return counts


def snapshot_build(*, snapshot: Snapshot, progress: Progress | None = None) -> Snapshot:
    """Build a queued snapshot's files and record the result on it; the snapshot, succeeded or failed.

    Raises SnapshotRefused for a snapshot that is running or built already (nothing is touched). Any
    other error marks the snapshot failed with the message (unless another build owns it by then), and
    removes what this build stored: its own files only, under its token's folder.
    """
    token = _claim(snapshot)
    folder = storage.work_folder(snapshot.pk)
    stored: list[str] = []
    recorder: _ProgressRecorder | None = None
    try:
        with _consistent_read() as isolated:
            recorder = _ProgressRecorder(snapshot.pk, token, separate=isolated, callback=progress)
            agreement = latest_agreement_payload(snapshot.project)
            filters = parse_filters(snapshot.format, snapshot.filters)
            source = source_for(snapshot.format, snapshot.project, filters)
            data_files, by_source = _write_rows(
                snapshot=snapshot, source=source, folder=folder, progress=recorder
            )
        files = [
            _describe(
                folder,
                snapshot.pk,
                token,
                f["name"],
                sha256=f["sha256"],
                config=f["config"],
                split=f["split"],
                rows=f["rows"],
            )
            for f in data_files
        ]
        row_counts = _row_counts(source, files, by_source)
        schemas = {spec.key: spec.columns for spec in source.files}
        manifest = build_manifest(
            snapshot=snapshot,
            files=files,
            row_counts=row_counts,
            statistics={spec.config_name: source.stats_for(spec.key).summary() for spec in source.files},
            schemas=schemas,
            agreement=agreement,
            created_at=timezone.now().isoformat(),
        )
        (folder / "README.md").write_text(
            build_card(snapshot=snapshot, manifest=manifest, schemas=schemas), encoding="utf-8"
        )
        files.append(_describe(folder, snapshot.pk, token, "README.md"))
        manifest["files"] = files
        (folder / "manifest.json").write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        files.append(_describe(folder, snapshot.pk, token, "manifest.json"))
        for file in files:
            stored.append(storage.store(snapshot.pk, folder / file["name"], token))
        # The switch-over: one conditional UPDATE makes this build's files the snapshot's.
        _finish(snapshot, token, files=files, row_counts=row_counts, agreement=agreement)
    except Exception as exc:
        logger.exception("snapshot %s failed", snapshot.pk)
        storage.delete(stored)
        _fail(snapshot, token, exc)
    finally:
        if recorder is not None:
            recorder.close()
        shutil.rmtree(folder, ignore_errors=True)
    return snapshot


def _finish(
    snapshot: Snapshot,
    token: str,
    *,
    files: list[dict[str, Any]],
    row_counts: dict[str, Any],
    agreement: dict[str, Any],
) -> None:
    snapshot.status = SnapshotStatus.SUCCEEDED
    snapshot.progress = 1.0
    snapshot.files = files
    snapshot.row_counts = row_counts
    snapshot.agreement = agreement
    snapshot.finished_at = timezone.now()
    snapshot.error = ""
    # Only from running, and only the build that holds the claim: nothing else writes a snapshot's results.
    updated = Snapshot.objects.filter(
        pk=snapshot.pk, status=SnapshotStatus.RUNNING, build_token=token
    ).update(
        status=snapshot.status,
        progress=snapshot.progress,
        files=files,
        row_counts=row_counts,
        agreement=agreement,
        finished_at=snapshot.finished_at,
        error="",
    )
    if not updated:
        raise RuntimeError(
            f"snapshot {snapshot.pk} stopped running while it was built, or another build claimed it"
        )


def _fail(snapshot: Snapshot, token: str, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"[:2000]
    snapshot.status, snapshot.error, snapshot.finished_at = SnapshotStatus.FAILED, message, timezone.now()
    snapshot.files = []
    # A build that lost its claim leaves the snapshot to the build that holds it now.
    Snapshot.objects.filter(pk=snapshot.pk, build_token=token).exclude(
        status=SnapshotStatus.SUCCEEDED
    ).update(status=SnapshotStatus.FAILED, error=message, finished_at=snapshot.finished_at, files=[])


def snapshots_fail_expired(*, now: dt.datetime | None = None) -> list[int]:
    """Fail queued snapshots whose build message expired (SNAPSHOT_QUEUE_EXPIRY_S): no worker will build
    them now. The ids failed; a new snapshot builds the same data."""
    now = now or timezone.now()
    expiry = dt.timedelta(seconds=settings.SNAPSHOT_QUEUE_EXPIRY_S)
    expired = list(
        Snapshot.objects.filter(status=SnapshotStatus.QUEUED, created_at__lt=now - expiry).values_list(
            "pk", flat=True
        )
    )
    if not expired:
        return []
    hours = expiry.total_seconds() / 3600
    message = (
        f"No worker built the snapshot within {hours:g} h of the request (SNAPSHOT_QUEUE_EXPIRY_S), so its "
        "queue message expired. Check that a worker serves the default queue, then create the snapshot again."
    )
    Snapshot.objects.filter(pk__in=expired, status=SnapshotStatus.QUEUED).update(
        status=SnapshotStatus.FAILED, error=message, finished_at=now
    )
    return expired
