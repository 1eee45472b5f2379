"""Celery tasks of training: thin wrappers that load ids and call the runner or a service.

`training.run_job` is routed to the `gpu` queue by CELERY_TASK_ROUTES (config/settings.py; the test
asserts the route resolves to `Queue.GPU`); the reaper runs on the default queue. Run the GPU
worker as docker-compose's worker-gpu does: `celery -A config worker -Q gpu --concurrency 1
--max-tasks-per-child 1` (one job per GPU at a time; a fresh process per job), with acks_late and
prefetch 1 from settings and a Redis visibility timeout above TRAINING_JOB_TIMEOUT_S.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings


def _worker_stopping() -> bool:
    """True once this worker process began a warm or cold shutdown (solo pool, or a pool child told so)."""
    from celery.worker import state as worker_state

    return bool(worker_state.should_stop or worker_state.should_terminate)


@shared_task(name="training.run_job", acks_late=True)
def run_job(job_id: int) -> str:
    """Run a queued training job to its end in a supervised trainer subprocess; its final status.

    Redelivered (acks_late) for a job that already runs or ended, it does nothing.
    """
    from training.runner import run_training_job

    return run_training_job(job_id, should_interrupt=_worker_stopping)


@shared_task(name="training.reap_stale_jobs", acks_late=True)
def reap_stale_jobs() -> list[int]:
    """Periodic: fail running jobs whose worker went quiet for TRAINING_STALE_AFTER_S; the ids failed."""
    from training.services import training_jobs_reap

    return training_jobs_reap(stale_after=timedelta(seconds=settings.TRAINING_STALE_AFTER_S))
