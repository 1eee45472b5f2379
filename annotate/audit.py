"""The audit log: one row per write that matters (gold edits, membership and role changes, settings).

Services call `audit_record` inside their own transaction, so the record and the change commit or roll
back together."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from annotate.models import AuditEvent, Project


def audit_record(
    *,
    project: Project | None,
    actor: Any,
    action: str,
    target: str,
    old: Any = None,
    new: Any = None,
    reason: str = "",
    at: datetime | None = None,
) -> AuditEvent:
    """Record who (`actor`, None for the system) changed `target` from `old` to `new`, and why."""
    return AuditEvent.objects.create(
        project=project,
        actor=actor if actor is not None and getattr(actor, "is_authenticated", False) else None,
        at=at or timezone.now(),
        action=action,
        target=target,
        old=old,
        new=new,
        reason=reason,
    )


def audit_history(*, project: Project, target: str) -> list[AuditEvent]:
    """The recorded changes of one object, newest first, with who made them."""
    return list(
        AuditEvent.objects.filter(project=project, target=target)
        .select_related("actor")
        .order_by("-at", "-id")
    )
