"""Reads for training jobs: lists, a snapshot's data files, and the job page's chart series."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from annotate.models import ExportFormat, Project, Snapshot, SnapshotStatus
from training.models import TrainingJob

DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


def snapshot_data_files(snapshot: Snapshot) -> dict[str, list[dict[str, Any]]]:
    """A snapshot's data files by split ({"train": [...], "test": [...]}), from its own file list.

    README.md and manifest.json describe the data and are not rows; a file without a `split` (an older
    export) is read from its name, `train.jsonl` / `test.parquet`.
    """
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for entry in snapshot.files or []:
        name = str(entry.get("name", ""))
        if not name.endswith(DATA_SUFFIXES) or name == "manifest.json":
            continue
        split = entry.get("split") or name.split(".", 1)[0].rsplit("-", 1)[-1]
        if split in splits and entry.get("rows", 1):
            splits[split].append(dict(entry))
    return splits


def jobs_for_project(project: Project) -> QuerySet[TrainingJob]:
    """The project's training jobs, newest first, with what the list shows."""
    return (
        TrainingJob.objects.filter(snapshot__project=project)
        .select_related("snapshot", "created_by")
        .defer("log_tail", "metrics", "eval_metrics")
        .order_by("-created_at", "-pk")
    )


def jobs_for_snapshot(snapshot: Snapshot) -> QuerySet[TrainingJob]:
    # Served by the trainingjob_snapshot_recent index.
    return TrainingJob.objects.filter(snapshot=snapshot).order_by("-created_at", "-pk")


def trainable_snapshots(project: Project) -> QuerySet[Snapshot]:
    """The project's succeeded pku-saferlhf snapshots (what reward and cost models train on), newest first."""
    return Snapshot.objects.filter(
        project=project, format=ExportFormat.PKU_SAFERLHF, status=SnapshotStatus.SUCCEEDED
    ).order_by("-created_at", "-pk")


def chart_series(job: TrainingJob) -> dict[str, Any]:
    """The job's metric history as chart series: training loss and accuracy per logged step, and the
    evaluations on the test split."""
    logs = [p for p in job.metrics or [] if p.get("event") == "log"]
    evals = [p for p in job.metrics or [] if p.get("event") == "eval"]

    def series(points: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        return [
            {"x": p["step"], "y": p[key]}
            for p in points
            if p.get(key) is not None and p.get("step") is not None
        ]

    out: dict[str, Any] = {
        "loss": series(logs, "loss"),
        "accuracy": series(logs, "accuracy"),
        "sign_accuracy": series(logs, "sign_accuracy"),
        "eval_loss": series(evals, "eval_loss"),
        "eval_accuracy": series(evals, "eval_accuracy") + series(evals, "test_accuracy"),
        "eval_sign_accuracy": series(evals, "eval_sign_accuracy") + series(evals, "test_sign_accuracy"),
    }
    return out
