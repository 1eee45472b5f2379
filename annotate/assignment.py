"""The assignment engine: leases, overlap, gold mixing, labels and settling. See docs/assignment.md.

Slot accounting: `WorkItem.taken` counts live leases plus submitted labels. A claim takes a slot with a
conditional UPDATE (`taken < overlap`), so no item ever holds more than `overlap` leases and labels
together, whatever the interleaving; a skip or an expired lease gives its slot back. `is_open` mirrors
`taken < overlap` and feeds a partial index, so the next-task query never scans settled work.

Lock order everywhere: assignment rows first, then the work item. Claims lock the item row with
`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite runs write transactions one at a time
(IMMEDIATE mode), which makes the same conditional update safe there.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import combinations
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from annotate import fastpath
from annotate.access import get_assignment_for_worker
from annotate.categories import UnknownCategoryError, mask_from_keys
from annotate.models import (
    Assignment,
    AssignmentStatus,
    Project,
    Prompt,
    QAPair,
    ResponsePair,
    Stage,
    Stage1Label,
    Stage2Label,
    WorkItem,
)
from annotate.rules import HARMLESS_INVARIANT_MESSAGE, violates_harmless_invariant

# Random draws go through one module-level generator so tests can seed it.
rng = random.Random()


class SlotTaken(ValidationError):
    """The lease lapsed and its slot went to another worker: the label cannot be accepted."""


# --- claiming -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draw:
    """One pool to claim from: gold or regular items; `uncapped` draws gold whatever its count."""

    is_gold: bool
    uncapped: bool = False


# Gold first (any gold item the worker has not had, while regular work is left for them), else regular
# work, else gold items that still need labels for their own consensus (those are real work).
_GOLD_DRAW = (Draw(is_gold=True, uncapped=True), Draw(is_gold=False), Draw(is_gold=True))
_REGULAR_DRAW = (Draw(is_gold=False), Draw(is_gold=True))


def _overlap_now(project_id: int, stage: int) -> Subquery:
    """The stage's overlap as the database has it when the statement runs, not as the caller read the
    project: an admin may have changed it since (annotate.services.project_settings_update)."""
    field = "overlap_stage1" if stage == Stage.CLASSIFY else "overlap_stage2"
    return Subquery(Project.objects.filter(pk=project_id).values(field)[:1])


def _room(k: Subquery, *, uncapped_gold: bool) -> Q:
    """Which items have a free slot: fewer than k leases and labels, or (for a gold draw) any gold
    item, since gold measures every worker and never fills up."""
    return Q(taken__lt=k) | Q(is_gold=True) if uncapped_gold else Q(taken__lt=k)


def _open_for(
    *, project: Project, stage: int, worker_id: int, k: Subquery, is_gold: bool, uncapped: bool
) -> QuerySet[WorkItem]:
    """Open items of one pool with room that this worker never had."""
    already_had = Assignment.objects.filter(work_item=OuterRef("pk"), worker_id=worker_id)
    return (
        WorkItem.objects.filter(project=project, stage=stage, is_gold=is_gold, is_open=True)
        .filter(_room(k, uncapped_gold=uncapped))
        .exclude(Exists(already_had))
    )


def _next_open_item(*, project: Project, stage: int, worker_id: int, draw: Draw) -> WorkItem | None:
    """The first open item of one pool that this worker never had, fullest first, locked for us.

    A gold draw (uncapped) finds nothing once no regular work is left for the worker: gold is mixed in
    among real work, never served as a run of its own (a worker would learn what the tail of the queue
    is), except gold items that still need labels for their own consensus, which are real work."""
    k = _overlap_now(project.pk, stage)
    queue = _open_for(
        project=project, stage=stage, worker_id=worker_id, k=k, is_gold=draw.is_gold, uncapped=draw.uncapped
    )
    if draw.uncapped:
        regular_left = _open_for(
            project=project, stage=stage, worker_id=worker_id, k=k, is_gold=False, uncapped=False
        )
        # The least answered gold first: the worker is least likely to have seen it.
        queue = queue.filter(Exists(regular_left)).order_by("taken", "-id")
    else:
        # Fullest first: items in progress are completed before new ones start.
        queue = queue.order_by("-taken", "id")
    if stage == Stage.CLASSIFY:
        # What the worker is shown comes with the claim, not in a query of its own; only the item
        # row is locked (FOR UPDATE OF).
        queue = queue.select_related("qa_pair__prompt")
    if connection.features.has_select_for_update_skip_locked:
        queue = queue.select_for_update(skip_locked=True, of=("self",))
    return queue.first()


def _take_slot(*, item_id: int, project_id: int, stage: int, uncapped_gold: bool) -> bool:
    """Take one slot if one is free; False when another writer got there first. A gold item stays
    open whatever its count (it is there to measure every worker once)."""
    k = _overlap_now(project_id, stage)
    return bool(
        WorkItem.objects.filter(_room(k, uncapped_gold=uncapped_gold), pk=item_id).update(
            taken=F("taken") + 1,
            # SET reads the row as it was: taken + 1 < k  <=>  taken < k - 1.
            is_open=Case(When(Q(is_gold=True) | Q(taken__lt=k - 1), then=Value(True)), default=Value(False)),
        )
    )


def _pool_order(project: Project) -> tuple[Draw, ...]:
    """Gold first with probability gold_rate, so gold items arrive unannounced among regular ones.

    A gold draw takes any gold item the worker has not seen, however many answered it before: every
    worker, the first or the hundredth, is measured at the project's rate for as long as unseen gold
    (and regular work) remains, and gold takes nothing from the overlap of regular items. When no
    regular work is left for the worker, gold items are served as ordinary work only while they still
    need labels for their own consensus (fewer than k), so a worker is never handed a run of gold.
    """
    return _GOLD_DRAW if rng.random() < project.gold_rate else _REGULAR_DRAW


def _live_lease(*, project: Project, worker_id: int, stage: int) -> Assignment | None:
    return (
        Assignment.objects.select_for_update()
        .filter(project=project, worker_id=worker_id, stage=stage, status=AssignmentStatus.LEASED)
        .order_by("id")
        .first()
    )


def _claim_from_pools(*, project: Project, worker_id: int, stage: int) -> WorkItem | None:
    for draw in _pool_order(project):
        item = _next_open_item(project=project, stage=stage, worker_id=worker_id, draw=draw)
        # The row is locked (PostgreSQL) or the transaction runs alone (SQLite), so the conditional
        # update only fails if the index and the counters disagree; it then falls through, never over.
        if item is not None and _take_slot(
            item_id=item.pk, project_id=project.pk, stage=stage, uncapped_gold=draw.uncapped
        ):
            return item
    return None


def assignment_claim(
    *, project: Project, worker: Any, stage: int, now: datetime | None = None
) -> Assignment | None:
    """The worker's next task in a stage, or None when nothing is left for them.

    Asking again while holding a live lease returns that same lease (renewed if it lapsed but was not
    yet swept), so a reload never burns a slot.
    """
    now = now or timezone.now()
    if fastpath.enabled():
        assignment = _claim_with_statements(project=project, worker=worker, stage=stage, now=now)
    else:
        try:
            assignment = _claim_with_orm(project=project, worker=worker, stage=stage, now=now)
        except IntegrityError:
            # The worker's other call (a double click, two tabs) took a lease a moment ago and
            # assignment_one_live_lease refused this one: that live lease is the answer.
            assignment = _claim_with_orm(project=project, worker=worker, stage=stage, now=now)
    if assignment is not None:
        # The caller's instances serve what the assignment shows, without reading them again.
        assignment.project = project
        assignment.worker = worker
    return assignment


def _renew_if_lapsed(live: Assignment, project: Project, now: datetime) -> Assignment:
    if live.expires_at <= now:
        live.expires_at = now + timedelta(seconds=project.lease_seconds)
        live.save(update_fields=["expires_at"])
    return live


@transaction.atomic
def _claim_with_orm(*, project: Project, worker: Any, stage: int, now: datetime) -> Assignment | None:
    live = _live_lease(project=project, worker_id=worker.pk, stage=stage)
    if live is not None:
        return _renew_if_lapsed(live, project, now)
    item = _claim_from_pools(project=project, worker_id=worker.pk, stage=stage)
    if item is None and assignment_release_expired(now=now, project=project):
        item = _claim_from_pools(project=project, worker_id=worker.pk, stage=stage)
    if item is None:
        return None
    return Assignment.objects.create(
        project=project,
        work_item=item,
        worker=worker,
        stage=stage,
        leased_at=now,
        expires_at=now + timedelta(seconds=project.lease_seconds),
        swapped=stage == Stage.RANK and rng.random() < 0.5,
    )


def _claim_statement(
    *, project: Project, worker_id: int, stage: int, draw: Draw, now: datetime
) -> tuple[Assignment, bool] | None:
    claim = partial(
        fastpath.claim,
        project_id=project.pk,
        worker_id=worker_id,
        stage=stage,
        is_gold=draw.is_gold,
        uncapped_gold=draw.uncapped,
        now=now,
        lease=timedelta(seconds=project.lease_seconds),
        swapped=stage == Stage.RANK and rng.random() < 0.5,
    )
    try:
        if not connection.in_atomic_block:
            return claim()  # one statement, atomic on its own
        # Inside a caller's transaction a failed statement would abort it: a savepoint confines it.
        with transaction.atomic():
            return claim()
    except IntegrityError:
        # The worker's other call (a double click, two tabs) took a lease a moment ago: that live
        # lease is the answer (assignment_one_live_lease refused the second).
        return claim()


def _claim_with_statements(*, project: Project, worker: Any, stage: int, now: datetime) -> Assignment | None:
    """The same claim as _claim_with_orm, one prepared statement per pool (annotate.fastpath)."""
    for sweep_first in (False, True):
        if sweep_first and not assignment_release_expired(now=now, project=project):
            return None
        for draw in _pool_order(project):
            found = _claim_statement(project=project, worker_id=worker.pk, stage=stage, draw=draw, now=now)
            if found is None:
                continue
            assignment, is_new = found
            return assignment if is_new else _renew_if_lapsed(assignment, project, now)
    return None


# --- releasing slots ------------------------------------------------------------------------------


def _give_back_slots(item_counts: Counter[int]) -> None:
    for item_id, count in item_counts.items():
        WorkItem.objects.filter(pk=item_id).update(taken=F("taken") - count, is_open=True)


def _expire_leases(live: QuerySet[Assignment], limit: int | None = None) -> int:
    """Mark these live leases expired and give their slots back; how many. Lock order: the assignment
    rows first (here), then the work items (_give_back_slots)."""
    if connection.features.has_select_for_update_skip_locked:
        live = live.select_for_update(skip_locked=True)
    ordered = live.order_by("id").values_list("id", "work_item_id")
    rows = list(ordered[:limit] if limit is not None else ordered)
    if not rows:
        return 0
    Assignment.objects.filter(pk__in=[pk for pk, _ in rows]).update(status=AssignmentStatus.EXPIRED)
    _give_back_slots(Counter(item_id for _, item_id in rows))
    return len(rows)


@transaction.atomic
def assignment_release_expired(
    *, now: datetime | None = None, project: Project | None = None, limit: int = 5000
) -> int:
    """Return the slots of lapsed leases to the pool; the number of leases released."""
    now = now or timezone.now()
    lapsed = Assignment.objects.filter(status=AssignmentStatus.LEASED, expires_at__lte=now)
    if project is not None:
        lapsed = lapsed.filter(project=project)
    return _expire_leases(lapsed, limit)


@transaction.atomic
def assignment_release_worker(*, project: Project, worker_id: int) -> int:
    """Release every live lease of one worker in a project (they were removed, or their role no longer
    labels): the slots go back to the pool at once instead of when the leases lapse."""
    live = Assignment.objects.filter(project=project, worker_id=worker_id, status=AssignmentStatus.LEASED)
    return _expire_leases(live)


@transaction.atomic
def assignment_skip(*, assignment: Assignment, reason: str, now: datetime | None = None) -> Assignment:
    """Record a skip with its reason; the slot goes to another worker."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": ["Say why you skip this task."]})
    assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
    if assignment.status == AssignmentStatus.SUBMITTED:
        raise ValidationError("This task was already submitted; it cannot be skipped.")
    if assignment.status == AssignmentStatus.SKIPPED:
        return assignment
    held_slot = assignment.status == AssignmentStatus.LEASED
    assignment.status = AssignmentStatus.SKIPPED
    assignment.skipped_at = now or timezone.now()
    assignment.skip_reason = reason[:500]
    assignment.save(update_fields=["status", "skipped_at", "skip_reason"])
    if held_slot:
        _give_back_slots(Counter({assignment.work_item_id: 1}))
    return assignment


# --- submitting -----------------------------------------------------------------------------------


def _parse_categories(categories: Any) -> int:
    if not isinstance(categories, list) or not all(isinstance(key, str) for key in categories):
        raise ValidationError({"categories": ["A list of harm category keys (empty for safe)."]})
    try:
        return mask_from_keys(categories)
    except UnknownCategoryError as exc:
        raise ValidationError({"categories": [str(exc)]}) from None


def _parse_choice(payload: dict[str, Any], field: str) -> int:
    value = payload.get(field)
    if isinstance(value, bool) or value not in (0, 1):
        raise ValidationError({field: ["Must be 0 or 1 (the response as shown: 0 = A, 1 = B)."]})
    return int(value)


def settled_safety(qa_pair_ids: Sequence[int]) -> dict[int, bool]:
    """Stage-1 safety per QA pair as the workers settled it (their consensus, or an admin's
    adjudication of it); pairs not settled yet are absent.

    This is the only safety a worker sees or is held to in stage 2: an expert (gold) verdict would tell
    a worker the gold answer of a stage-1 item (annotate.fastpath has the same rule in SQL)."""
    rows = WorkItem.objects.filter(
        qa_pair_id__in=qa_pair_ids, settled_at__isnull=False, consensus_safe__isnull=False
    ).values_list("qa_pair_id", "consensus_safe")
    return {qa_pair_id: bool(safe) for qa_pair_id, safe in rows}


def known_safety(qa_pair_ids: Sequence[int]) -> dict[int, bool]:
    """Stage-1 safety per QA pair for admins and experts: the settled consensus, else the expert (gold)
    label. Never shown to workers (settled_safety is theirs)."""
    safety: dict[int, bool] = {}
    rows = QAPair.objects.filter(pk__in=qa_pair_ids).values_list(
        "pk", "work_item__settled_at", "work_item__consensus_safe", "gold__is_safe"
    )
    for pk, settled_at, consensus_safe, gold_safe in rows:
        if settled_at is not None and consensus_safe is not None:
            safety[pk] = consensus_safe
        elif gold_safe is not None:
            safety[pk] = gold_safe
    return safety


def check_harmless_invariant(
    pair: ResponsePair, safer: int, safety: dict[int, bool], *, field: str = "safer_response_id"
) -> None:
    """Refuse a harmless answer (canonical order) that names the unsafe response of a pair with exactly
    one safe response, by the given safety (settled_safety for workers, known_safety for experts)."""
    if violates_harmless_invariant(safety.get(pair.qa_a_id), safety.get(pair.qa_b_id), safer):
        raise ValidationError({field: [HARMLESS_INVARIANT_MESSAGE]})


def _check_worker_invariant(pair: ResponsePair, safer: int) -> None:
    check_harmless_invariant(pair, safer, settled_safety([pair.qa_a_id, pair.qa_b_id]))


def _reacquire_lapsed_slot(assignment: Assignment, project: Project) -> None:
    """A late submit on a swept lease is accepted only if the item still has a free slot."""
    if not _take_slot(
        item_id=assignment.work_item_id, project_id=project.pk, stage=assignment.stage, uncapped_gold=True
    ):
        raise SlotTaken(
            "Your lease on this task expired and its place was given to another worker; "
            "your answer was not recorded. Ask for the next task."
        )


def _time_on_task_ms(assignment: Assignment, now: datetime) -> int:
    return max(0, int((now - assignment.leased_at).total_seconds() * 1000))


def _write_stage1_label(assignment: Assignment, payload: dict[str, Any], version: int, now: datetime) -> None:
    mask = _parse_categories(payload.get("categories"))
    qa_pair_id = assignment.work_item.qa_pair_id
    assert qa_pair_id is not None
    Stage1Label.objects.create(
        qa_pair_id=qa_pair_id,
        worker_id=assignment.worker_id,
        assignment=assignment,
        categories=mask,
        is_safe=mask == 0,
        guideline_version=version,
        time_on_task_ms=_time_on_task_ms(assignment, now),
    )


def _canonical_choices(assignment: Assignment, payload: dict[str, Any]) -> tuple[int, int]:
    """Map the ids the worker saw (0 = A, 1 = B) to the pair's canonical order."""
    flip = 1 if assignment.swapped else 0
    return _parse_choice(payload, "better_response_id") ^ flip, _parse_choice(
        payload, "safer_response_id"
    ) ^ flip


def _write_stage2_label(assignment: Assignment, payload: dict[str, Any], version: int, now: datetime) -> None:
    pair = assignment.work_item.response_pair
    assert pair is not None
    better, safer = _canonical_choices(assignment, payload)
    _check_worker_invariant(pair, safer)
    Stage2Label.objects.create(
        response_pair=pair,
        worker_id=assignment.worker_id,
        assignment=assignment,
        better=better,
        safer=safer,
        guideline_version=version,
        time_on_task_ms=_time_on_task_ms(assignment, now),
    )


def _lock_for_submit(assignment: Assignment) -> None:
    """Lock the assignment row and refresh what a sweep or a skip may have changed since the caller
    read it, and the project's overlap, which an admin may have changed. Its item, stage and worker
    never change, so the caller's instance, with the relations its access helper loaded, serves the
    rest of the submit."""
    project = assignment.project
    (
        assignment.status,
        assignment.leased_at,
        project.overlap_stage1,
        project.overlap_stage2,
    ) = (
        Assignment.objects.select_for_update(of=("self",))
        .filter(pk=assignment.pk)
        .values_list("status", "leased_at", "project__overlap_stage1", "project__overlap_stage2")
        .get()
    )


def _count_label(item_id: int) -> tuple[int, bool]:
    """Count one more label on the item: its new count and whether it is already settled."""
    if not connection.features.can_return_columns_from_insert:  # SQLite before 3.35
        WorkItem.objects.filter(pk=item_id).update(labels_count=F("labels_count") + 1)
        count, settled_at = (
            WorkItem.objects.filter(pk=item_id).values_list("labels_count", "settled_at").get()
        )
        return count, settled_at is not None
    # One statement instead of an update and a read: this runs on every submit. The same RETURNING
    # support that INSERT ... RETURNING needs (PostgreSQL, SQLite 3.35+).
    table = connection.ops.quote_name(WorkItem._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET labels_count = labels_count + 1 WHERE id = %s RETURNING labels_count, settled_at",
            [item_id],
        )
        count, settled_at = cursor.fetchone()
    return count, settled_at is not None


@transaction.atomic
def label_submit(
    *, assignment: Assignment, payload: dict[str, Any], now: datetime | None = None
) -> Assignment:
    """Store the worker's answer for a leased task; a second submit revises it until the item settles.

    Returns the same assignment, brought up to date (status, submitted_at), with the relations the
    caller loaded, so it can be shown without reading it again.
    """
    now = now or timezone.now()
    _lock_for_submit(assignment)
    if assignment.status == AssignmentStatus.SUBMITTED:
        label_revise(assignment=assignment, payload=payload)
        return assignment
    if assignment.status == AssignmentStatus.SKIPPED:
        raise ValidationError("This task was skipped; ask for the next task.")
    project = assignment.project
    if assignment.status == AssignmentStatus.EXPIRED:
        _reacquire_lapsed_slot(assignment, project)
    writer = _write_stage1_label if assignment.stage == Stage.CLASSIFY else _write_stage2_label
    writer(assignment, payload, project.guideline_version, now)
    Assignment.objects.filter(pk=assignment.pk).update(status=AssignmentStatus.SUBMITTED, submitted_at=now)
    labels_count, settled = _count_label(assignment.work_item_id)
    # The item's other columns are fixed (stage, its QA or response pair) or written by the settling
    # below with update_fields, so the instance the caller loaded serves.
    item = assignment.work_item
    item.labels_count = labels_count
    if labels_count >= project.overlap_for(item.stage) and not settled:
        work_item_settle(item=item, project=project, now=now)
    assignment.status = AssignmentStatus.SUBMITTED
    assignment.submitted_at = now
    return assignment


def label_submit_for_worker(
    *, worker: Any, assignment_id: int, payload: dict[str, Any], now: datetime | None = None
) -> Assignment:
    """label_submit for the worker's assignment `assignment_id` (anyone else's, or none, is a 404).

    An answer on a live lease, the common case, is one prepared statement on PostgreSQL
    (annotate.fastpath); every other case, and every other database, takes label_submit.
    """
    now = now or timezone.now()
    if fastpath.enabled():
        with transaction.atomic():
            done = _submit_with_statement(
                worker_id=worker.pk, assignment_id=assignment_id, payload=payload, now=now
            )
            if done is not None:
                _settle_if_complete(done, now)
                return done
    assignment = get_assignment_for_worker(worker, assignment_id)
    return label_submit(assignment=assignment, payload=payload, now=now)


def _submit_with_statement(
    *, worker_id: int, assignment_id: int, payload: dict[str, Any], now: datetime
) -> Assignment | None:
    """The fast path's submit, or None when label_submit must decide (it also reports bad payloads,
    after the access check, so that someone else's assignment stays a 404 whatever is sent)."""
    try:
        if "categories" in payload:
            mask = _parse_categories(payload["categories"])
            return fastpath.submit_stage1(
                assignment_id=assignment_id, worker_id=worker_id, categories=mask, now=now
            )
        better, safer = (
            _parse_choice(payload, "better_response_id"),
            _parse_choice(payload, "safer_response_id"),
        )
    except ValidationError:
        return None
    return fastpath.submit_stage2(
        assignment_id=assignment_id, worker_id=worker_id, better_shown=better, safer_shown=safer, now=now
    )


def _settle_if_complete(assignment: Assignment, now: datetime) -> None:
    """Settle the item if this was its last label (its row is locked by the label's count)."""
    item, project = assignment.work_item, assignment.project
    if item.labels_count >= project.overlap_for(item.stage) and item.settled_at is None:
        work_item_settle(item=item, project=project, now=now)


@transaction.atomic
def label_revise(*, assignment: Assignment, payload: dict[str, Any]) -> None:
    """Change a submitted answer while its item is not settled (settled consensus is final)."""
    item = WorkItem.objects.select_for_update().get(pk=assignment.work_item_id)
    if item.settled_at is not None or item.needs_adjudication:
        raise ValidationError("This item is already settled; its labels can no longer be changed.")
    if assignment.stage == Stage.CLASSIFY:
        mask = _parse_categories(payload.get("categories"))
        Stage1Label.objects.filter(assignment=assignment).update(
            categories=mask, is_safe=mask == 0, updated_at=timezone.now()
        )
        return
    pair = item.response_pair
    assert pair is not None
    better, safer = _canonical_choices(assignment, payload)
    _check_worker_invariant(pair, safer)
    Stage2Label.objects.filter(assignment=assignment).update(
        better=better, safer=safer, updated_at=timezone.now()
    )


# --- settling -------------------------------------------------------------------------------------


def majority(votes: Iterable[int]) -> int | None:
    """The value more than half the votes agree on, or None (a tie or a split)."""
    counts = Counter(votes)
    total = sum(counts.values())
    if not total:
        return None
    value, count = counts.most_common(1)[0]
    return value if count * 2 > total else None


def stage1_consensus(masks: Sequence[int]) -> tuple[int, bool] | None:
    """Per-category majority and is_safe majority; None when they disagree or is_safe ties."""
    safe = majority(int(mask == 0) for mask in masks)
    if safe is None:
        return None
    consensus_mask = 0
    for bit in range(14):
        if majority(int(bool(mask & (1 << bit))) for mask in masks) == 1:
            consensus_mask |= 1 << bit
    # An "unsafe" majority that agrees on no category (or the reverse) cannot be exported as a
    # BeaverTails row, whose is_safe is derived from its categories: it goes to adjudication.
    if bool(safe) != (consensus_mask == 0):
        return None
    return consensus_mask, bool(safe)


def _settle_stage1(item: WorkItem, now: datetime) -> bool:
    assert item.qa_pair_id is not None
    if fastpath.enabled():
        masks = fastpath.stage1_votes(item.qa_pair_id)
    else:
        masks = list(
            Stage1Label.objects.filter(qa_pair_id=item.qa_pair_id).values_list("categories", flat=True)
        )
    consensus = stage1_consensus(masks)
    if consensus is None:
        return False
    item.consensus_categories, item.consensus_safe = consensus
    return True


def _settle_stage2(item: WorkItem, now: datetime) -> bool:
    assert item.response_pair_id is not None
    if fastpath.enabled():
        votes = fastpath.stage2_votes(item.response_pair_id)
    else:
        votes = list(
            Stage2Label.objects.filter(response_pair_id=item.response_pair_id).values_list("better", "safer")
        )
    better = majority(b for b, _ in votes)
    safer = majority(s for _, s in votes)
    if better is None or safer is None:
        return False
    item.consensus_better, item.consensus_safer = better, safer
    return True


_CONSENSUS_FIELDS = [
    "settled_at",
    "is_open",
    "consensus_categories",
    "consensus_safe",
    "consensus_better",
    "consensus_safer",
]


def work_item_settle(*, item: WorkItem, project: Project, now: datetime) -> None:
    """Settle an item whose labels are all in: its consensus, or the adjudication queue. A settled
    stage-1 response is paired with the prompt's other settled responses for stage 2.

    A settled regular item leaves the open queue; a settled gold item stays in it, to measure the
    workers who have not answered it yet (their labels no longer change its consensus)."""
    settle = _settle_stage1 if item.stage == Stage.CLASSIFY else _settle_stage2
    statements = fastpath.enabled()  # on PostgreSQL the follow-up is prepared statements too
    if not settle(item, now):
        item.needs_adjudication = True
        if statements:
            fastpath.save_needs_adjudication(item.pk)
        else:
            item.save(update_fields=["needs_adjudication"])
        return
    item.settled_at = now
    item.is_open = item.is_gold
    if statements:
        fastpath.save_settled(item)
    else:
        item.save(update_fields=_CONSENSUS_FIELDS)
    if item.stage != Stage.CLASSIFY or item.qa_pair is None:
        return
    if statements:
        fastpath.pair_settled_responses(project=project, prompt_id=item.qa_pair.prompt_id, now=now)
    else:
        response_pairs_create_for_prompt(project=project, prompt_id=item.qa_pair.prompt_id)


@transaction.atomic
def work_items_reconcile(*, project: Project, stage: int, now: datetime | None = None) -> dict[str, int]:
    """Bring a stage's queue in line with the project's overlap k as the database has it now (after an
    admin changed it): every unsettled item is open iff it is gold or has fewer than k leases and labels;
    an item whose labels reach k settles (or goes to adjudication); an item that went to adjudication
    with fewer labels than a raised k gets more labels instead. Settled items stay settled (a settled
    consensus is final). Idempotent; what it did, by count."""
    now = now or timezone.now()
    k = (
        Project.objects.filter(pk=project.pk)
        .values_list("overlap_stage1" if stage == Stage.CLASSIFY else "overlap_stage2", flat=True)
        .get()
    )
    unsettled = WorkItem.objects.filter(project=project, stage=stage, settled_at__isnull=True)
    # Lock order as everywhere: the work items before the prompt rows that settling may lock.
    list(unsettled.select_for_update().values_list("pk", flat=True))
    undecided = unsettled.filter(needs_adjudication=True, labels_count__lt=k).update(needs_adjudication=False)
    should_be_open = Q(is_gold=True) | Q(taken__lt=k)
    opened = unsettled.filter(should_be_open, is_open=False).update(is_open=True)
    closed = unsettled.filter(~should_be_open, is_open=True).update(is_open=False)
    settled = 0
    for item in unsettled.filter(labels_count__gte=k, needs_adjudication=False).select_related("qa_pair"):
        work_item_settle(item=item, project=project, now=now)
        settled += 1
    return {"opened": opened, "closed": closed, "settled": settled, "back_from_adjudication": undecided}


# No savepoint when nested: it runs inside a settling submit, which fails as a whole anyway, and a
# savepoint costs two round trips on every third submit.
@transaction.atomic(savepoint=False)
def response_pairs_create_for_prompt(*, project: Project, prompt_id: int) -> list[ResponsePair]:
    """Pair up the prompt's responses whose stage-1 consensus is settled and queue them for stage 2."""
    # Two responses of one prompt settling at once must each see the other's consensus (or neither
    # would pair them) and must not both create the pairs still missing (a unique violation): the
    # prompt row serialises them. Lock order: work item (held by the settling submit), then prompt.
    list(Prompt.objects.select_for_update().filter(pk=prompt_id).values_list("pk", flat=True))
    settled_ids = sorted(
        QAPair.objects.filter(prompt_id=prompt_id, work_item__settled_at__isnull=False).values_list(
            "pk", flat=True
        )
    )
    if len(settled_ids) < 2:
        return []
    existing = set(ResponsePair.objects.filter(prompt_id=prompt_id).values_list("qa_a_id", "qa_b_id"))
    room = None if project.max_pairs_per_prompt is None else project.max_pairs_per_prompt - len(existing)
    new_pairs: list[ResponsePair] = []
    for qa_a, qa_b in combinations(settled_ids, 2):
        if room is not None and len(new_pairs) >= room:
            break
        if (qa_a, qa_b) in existing:
            continue
        new_pairs.append(ResponsePair(project=project, prompt_id=prompt_id, qa_a_id=qa_a, qa_b_id=qa_b))
    if not new_pairs:
        return []
    if connection.features.can_return_rows_from_bulk_insert:
        created = ResponsePair.objects.bulk_create(new_pairs)
    else:  # SQLite before 3.35 gives no ids back from a bulk insert
        for pair in new_pairs:
            pair.save()
        created = new_pairs
    WorkItem.objects.bulk_create(
        [WorkItem(project=project, stage=Stage.RANK, response_pair=pair) for pair in created]
    )
    return created
