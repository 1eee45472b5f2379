"""Reads for projects. Views and serializers call these instead of building querysets themselves."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery

from annotate.models import Membership, Project, Stage, WorkItem


def projects_for_user(user: Any) -> QuerySet[Project]:
    """Projects the user can see, each annotated with `viewer_role`."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all().annotate(
            viewer_role=Subquery(
                Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
            )
        )
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return Project.objects.filter(memberships__user=user).annotate(viewer_role=Subquery(role))


def project_counts(project: Project) -> dict[str, int]:
    """Sizes of a project's data and queues, for its detail page and API."""
    items = dict(
        WorkItem.objects.filter(project=project).values_list("stage").annotate(n=Count("id")).values_list("stage", "n")
    )
    return {
        "prompts": project.prompts.count(),
        "qa_pairs": project.qa_pairs.count(),
        "response_pairs": project.response_pairs.count(),
        "stage1_items": items.get(Stage.CLASSIFY, 0),
        "stage2_items": items.get(Stage.RANK, 0),
        "gold_items": WorkItem.objects.filter(project=project, is_gold=True).count(),
        "members": project.memberships.count(),
    }
