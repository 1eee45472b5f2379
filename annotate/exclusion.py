"""Excluding a worker's labels from consensus: what an admin does about a spammer or a worker who
misread the guidelines, after pausing them.

The labels leave the label tables (so the majority, Dawid-Skene, agreement figures and every export
stop seeing them without each of them knowing about exclusions); their answers are kept in a
`LabelExclusion` with the reason, and the audit log records the decision. Each item they labelled gives
the slot back and, unless an admin adjudicated it, settles again from the labels that remain: an item
left short of its overlap goes back to the queue for another worker.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotate.assignment import work_item_settle
from annotate.audit import audit_record
from annotate.categories import keys_from_mask
from annotate.gold import gold_scores
from annotate.models import (
    Adjudication,
    Assignment,
    AssignmentStatus,
    AuditAction,
    LabelExclusion,
    Membership,
    Project,
    Role,
    Stage,
    Stage1Label,
    Stage2Label,
    WorkItem,
)
from annotate.recompute import agreement_recompute_request
from annotate.services import membership_pause

_UNSETTLED = {
    "settled_at": None,
    "needs_adjudication": False,
    "consensus_categories": None,
    "consensus_safe": None,
    "consensus_better": None,
    "consensus_safer": None,
}


def _archived_answers(assignment_ids: list[int]) -> list[dict[str, Any]]:
    """What each excluded label said, in the form the record keeps."""
    stage1 = Stage1Label.objects.filter(assignment_id__in=assignment_ids).values_list(
        "assignment__work_item_id", "categories", "guideline_version", "created_at"
    )
    stage2 = Stage2Label.objects.filter(assignment_id__in=assignment_ids).values_list(
        "assignment__work_item_id", "better", "safer", "guideline_version", "created_at"
    )
    return [
        {
            "stage": 1,
            "work_item": item,
            "answer": {"categories": keys_from_mask(mask)},
            "guideline_version": v,
            "at": at.isoformat(),
        }
        for item, mask, v, at in stage1
    ] + [
        {
            "stage": 2,
            "work_item": item,
            "answer": {"better": better, "safer": safer},
            "guideline_version": v,
            "at": at.isoformat(),
        }
        for item, better, safer, v, at in stage2
    ]


def _settle_again(project: Project, item_ids: list[int], now: Any) -> int:
    """Each item lost one label: settle it again from what remains (an adjudicated item keeps the admin's
    decision). How many items that had a consensus went back to the queue without one."""
    adjudicated = set(
        Adjudication.objects.filter(work_item_id__in=item_ids).values_list("work_item_id", flat=True)
    )
    reopened = 0
    for item in WorkItem.objects.filter(pk__in=item_ids).select_related("qa_pair").order_by("pk"):
        if item.pk in adjudicated:
            continue
        had_consensus = item.settled_at is not None
        k = project.overlap_for(item.stage)
        for field, value in _UNSETTLED.items():
            setattr(item, field, value)
        item.is_open = item.is_gold or item.taken < k
        item.save(update_fields=[*_UNSETTLED, "is_open"])
        if item.labels_count >= k:
            work_item_settle(item=item, project=project, now=now)
        reopened += int(had_consensus and item.settled_at is None)
    return reopened


@transaction.atomic
def labels_exclude(*, project: Project, user: User, actor: Any = None, reason: str) -> LabelExclusion:
    """Exclude every label `user` has given in the project so far from consensus, with the reason; an
    annotator who is not paused yet is paused with it (a worker whose labels do not count should not go on
    labelling until an admin resumes them). Returns the record of what was excluded."""
    reason = reason.strip()
    if not reason:
        raise ValidationError("Say why their labels are excluded: the reason is kept with the record.")
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        raise ValidationError(f"{user.get_username()} is not a member of {project.slug}.")
    now = timezone.now()
    score = next((s for s in gold_scores(project) if s.worker_id == user.pk), None)
    if membership.role == Role.ANNOTATOR and membership.paused_at is None:
        membership_pause(project=project, user=user, actor=actor, reason=f"Labels excluded: {reason}"[:500])
    project = Project.objects.get(pk=project.pk)  # the overlap as it is now
    # Lock order as everywhere: the assignment rows, then their work items.
    submitted = list(
        Assignment.objects.select_for_update()
        .filter(project=project, worker=user, status=AssignmentStatus.SUBMITTED)
        .order_by("pk")
        .values_list("pk", "work_item_id", "stage")
    )
    assignment_ids = [pk for pk, _, _ in submitted]
    item_ids = sorted({item for _, item, _ in submitted})
    list(WorkItem.objects.select_for_update().filter(pk__in=item_ids).order_by("pk").values_list("pk"))
    answers = _archived_answers(assignment_ids)
    Stage1Label.objects.filter(assignment_id__in=assignment_ids).delete()
    Stage2Label.objects.filter(assignment_id__in=assignment_ids).delete()
    Assignment.objects.filter(pk__in=assignment_ids).update(status=AssignmentStatus.EXCLUDED)
    # One label per worker and item, so each item gives back exactly one slot.
    WorkItem.objects.filter(pk__in=item_ids).update(taken=F("taken") - 1, labels_count=F("labels_count") - 1)
    reopened = _settle_again(project, item_ids, now)
    exclusion = LabelExclusion.objects.create(
        project=project,
        worker=user,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        created_at=now,
        reason=reason,
        stage1_labels=sum(1 for _, _, stage in submitted if stage == Stage.CLASSIFY),
        stage2_labels=sum(1 for _, _, stage in submitted if stage == Stage.RANK),
        items_reopened=reopened,
        gold=None if score is None else {"answered": score.answered, "correct": score.correct},
        labels=answers,
    )
    audit_record(
        project=project,
        actor=actor,
        action=AuditAction.LABELS_EXCLUDE,
        target=f"user:{user.pk}",
        old={"username": user.get_username(), "labels": len(submitted)},
        new={"username": user.get_username(), "excluded": len(submitted), "items_reopened": reopened},
        reason=reason,
        at=now,
    )
    agreement_recompute_request(project=project)
    return exclusion
