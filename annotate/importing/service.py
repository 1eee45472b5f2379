"""import_file: read, validate and store a file as one transaction, or refuse it with its errors."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction

from annotate.importing.errors import ErrorLog, ImportIssue, ImportRejected, SourceError, issue
from annotate.importing.formats import FORMATS, SUPPORTED_FORMATS, ImportFormat, ParsedRow
from annotate.importing.pipeline import RowReader
from annotate.importing.readers import Source, kind_for_filename, open_source
from annotate.importing.writers import COUNT_KEYS, BatchWriter, sink_for
from annotate.models import ImportRecord, Project

# Rows per bulk write: large enough that per-statement costs vanish, small enough that a batch of
# long rows stays a few megabytes.
BATCH_ROWS = 5000

Progress = Callable[[int, int], None]


@dataclass
class ImportResult:
    counts: dict[str, int]
    record: ImportRecord


def import_file(
    *,
    project: Project,
    file: IO[bytes] | str | os.PathLike[str],
    filename: str,
    format: str,
    user: Any = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import `file` (a binary file object or a path) into `project` as `format`.

    All or nothing: on any problem nothing is stored and ImportRejected lists the first
    IMPORT_MAX_ERRORS problems. Either way an ImportRecord tells what happened. Not wrapped in
    @transaction.atomic as a whole on purpose: the record of a refused import must outlive the
    rollback of its rows.
    """
    filename = Path(filename).name[: ImportRecord._meta.get_field("filename").max_length or 500]
    try:
        spec, kind, gzipped = _check_request(format, filename)
        with _binary(file) as stream, transaction.atomic():
            counts = _import_rows(
                project=project,
                stream=stream,
                kind=kind,
                gzipped=gzipped,
                spec=spec,
                filename=filename,
                progress=progress,
            )
            record = ImportRecord.objects.create(
                project=project,
                created_by=_user_or_none(user),
                filename=filename,
                format=format,
                status=ImportRecord.Status.SUCCEEDED,
                counts=counts,
            )
    except ImportRejected as rejected:
        rejected.filename = rejected.filename or filename
        rejected.record = ImportRecord.objects.create(
            project=project,
            created_by=_user_or_none(user),
            filename=filename,
            format=format[:32],
            status=ImportRecord.Status.FAILED,
            errors=rejected.errors,
            counts={"truncated_errors": int(rejected.truncated)},
        )
        raise
    return ImportResult(counts=counts, record=record)


def _check_request(format: str, filename: str) -> tuple[ImportFormat, str, bool]:
    spec = FORMATS.get(format)
    problems: list[ImportIssue] = []
    if spec is None:
        problems.append(
            issue(f"unknown format {format!r}; use one of {', '.join(SUPPORTED_FORMATS)}", field="format")
        )
    kind, gzipped = kind_for_filename(filename)
    if kind is None:
        problems.append(
            issue(
                f"unsupported file type {filename!r}; use .jsonl, .json, .csv or .parquet, "
                "optionally gzip-compressed (.gz)",
                field="file",
            )
        )
    if spec is None or kind is None:
        raise ImportRejected(problems, filename=filename)
    return spec, kind, gzipped


@contextlib.contextmanager
def _binary(file: IO[bytes] | str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    if isinstance(file, str | os.PathLike):
        with open(file, "rb") as opened:
            yield opened
    elif isinstance(file, io.TextIOBase):
        raise TypeError("import_file reads bytes: open the file in binary mode ('rb')")
    else:
        yield file


def _user_or_none(user: Any) -> Any:
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def _import_rows(
    *,
    project: Project,
    stream: IO[bytes],
    kind: str,
    gzipped: bool,
    spec: ImportFormat,
    filename: str,
    progress: Progress | None,
) -> dict[str, int]:
    """Validate and store as we read. After the first problem nothing more is written, but reading
    goes on to report up to IMPORT_MAX_ERRORS problems; then the caller's transaction rolls back."""
    # One import per project at a time: the duplicate lookups stay true until this one commits.
    # NO KEY UPDATE leaves the foreign-key checks of other writers (labels, assignments) unblocked.
    Project.objects.select_for_update(no_key=True).filter(pk=project.pk).exists()
    errors = ErrorLog(settings.IMPORT_MAX_ERRORS)
    writer = BatchWriter(project=project, sink=sink_for(connection), filename=filename)
    rows_read = 0
    try:
        with open_source(stream, kind=kind, gzipped_by_name=gzipped) as source, writer.sink.session():
            _check_columns(source, spec)
            rows_read = _consume(source, spec, writer, errors, progress)
    except SourceError as exc:
        errors.add(exc.problem)
    if not errors and rows_read == 0:
        errors.add(issue("the file has no rows"))
    if errors:
        raise ImportRejected(errors.errors, filename=filename, truncated=errors.truncated)
    return {key: writer.counts[key] for key in COUNT_KEYS}


def _check_columns(source: Source, spec: ImportFormat) -> None:
    """CSV and Parquet name their columns up front: a missing one is one error, not one per row."""
    if source.columns is None or not source.columns:
        return
    missing = [name for name in spec.required if name not in source.columns]
    if missing:
        line = 1 if source.text_values else None
        plural = "s" if len(missing) > 1 else ""
        raise SourceError(
            issue(
                f"the {spec.name} format needs the column{plural} {', '.join(missing)}; "
                f"the file has {', '.join(source.columns)}",
                line=line,
                field=missing[0],
            )
        )


def _consume(
    source: Source, spec: ImportFormat, writer: BatchWriter, errors: ErrorLog, progress: Progress | None
) -> int:
    """Store the reader thread's batches as they come; the number of rows read."""
    reader = RowReader(source, spec, errors, batch_rows=BATCH_ROWS, max_bytes=settings.IMPORT_MAX_FIELD_BYTES)
    with reader:
        for batch in reader.batches():
            if not errors:  # a batch queued before the reader's first problem would be rolled back anyway
                _flush(writer, batch.rows)
            if progress is not None:
                progress(batch.rows_read, batch.bytes_read)
    if progress is not None:
        progress(reader.rows_read, source.bytes_read())
    return reader.rows_read


def _flush(writer: BatchWriter, batch: list[ParsedRow]) -> None:
    if not batch:
        return
    try:
        writer.write(batch)
    except IntegrityError as exc:
        # Only a writer outside the importers (which serialise on the project lock) can get here.
        raise ImportRejected(
            [
                issue(
                    f"the database refused the rows (the project changed during the import; try again): {exc}"
                )
            ]
        ) from exc
    except DataError as exc:
        first, last = batch[0], batch[-1]
        raise ImportRejected(
            [issue(f"the database refused the rows between lines {first.line} and {last.line}: {exc}")]
        ) from exc
