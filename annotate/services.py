"""Writes for projects, members and users. Each entry point is atomic; callers pass keywords only."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction
from rest_framework.authtoken.models import Token

from annotate.models import Membership, Project, Role

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


@transaction.atomic
def membership_set(*, project: Project, user: User, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.")
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


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
