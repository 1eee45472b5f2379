"""One access helper per object. Every view and API endpoint reaches a project through these, so the
rules live in one place: an outsider gets 404 (a project's existence is not disclosed), a member whose
role does not allow the action gets 403."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotate.models import Assignment, Membership, Project, Role

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
    project = Project.objects.filter(slug=slug).first()
    role = role_in_project(user, project) if project is not None else None
    if project is None or role is None:
        raise Http404("No such project.")
    if roles is not None and role not in set(roles):
        raise PermissionDenied(f"Your role in this project ({role}) does not allow this.")
    project.viewer_role = role  # type: ignore[attr-defined]
    return project


def get_assignment_for_worker(user: AnyUser, assignment_id: int) -> Assignment:
    """The worker's own assignment with what it shows; anyone else's (or none) is a 404."""
    if not user.is_authenticated:
        raise Http404("No such assignment.")
    assignment = (
        Assignment.objects.select_related(
            "project",
            "work_item__qa_pair__prompt",
            "work_item__response_pair__prompt",
            "work_item__response_pair__qa_a",
            "work_item__response_pair__qa_b",
        )
        .filter(pk=assignment_id, worker_id=user.pk)
        .first()
    )
    if assignment is None:
        raise Http404("No such assignment.")
    return assignment
