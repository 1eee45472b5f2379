"""Celery tasks of training: thin wrappers that load ids and call the runner or a service.

`training.run_job` is routed to the `gpu` queue by CELERY_TASK_ROUTES (config/settings.py; the test
asserts the route resolves to `Queue.GPU`); the reaper runs on the default queue. Run the GPU
worker as docker-compose's worker-gpu does: `celery -A config worker -Q gpu --concurrency 1
--max-tasks-per-child 1` (one job per GPU at a time; a fresh process per job), with acks_late and
prefetch 1 from settings and a Redis visibility timeout above TRAINING_JOB_TIMEOUT_S.
"""

from __future__ import annotations

import os
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from config.celery import worker_is_stopping


def _worker_stopping() -> bool:
    """True once this worker began a warm or cold shutdown: the solo pool's own process, or, under the
    prefork pool that docker-compose runs, the parent of this pool child (which tells no child)."""
    from celery.worker import state as worker_state

    if worker_state.should_stop or worker_state.should_terminate:
        return True
    return worker_is_stopping(os.getppid())


# reject_on_worker_lost: a worker process killed mid-job hands the message back instead of acking it;
# the redelivery finds the job running (or reaped) and does nothing, so it never runs twice.
# expires: a message no GPU worker took in time is dropped, and the reaper fails its job (a retry
# queues it again), instead of it starting days later than anyone expects.
@shared_task(
    name="training.run_job",
    acks_late=True,
    reject_on_worker_lost=True,
    expires=settings.TRAINING_QUEUE_EXPIRY_S,
)
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
