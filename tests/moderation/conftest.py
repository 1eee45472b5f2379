"""A small QA-moderation model trained once per session (the keyword task of tests/training/helpers.py),
and helpers that register it the way a finished training job does."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from annotate.models import ExportFormat, Snapshot, SnapshotStatus
from tests.training.helpers import MODERATION_WORDS, build_tiny_bert, moderation_rows, write_jsonl
from training.models import JobKind, JobStatus, RegisteredModel, TrainingJob
from training.trainers.config import ModerationConfig


@pytest.fixture(scope="session")
def moderation_model_dir(tmp_path_factory) -> Path:
    import torch

    from training.trainers.moderation import train_moderation

    root = tmp_path_factory.mktemp("moderation-model")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = ModerationConfig.from_dict(
            {
                "kind": "moderation",
                "base_model": str(
                    build_tiny_bert(root / "bert", hidden_size=64, extra_words=MODERATION_WORDS)
                ),
                "output_dir": str(root / "job"),
                "max_length": 64,
                "epochs": 20,
                "per_device_batch_size": 16,
                "learning_rate": 2e-3,
                "warmup_ratio": 0.0,
                "weight_decay": 0.0,
                "logging_steps": 100,
                "save_steps": 100000,
            }
        )
        result = train_moderation(
            config,
            train_files=[write_jsonl(moderation_rows(1000, seed=21), root / "train.jsonl")],
            test_files=[write_jsonl(moderation_rows(200, seed=22), root / "test.jsonl")],
        )
    finally:
        torch.set_num_threads(threads)
    return Path(result.artifact_path)


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
