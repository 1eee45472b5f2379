"""Reads for projects. Views and serializers call these instead of building querysets themselves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotate.access import with_effective_role
from annotate.assignment import settled_safety
from annotate.categories import keys_from_mask
from annotate.models import (
    Assignment,
    AssignmentStatus,
    LabelExclusion,
    Membership,
    Project,
    Prompt,
    QAPair,
    ResponsePair,
    Role,
    Stage,
    Stage1Label,
    Stage2Label,
    WorkItem,
)


def projects_for_user(user: Any) -> QuerySet[Project]:
    """Projects the user can see, each annotated with `viewer_role`."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        # A superuser acts as admin where they hold no membership (as annotate.access does).
        own_role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
        return Project.objects.all().annotate(
            viewer_role=Coalesce(Subquery(own_role), Value(Role.ADMIN.value))
        )
    role = with_effective_role(Membership.objects.filter(project=OuterRef("pk"), user=user)).values(
        "effective_role"
    )[:1]
    return Project.objects.filter(memberships__user=user).annotate(viewer_role=Subquery(role))


def _count_by_project(queryset: Any, project_ids: list[int]) -> dict[int, int]:
    rows = queryset.filter(project_id__in=project_ids).values_list("project_id").annotate(n=Count("id"))
    return dict(rows.values_list("project_id", "n"))


def projects_counts(projects: Sequence[Project]) -> dict[int, dict[str, int]]:
    """Sizes of each project's data and queues, by project id: five grouped queries for any number of
    projects (the project list shows them all; one round of counts per project grew with the list)."""
    ids = [project.pk for project in projects]
    prompts = _count_by_project(Prompt.objects, ids)
    qa_pairs = _count_by_project(QAPair.objects, ids)
    response_pairs = _count_by_project(ResponsePair.objects, ids)
    members = _count_by_project(Membership.objects, ids)
    items: dict[tuple[int, str], int] = {}
    item_rows = (
        WorkItem.objects.filter(project_id__in=ids)
        .values("project_id")
        .annotate(
            stage1=Count("id", filter=Q(stage=Stage.CLASSIFY)),
            stage2=Count("id", filter=Q(stage=Stage.RANK)),
            gold=Count("id", filter=Q(is_gold=True)),
        )
    )
    for row in item_rows:
        for key in ("stage1", "stage2", "gold"):
            items[(row["project_id"], key)] = row[key]
    return {
        pk: {
            "prompts": prompts.get(pk, 0),
            "qa_pairs": qa_pairs.get(pk, 0),
            "response_pairs": response_pairs.get(pk, 0),
            "stage1_items": items.get((pk, "stage1"), 0),
            "stage2_items": items.get((pk, "stage2"), 0),
            "gold_items": items.get((pk, "gold"), 0),
            "members": members.get(pk, 0),
        }
        for pk in ids
    }


def project_counts(project: Project) -> dict[str, int]:
    """Sizes of a project's data and queues, for its detail page and API."""
    return projects_counts([project])[project.pk]


def assignment_view(assignment: Assignment) -> dict[str, Any]:
    """What a worker is shown for an assignment: never gold answers, other labels or canonical ids.

    Uses what the caller loaded (get_assignment_for_worker loads it all); a stage-1 QA pair that is
    not loaded, as on a fresh claim, is read with its prompt in one query.
    """
    item = assignment.work_item
    shown: dict[str, Any]
    if assignment.stage == Stage.CLASSIFY:
        if WorkItem.qa_pair.is_cached(item):
            qa = item.qa_pair
        else:
            assert item.qa_pair_id is not None
            qa = item.qa_pair = QAPair.objects.select_related("prompt").get(pk=item.qa_pair_id)
        assert qa is not None
        shown = {"prompt": qa.prompt.text, "response": qa.response}
    else:
        if not WorkItem.response_pair.is_cached(item):  # a fresh claim: one query, not four lazy ones
            assert item.response_pair_id is not None
            item.response_pair = ResponsePair.objects.select_related("prompt", "qa_a", "qa_b").get(
                pk=item.response_pair_id
            )
        pair = item.response_pair
        assert pair is not None
        # The workers' own settled stage-1 verdicts only (None: not judged yet), never a gold label.
        safety = settled_safety([pair.qa_a_id, pair.qa_b_id])
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


@dataclass(frozen=True)
class WorkerProgress:
    labelled_today: int
    items_left: int


def _open_items_count(project_id: int, stage: int) -> int:
    # Counting the open queue reads the whole partial index; at BeaverTails scale that costs tens of
    # milliseconds, too much for every submit, so the figure is shared for a few seconds.
    key = f"open-items:{project_id}:{stage}"
    count = cache.get(key)
    if count is None:
        count = WorkItem.objects.filter(project_id=project_id, stage=stage, is_open=True).count()
        cache.set(key, count, timeout=10)
    return int(count)


def worker_progress(*, project: Project, worker: Any, stage: int) -> WorkerProgress:
    """The worker's progress strip, in one stage: their labels today (UTC), and the open items left for
    them: open items they have never been given (a worker never gets an item twice, whether they
    answered, skipped or let it lapse), so the item on screen does not count. The open count is shared
    for a few seconds; the worker's own part is read through their assignments, which stay few."""
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    own = Assignment.objects.filter(worker_id=worker.pk, project=project, stage=stage)
    labelled_today = own.filter(submitted_at__gte=today).count()
    already_given = own.filter(work_item__is_open=True).count()
    left = max(0, _open_items_count(project.pk, stage) - already_given)
    return WorkerProgress(labelled_today=labelled_today, items_left=left)


def worker_last_submission(*, project: Project, worker: Any, stage: int) -> Assignment | None:
    """The worker's most recent submitted assignment in a stage, if its item can still be revised."""
    last = (
        Assignment.objects.filter(
            worker_id=worker.pk, project=project, stage=stage, status=AssignmentStatus.SUBMITTED
        )
        .select_related("work_item")
        .order_by("-submitted_at")
        .first()
    )
    if last is None or last.work_item.settled_at is not None or last.work_item.needs_adjudication:
        return None
    return last


def worker_recent_answers(
    *, project: Project, worker: Any, stage: int, limit: int = 8
) -> list[dict[str, Any]]:
    """The worker's latest submitted answers in a stage, newest first, for their history list: when, the
    prompt, what they answered (in the order they saw), and whether it can still be revised."""
    recent = list(
        Assignment.objects.filter(
            worker_id=worker.pk, project=project, stage=stage, status=AssignmentStatus.SUBMITTED
        )
        .select_related("work_item__qa_pair__prompt", "work_item__response_pair__prompt")
        .order_by("-submitted_at", "-pk")[:limit]
    )
    ids = [a.pk for a in recent]
    if stage == Stage.CLASSIFY:
        masks = dict(
            Stage1Label.objects.filter(assignment_id__in=ids).values_list("assignment_id", "categories")
        )
    else:
        choices = {
            a_id: (better, safer)
            for a_id, better, safer in Stage2Label.objects.filter(assignment_id__in=ids).values_list(
                "assignment_id", "better", "safer"
            )
        }
    answers = []
    for a in recent:
        item = a.work_item
        pair_or_qa = item.qa_pair if stage == Stage.CLASSIFY else item.response_pair
        assert pair_or_qa is not None
        if stage == Stage.CLASSIFY:
            answer: dict[str, Any] = {"categories": keys_from_mask(masks.get(a.pk, 0))}
        else:
            flip = 1 if a.swapped else 0
            better, safer = choices.get(a.pk, (0, 0))
            answer = {"better_response_id": better ^ flip, "safer_response_id": safer ^ flip}
        answers.append(
            {
                "assignment_id": a.pk,
                "submitted_at": a.submitted_at,
                "prompt": pair_or_qa.prompt.text,
                "response": item.qa_pair.response if item.qa_pair is not None else "",
                "answer": answer,
                "revisable": item.settled_at is None and not item.needs_adjudication,
            }
        )
    return answers


def submitted_answer(assignment: Assignment) -> dict[str, Any]:
    """A submitted assignment's answer in the ids the worker saw (for the revise form)."""
    if assignment.stage == Stage.CLASSIFY:
        label = Stage1Label.objects.get(assignment=assignment)
        return {"categories": keys_from_mask(label.categories)}
    pair_label = Stage2Label.objects.get(assignment=assignment)
    flip = 1 if assignment.swapped else 0
    return {"better_response_id": pair_label.better ^ flip, "safer_response_id": pair_label.safer ^ flip}


def qa_pairs_for_gold_review(*, project: Project, search: str = "") -> QuerySet[QAPair]:
    """QA pairs for the gold page: gold ones first, then by id; optionally filtered by text."""
    pairs = QAPair.objects.filter(project=project).select_related("prompt", "gold")
    if search:
        pairs = pairs.filter(Q(prompt__text__icontains=search) | Q(response__icontains=search))
    return pairs.order_by(F("gold__created_at").desc(nulls_last=True), "id")


def response_pairs_for_gold_review(*, project: Project, search: str = "") -> QuerySet[ResponsePair]:
    pairs = ResponsePair.objects.filter(project=project).select_related("prompt", "gold")
    if search:
        pairs = pairs.filter(prompt__text__icontains=search)
    return pairs.order_by(F("gold__created_at").desc(nulls_last=True), "id")


def label_exclusions(project: Project) -> dict[int, list[LabelExclusion]]:
    """The project's label exclusions per worker, newest first (without the archived answers)."""
    found: dict[int, list[LabelExclusion]] = {}
    for exclusion in LabelExclusion.objects.filter(project=project).defer("labels").order_by("-created_at"):
        found.setdefault(exclusion.worker_id, []).append(exclusion)
    return found


def project_members(project: Project) -> list[dict[str, Any]]:
    """Each member with what they did in the project: labels submitted per stage, skips with their
    latest reasons, and accuracy on gold (admins' view: annotate.gold.gold_scores decides the flag)."""
    from annotate.gold import gold_scores

    memberships = list(
        Membership.objects.filter(project=project).select_related("user").order_by("role", "user__username")
    )
    counts: dict[tuple[int, int, str], int] = {}
    rows = (
        Assignment.objects.filter(
            project=project, status__in=[AssignmentStatus.SUBMITTED, AssignmentStatus.SKIPPED]
        )
        .order_by()
        .values_list("worker_id", "stage", "status")
        .annotate(n=Count("id"))
    )
    for worker_id, stage, status, n in rows:
        counts[(worker_id, stage, status)] = n
    reasons: dict[int, list[str]] = {}
    skipped = (
        Assignment.objects.filter(project=project, status=AssignmentStatus.SKIPPED)
        .exclude(skip_reason="")
        .order_by("-skipped_at", "-pk")
        .values_list("worker_id", "skip_reason")
    )
    for worker_id, reason in skipped[:2000]:
        kept = reasons.setdefault(worker_id, [])
        if len(kept) < 5:
            kept.append(reason)
    gold = {score.worker_id: score for score in gold_scores(project)}
    exclusions = label_exclusions(project)
    members = []
    for membership in memberships:
        uid = membership.user_id
        score = gold.get(uid)
        members.append(
            {
                "username": membership.user.get_username(),
                "email": membership.user.email,
                "role": membership.role,
                "joined_at": membership.created_at,
                "paused_at": membership.paused_at,
                "paused_reason": membership.paused_reason,
                "labels": {
                    "stage1": counts.get((uid, Stage.CLASSIFY, AssignmentStatus.SUBMITTED), 0),
                    "stage2": counts.get((uid, Stage.RANK, AssignmentStatus.SUBMITTED), 0),
                },
                "skips": counts.get((uid, Stage.CLASSIFY, AssignmentStatus.SKIPPED), 0)
                + counts.get((uid, Stage.RANK, AssignmentStatus.SKIPPED), 0),
                "recent_skip_reasons": reasons.get(uid, []),
                "gold": None
                if score is None
                else {
                    "answered": score.answered,
                    "correct": score.correct,
                    "accuracy": score.accuracy,
                    "flagged": score.flagged,
                },
                "exclusions": [
                    {
                        "at": exclusion.created_at,
                        "reason": exclusion.reason,
                        "labels": exclusion.stage1_labels + exclusion.stage2_labels,
                        "items_reopened": exclusion.items_reopened,
                        "gold": exclusion.gold,
                    }
                    for exclusion in exclusions.get(uid, [])
                ],
            }
        )
    return members
