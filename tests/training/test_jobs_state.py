"""The job state machine: every legal transition, every illegal one, and two processes racing."""

from __future__ import annotations

import pytest
from django.db.models import Q

from tests.factories import ProjectFactory
from tests.training.job_helpers import make_job, make_pku_snapshot
from training import state
from training.models import JobStatus, TrainingJob

ALL = list(JobStatus)
LEGAL = {
    ("start", JobStatus.QUEUED): JobStatus.RUNNING,
    ("succeed", JobStatus.RUNNING): JobStatus.SUCCEEDED,
    ("fail", JobStatus.QUEUED): JobStatus.FAILED,
    ("fail", JobStatus.RUNNING): JobStatus.FAILED,
    ("cancel", JobStatus.QUEUED): JobStatus.CANCELLED,
    ("cancel", JobStatus.RUNNING): JobStatus.CANCELLED,  # with cancel_requested
    ("retry", JobStatus.FAILED): JobStatus.QUEUED,
    ("retry", JobStatus.CANCELLED): JobStatus.QUEUED,  # resumes from the checkpoint the cancel saved
}


@pytest.fixture
def snapshot(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return make_pku_snapshot(ProjectFactory())


@pytest.mark.parametrize(("name", "source"), list(LEGAL))
def test_legal_transitions(snapshot, name, source):
    job = make_job(
        snapshot, status=source, cancel_requested=(name == "cancel" and source == JobStatus.RUNNING)
    )
    state.apply(job, state.TRANSITIONS[name])
    assert job.status == LEGAL[(name, source)]
    stored = TrainingJob.objects.get(pk=job.pk)
    assert stored.status == job.status
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        assert stored.finished_at is not None
    if name == "start":
        assert stored.started_at is not None and stored.heartbeat_at is not None


@pytest.mark.parametrize(
    ("name", "source"), [(n, s) for n in state.TRANSITIONS for s in ALL if (n, s) not in LEGAL]
)
def test_illegal_transitions_raise_and_change_nothing(snapshot, name, source):
    job = make_job(snapshot, status=source)
    before = TrainingJob.objects.filter(pk=job.pk).values().get()
    with pytest.raises(state.IllegalTransition) as caught:
        state.apply(job, state.TRANSITIONS[name])
    assert caught.value.status == source
    assert caught.value.transition == name
    assert f"it is {source.value}" in caught.value.messages[0]
    assert TrainingJob.objects.filter(pk=job.pk).values().get() == before


def test_a_running_job_is_not_cancelled_without_a_cancel_request(snapshot):
    job = make_job(snapshot, status=JobStatus.RUNNING)
    with pytest.raises(state.IllegalTransition, match="request a cancel"):
        state.apply(job, state.CANCEL)
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_retry_starts_a_fresh_attempt(snapshot):
    job = make_job(
        snapshot, status=JobStatus.FAILED, failure_reason="boom", cancel_requested=True, attempts=2
    )
    state.apply(job, state.RETRY)
    stored = TrainingJob.objects.get(pk=job.pk)
    assert (stored.status, stored.attempts, stored.failure_reason) == (JobStatus.QUEUED, 3, "")
    assert stored.finished_at is None and stored.heartbeat_at is None and not stored.cancel_requested
    assert job.attempts == 3  # the in-memory row reads back the F() expression


def test_retry_of_a_cancelled_job_clears_the_cancel_and_keeps_the_folder(snapshot):
    job = make_job(
        snapshot, status=JobStatus.CANCELLED, cancel_requested=True, output_dir="/jobs/5", attempts=1
    )
    state.apply(job, state.RETRY)
    stored = TrainingJob.objects.get(pk=job.pk)
    assert (stored.status, stored.attempts, stored.output_dir) == (JobStatus.QUEUED, 2, "/jobs/5")
    assert stored.finished_at is None and not stored.cancel_requested


def test_a_succeeded_job_cannot_be_retried(snapshot):
    job = make_job(snapshot, status=JobStatus.SUCCEEDED)
    with pytest.raises(state.IllegalTransition) as caught:
        state.apply(job, state.RETRY)
    message = caught.value.messages[0]
    assert "it is succeeded (retry needs failed or cancelled)" in message
    assert "launch a new job" in message
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


def test_two_processes_cannot_both_start_a_job(snapshot):
    job = make_job(snapshot)
    first, second = TrainingJob.objects.get(pk=job.pk), TrainingJob.objects.get(pk=job.pk)
    state.apply(first, state.START, worker_host="gpu-1")
    with pytest.raises(state.IllegalTransition) as caught:
        state.apply(second, state.START, worker_host="gpu-2")  # its copy still says queued
    assert caught.value.status == JobStatus.RUNNING
    assert TrainingJob.objects.get(pk=job.pk).worker_host == "gpu-1"


def test_a_finish_and_the_reaper_racing_leave_one_outcome(snapshot):
    job = make_job(snapshot, status=JobStatus.RUNNING)
    worker_copy, reaper_copy = TrainingJob.objects.get(pk=job.pk), TrainingJob.objects.get(pk=job.pk)
    state.apply(worker_copy, state.SUCCEED)
    with pytest.raises(state.IllegalTransition):
        state.apply(reaper_copy, state.FAIL, failure_reason="no heartbeat")
    stored = TrainingJob.objects.get(pk=job.pk)
    assert stored.status == JobStatus.SUCCEEDED and stored.failure_reason == ""


def test_a_guard_that_no_longer_holds_refuses(snapshot):
    job = make_job(snapshot, status=JobStatus.RUNNING)
    with pytest.raises(state.IllegalTransition, match="changed while this was decided"):
        state.apply(job, state.FAIL, guard=Q(heartbeat_at__isnull=True))
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_allowed_transitions_match_the_machine(snapshot):
    assert state.allowed_transitions(make_job(snapshot)) == ["start", "fail", "cancel"]
    assert state.allowed_transitions(make_job(snapshot, status=JobStatus.RUNNING)) == ["succeed", "fail"]
    running_cancelling = make_job(snapshot, status=JobStatus.RUNNING, cancel_requested=True)
    assert state.allowed_transitions(running_cancelling) == ["succeed", "fail", "cancel"]
    assert state.allowed_transitions(make_job(snapshot, status=JobStatus.FAILED)) == ["retry"]
    assert state.allowed_transitions(make_job(snapshot, status=JobStatus.SUCCEEDED)) == []
    assert state.allowed_transitions(make_job(snapshot, status=JobStatus.CANCELLED)) == ["retry"]
