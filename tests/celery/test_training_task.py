"""Training jobs end to end: a real Celery worker (consuming the `gpu` queue) takes the job from Redis,
runs the real trainer as a supervised subprocess on a tiny model built here, and relays its progress;
then cancel mid-run, and resume after the trainer is killed.

Each test starts at least one trainer process (torch + transformers import: the slow part here); the
models are 2-layer, 32-wide BERTs and the runs a few optimiser steps, on one CPU thread.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from django.db import transaction
from transformers import AutoModelForSequenceClassification

from annotate.categories import CATEGORY_KEYS
from tests.celery.conftest import wait_for
from tests.factories import ProjectFactory, UserFactory
from tests.training.helpers import build_tiny_bert
from tests.training.job_helpers import make_pku_snapshot
from training import services
from training.models import FINISHED_STATUSES, JobStatus, RegisteredModel, TrainingJob
from training.tasks import run_job
from training.trainers.launch import find_checkpoint

pytestmark = pytest.mark.celery_worker

# A trainer process imports torch, transformers and datasets before its first step: slow on a busy machine.
JOB_TIMEOUT_S = 240


@pytest.fixture(scope="module", autouse=True)
def training_env(tmp_path_factory):
    """Media and job folders the worker (started after this, autouse first) and the tests share."""
    root = tmp_path_factory.mktemp("training-e2e")
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDIA_ROOT", str(root / "media"))
    patch.setenv("TRAINING_DIR", str(root / "training"))
    # Tiny models gain nothing from intra-op threads; on a shared 2-core machine they cost a lot.
    patch.setenv("OMP_NUM_THREADS", "1")
    yield root
    patch.undo()


@pytest.fixture(autouse=True)
def same_folders(settings, training_env):
    settings.MEDIA_ROOT = training_env / "media"
    settings.TRAINING_DIR = training_env / "training"
    # The tiny model is built under the test's folder: a model root for these jobs.
    settings.TRAINING_MODEL_ROOTS = [str(training_env)]


@pytest.fixture(scope="module")
def tiny_model(training_env) -> Path:
    return build_tiny_bert(training_env / "tiny-bert")


@pytest.fixture
def launch(transactional_db, live_worker, tiny_model, monkeypatch):
    """Create a job through the service; its on-commit enqueue goes through the worker's broker."""
    monkeypatch.setattr(run_job, "delay", lambda job_id: live_worker.send(run_job, job_id))
    project = ProjectFactory()
    snapshot = make_pku_snapshot(project, train_rows=48, test_rows=16)

    def make(**config):
        defaults = {
            "base_model": str(tiny_model),
            "max_length": 64,
            "per_device_batch_size": 8,
            "learning_rate": 4e-3,
            "weight_decay": 0.0,
            "warmup_ratio": 0.0,
            "logging_steps": 1,
            "save_steps": 1000,
            "dataloader_num_workers": 0,
        }
        return services.training_job_create(
            snapshot=snapshot, kind="reward", config=defaults | config, user=UserFactory()
        )

    return make


def wait_status(job, live_worker, *statuses, timeout=JOB_TIMEOUT_S):
    def done():
        job.refresh_from_db()
        return job.status in statuses

    wait_for(
        done,
        timeout=timeout,
        what=f"job {job.pk} to become {'/'.join(statuses)} (it is {job.status}); {tail(job, live_worker)}",
    )
    return job


def wait_step(job, live_worker, step, timeout=JOB_TIMEOUT_S):
    def reached():
        job.refresh_from_db()
        if job.status in FINISHED_STATUSES:
            pytest.fail(
                f"job {job.pk} ended {job.status} before step {step}: {job.failure_reason}\n{tail(job, live_worker)}"
            )
        return any(p.get("step", 0) >= step for p in job.metrics)

    wait_for(reached, timeout=timeout, what=f"job {job.pk} to log step {step}; {tail(job, live_worker)}")


def tail(job, live_worker) -> str:
    return f"job log:\n{job.log_tail[-2000:]}\nworker log:\n{live_worker.log()[-2000:]}"


def test_a_tiny_job_runs_end_to_end(launch, live_worker):
    job = launch(max_steps=6, kind="reward")
    wait_status(job, live_worker, JobStatus.SUCCEEDED, JobStatus.FAILED)
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason

    assert job.progress == 1.0 and job.worker_host and job.heartbeat_at and job.finished_at
    steps = [p["step"] for p in job.metrics if p["event"] == "log"]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert all(p["loss"] > 0 for p in job.metrics if p["event"] == "log")
    assert "test_accuracy" in [k for p in job.metrics if p["event"] == "eval" for k in p]
    assert job.log_tail  # the trainer's own output, relayed
    assert job.eval_metrics["metrics"]["pairs"] == 16.0
    assert {f["name"] for f in job.eval_metrics["files"]} == {"score_histogram.png", "eval.json"}

    model = RegisteredModel.objects.get(job=job)
    assert (
        model.kind == "reward"
        and model.snapshot_id == job.snapshot_id
        and model.config_hash == job.config_hash
    )
    assert model.eval_metrics["global_step"] == 6
    loaded = AutoModelForSequenceClassification.from_pretrained(model.path)
    assert loaded.config.num_labels == 1
    assert Path(model.path, "trainer_config.json").is_file()
    assert "training.run_job" in live_worker.log()


def test_cancel_mid_run_stops_with_a_checkpoint(launch, live_worker):
    job = launch(max_steps=3000)
    wait_step(job, live_worker, 2)
    services.training_job_cancel(job=job)
    wait_status(job, live_worker, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED)
    assert job.status == JobStatus.CANCELLED, job.failure_reason
    checkpoint = find_checkpoint(job.output_dir)
    assert checkpoint is not None
    step = int(checkpoint.rsplit("-", 1)[1])
    assert 2 <= step < 3000
    assert job.progress < 0.5 and not RegisteredModel.objects.filter(job=job).exists()


def test_a_killed_trainer_fails_the_job_and_a_retry_resumes_from_its_checkpoint(launch, live_worker):
    job = launch(max_steps=3000, save_steps=3)
    out = None

    def checkpointed():
        nonlocal out
        job.refresh_from_db()
        out = find_checkpoint(job.output_dir) if job.output_dir else None
        return out is not None and any(p.get("step", 0) > 3 for p in job.metrics)

    wait_for(checkpointed, timeout=JOB_TIMEOUT_S, what=f"a checkpoint; {tail(job, live_worker)}")
    pid = int(Path(job.output_dir, "runs", "attempt-0", "trainer.pid").read_text())
    os.kill(pid, signal.SIGKILL)

    wait_status(job, live_worker, JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.CANCELLED)
    assert job.status == JobStatus.FAILED
    assert "The trainer was killed by SIGKILL" in job.failure_reason
    assert "A retry resumes from the last checkpoint." in job.failure_reason
    checkpoint = find_checkpoint(job.output_dir)
    resumed_step = int(checkpoint.rsplit("-", 1)[1])

    services.training_job_retry(job=job)
    job.refresh_from_db()
    assert job.attempts == 1
    # The job's history still holds steps the killed attempt logged past its checkpoint until the
    # retry starts, so wait on the second attempt's own progress file, not on the job's metrics.
    second_attempt = Path(job.output_dir, "runs", "attempt-1", "progress.jsonl")

    def second_attempt_trained() -> bool:
        job.refresh_from_db()
        if job.status in FINISHED_STATUSES:
            pytest.fail(f"job {job.pk} ended {job.status} during the retry: {job.failure_reason}")
        if not second_attempt.exists():
            return False
        steps = []
        for line in second_attempt.read_text().splitlines():
            try:
                steps.append(json.loads(line).get("step", 0))
            except json.JSONDecodeError:  # the trainer may be mid-write on the last line
                continue
        return any(step >= resumed_step + 2 for step in steps)

    wait_for(
        second_attempt_trained, timeout=JOB_TIMEOUT_S, what=f"the retry to train; {tail(job, live_worker)}"
    )
    services.training_job_cancel(job=job)
    wait_status(job, live_worker, JobStatus.CANCELLED, JobStatus.FAILED)
    assert job.status == JobStatus.CANCELLED, job.failure_reason

    # The second attempt began at the checkpoint, not at step 0: the global step continued.
    records = [
        json.loads(line)
        for line in Path(job.output_dir, "runs", "attempt-1", "progress.jsonl").read_text().splitlines()
    ]
    begin = records[0]
    assert (
        begin["event"] == "train_begin"
        and begin["resumed_from"] == checkpoint
        and begin["step"] == resumed_step
    )
    assert next(r["step"] for r in records if r["event"] == "log") == resumed_step + 1
    # The job's history has every step once: the steps the killed attempt logged past its checkpoint
    # were dropped when the resumed attempt trained them again.
    steps = [p["step"] for p in job.metrics if p["event"] == "log"]
    assert steps == list(range(1, len(steps) + 1))
    assert TrainingJob.objects.get(pk=job.pk).attempts == 1


def test_a_moderation_job_trains_registers_and_scores_the_project(
    live_worker, tiny_model, transactional_db, monkeypatch, training_env
):
    """The classifier through the same job system: a worker trains it from a beavertails snapshot and
    registers it; activated, it scores the project's QA pairs in a task on the worker and answers the API."""
    from rest_framework.test import APIClient

    from annotate.models import ExportFormat
    from moderation.models import ModerationScore, ScoringRun, ScoringRunStatus
    from moderation.services import scoring_run_create
    from moderation.tasks import score_project
    from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, annotator
    from tests.training.helpers import MODERATION_WORDS, moderation_rows
    from training.services import model_activate

    monkeypatch.setattr(run_job, "delay", lambda job_id: live_worker.send(run_job, job_id))
    monkeypatch.setattr(score_project, "delay", lambda run_id: live_worker.send(score_project, run_id))
    project = ProjectFactory()
    researcher = annotator(project, "moderation_researcher", role="researcher")
    snapshot = make_pku_snapshot(
        project, train_rows=200, test_rows=60, format=ExportFormat.BEAVERTAILS, rows=moderation_rows
    )
    bert = build_tiny_bert(training_env / "moderation-bert", hidden_size=64, extra_words=MODERATION_WORDS)
    job = services.training_job_create(
        snapshot=snapshot,
        kind="moderation",
        config={"base_model": str(bert), "max_length": 64, "epochs": 4, "per_device_batch_size": 16,
                "learning_rate": 2e-3, "warmup_ratio": 0.0, "logging_steps": 5},
        user=researcher,
    )  # fmt: skip
    wait_status(job, live_worker, JobStatus.SUCCEEDED, JobStatus.FAILED)
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    evaluation = job.eval_metrics["moderation"]
    assert evaluation["examples"] == 60 and set(evaluation["per_category"]) == set(CATEGORY_KEYS)
    assert {f["name"] for f in job.eval_metrics["files"]} == {"reliability.png", "eval.json"}
    model = RegisteredModel.objects.get(job=job)
    assert model.kind == "moderation" and Path(model.path, "moderation.json").is_file()

    prompt = PromptFactory(project=project)
    for response in (f"the {MODERATION_WORDS[3]} of it", "the of and it"):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response=response))
    model_activate(model=model, project=project, actor=researcher)
    with transaction.atomic():
        run = scoring_run_create(project=project, model=model, user=researcher)

    def scored():
        run.refresh_from_db()
        return run.status in (ScoringRunStatus.SUCCEEDED, ScoringRunStatus.FAILED)

    wait_for(scored, timeout=JOB_TIMEOUT_S, what=f"the scoring run; worker log:\n{live_worker.log()[-3000:]}")
    assert run.status == ScoringRunStatus.SUCCEEDED, run.error
    assert ModerationScore.objects.filter(model=model).count() == 2 and run.done == 2
    assert "moderation.score_project" in live_worker.log()
    client = APIClient()
    client.force_authenticate(researcher)
    answer = client.post(
        "/api/v1/moderation/", {"project": project.slug, "prompt": "q", "response": "a"}, format="json"
    )
    assert answer.status_code == 200 and answer.json()["model"]["id"] == model.pk
    assert ScoringRun.objects.count() == 1


def test_a_ppo_lag_job_trains_a_policy_against_registered_score_models(
    live_worker, transactional_db, monkeypatch, training_env
):
    """A policy through the job system: the request names registered reward and cost models, the worker
    runs PPO-Lag as a supervised subprocess, relays reward, cost and lambda per iteration, and registers
    the trained policy with its provenance and its before/after evaluation."""
    from tests.factories import annotator
    from tests.training.job_helpers import make_job
    from tests.training.policy_helpers import tiny_world

    monkeypatch.setattr(run_job, "delay", lambda job_id: live_worker.send(run_job, job_id))
    world = tiny_world(training_env / "policy-world")
    project = ProjectFactory()
    researcher = annotator(project, "policy_researcher", role="researcher")
    snapshot = make_pku_snapshot(project, train_rows=12, test_rows=4)
    score_models = {}
    for kind in ("reward", "cost"):
        trained = make_job(snapshot, status=JobStatus.SUCCEEDED, kind=kind)
        score_models[kind] = RegisteredModel.objects.create(
            job=trained, kind=kind, path=str(world[kind]), base_model="/models/tiny", snapshot=snapshot,
            config_hash=trained.config_hash,
        )  # fmt: skip
    with transaction.atomic():
        job = services.training_job_create(
            snapshot=snapshot,
            kind="ppo_lag",
            config={"base_model": str(world["actor"]), "reward_model_id": score_models["reward"].pk,
                    "cost_model_id": score_models["cost"].pk, "max_steps": 3, "rollout_batch_size": 4,
                    "per_device_batch_size": 2, "max_new_tokens": 6, "max_length": 48, "eval_max_prompts": 3,
                    "learning_rate": 1e-3, "critic_learning_rate": 1e-3},
            user=researcher,
        )  # fmt: skip
    wait_status(job, live_worker, JobStatus.SUCCEEDED, JobStatus.FAILED)
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    logs = [p for p in job.metrics if p["event"] == "log"]
    assert [p["step"] for p in logs] == [1, 2, 3]
    assert all(isinstance(p["lambda"], float) and "cost" in p and "kl" in p for p in logs)
    policy = job.eval_metrics["policy"]
    assert policy["before"]["prompts"] == policy["after"]["prompts"] == 3 and policy["algorithm"] == "ppo_lag"
    assert {f["name"] for f in job.eval_metrics["files"]} == {"eval.json"}
    model = RegisteredModel.objects.get(job=job)
    provenance = json.loads(Path(model.path, "policy.json").read_text())
    assert model.kind == "ppo_lag" and model.base_model == str(world["actor"])
    assert (provenance["reward_model_id"], provenance["cost_model_id"]) == (
        score_models["reward"].pk,
        score_models["cost"].pk,
    )
