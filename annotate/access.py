"""One access helper per object. Every view and API endpoint reaches a project through these, so the
rules live in one place: an outsider gets 404 (a project's existence is not disclosed), a member whose
role does not allow the action gets 403."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Case, F, OuterRef, Subquery, Value, When
from django.http import Http404

from annotate.models import Assignment, Membership, Project, ResponsePair, Role, Stage
from config.db import Statement, column_list, instance_from_row, run

AnyUser = AbstractBaseUser | AnonymousUser

# How a paused member (Membership.paused_at) reads to every check: in no role set, so they may not
# label (nor do anything else) until an admin resumes them.
PAUSED_ROLE = "paused"
PAUSED_MESSAGE = "An admin has paused your labelling in this project; ask them why, or to resume it."
MANAGE_ROLES = (Role.ADMIN,)
DATA_ROLES = (Role.ADMIN, Role.RESEARCHER)
LABEL_ROLES = (Role.ANNOTATOR, Role.ADMIN)


# The role a membership acts with: its role, or PAUSED_ROLE while paused.
_EFFECTIVE_ROLE = "effective_role"


def with_effective_role(memberships: Any) -> Any:
    """Memberships annotated with `effective_role`: the role, or PAUSED_ROLE while paused."""
    return memberships.annotate(
        effective_role=Case(When(paused_at__isnull=False, then=Value(PAUSED_ROLE)), default=F("role"))
    )


def role_in_project(user: AnyUser, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    memberships = with_effective_role(Membership.objects.filter(project=project, user_id=user.pk))
    return memberships.values_list(_EFFECTIVE_ROLE, flat=True).first()


def get_project_for_user(user: AnyUser, slug: str, *, roles: Iterable[str] | None = None) -> Project:
    """The project `slug` as seen by `user`: 404 for outsiders, 403 when their role is not in `roles`."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    project, role = _project_and_membership(slug, user.pk)
    if project is not None and getattr(user, "is_superuser", False):
        role = Role.ADMIN
    if project is None or role is None:
        raise Http404("No such project.")
    if roles is not None and role == PAUSED_ROLE:
        raise PermissionDenied(PAUSED_MESSAGE)
    if roles is not None and role not in set(roles):
        raise PermissionDenied(f"Your role in this project ({role}) does not allow this.")
    project.viewer_role = role  # type: ignore[attr-defined]
    return project


# Every call of the worker loop starts here: the project and the caller's role in one prepared query.
_PROJECT_AND_ROLE = Statement(
    "beaverlab_project_and_role",
    f"""SELECT {column_list(Project, "p")},
        CASE WHEN m.paused_at IS NOT NULL THEN '{PAUSED_ROLE}' ELSE m.role END FROM annotate_project p
    LEFT JOIN annotate_membership m ON m.project_id = p.id AND m.user_id = %s
    WHERE p.slug = %s""",
)


def _project_and_membership(slug: str, user_id: int) -> tuple[Project | None, str | None]:
    """The project and the user's role in it (None for a project they are not a member of)."""
    if connection.vendor == "postgresql":
        rows = run(_PROJECT_AND_ROLE, [user_id, slug])
        if not rows:
            return None, None
        return instance_from_row(Project, rows[0]), rows[0][-1]
    membership = (
        Membership.objects.select_related("project").filter(project__slug=slug, user_id=user_id).first()
    )
    if membership is not None:
        return membership.project, membership.role if membership.paused_at is None else PAUSED_ROLE
    return Project.objects.filter(slug=slug).first(), None


def get_assignment_for_worker(user: AnyUser, assignment_id: int) -> Assignment:
    """The worker's own assignment with what it shows, while they may still label in its project.

    Anyone else's assignment (or none) is a 404, and so is the worker's own once they are no longer a
    member of its project; a member whose role no longer labels gets a 403. Their current membership is
    read in the same query (a subquery), not trusted from when the lease was taken.

    A stage-1 assignment comes with its QA pair and prompt in one query; a stage-2 one loads its
    response pair (with the prompt and both QA pairs) in a second. One select_related over both
    shapes would be a nine-table outer join, and planning that alone costs PostgreSQL milliseconds
    on every call of the worker loop.
    """
    if not user.is_authenticated:
        raise Http404("No such assignment.")
    role = with_effective_role(
        Membership.objects.filter(project_id=OuterRef("project_id"), user_id=user.pk)
    ).values(_EFFECTIVE_ROLE)[:1]
    try:
        assignment = (
            Assignment.objects.select_related("project", "work_item__qa_pair__prompt")
            .annotate(caller_role=Subquery(role))
            .get(pk=assignment_id, worker_id=user.pk)
        )
    except Assignment.DoesNotExist:
        raise Http404("No such assignment.") from None
    caller_role = Role.ADMIN if getattr(user, "is_superuser", False) else assignment.caller_role
    if caller_role is None:
        raise Http404("No such assignment.")
    if caller_role == PAUSED_ROLE:
        raise PermissionDenied(PAUSED_MESSAGE)
    if caller_role not in LABEL_ROLES:
        raise PermissionDenied(f"Your role in this project ({caller_role}) does not allow labelling.")
    item = assignment.work_item
    if assignment.stage == Stage.RANK and item.response_pair_id is not None:
        item.response_pair = ResponsePair.objects.select_related("prompt", "qa_a", "qa_b").get(
            pk=item.response_pair_id
        )
    return assignment
