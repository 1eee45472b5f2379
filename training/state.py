"""The training job state machine: named transitions, each one conditional UPDATE.

    queued --start--> running --succeed--> succeeded                      (final: no retry)
      |                  |
      |                  +--fail--> failed --retry--> queued
      +------fail------------------^
      +--cancel--> cancelled <--cancel-- running   (only once the trainer stopped after a cancel request)
                       |
                       +--retry--> queued          (resumes from the checkpoint the cancel saved)

A transition is `UPDATE ... SET status=<to>, ... WHERE id=<job> AND status IN (<from>) [AND <guard>]`,
and its row count is checked: when two processes race to move the same job (a worker finishing it
while the reaper fails it, two workers picking up a redelivered message), exactly one UPDATE matches
and the other gets `IllegalTransition`, naming the status the job is really in.

A running job is not cancelled by the researcher directly: `training_job_cancel` only sets
`cancel_requested`, the supervisor stops the trainer (which saves a checkpoint) and then applies
`cancel`; the guard below keeps a running job from being marked cancelled any other way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, Q
from django.utils import timezone

from training.models import JobStatus, TrainingJob


class IllegalTransition(ValidationError):
    """A transition the job's current status does not allow (or another process moved it first).

    A ValidationError, so an API view that lets it through answers 400 with the message.
    """

    def __init__(self, message: str, *, job_id: int, transition: str, status: str) -> None:
        super().__init__(message, code="illegal_transition")
        self.job_id = job_id
        self.transition = transition
        self.status = status


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[JobStatus, ...]
    target: JobStatus
    # Extra conditions per source status, checked in the same UPDATE.
    guards: Mapping[JobStatus, Q] = field(default_factory=dict)

    def condition(self) -> Q:
        allowed = Q()
        for source in self.sources:
            allowed |= Q(status=source) & self.guards.get(source, Q())
        return allowed


START = Transition("start", (JobStatus.QUEUED,), JobStatus.RUNNING)
SUCCEED = Transition("succeed", (JobStatus.RUNNING,), JobStatus.SUCCEEDED)
FAIL = Transition("fail", (JobStatus.QUEUED, JobStatus.RUNNING), JobStatus.FAILED)
CANCEL = Transition(
    "cancel",
    (JobStatus.QUEUED, JobStatus.RUNNING),
    JobStatus.CANCELLED,
    guards={JobStatus.RUNNING: Q(cancel_requested=True)},
)
# A cancelled job may be retried like a failed one: a running job's cancel saved a checkpoint in its
# folder, and the retry resumes from it. A succeeded job is final (its model is registered).
RETRY = Transition("retry", (JobStatus.FAILED, JobStatus.CANCELLED), JobStatus.QUEUED)

TRANSITIONS = {t.name: t for t in (START, SUCCEED, FAIL, CANCEL, RETRY)}


def allowed_transitions(job: TrainingJob) -> list[str]:
    """The transitions the job's (in-memory) status allows, guards included: what the UI may offer."""
    names = []
    for transition in TRANSITIONS.values():
        if job.status not in transition.sources:
            continue
        if transition is CANCEL and job.status == JobStatus.RUNNING and not job.cancel_requested:
            continue
        names.append(transition.name)
    return names


def apply(
    job: TrainingJob,
    transition: Transition,
    *,
    guard: Q | None = None,
    now: datetime | None = None,
    **changes: Any,
) -> TrainingJob:
    """Move `job` along `transition` with one conditional UPDATE; raise IllegalTransition if it matched
    no row. `changes` are the other columns to set (values or expressions such as F()). The in-memory
    job is updated to match (expressions are read back)."""
    now = now or timezone.now()
    values = {**_timestamps(transition, now), **changes, "status": transition.target}
    condition = transition.condition()
    if guard is not None:
        condition &= guard
    updated = TrainingJob.objects.filter(condition, pk=job.pk).update(**values)
    if updated != 1:
        current = TrainingJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()
        raise IllegalTransition(
            _refusal(job.pk, transition, current, guarded=guard is not None),
            job_id=job.pk,
            transition=transition.name,
            status=current or "missing",
        )
    expressions = [name for name, value in values.items() if hasattr(value, "resolve_expression")]
    for name, value in values.items():
        if name not in expressions:
            setattr(job, name, value)
    if expressions:
        job.refresh_from_db(fields=expressions)
    return job


def _timestamps(transition: Transition, now: datetime) -> dict[str, Any]:
    if transition is START:
        return {"started_at": now, "heartbeat_at": now, "finished_at": None}
    if transition is RETRY:
        # A fresh run: the old outcome and the old cancel request do not carry over; the checkpoints do.
        return {
            "attempts": F("attempts") + 1,
            "queued_at": now,
            "finished_at": None,
            "heartbeat_at": None,
            "cancel_requested": False,
            "failure_reason": "",
        }
    if transition.target in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        return {"finished_at": now}
    return {}


def _refusal(job_id: int, transition: Transition, current: str | None, *, guarded: bool) -> str:
    allowed = " or ".join(s.value for s in transition.sources)
    if current is None:
        return f"Training job {job_id} does not exist."
    if transition is CANCEL and current == JobStatus.RUNNING:
        return (
            f"Cannot cancel training job {job_id} directly while it runs: request a cancel and the "
            "trainer stops at its next step."
        )
    if current in transition.sources and guarded:
        return (
            f"Cannot {transition.name} training job {job_id}: it changed while this was decided; try again."
        )
    refusal = f"Cannot {transition.name} training job {job_id}: it is {current} ({transition.name} needs {allowed})."
    if transition is RETRY and current == JobStatus.SUCCEEDED:
        refusal += " A succeeded job is final, its model registered: launch a new job to train again."
    return refusal
