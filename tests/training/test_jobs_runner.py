"""The GPU worker's runner (training/runner.py) in this process, with the stand-in trainer of
test_jobs_supervisor.py in place of the real one: claim, relay, cancel, crash, reaped mid-run, every
ending recorded on the job. The real trainer under a real worker is tests/celery/test_training_task.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.storage import InMemoryStorage
from django.utils import timezone

from tests.factories import ProjectFactory
from tests.training.job_helpers import make_job, make_pku_snapshot
from tests.training.test_jobs_supervisor import FAKE_TRAINER
from training import runner, services, state
from training.models import JobStatus, RegisteredModel, TrainingJob
from training.supervisor import Outcome

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def snapshot(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINING_DIR = tmp_path / "training"
    return make_pku_snapshot(ProjectFactory())


@pytest.fixture
def fake_trainer(tmp_path, monkeypatch):
    """Make the runner start the stand-in trainer; returns the argv it was asked to run."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    seen: dict[str, object] = {"mode": "ok", "steps": 4}

    def fake_launch_command(
        config,
        *,
        config_path,
        train_files,
        test_files,
        progress_file,
        cancel_file,
        result_file,
        eval_prompt_files=(),
    ):
        seen.update(config=config, train=list(train_files), test=list(test_files))
        argv = [sys.executable, str(script), "--steps", str(seen["steps"]), "--mode", str(seen["mode"])]
        return [
            *argv,
            "--progress-file",
            progress_file,
            "--cancel-file",
            cancel_file,
            "--result-file",
            result_file,
        ]

    monkeypatch.setattr(runner, "launch_command", fake_launch_command)
    return seen


def run(job):
    return runner.run_training_job(job.pk, poll_s=0.02)


def test_the_runner_claims_relays_and_registers_the_model(snapshot, fake_trainer):
    # The stand-in's result names a model ("model", no evaluation): the job succeeds and registers it.
    job = make_job(snapshot)
    fake_trainer["steps"] = 3
    status = run(job)
    job.refresh_from_db()
    assert status == JobStatus.SUCCEEDED == job.status
    assert [p["step"] for p in job.metrics] == [1, 2, 3]
    assert job.progress == 1.0 and "step 3" in job.log_tail and job.worker_host
    assert job.log_tail.startswith(f"=== job {job.pk}, attempt 1: ")
    assert RegisteredModel.objects.get(job=job).path == "model"
    # The trainer got the snapshot's files, as local paths, and the job's folder.
    assert [Path(p).name for p in fake_trainer["train"]] == ["train.jsonl"]
    assert [Path(p).name for p in fake_trainer["test"]] == ["test.jsonl"]
    assert fake_trainer["config"].output_dir == job.output_dir
    assert Path(job.output_dir, "runs", "attempt-0", "trainer.pid").is_file()


def test_a_cancel_request_stops_the_trainer_and_ends_cancelled(snapshot, fake_trainer, monkeypatch):
    job = make_job(snapshot)
    fake_trainer["steps"] = 5000
    record = services.training_job_record_progress

    def record_then_cancel(**kwargs):
        signal = record(**kwargs)
        if any(r.get("step", 0) >= 2 for r in kwargs.get("records", ())):
            services.training_job_cancel(job=TrainingJob.objects.get(pk=job.pk))
        return signal

    monkeypatch.setattr(services, "training_job_record_progress", record_then_cancel)
    assert run(job) == JobStatus.CANCELLED
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.finished_at and 2 <= len(job.metrics) < 5000


def test_a_crash_fails_the_job_with_the_exit_code_error_and_log(snapshot, fake_trainer):
    job = make_job(snapshot)
    fake_trainer.update(mode="crash", steps=10)
    assert run(job) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.failure_reason.startswith("The trainer exited with code 1: RuntimeError: boom")
    assert "Last log lines:" in job.failure_reason and "Traceback: boom" in job.failure_reason
    assert "A retry resumes" not in job.failure_reason  # no checkpoint to resume from


def test_a_job_reaped_while_it_runs_stops_its_trainer_and_keeps_the_reapers_reason(
    snapshot, fake_trainer, monkeypatch
):
    job = make_job(snapshot)
    fake_trainer["steps"] = 5000
    record = services.training_job_record_progress

    def reaped_meanwhile(**kwargs):
        if any(r.get("step", 0) >= 2 for r in kwargs.get("records", ())):
            TrainingJob.objects.filter(pk=job.pk).update(
                status=JobStatus.FAILED, failure_reason="no heartbeat since ...", finished_at=timezone.now()
            )
        return record(**kwargs)

    monkeypatch.setattr(services, "training_job_record_progress", reaped_meanwhile)
    assert run(job) == "aborted"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.failure_reason == "no heartbeat since ..."


def test_a_job_that_is_not_queued_is_left_alone(snapshot, fake_trainer):
    for status in (JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.SUCCEEDED):
        job = make_job(snapshot, status=status)
        assert run(job) == status
        assert TrainingJob.objects.get(pk=job.pk).status == status
    assert runner.run_training_job(999999) == "missing"


def test_a_missing_snapshot_file_fails_the_job(snapshot, fake_trainer, settings):
    job = make_job(snapshot)
    (Path(settings.MEDIA_ROOT) / snapshot.files[0]["path"]).unlink()
    assert run(job) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.failure_reason.startswith("Could not prepare the job: snapshot file train.jsonl is missing")


def test_snapshot_files_in_a_remote_storage_are_copied_to_the_job_folder(snapshot, tmp_path, settings):
    entry = snapshot.files[0]
    data = (Path(settings.MEDIA_ROOT) / entry["path"]).read_bytes()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    default_storage.save(entry["path"], ContentFile(data))
    assert isinstance(default_storage._wrapped, InMemoryStorage)
    local = runner._local_path(entry, tmp_path / "data")
    assert Path(local).read_bytes() == data and Path(local).parent == tmp_path / "data"


@pytest.mark.parametrize(
    ("status", "returncode", "needle"),
    [
        (
            "interrupted",
            4,
            "The trainer was stopped (worker shutting down, or SIGTERM) and exited with code 4.",
        ),
        ("timed_out", 4, "Stopped after the time limit of"),
        ("failed", -9, "The trainer was killed by SIGKILL."),
        ("succeeded", 0, "The trainer exited 0 but wrote no result naming a model."),
    ],
)
def test_every_other_ending_fails_the_job_saying_why(snapshot, status, returncode, needle):
    job = make_job(snapshot, status=JobStatus.RUNNING, output_dir=str(snapshot.pk))
    outcome = Outcome(status=status, returncode=returncode, result=None, log_tail="line 1\nline 2")
    assert runner._record_outcome(job, job.attempts, outcome) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.failure_reason.startswith(needle), job.failure_reason
    assert job.failure_reason.endswith("Last log lines:\nline 1\nline 2") and job.log_tail == "line 1\nline 2"


def test_a_broker_that_refuses_the_job_fails_it(snapshot, monkeypatch, django_capture_on_commit_callbacks):
    from training.tasks import run_job

    def down(job_id):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(run_job, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.training_job_create(snapshot=snapshot, kind="reward", config={}, user=None)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.failure_reason == "Could not queue the job for a GPU worker: ConnectionError('redis is down')"


def test_the_worker_side_never_imports_torch():
    # The GPU worker process must not touch CUDA; not importing torch at all is the simple guarantee.
    code = (
        "import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "import training.tasks, training.runner, training.services, training.supervisor, training.api;"
        "sys.exit(1 if 'torch' in sys.modules or 'transformers' in sys.modules else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# --- Fenced by the attempt number ----------------------------------------------------------------------


def _take_over(job, monkeypatch, *, at_step=2):
    """While the runner's trainer is at `at_step`, the job is reaped, retried and started by another
    worker (attempt 2), as when this supervisor lost the database for longer than the reaper waits."""
    record = services.training_job_record_progress

    def meanwhile(**kwargs):
        if any(r.get("step", 0) >= at_step for r in kwargs.get("records", ())):
            TrainingJob.objects.filter(pk=job.pk).update(
                attempts=1, status=JobStatus.RUNNING, log_tail="the second attempt's log", metrics=[]
            )
        return record(**kwargs)

    monkeypatch.setattr(services, "training_job_record_progress", meanwhile)


def test_a_supervisor_whose_job_was_retried_elsewhere_stops_and_writes_nothing(
    snapshot, fake_trainer, monkeypatch
):
    job = make_job(snapshot)
    fake_trainer["steps"] = 5000
    _take_over(job, monkeypatch)
    assert run(job) == "superseded"
    job.refresh_from_db()
    # The second attempt's row is as it left it: no progress, no log, no outcome from the first.
    assert (job.status, job.attempts, job.log_tail, job.metrics) == (
        JobStatus.RUNNING,
        1,
        "the second attempt's log",
        [],
    )
    assert not RegisteredModel.objects.filter(job=job).exists()


def test_the_job_folder_fences_a_supervisor_that_cannot_reach_the_database(
    snapshot, fake_trainer, monkeypatch
):
    from django.db import OperationalError

    job = make_job(snapshot)
    fake_trainer["steps"] = 5000
    polls = []

    def database_gone(**kwargs):
        polls.append(kwargs)
        if len(polls) == 3:  # the retry started on another machine and took the folder
            Path(TrainingJob.objects.get(pk=job.pk).output_dir, "ATTEMPT").write_text("1\n")
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "training_job_record_progress", database_gone)
    started = timezone.now()
    assert run(job) == "superseded"
    assert (timezone.now() - started).total_seconds() < 60


def test_only_the_attempt_that_owns_the_job_records_its_outcome(snapshot):
    job = make_job(snapshot, status=JobStatus.RUNNING, attempts=1, output_dir=str(snapshot.pk))
    with pytest.raises(state.IllegalTransition):
        services.training_job_succeed(job=job, attempt=0, result={"artifact_path": "model"})
    with pytest.raises(state.IllegalTransition):
        services.training_job_fail(job=job, attempt=0, reason="the first attempt's trainer crashed")
    with pytest.raises(state.IllegalTransition):
        services.training_job_mark_cancelled(job=job, attempt=0)
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.RUNNING
    assert not RegisteredModel.objects.exists()
    services.training_job_fail(job=job, attempt=1, reason="the second attempt's trainer crashed")
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.FAILED


# --- What a trainer may point at, and what it is given ------------------------------------------------


@pytest.mark.parametrize("mode", ["escape", "absolute"])
def test_a_result_naming_a_file_outside_the_job_folder_is_refused(snapshot, fake_trainer, mode):
    job = make_job(snapshot)
    fake_trainer["mode"] = mode
    assert run(job) == JobStatus.FAILED
    job.refresh_from_db()
    assert "which is outside the job's folder" in job.failure_reason
    assert not RegisteredModel.objects.filter(job=job).exists()


def test_a_hung_trainer_fails_its_job_on_the_progress_timeout(snapshot, fake_trainer):
    job = make_job(snapshot, progress_timeout_s=1)
    fake_trainer.update(steps=5000, mode="hang")
    assert run(job) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.failure_reason.startswith(
        "The trainer reported no progress for 1 seconds (the job's progress timeout), so it was stopped as "
        "hung; it exited with code 4."
    )


def test_the_trainer_gets_no_storage_or_platform_secrets(monkeypatch):
    for name in (
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "STORAGE_S3_BUCKET",
        "SECRET_KEY",
        "DATABASE_URL",
    ):
        monkeypatch.setenv(name, "secret")
    monkeypatch.setenv("HF_HOME", "/models/hf")
    env = runner._trainer_env()
    assert not [
        name
        for name in env
        if name.startswith(("AWS_", "STORAGE_S3_")) or name in ("SECRET_KEY", "DATABASE_URL")
    ]
    assert env["HF_HOME"] == "/models/hf"  # what the trainer does need stays
