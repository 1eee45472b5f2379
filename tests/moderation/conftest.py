"""Registering a moderation model the way a finished training job does (the model itself: the session
fixture `moderation_model_dir` in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from django.utils import timezone

from annotate.models import ExportFormat, Snapshot, SnapshotStatus
from training.models import JobKind, JobStatus, RegisteredModel, TrainingJob


def register_moderation_model(project, path: Path, *, metrics: dict | None = None) -> RegisteredModel:
    """A succeeded moderation job of `project` and its registered model at `path`."""
    snapshot = Snapshot.objects.create(
        project=project,
        format=ExportFormat.BEAVERTAILS,
        status=SnapshotStatus.SUCCEEDED,
        finished_at=timezone.now(),
    )
    job = TrainingJob.objects.create(
        kind=JobKind.MODERATION,
        snapshot=snapshot,
        config={"kind": "moderation", "base_model": "/m"},
        config_hash="h",
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        finished_at=timezone.now(),
        output_dir=str(path.parent),
    )
    return RegisteredModel.objects.create(
        job=job,
        kind=JobKind.MODERATION,
        path=str(path),
        base_model="/m",
        snapshot=snapshot,
        config_hash="h",
        eval_metrics={"metrics": metrics or {"flagged_f1": 0.97, "macro_f1": 0.71}},
    )
