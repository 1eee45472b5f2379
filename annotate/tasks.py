"""Celery tasks of the annotation app: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task

from annotate.assignment import assignment_release_expired


@shared_task(name="annotate.release_expired_leases", acks_late=True)
def release_expired_leases() -> int:
    """Return lapsed leases' slots to the pool (also done lazily when a claim finds nothing)."""
    return assignment_release_expired()
