"""Celery tasks of the annotation app: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from annotate.assignment import assignment_release_expired


@shared_task(name="annotate.release_expired_leases", acks_late=True)
def release_expired_leases() -> int:
    """Return lapsed leases' slots to the pool (also done lazily when a claim finds nothing)."""
    return assignment_release_expired()


# As training.run_job: a killed worker hands the message back (the redelivery finds the build fenced by its
# token, or abandoned, and claims it only then); a message no worker took in time is dropped, and the
# reaper fails its snapshot.
@shared_task(
    name="annotate.export_snapshot",
    acks_late=True,
    reject_on_worker_lost=True,
    expires=settings.SNAPSHOT_QUEUE_EXPIRY_S,
)
def export_snapshot(snapshot_id: int) -> str:
    """Build a queued dataset snapshot; its final status. A snapshot already built is left alone."""
    from annotate.exporting import SnapshotRefused, snapshot_build
    from annotate.models import Snapshot

    snapshot = Snapshot.objects.select_related("project").filter(pk=snapshot_id).first()
    if snapshot is None:
        return "missing"
    try:
        return snapshot_build(snapshot=snapshot).status
    except SnapshotRefused:
        # A redelivered message (acks_late) for a snapshot that is built or being built.
        return snapshot.status


@shared_task(name="annotate.recompute_agreement", acks_late=True)
def recompute_agreement(project_id: int) -> int | None:
    """Compute and store a project's agreement report; the report's id (None if the project is gone)."""
    from annotate.agreement_report import agreement_report_compute
    from annotate.models import Project
    from annotate.recompute import agreement_recompute_started

    agreement_recompute_started(project_id)
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    return agreement_report_compute(project=project).pk


@shared_task(name="annotate.recompute_due_agreement", acks_late=True)
def recompute_due_agreement() -> list[int]:
    """Periodic: queue a recompute for each project with no report or enough new labels since its last."""
    from annotate.agreement_report import agreement_recompute_due

    return agreement_recompute_due()


@shared_task(name="annotate.reconcile_queue", acks_late=True)
def reconcile_queue(project_id: int, stage: int) -> dict[str, int] | None:
    """A stage's queue brought in line with the project's overlap (after an admin changed it)."""
    from annotate.assignment import work_items_reconcile
    from annotate.models import Project

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    return work_items_reconcile(project=project, stage=stage)


@shared_task(name="annotate.reap_expired_snapshots", acks_late=True)
def reap_expired_snapshots() -> list[int]:
    """Periodic: fail snapshots whose build message expired before any worker took it."""
    from annotate.exporting.services import snapshots_fail_expired

    return snapshots_fail_expired()
