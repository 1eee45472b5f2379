"""The GPU worker's warm shutdown under the pool docker-compose runs it with (prefork, one child, a fresh
child per job), not only the solo pool: `docker compose stop` sends SIGTERM to the worker's main process
alone, and a training job that runs for hours must stop with a checkpoint, fail saying so, and resume on
retry, rather than be killed when the stop grace period ends."""

from __future__ import annotations

import os
import signal

import pytest

from tests.celery.conftest import make_worker, wait_for
from tests.celery.test_training_task import JOB_TIMEOUT_S, tail, wait_status, wait_step
from tests.factories import ProjectFactory, UserFactory
from tests.training.helpers import build_tiny_bert
from tests.training.job_helpers import make_pku_snapshot
from training import services
from training.models import JobStatus
from training.tasks import run_job
from training.trainers.launch import find_checkpoint

pytestmark = pytest.mark.celery_worker

# As docker-compose.yml's worker-gpu.
COMPOSE_GPU_POOL = ("-Q", "gpu", "-P", "prefork", "--concurrency", "1", "--max-tasks-per-child", "1")


@pytest.fixture(scope="module", autouse=True)
def training_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-shutdown")
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDIA_ROOT", str(root / "media"))
    patch.setenv("TRAINING_DIR", str(root / "training"))
    patch.setenv("OMP_NUM_THREADS", "1")
    yield root
    patch.undo()


@pytest.fixture
def gpu_worker(transactional_db, tmp_path_factory, settings, training_env):
    settings.MEDIA_ROOT = training_env / "media"
    settings.TRAINING_DIR = training_env / "training"
    settings.TRAINING_MODEL_ROOTS = [str(training_env)]
    worker = make_worker(tmp_path_factory, pool_args=COMPOSE_GPU_POOL)
    worker.purge()
    worker.start()
    yield worker
    worker.stop()


def test_a_warm_shutdown_of_the_prefork_gpu_worker_stops_the_trainer_with_a_checkpoint(
    gpu_worker, training_env, monkeypatch
):
    monkeypatch.setattr(run_job, "delay", lambda job_id: gpu_worker.send(run_job, job_id))
    snapshot = make_pku_snapshot(ProjectFactory(), train_rows=48, test_rows=16)
    job = services.training_job_create(
        snapshot=snapshot,
        kind="reward",
        config={
            "base_model": str(build_tiny_bert(training_env / "tiny-bert")),
            "max_length": 64,
            "per_device_batch_size": 8,
            "max_steps": 20000,
            "logging_steps": 1,
            "save_steps": 1000,
        },
        user=UserFactory(),
    )
    wait_step(job, gpu_worker, 2)

    assert gpu_worker.process is not None
    os.kill(gpu_worker.process.pid, signal.SIGTERM)  # the main process only, as `docker stop` does

    wait_status(job, gpu_worker, JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.CANCELLED)
    assert job.status == JobStatus.FAILED, job.failure_reason
    assert job.failure_reason.startswith("The trainer was stopped (worker shutting down, or SIGTERM)")
    assert "A retry resumes from the last checkpoint." in job.failure_reason
    checkpoint = find_checkpoint(job.output_dir)
    assert checkpoint is not None and 2 <= int(checkpoint.rsplit("-", 1)[1]) < 20000
    # The worker then exits by itself: the job did not hold it up until a hard kill.
    wait_for(
        lambda: gpu_worker.process.poll() is not None,
        timeout=JOB_TIMEOUT_S,
        what=f"the worker to exit after its warm shutdown; {tail(job, gpu_worker)}",
    )
    assert gpu_worker.process.returncode == 0
