"""Training job services: create (validation, defaults, the GPU queue), cancel, retry, progress relay,
completion into the model registry, and the reaper."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from annotate.models import ExportFormat, SnapshotStatus
from config.celery import Queue
from config.celery import app as celery_app
from tests.factories import ProjectFactory, UserFactory
from tests.training.job_helpers import make_job, make_pku_snapshot
from training import services, state
from training.models import JobStatus, RegisteredModel, TrainingJob
from training.tasks import reap_stale_jobs, run_job
from training.trainers.config import TrainerConfig
from training.trainers.launch import find_checkpoint


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINING_DIR = tmp_path / "training"
    return settings.MEDIA_ROOT


@pytest.fixture
def snapshot(db, media):
    return make_pku_snapshot(ProjectFactory())


# --- routing ----------------------------------------------------------------------------------------


def test_the_training_task_is_routed_to_the_gpu_queue():
    route = celery_app.amqp.router.route({}, "training.run_job")
    assert route["queue"].name == Queue.GPU
    assert run_job.acks_late is True


def test_the_reaper_runs_on_the_default_queue_every_minute():
    assert celery_app.amqp.router.route({}, "training.reap_stale_jobs")["queue"].name == Queue.DEFAULT
    entries = [
        e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "training.reap_stale_jobs"
    ]
    assert entries and entries[0]["schedule"] <= 60


def test_a_job_ends_before_redis_would_redeliver_it():
    visibility = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if visibility is not None:
        assert visibility > django_settings.TRAINING_JOB_TIMEOUT_S


# --- create -----------------------------------------------------------------------------------------


def test_create_queues_a_validated_job_for_the_gpu_worker(snapshot, sent, django_capture_on_commit_callbacks):
    user = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        job = services.training_job_create(
            snapshot=snapshot, kind="cost", config={"epochs": 1, "learning_rate": 1e-4}, user=user
        )
        assert sent == []  # only once the transaction commits
    assert sent == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.kind, job.created_by, job.attempts) == (JobStatus.QUEUED, "cost", user, 0)
    cfg = TrainerConfig.from_dict(job.config)
    assert cfg.kind == "cost" and cfg.epochs == 1 and cfg.learning_rate == 1e-4
    assert cfg.per_device_batch_size == TrainerConfig.per_device_batch_size  # the rest: defaults
    assert job.config_hash == cfg.hash()
    # The offline default base model: the bundled all-MiniLM-L6-v2.
    assert cfg.base_model == services.default_base_model()
    assert cfg.base_model.endswith("model") and cfg.base_model


def test_create_keeps_a_given_base_model(snapshot, sent, settings):
    settings.TRAINING_MODEL_ROOTS = ["/models"]
    job = services.training_job_create(
        snapshot=snapshot, kind="reward", config={"base_model": "/models/qwen"}, user=None
    )
    assert job.config["base_model"] == "/models/qwen" and job.created_by is None


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("base_model", "/etc"),
        ("base_model", "/models/../etc/passwd"),
        ("base_model", "relative/model"),
        ("base_model", "/models-evil/qwen"),
        ("deepspeed", "/root/.ssh/ds.json"),
        ("fsdp_config", "/tmp/fsdp.json"),
    ],
)
def test_a_config_may_only_name_paths_under_the_model_roots(snapshot, sent, settings, field, path):
    settings.TRAINING_MODEL_ROOTS = ["/models"]
    config = {"base_model": "/models/qwen", field: path}
    if field == "fsdp_config":
        config.update(fsdp="full_shard auto_wrap", num_gpus=2)
    with pytest.raises(ValidationError) as refused:
        services.training_job_create(snapshot=snapshot, kind="reward", config=config, user=None)
    (message,) = refused.value.message_dict["config"]
    assert message.startswith(f"{field}: {path} is not under an allowed model folder (/models")
    assert not TrainingJob.objects.exists() and sent == []


@pytest.mark.parametrize(
    ("config", "messages"),
    [
        ({"learning_rate": -1}, ["learning_rate: must be in (0, 1], got -1"]),
        ({"epochs": "two", "nonsense": 1}, ["unknown field 'nonsense'"]),
        ({"output_dir": "/etc"}, ["output_dir: set by the job system, not by the request"]),
        ({"kind": "cost"}, ["kind: 'cost' does not match the job kind 'reward'"]),
        ({"template": "{prompt}"}, ["template: must contain {response} exactly once"]),
        ({"bf16": True, "fp16": True}, ["bf16, fp16: choose at most one mixed precision"]),
    ],
)
def test_create_rejects_an_invalid_config_with_the_trainers_messages(snapshot, sent, config, messages):
    with pytest.raises(ValidationError) as caught:
        services.training_job_create(snapshot=snapshot, kind="reward", config=config, user=None)
    assert caught.value.message_dict["config"] == messages
    assert not TrainingJob.objects.exists() and sent == []


def test_create_reports_every_config_problem_at_once(snapshot, sent):
    with pytest.raises(ValidationError) as caught:
        services.training_job_create(
            snapshot=snapshot, kind="reward", config={"epochs": 0, "seed": -1}, user=None
        )
    assert len(caught.value.message_dict["config"]) == 2


def test_create_refuses_an_unknown_kind(snapshot, sent):
    with pytest.raises(ValidationError) as caught:
        services.training_job_create(snapshot=snapshot, kind="dpo", config={}, user=None)
    assert "kind" in caught.value.message_dict
    assert not TrainingJob.objects.exists()


def test_reward_and_cost_need_a_succeeded_pku_saferlhf_snapshot(db, media, sent):
    project = ProjectFactory()
    for snap, needle in [
        (
            make_pku_snapshot(project, format=ExportFormat.BEAVERTAILS),
            "pku-saferlhf snapshot; this one is beavertails",
        ),
        (make_pku_snapshot(project, status=SnapshotStatus.RUNNING), "The snapshot is running"),
        (make_pku_snapshot(project, train_rows=0), "no train split rows"),
    ]:
        with pytest.raises(ValidationError) as caught:
            services.training_job_create(snapshot=snap, kind="reward", config={}, user=None)
        assert needle in caught.value.message_dict["snapshot"][0]
    assert not TrainingJob.objects.exists()


# --- cancel and retry -------------------------------------------------------------------------------


def test_cancel_a_queued_job_ends_it_now(snapshot):
    job = services.training_job_cancel(job=make_job(snapshot))
    assert job.status == JobStatus.CANCELLED
    assert TrainingJob.objects.get(pk=job.pk).finished_at is not None


def test_cancel_a_running_job_asks_its_trainer_to_stop(snapshot):
    job = services.training_job_cancel(job=make_job(snapshot, status=JobStatus.RUNNING))
    stored = TrainingJob.objects.get(pk=job.pk)
    assert (stored.status, stored.cancel_requested) == (JobStatus.RUNNING, True)
    # Asking twice is harmless.
    services.training_job_cancel(job=stored)
    assert TrainingJob.objects.get(pk=job.pk).cancel_requested


def test_cancel_a_job_a_worker_just_started_asks_its_trainer(snapshot):
    job = make_job(snapshot)
    stale_copy = TrainingJob.objects.get(pk=job.pk)
    services.training_job_start(job=job, worker_host="gpu-1")
    services.training_job_cancel(job=stale_copy)  # still thinks it is queued
    stored = TrainingJob.objects.get(pk=job.pk)
    assert (stored.status, stored.cancel_requested) == (JobStatus.RUNNING, True)


def test_cancel_goes_by_the_rows_status_not_the_callers_copy(snapshot, sent):
    job = make_job(snapshot, status=JobStatus.FAILED)
    stale_copy = TrainingJob.objects.get(pk=job.pk)
    services.training_job_retry(job=job)  # queued again meanwhile
    services.training_job_cancel(job=stale_copy)
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_cannot_be_cancelled(snapshot, status):
    with pytest.raises(state.IllegalTransition, match=f"it is {status.value}"):
        services.training_job_cancel(job=make_job(snapshot, status=status))


def test_retry_requeues_a_failed_job(snapshot, sent, django_capture_on_commit_callbacks):
    job = make_job(snapshot, status=JobStatus.FAILED, failure_reason="no heartbeat", output_dir="/jobs/1")
    with django_capture_on_commit_callbacks(execute=True):
        services.training_job_retry(job=job)
    stored = TrainingJob.objects.get(pk=job.pk)
    assert (stored.status, stored.attempts, stored.failure_reason) == (JobStatus.QUEUED, 1, "")
    assert stored.output_dir == "/jobs/1"  # same folder: the trainer resumes its checkpoints
    assert sent == [job.pk]


def test_retry_requeues_a_cancelled_job_from_its_checkpoint(
    snapshot, sent, django_capture_on_commit_callbacks, tmp_path
):
    # A running job cancelled by its researcher: the trainer saved checkpoint-40 in the job's folder.
    folder = tmp_path / "jobs" / "cancelled"
    (folder / "checkpoint-40").mkdir(parents=True)
    (folder / "checkpoint-40" / "trainer_state.json").write_text('{"global_step": 40}')
    job = make_job(
        snapshot, status=JobStatus.CANCELLED, cancel_requested=True, output_dir=str(folder), progress=0.4
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.training_job_retry(job=job)
    stored = TrainingJob.objects.get(pk=job.pk)
    assert (stored.status, stored.attempts, stored.cancel_requested) == (JobStatus.QUEUED, 1, False)
    assert stored.finished_at is None
    assert stored.output_dir == str(folder)  # the checkpoint reference is kept
    assert sent == [job.pk]
    # The worker that picks it up keeps that folder, where the trainer finds the checkpoint to resume.
    started = services.training_job_start(job=stored, worker_host="gpu-2")
    assert started.output_dir == str(folder)
    assert find_checkpoint(started.output_dir) is not None


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED])
def test_only_a_failed_or_cancelled_job_can_be_retried(snapshot, sent, status):
    job = make_job(snapshot, status=status)
    before = TrainingJob.objects.filter(pk=job.pk).values().get()
    with pytest.raises(state.IllegalTransition, match=f"it is {status.value}"):
        services.training_job_retry(job=job)
    assert sent == []
    assert TrainingJob.objects.filter(pk=job.pk).values().get() == before


def test_retry_of_a_succeeded_job_says_why_not(snapshot, sent):
    with pytest.raises(state.IllegalTransition, match="A succeeded job is final"):
        services.training_job_retry(job=make_job(snapshot, status=JobStatus.SUCCEEDED))


# --- the worker's side ------------------------------------------------------------------------------


def test_start_claims_the_job_and_gives_it_a_folder(snapshot, tmp_path):
    job = services.training_job_start(job=make_job(snapshot), worker_host="gpu-7")
    stored = TrainingJob.objects.get(pk=job.pk)
    assert stored.status == JobStatus.RUNNING and stored.worker_host == "gpu-7"
    assert stored.output_dir == str(tmp_path / "training" / "jobs" / str(job.pk))


def test_progress_relay_writes_metrics_progress_log_and_heartbeat(snapshot):
    job = make_job(snapshot, status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5))
    records = [
        {"event": "train_begin", "step": 0, "max_steps": 10, "progress": 0.0},
        {
            "event": "log",
            "step": 5,
            "max_steps": 10,
            "epoch": 0.5,
            "loss": 0.6,
            "accuracy": 0.7,
            "progress": 0.5,
        },
        {"event": "eval", "step": 5, "eval_loss": 0.65, "eval_accuracy": 0.6, "progress": 0.5},
        {"event": "checkpoint", "step": 5, "path": "/x/checkpoint-5", "progress": 0.5},
    ]
    signal = services.training_job_record_progress(
        job_id=job.pk, attempt=0, records=records, log_tail="step 5"
    )
    assert signal == services.JobSignal(status=JobStatus.RUNNING, cancel_requested=False)
    stored = TrainingJob.objects.get(pk=job.pk)
    assert stored.progress == 0.5 and stored.log_tail == "step 5"
    assert timezone.now() - stored.heartbeat_at < timedelta(seconds=30)
    assert stored.metrics == [
        {"event": "log", "step": 5, "max_steps": 10, "epoch": 0.5, "loss": 0.6, "accuracy": 0.7},
        {"event": "eval", "step": 5, "epoch": None, "final": False, "eval_loss": 0.65, "eval_accuracy": 0.6},
    ]
    # A heartbeat alone leaves the log tail as it was, and reports a cancel request.
    TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    signal = services.training_job_record_progress(job_id=job.pk, attempt=job.attempts)
    assert signal.cancel_requested and TrainingJob.objects.get(pk=job.pk).log_tail == "step 5"


def test_progress_relay_leaves_a_job_that_is_no_longer_running_alone(snapshot):
    job = make_job(snapshot, status=JobStatus.FAILED, failure_reason="reaped")
    signal = services.training_job_record_progress(
        job_id=job.pk, attempt=job.attempts, records=[{"event": "log", "step": 1, "loss": 1.0}], log_tail="x"
    )
    assert signal.status == JobStatus.FAILED
    stored = TrainingJob.objects.get(pk=job.pk)
    assert stored.metrics == [] and stored.log_tail == ""


def test_a_resume_drops_the_points_after_its_checkpoint():
    history = [{"event": "log", "step": s, "loss": 1.0 / s} for s in range(1, 7)]
    merged, progress = services.merge_progress(
        history, [{"event": "train_begin", "step": 4, "max_steps": 8, "progress": 0.5}]
    )
    assert [p["step"] for p in merged] == [1, 2, 3, 4] and progress == 0.5


def test_long_histories_are_thinned_but_keep_evaluations_and_the_recent_end(monkeypatch):
    monkeypatch.setattr(services, "MAX_METRIC_POINTS", 100)
    records = [{"event": "log", "step": s, "loss": 1.0} for s in range(1, 301)]
    records.insert(50, {"event": "eval", "step": 50, "eval_loss": 0.5})
    merged, _ = services.merge_progress([], records)
    logs = [p for p in merged if p["event"] == "log"]
    assert len(logs) <= 100
    assert logs[-1]["step"] == 300 and logs[0]["step"] == 1
    assert [p["step"] for p in merged if p["event"] == "eval"] == [50]


def test_succeed_registers_the_model_with_its_evaluation(snapshot, tmp_path):
    job = make_job(snapshot, status=JobStatus.RUNNING)
    image = tmp_path / "score_histogram.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"metrics": {"accuracy": 0.9}}))
    result = {
        "status": "succeeded",
        "global_step": 12,
        "train_pairs": 32,
        "test_pairs": 16,
        "metrics": {"train_loss": 0.4, "train_runtime": 3.2, "note": "text is dropped"},
        "eval": {"kind": "reward", "metrics": {"accuracy": 0.9, "pairs": 16.0}, "histogram": {"safe_n": 10}},
        "artifact_path": str(tmp_path / "model"),
        "images": [str(image)],
        "eval_path": str(eval_json),
    }
    model = services.training_job_succeed(job=job, attempt=job.attempts, result=result, log_tail="done")
    stored = TrainingJob.objects.get(pk=job.pk)
    assert stored.status == JobStatus.SUCCEEDED and stored.progress == 1.0 and stored.log_tail == "done"
    assert model == RegisteredModel.objects.get(job=job)
    assert (model.kind, model.path, model.base_model, model.snapshot) == (
        job.kind,
        str(tmp_path / "model"),
        "/models/tiny",
        snapshot,
    )
    assert model.config_hash == job.config_hash
    assert model.eval_metrics["metrics"] == {"accuracy": 0.9, "pairs": 16.0}
    assert model.eval_metrics["train"] == {"train_loss": 0.4, "train_runtime": 3.2}
    files = {f["name"]: f for f in stored.eval_metrics["files"]}
    assert set(files) == {"score_histogram.png", "eval.json"}
    with default_storage.open(files["score_histogram.png"]["path"], "rb") as fh:
        assert fh.read().startswith(b"\x89PNG")


# --- the reaper -------------------------------------------------------------------------------------


def test_the_reaper_fails_running_jobs_whose_heartbeat_stopped(snapshot):
    now = timezone.now()
    stale = make_job(
        snapshot, status=JobStatus.RUNNING, heartbeat_at=now - timedelta(minutes=30), worker_host="gpu-3"
    )
    never = make_job(
        snapshot, status=JobStatus.RUNNING, heartbeat_at=None, started_at=now - timedelta(hours=1)
    )
    fresh = make_job(snapshot, status=JobStatus.RUNNING, heartbeat_at=now - timedelta(minutes=2))
    queued = make_job(snapshot)
    reaped = services.training_jobs_reap(stale_after=timedelta(minutes=10), now=now)
    assert sorted(reaped) == sorted([stale.pk, never.pk])
    stale.refresh_from_db()
    assert stale.status == JobStatus.FAILED and stale.finished_at is not None
    since = (now - timedelta(minutes=30)).isoformat(timespec="seconds")
    assert stale.failure_reason.startswith(f"no heartbeat since {since} on gpu-3")
    assert "Retry to resume from the last checkpoint" in stale.failure_reason
    assert TrainingJob.objects.get(pk=fresh.pk).status == JobStatus.RUNNING
    assert TrainingJob.objects.get(pk=queued.pk).status == JobStatus.QUEUED
    # A reaped job can be retried.
    services.training_job_retry(job=stale)
    assert TrainingJob.objects.get(pk=stale.pk).status == JobStatus.QUEUED


def test_the_reaper_task_uses_the_setting(snapshot, settings):
    settings.TRAINING_STALE_AFTER_S = 60
    job = make_job(snapshot, status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=90))
    assert reap_stale_jobs() == [job.pk]


def test_the_reaper_spares_a_job_whose_heartbeat_lands_meanwhile(snapshot, monkeypatch):
    job = make_job(snapshot, status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1))
    real_fail = services.training_job_fail

    def heartbeat_then_fail(**kwargs):
        services.training_job_record_progress(
            job_id=job.pk, attempt=job.attempts
        )  # the worker's poll wins the race
        return real_fail(**kwargs)

    monkeypatch.setattr(services, "training_job_fail", heartbeat_then_fail)
    assert services.training_jobs_reap(stale_after=timedelta(minutes=10)) == []
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_the_training_and_snapshot_tasks_survive_a_lost_worker_and_expire_unclaimed():
    from annotate.tasks import export_snapshot

    assert run_job.acks_late and run_job.reject_on_worker_lost
    assert run_job.expires == django_settings.TRAINING_QUEUE_EXPIRY_S
    assert export_snapshot.acks_late and export_snapshot.reject_on_worker_lost
    assert export_snapshot.expires == django_settings.SNAPSHOT_QUEUE_EXPIRY_S
    # The expiry travels with every message, .delay included.
    assert run_job._get_exec_options()["expires"] == django_settings.TRAINING_QUEUE_EXPIRY_S


def test_the_reaper_fails_a_queued_job_whose_message_expired(snapshot, settings, sent):
    settings.TRAINING_QUEUE_EXPIRY_S = 3600
    stale = services.training_job_create(snapshot=snapshot, kind="reward", config={}, user=None)
    fresh = services.training_job_create(snapshot=snapshot, kind="reward", config={}, user=None)
    TrainingJob.objects.filter(pk=stale.pk).update(queued_at=timezone.now() - timedelta(hours=2))
    assert reap_stale_jobs() == [stale.pk]
    stale.refresh_from_db()
    assert stale.status == JobStatus.FAILED and "queue message expired" in stale.failure_reason
    assert TrainingJob.objects.get(pk=fresh.pk).status == JobStatus.QUEUED
    services.training_job_retry(job=stale)  # queued again, with a fresh expiry
    stale.refresh_from_db()
    assert stale.status == JobStatus.QUEUED and (timezone.now() - stale.queued_at).total_seconds() < 60
    assert reap_stale_jobs() == []
