"""One access helper per object. Every view and API endpoint reaches a project through these, so the
rules live in one place: an outsider gets 404 (a project's existence is not disclosed), a member whose
role does not allow the action gets 403."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotate.models import Assignment, Membership, Project, ResponsePair, Role, Stage

AnyUser = AbstractBaseUser | AnonymousUser

MANAGE_ROLES = (Role.ADMIN,)
DATA_ROLES = (Role.ADMIN, Role.RESEARCHER)
LABEL_ROLES = (Role.ANNOTATOR, Role.ADMIN)


def role_in_project(user: AnyUser, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    return Membership.objects.filter(project=project, user_id=user.pk).values_list("role", flat=True).first()


def get_project_for_user(user: AnyUser, slug: str, *, roles: Iterable[str] | None = None) -> Project:
    """The project `slug` as seen by `user`: 404 for outsiders, 403 when their role is not in `roles`."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    # A member's role and the project in one query: every call of the worker loop starts here.
    membership = (
        Membership.objects.select_related("project").filter(project__slug=slug, user_id=user.pk).first()
    )
    if membership is not None:
        project: Project | None = membership.project
        role: str | None = membership.role
    else:
        project, role = Project.objects.filter(slug=slug).first(), None
    if project is not None and getattr(user, "is_superuser", False):
        role = Role.ADMIN
    if project is None or role is None:
        raise Http404("No such project.")
    if roles is not None and role not in set(roles):
        raise PermissionDenied(f"Your role in this project ({role}) does not allow this.")
    project.viewer_role = role  # type: ignore[attr-defined]
    return project


def get_assignment_for_worker(user: AnyUser, assignment_id: int) -> Assignment:
    """The worker's own assignment with what it shows; anyone else's (or none) is a 404.

    A stage-1 assignment comes with its QA pair and prompt in one query; a stage-2 one loads its
    response pair (with the prompt and both QA pairs) in a second. One select_related over both
    shapes would be a nine-table outer join, and planning that alone costs PostgreSQL milliseconds
    on every call of the worker loop.
    """
    if not user.is_authenticated:
        raise Http404("No such assignment.")
    try:
        assignment = Assignment.objects.select_related("project", "work_item__qa_pair__prompt").get(
            pk=assignment_id, worker_id=user.pk
        )
    except Assignment.DoesNotExist:
        raise Http404("No such assignment.") from None
    item = assignment.work_item
    if assignment.stage == Stage.RANK and item.response_pair_id is not None:
        item.response_pair = ResponsePair.objects.select_related("prompt", "qa_a", "qa_b").get(
            pk=item.response_pair_id
        )
    return assignment
