"""Writes for projects, members and users. Each entry point is atomic; callers pass keywords only."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotate.access import LABEL_ROLES
from annotate.assignment import assignment_release_worker, work_items_reconcile
from annotate.audit import audit_record
from annotate.models import AuditAction, Membership, Project, Role, Stage
from annotate.recompute import agreement_recompute_request

# Global roles are Django groups: they say what a user may do outside any one project (an admin or
# researcher may create projects). What they may do inside a project is their Membership role.
PROJECT_CREATOR_ROLES = (Role.ADMIN, Role.RESEARCHER)

_PROJECT_SETTINGS = (
    "guidelines",
    "overlap_stage1",
    "overlap_stage2",
    "lease_seconds",
    "gold_rate",
    "gold_min_items",
    "gold_accuracy_threshold",
    "max_pairs_per_prompt",
)


def user_can_create_projects(user: Any) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name__in=PROJECT_CREATOR_ROLES).exists())


@transaction.atomic
def project_create(*, slug: str, name: str, created_by: User | None, **project_settings: Any) -> Project:
    unknown = set(project_settings) - set(_PROJECT_SETTINGS)
    if unknown:
        raise ValidationError(f"Unknown project settings: {', '.join(sorted(unknown))}")
    if Project.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": [f"A project with slug {slug!r} already exists."]})
    project = Project(slug=slug, name=name, created_by=created_by, **project_settings)
    project.full_clean()
    project.save()
    if created_by is not None:
        Membership.objects.create(project=project, user=created_by, role=Role.ADMIN)
    return project


def _keep_an_admin(project: Project, leaving: User) -> None:
    """A project that has an admin keeps one: nobody else could manage its members and settings."""
    others = (
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.ADMIN)
        .exclude(user=leaving)
        .exists()
    )
    if not others:
        raise ValidationError(
            f"{leaving.get_username()} is the only admin of {project.slug}: make someone else admin first."
        )


@transaction.atomic
def membership_set(*, project: Project, user: User, role: str, actor: Any = None) -> Membership:
    """Add `user` to the project with `role`, or change their role. A role that no longer labels
    releases their live leases at once (their slots go back to the pool)."""
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.")
    before = Membership.objects.select_for_update().filter(project=project, user=user).first()
    old_role = before.role if before is not None else None
    if old_role == Role.ADMIN and role != Role.ADMIN:
        _keep_an_admin(project, user)
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    if old_role != role:
        if old_role in LABEL_ROLES and role not in LABEL_ROLES:
            assignment_release_worker(project=project, worker_id=user.pk)
        audit_record(
            project=project,
            actor=actor,
            action=AuditAction.MEMBERSHIP_SET,
            target=f"user:{user.pk}",
            old={"username": user.get_username(), "role": old_role} if old_role else None,
            new={"username": user.get_username(), "role": role},
        )
    return membership


@transaction.atomic
def membership_pause(*, project: Project, user: User, actor: Any = None, reason: str) -> int:
    """Stop an annotator labelling in the project (a flagged worker, say) until resumed: their live leases
    go back to the pool at once and every later call of theirs is refused (annotate.access reads them as
    paused). Their labels stay; excluding them is a separate decision. Returns the leases released."""
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        raise ValidationError(f"{user.get_username()} is not a member of {project.slug}.")
    if membership.role != Role.ANNOTATOR:
        raise ValidationError(f"Only annotators can be paused; {user.get_username()} is {membership.role}.")
    if not reason.strip():
        raise ValidationError("Say why the worker is paused: the reason is kept in the audit log.")
    if membership.paused_at is not None:
        return 0
    membership.paused_at, membership.paused_reason = timezone.now(), reason.strip()[:500]
    membership.save(update_fields=["paused_at", "paused_reason"])
    released = assignment_release_worker(project=project, worker_id=user.pk)
    audit_record(
        project=project,
        actor=actor,
        action=AuditAction.MEMBERSHIP_PAUSE,
        target=f"user:{user.pk}",
        old={"username": user.get_username(), "paused": False},
        new={"username": user.get_username(), "paused": True, "reason": membership.paused_reason},
    )
    return released


@transaction.atomic
def membership_resume(*, project: Project, user: User, actor: Any = None) -> None:
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        raise ValidationError(f"{user.get_username()} is not a member of {project.slug}.")
    if membership.paused_at is None:
        return
    reason = membership.paused_reason
    membership.paused_at, membership.paused_reason = None, ""
    membership.save(update_fields=["paused_at", "paused_reason"])
    audit_record(
        project=project,
        actor=actor,
        action=AuditAction.MEMBERSHIP_RESUME,
        target=f"user:{user.pk}",
        old={"username": user.get_username(), "paused": True, "reason": reason},
        new={"username": user.get_username(), "paused": False},
    )


@transaction.atomic
def membership_remove(*, project: Project, user: User, actor: Any = None, reason: str = "") -> int:
    """Remove `user` from the project; their live leases are released at once. Their submitted labels
    stay (they were given while the user was a member). Returns the number of leases released.

    From the moment this commits, the user's next call (submit, skip, revise, next) is refused: every
    call re-checks the caller's membership (annotate.access, annotate.fastpath)."""
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        raise ValidationError(f"{user.get_username()} is not a member of {project.slug}.")
    role = membership.role
    if role == Role.ADMIN:
        _keep_an_admin(project, user)
    membership.delete()
    released = assignment_release_worker(project=project, worker_id=user.pk)
    audit_record(
        project=project,
        actor=actor,
        action=AuditAction.MEMBERSHIP_REMOVE,
        target=f"user:{user.pk}",
        old={"username": user.get_username(), "role": role},
        new=None,
        reason=reason,
    )
    return released


# Settings an admin may change after the project is created, and what each one affects.
EDITABLE_SETTINGS = (
    "name",
    *_PROJECT_SETTINGS,
    "agreement_alert_threshold",
    "agreement_recompute_labels",
    "annotators_may_moderate",
)
_OVERLAP_STAGES = {"overlap_stage1": Stage.CLASSIFY, "overlap_stage2": Stage.RANK}
# Settings the stored agreement report depends on (Fleiss' kappa is over items with exactly k labels;
# the flags and alerts use the thresholds): a change queues a recompute.
_REPORT_SETTINGS = (
    "overlap_stage1",
    "overlap_stage2",
    "gold_min_items",
    "gold_accuracy_threshold",
    "agreement_alert_threshold",
)
# Delay before the follow-up pass over the queue after an overlap change (see project_settings_update).
QUEUE_RECONCILE_DELAY_S = 5


def _setting_value(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


@transaction.atomic
def project_settings_update(*, project: Project, changes: dict[str, Any], actor: Any = None) -> Project:
    """Change project settings, keeping what depends on them right.

    - guidelines: a changed text is a new guideline version; every later label records it.
    - overlap: the queue of that stage is recomputed at once (annotate.assignment.work_items_reconcile):
      items whose labels already reach the new k settle (or go to adjudication), the others reopen or
      close by the new k. A claim or submit in flight while this commits may still have read the old k;
      one more pass a few seconds later (a Celery task) settles what such a straggler left behind.
    - overlap, the gold thresholds and the alert threshold: the stored agreement report is recomputed.
    - everything else takes effect on the next claim or submit (they read the project each time).

    Each change is recorded in the audit log with its old and new value."""
    unknown = set(changes) - set(EDITABLE_SETTINGS)
    if unknown:
        raise ValidationError(f"Unknown or read-only project settings: {', '.join(sorted(unknown))}")
    locked = Project.objects.select_for_update().get(pk=project.pk)
    old = {name: getattr(locked, name) for name in changes}
    changed = [name for name, value in changes.items() if old[name] != value]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, changes[name])
    fields = list(changed)
    if "guidelines" in changed:
        locked.guideline_version += 1
        fields.append("guideline_version")
    locked.full_clean()
    locked.save(update_fields=fields)
    audit_record(
        project=locked,
        actor=actor,
        action=AuditAction.PROJECT_SETTINGS,
        target=f"project:{locked.pk}",
        old={name: _setting_value(old[name]) for name in fields if name in old},
        new={name: _setting_value(getattr(locked, name)) for name in fields},
    )
    stages = [stage for name, stage in _OVERLAP_STAGES.items() if name in changed]
    for stage in stages:
        work_items_reconcile(project=locked, stage=stage)
    if stages:
        project_id = locked.pk
        transaction.on_commit(lambda: _reconcile_later(project_id, stages))
    if set(changed) & set(_REPORT_SETTINGS):
        agreement_recompute_request(project=locked)
    return locked


def _reconcile_later(project_id: int, stages: Sequence[int]) -> None:
    from annotate.tasks import reconcile_queue

    for stage in stages:
        reconcile_queue.apply_async(args=[project_id, int(stage)], countdown=QUEUE_RECONCILE_DELAY_S)


@transaction.atomic
def user_create(
    *, username: str, role: str, password: str | None = None, project: Project | None = None, email: str = ""
) -> tuple[User, str, str]:
    """Create a user with a global role (and a project membership); returns (user, password, API token)."""
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.")
    if User.objects.filter(username=username).exists():
        raise ValidationError({"username": [f"User {username!r} already exists."]})
    password = password or secrets.token_urlsafe(12)
    user = User.objects.create_user(username=username, email=email, password=password)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    if role == Role.ADMIN:
        # Platform admins manage users and projects through the Django admin too.
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if project is not None:
        membership_set(project=project, user=user, role=role)
    token = Token.objects.create(user=user)
    return user, password, token.key
