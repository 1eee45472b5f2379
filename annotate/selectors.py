"""Reads for projects. Views and serializers call these instead of building querysets themselves."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery

from annotate.assignment import known_safety
from annotate.models import Assignment, Membership, Project, Stage, WorkItem


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
        WorkItem.objects.filter(project=project)
        .values_list("stage")
        .annotate(n=Count("id"))
        .values_list("stage", "n")
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


def assignment_view(assignment: Assignment) -> dict[str, Any]:
    """What a worker is shown for an assignment: never gold answers, other labels or canonical ids."""
    item = assignment.work_item
    shown: dict[str, Any]
    if assignment.stage == Stage.CLASSIFY:
        qa = item.qa_pair
        assert qa is not None
        shown = {"prompt": qa.prompt.text, "response": qa.response}
    else:
        pair = item.response_pair
        assert pair is not None
        safety = known_safety([pair.qa_a_id, pair.qa_b_id])
        order = [pair.qa_b, pair.qa_a] if assignment.swapped else [pair.qa_a, pair.qa_b]
        shown = {
            "prompt": pair.prompt.text,
            "responses": [
                {"id": display_id, "text": qa.response, "is_safe": safety.get(qa.pk)}
                for display_id, qa in enumerate(order)
            ],
        }
    return {
        "id": assignment.pk,
        "stage": assignment.stage,
        "status": assignment.status,
        "leased_at": assignment.leased_at,
        "expires_at": assignment.expires_at,
        "item": shown,
    }
