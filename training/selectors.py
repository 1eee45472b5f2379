"""Reads for training jobs: lists, a snapshot's data files, and the job page's chart series."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from annotate.access import DATA_ROLES
from annotate.models import ExportFormat, Membership, Project, Snapshot, SnapshotStatus
from training.models import JobKind, ModelActivation, RegisteredModel, TrainingJob

DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


def snapshot_data_files(snapshot: Snapshot, *, config: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """A snapshot's data files by split ({"train": [...], "test": [...]}), from its own file list;
    with `config`, only that file config's ("stage1" of a raw export).

    README.md and manifest.json describe the data and are not rows; a file without a `split` (an older
    export) is read from its name, `train.jsonl` / `test.parquet`.
    """
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for entry in snapshot.files or []:
        name = str(entry.get("name", ""))
        if not name.endswith(DATA_SUFFIXES) or name == "manifest.json":
            continue
        if config is not None and entry.get("config", "default") != config:
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


TRAINABLE_FORMATS = (ExportFormat.PKU_SAFERLHF, ExportFormat.BEAVERTAILS, ExportFormat.RAW)


def trainable_snapshots(
    project: Project, *, formats: tuple[str, ...] = TRAINABLE_FORMATS
) -> QuerySet[Snapshot]:
    """The project's succeeded snapshots a job can train on (pku-saferlhf for reward and cost models,
    beavertails or raw for the moderation classifier), newest first."""
    return Snapshot.objects.filter(
        project=project, format__in=formats, status=SnapshotStatus.SUCCEEDED
    ).order_by("-created_at", "-pk")


def active_model(kind: str, project: Project | None) -> RegisteredModel | None:
    """The model of `kind` in use for the project: its own active one, else the platform's."""
    rows = ModelActivation.objects.filter(kind=kind).select_related("model__snapshot__project", "model__job")
    if project is not None:
        own = rows.filter(project=project).first()
        if own is not None:
            return own.model
    platform = rows.filter(project__isnull=True).first()
    return platform.model if platform is not None else None


def models_for_user(user: Any, *, kind: str | None = None) -> QuerySet[RegisteredModel]:
    """Registered models of the projects where the user is a researcher or admin (every one for a
    superuser), newest first."""
    models = RegisteredModel.objects.select_related("snapshot__project", "job").order_by("-created_at", "-pk")
    if kind:
        models = models.filter(kind=kind)
    if getattr(user, "is_superuser", False):
        return models
    projects = Membership.objects.filter(user_id=user.pk, role__in=DATA_ROLES).values("project_id")
    return models.filter(snapshot__project_id__in=projects)


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
    if job.kind == JobKind.PPO_LAG:
        # A policy's iterations: what it earns, what it costs, the multiplier and the drift from the start.
        for key in ("reward", "cost", "unsafe_share", "lambda", "kl"):
            out[key] = series(logs, key)
        config = job.config or {}
        out["threshold"] = (
            config.get("cost_threshold") if config.get("algorithm", "ppo_lag") == "ppo_lag" else None
        )
    return out
