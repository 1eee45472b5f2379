"""The GPU worker's side of a training job: claim it, start the trainer as a supervised subprocess,
relay what it reports to the job row, and record how it ended.

The worker process itself never touches CUDA: the trainer (`python -m training.trainers.run`, or
`accelerate launch -m training.trainers.run` for several GPUs) runs in a child process, which exits and
so returns all GPU memory when the job ends. The loop is training/supervisor.py (plain Python); this
module is its Django glue. See docs/training-jobs.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import InterfaceError, OperationalError, connection

from training import services, state
from training.models import JobKind, JobStatus, TrainingJob
from training.supervisor import Directive, Outcome, Poll, supervise
from training.trainers.config import config_from_dict

# torch-free: the worker process never imports torch, let alone initialises CUDA.
from training.trainers.launch import find_checkpoint, launch_command

logger = logging.getLogger(__name__)

# Seconds between polls: each one relays progress and a heartbeat, and checks for a cancel request.
POLL_S = 2.0
FAILURE_LOG_LINES = 15


class JobInputError(Exception):
    """The job's inputs cannot be prepared (a snapshot file is gone): the job fails with this message."""


def run_training_job(
    job_id: int, *, poll_s: float = POLL_S, should_interrupt: Callable[[], bool] = lambda: False
) -> str:
    """Run one queued job to its end; its final status (or why nothing was done)."""
    job = TrainingJob.objects.select_related("snapshot").filter(pk=job_id).first()
    if job is None:
        return "missing"
    try:
        services.training_job_start(job=job, worker_host=socket.gethostname())
    except state.IllegalTransition as exc:
        # A redelivered message (acks_late) for a job that another worker runs, or one cancelled while queued.
        logger.info("training job %s not started: %s", job_id, exc.messages[0])
        return exc.status
    # This attempt's number fences every write below: a retry after a reaping bumps it.
    attempt = job.attempts
    try:
        prepared = _prepare(job)
    except (JobInputError, ValueError, OSError) as exc:
        _finish_quietly(
            services.training_job_fail, job=job, attempt=attempt, reason=f"Could not prepare the job: {exc}"
        )
        return JobStatus.FAILED

    def report(poll: Poll) -> Directive:
        # The job folder says which attempt owns it, even while the database is out of reach.
        if _folder_owner(prepared.fence) != attempt:
            return Directive.SUPERSEDED
        try:
            signal_ = services.training_job_record_progress(
                job_id=job.pk,
                attempt=attempt,
                records=poll.records,
                log_tail=poll.log_tail if poll.log_changed else None,
            )
        except (OperationalError, InterfaceError):
            # A lost connection must not stop a long run: reconnect on the next poll. If the database
            # stays away, the heartbeat stops and the reaper fails the job.
            logger.exception("training job %s: could not record progress", job.pk)
            if not connection.in_atomic_block:
                connection.close()
            return Directive.CONTINUE
        if signal_.superseded:
            return Directive.SUPERSEDED
        if signal_.status != JobStatus.RUNNING:
            return Directive.ABORT
        return Directive.CANCEL if signal_.cancel_requested else Directive.CONTINUE

    def on_start(pid: int) -> None:
        # For operators (and the tests): which process is this job's trainer.
        (prepared.run_dir / "trainer.pid").write_text(f"{pid}\n", encoding="utf-8")

    try:
        outcome = supervise(
            prepared.argv,
            cwd=settings.BASE_DIR,
            env=_trainer_env(),
            log_path=prepared.log,
            log_start=prepared.log_start,
            progress_path=prepared.progress,
            cancel_path=prepared.cancel,
            result_path=prepared.result,
            report=report,
            poll_s=poll_s,
            timeout_s=settings.TRAINING_JOB_TIMEOUT_S,
            should_interrupt=should_interrupt,
            on_start=on_start,
            progress_timeout_s=progress_timeout_s(job),
        )
    except Exception as exc:
        logger.exception("training job %s: the supervisor failed", job.pk)
        _finish_quietly(
            services.training_job_fail, job=job, attempt=attempt, reason=f"The job supervisor failed: {exc!r}"
        )
        return JobStatus.FAILED
    return _record_outcome(job, attempt, outcome)


def progress_timeout_s(job: TrainingJob) -> int:
    return job.progress_timeout_s or settings.TRAINING_PROGRESS_TIMEOUT_S


# The job folder's owner: the attempt that runs in it now, written when that attempt starts.
FENCE_FILE = "ATTEMPT"


def _folder_owner(fence: Path) -> int | None:
    try:
        return int(fence.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


@dataclass
class Prepared:
    """One attempt's trainer command and files (under <job folder>/runs/attempt-<n>/)."""

    argv: list[str]
    run_dir: Path
    progress: Path
    cancel: Path
    result: Path
    # One log for all attempts: after a retry, the file still shows why the last attempt stopped.
    log: Path
    log_start: int
    # The file that names the attempt owning the job folder (FENCE_FILE).
    fence: Path


def _prepare(job: TrainingJob) -> Prepared:
    """The job's folder, this attempt's files, the snapshot's data as local paths, and the trainer argv."""
    out = Path(job.output_dir)
    run = out / "runs" / f"attempt-{job.attempts}"
    run.mkdir(parents=True, exist_ok=True)
    # From now on this attempt owns the folder: an earlier attempt's supervisor, should it come back,
    # reads this and kills its trainer before it writes another checkpoint here.
    fence = out / FENCE_FILE
    partial = out / f".{FENCE_FILE}.{job.attempts}"
    partial.write_text(f"{job.attempts}\n", encoding="utf-8")
    partial.replace(fence)
    files = services.job_data_files(job.snapshot, job.kind)
    train = [_local_path(entry, out / "data") for entry in files["train"]]
    test = [_local_path(entry, out / "data") for entry in files["test"]]
    if not train:
        raise JobInputError(f"snapshot {job.snapshot_id} has no train files")
    config = config_from_dict({**job.config, "output_dir": str(out)})
    config_path = run / "config.json"
    config_path.write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
    progress, cancel, result = run / "progress.jsonl", run / "CANCEL", run / "result.json"
    argv = launch_command(
        config,
        config_path=str(config_path),
        train_files=train,
        test_files=test,
        progress_file=str(progress),
        cancel_file=str(cancel),
        result_file=str(result),
        eval_prompt_files=_eval_prompt_files(job),
    )
    log = out / "train.log"
    with log.open("a", encoding="utf-8") as fh:
        log_start = fh.tell()
        fh.write(f"=== job {job.pk}, attempt {job.attempts + 1}: {' '.join(argv)}\n")
    return Prepared(argv, run, progress, cancel, result, log, log_start, fence)


# BeaverTails-Evaluation: 700 prompts, 50 per harm category, in the shared data folder of each machine.
BEAVERTAILS_EVALUATION_FILE = "beavertails_evaluation_700.json"


def _eval_prompt_files(job: TrainingJob) -> list[str]:
    """A policy job's evaluation prompts, when not its snapshot's test split."""
    if job.kind != JobKind.PPO_LAG or job.config.get("eval_prompts") != "beavertails_evaluation":
        return []
    path = Path(settings.SHARED_DATA_DIR) / BEAVERTAILS_EVALUATION_FILE
    if not path.is_file():
        raise JobInputError(
            f"BeaverTails-Evaluation's prompts are not at {path} on this worker (set BEAVERLAB_SHARED_DATA "
            "to the folder that holds them), or evaluate on the snapshot's test prompts"
        )
    return [str(path)]


def _local_path(entry: dict[str, Any], folder: Path) -> str:
    """A snapshot file as a path the trainer can open: in place on a local media disk, else a copy."""
    name = str(entry["path"])
    if not default_storage.exists(name):
        raise JobInputError(f"snapshot file {entry.get('name')} is missing from the media storage ({name})")
    if isinstance(default_storage, FileSystemStorage):
        return default_storage.path(name)
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / Path(name).name
    if not local.is_file() or local.stat().st_size != entry.get("bytes"):
        with default_storage.open(name, "rb") as source, local.open("wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    return str(local)


# The trainer needs none of the platform's secrets or connections: it reads local files (the runner copies
# the snapshot out of the media storage first) and writes into its job folder.
_TRAINER_ENV_DROP = (
    "SECRET_KEY",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CACHE_URL",
)
_TRAINER_ENV_DROP_PREFIXES = ("AWS_", "STORAGE_S3_", "DJANGO_")


def _trainer_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _TRAINER_ENV_DROP and not k.startswith(_TRAINER_ENV_DROP_PREFIXES)
    }
    base = str(settings.BASE_DIR)
    env["PYTHONPATH"] = base + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _record_outcome(job: TrainingJob, attempt: int, outcome: Outcome) -> str:
    tail = outcome.log_tail
    if outcome.status == "aborted":
        # The job was failed or removed while it ran (the reaper, an operator): its row says why.
        logger.warning("training job %s was taken away while running; the trainer was stopped", job.pk)
        return "aborted"
    if outcome.status == "superseded":
        logger.warning(
            "training job %s: attempt %s was superseded by a retry; its trainer was killed, nothing recorded",
            job.pk,
            attempt + 1,
        )
        return "superseded"
    if outcome.status == "cancelled":
        _finish_quietly(services.training_job_mark_cancelled, job=job, attempt=attempt, log_tail=tail)
        return _current_status(job)
    if outcome.status == "succeeded":
        problem = _result_problem(job, outcome.result)
        if problem:
            detail = problem
        else:
            try:
                _finish_quietly(
                    services.training_job_succeed,
                    job=job,
                    attempt=attempt,
                    result=outcome.result,
                    log_tail=tail,
                )
                return _current_status(job)
            except Exception as exc:  # storing the evaluation or the registry entry failed
                logger.exception("training job %s: could not record its model", job.pk)
                detail = f"Training finished but recording its model failed: {exc!r}"
    elif outcome.status == "interrupted":
        detail = f"The trainer was stopped (worker shutting down, or SIGTERM) and {outcome.describe_exit()}."
    elif outcome.status == "timed_out":
        hours = settings.TRAINING_JOB_TIMEOUT_S / 3600
        detail = f"Stopped after the time limit of {hours:g} h (TRAINING_JOB_TIMEOUT_S); the trainer {outcome.describe_exit()}."
    elif outcome.status == "stalled":
        detail = (
            f"The trainer reported no progress for {_duration(progress_timeout_s(job))} (the job's progress "
            f"timeout), so it was stopped as hung; it {outcome.describe_exit()}."
        )
    else:
        detail = f"The trainer {outcome.describe_exit()}" + (f": {outcome.error}" if outcome.error else ".")
    resume = " A retry resumes from the last checkpoint." if _has_checkpoint(job) else ""
    last = "\n".join(tail.splitlines()[-FAILURE_LOG_LINES:])
    reason = detail + resume + (f"\n\nLast log lines:\n{last}" if last else "")
    _finish_quietly(services.training_job_fail, job=job, attempt=attempt, reason=reason, log_tail=tail)
    return _current_status(job)


def _result_problem(job: TrainingJob, result: dict[str, Any] | None) -> str:
    """Why the trainer's result cannot be recorded, or "": it must name a model, and every file it names
    (the model, the evaluation and its images) must lie inside the job's folder, which is all the
    trainer may write. A path elsewhere (a symlink out, `..`) is refused, not registered or copied."""
    if not (result and result.get("artifact_path")):
        return "The trainer exited 0 but wrote no result naming a model."
    folder = Path(job.output_dir).resolve()
    named = [
        result["artifact_path"],
        *result.get("images", []),
        *([result["eval_path"]] if result.get("eval_path") else []),
    ]
    for path in named:
        if not isinstance(path, str) or not (folder / path).resolve().is_relative_to(folder):
            return f"The trainer's result names {path!r}, which is outside the job's folder {folder}; nothing was recorded."
    return ""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    return f"{seconds / 60:g} minutes"


def _has_checkpoint(job: TrainingJob) -> bool:
    return find_checkpoint(job.output_dir) is not None


def _finish_quietly(finish: Callable[..., Any], **kwargs: Any) -> bool:
    """Apply a final transition; False when another process got there first (the reaper, a cancel)."""
    try:
        finish(**kwargs)
    except state.IllegalTransition as exc:
        logger.warning("training job: %s", exc.messages[0])
        return False
    return True


def _current_status(job: TrainingJob) -> str:
    return TrainingJob.objects.filter(pk=job.pk).values_list("status", flat=True).first() or "missing"
