"""Requests to recompute a project's stored agreement report, coalesced across processes.

A request marks the project "recompute pending" in the shared cache (Redis beside a Redis broker, the
database otherwise: config/settings.py CACHES) and queues the task once the transaction commits;
further requests while it is pending are folded into it. The task clears the mark when it starts, so a
change made while it computes (a new label, a gold edit) queues the next recompute instead of being
lost. The mark also lapses after RECOMPUTE_PENDING_TTL_S, should a queued task never run.

Kept apart from annotate.agreement_report (the statistics) so that services which change what the
report measures (gold edits, settings) can ask for a recompute without importing the statistics.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import transaction

from annotate.models import Project

RECOMPUTE_PENDING_TTL_S = 120


def _pending_key(project_id: int) -> str:
    return f"agreement-recompute:{project_id}"


def agreement_recompute_request(*, project: Project) -> bool:
    """Queue a recompute after the current transaction commits; False if one is already pending."""
    if not cache.add(_pending_key(project.pk), 1, timeout=RECOMPUTE_PENDING_TTL_S):
        return False
    from annotate.tasks import recompute_agreement

    project_id = project.pk
    transaction.on_commit(lambda: recompute_agreement.delay(project_id))
    return True


def agreement_recompute_started(project_id: int) -> None:
    """The recompute task began: a request from now on queues another one."""
    cache.delete(_pending_key(project_id))
