"""Celery tasks of moderation: thin wrappers that load ids and call a service."""

from __future__ import annotations

from celery import shared_task


# On the gpu queue (CELERY_TASK_ROUTES): scoring loads the model with torch.
@shared_task(name="moderation.score_project", acks_late=True, reject_on_worker_lost=True)
def score_project(run_id: int) -> str:
    """Score a project's QA pairs that the run's model has no score for; the run's final status."""
    from moderation.models import ScoringRun
    from moderation.services import scoring_run_execute

    run = ScoringRun.objects.filter(pk=run_id).first()
    if run is None:
        return "missing"
    return scoring_run_execute(run=run).status
