"""Rows for the training job tests: pku-saferlhf snapshots whose files are written here, and jobs.

A snapshot made here is what the export task leaves behind (annotate/exporting): a succeeded Snapshot
row whose `files` list names `train.jsonl` and `test.jsonl` under snapshots/<id>/ in the media
storage, with their rows, bytes and sha256. The rows are the synthetic preference set of
tests/training/helpers.py, in the real pku-saferlhf format.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from annotate.models import ExportFormat, Snapshot, SnapshotStatus
from tests.training.helpers import synthetic_rows
from training.models import JobKind, JobStatus, TrainingJob
from training.trainers.config import CONFIG_CLASSES, TrainerConfig


def make_pku_snapshot(
    project: Any,
    *,
    train_rows: int = 32,
    test_rows: int = 16,
    seed: int = 7,
    status: str = SnapshotStatus.SUCCEEDED,
    format: str = ExportFormat.PKU_SAFERLHF,
    rows: Any = synthetic_rows,
) -> Snapshot:
    """A succeeded snapshot whose train and test files hold `rows(n, seed)` (pku-saferlhf rows by
    default; moderation_rows with format=beavertails)."""
    snapshot = Snapshot.objects.create(
        project=project,
        format=format,
        status=status,
        progress=1.0 if status == SnapshotStatus.SUCCEEDED else 0.0,
        finished_at=timezone.now() if status == SnapshotStatus.SUCCEEDED else None,
    )
    files = []
    folder = Path(settings.MEDIA_ROOT) / "snapshots" / str(snapshot.pk)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, split_seed in (("train", train_rows, seed), ("test", test_rows, seed + 1)):
        if not n:
            continue
        path = folder / f"{split}.jsonl"
        data = "".join(json.dumps(row) + "\n" for row in rows(n, seed=split_seed)).encode()
        path.write_bytes(data)
        files.append(
            {
                "name": path.name,
                "config": "default",
                "split": split,
                "rows": n,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "content_type": "application/x-ndjson",
                "path": f"snapshots/{snapshot.pk}/{path.name}",
            }
        )
    snapshot.files = files
    snapshot.row_counts = {"train": train_rows, "test": test_rows, "total": train_rows + test_rows}
    snapshot.save(update_fields=["files", "row_counts"])
    return snapshot


def make_job(
    snapshot: Snapshot, *, status: str = JobStatus.QUEUED, kind: str = JobKind.REWARD, **fields: Any
) -> TrainingJob:
    """A job row in any status (through the ORM, not the services: for tests of what reads jobs)."""
    recipe: dict[str, Any] = {"kind": str(kind), "base_model": "/models/tiny"}
    if kind == JobKind.PPO_LAG:
        recipe |= {"reward_model": "/models/reward", "cost_model": "/models/cost"}
    cfg = CONFIG_CLASSES.get(str(kind), TrainerConfig).from_dict(recipe)
    now = timezone.now()
    defaults: dict[str, Any] = {
        "kind": kind,
        "snapshot": snapshot,
        "config": cfg.to_dict(),
        "config_hash": cfg.hash(),
        "status": status,
    }
    if status != JobStatus.QUEUED:
        defaults["started_at"] = now
        defaults["heartbeat_at"] = now
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        defaults["finished_at"] = now
    return TrainingJob.objects.create(**{**defaults, **fields})
