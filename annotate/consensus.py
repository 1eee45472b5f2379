"""Consensus beyond the majority vote: the adjudication queue, admin decisions, and Dawid-Skene.

Majority settling lives in annotate/assignment.py. Items whose labels do not settle (a tie, or an
"unsafe" majority that agrees on no category) are flagged `needs_adjudication`; an admin decides them
here. The decision is recorded as an `Adjudication` and becomes the item's consensus; the workers'
labels are kept as they are. Dawid-Skene (a pure function below) weighs workers by their estimated
reliability; the agreement report compares it with the majority vote on gold. See docs/consensus.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from annotate.assignment import check_harmless_invariant, known_safety, response_pairs_create_for_prompt
from annotate.categories import HARM_CATEGORIES, UnknownCategoryError, mask_from_keys
from annotate.models import Adjudication, Project, Stage, Stage1Label, Stage2Label, WorkItem

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------------
# Dawid-Skene


@dataclass(frozen=True)
class DawidSkeneResult:
    """What EM estimated: per-unit class posteriors and per-worker confusion matrices.

    ``posteriors[u, k]`` is P(true class of ``units[u]`` = k); ``confusion[w, k, l]`` is P(worker
    ``workers[w]`` says l | the true class is k), rows summing to 1; ``priors[k]`` the class shares.
    """

    units: IntArray
    workers: IntArray
    posteriors: FloatArray
    confusion: FloatArray
    priors: FloatArray
    iterations: int
    converged: bool
    log_likelihood: float

    def labels(self) -> IntArray:
        """The most probable class of each unit (ties go to the lower class)."""
        return np.asarray(self.posteriors.argmax(axis=1), dtype=np.int64)


def dense_codes(ids: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """(distinct ids ascending, each element's code 0..n-1), like np.unique(..., return_inverse=True).

    Database ids are compact non-negative integers, for which a lookup table is O(n) instead of a sort.
    """
    values = np.asarray(ids).ravel()
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if np.issubdtype(values.dtype, np.integer):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 4 * values.size + 65_536:
            present = np.zeros(hi - lo + 1, dtype=bool)
            present[values - lo] = True
            distinct = np.flatnonzero(present)
            lookup = np.full(hi - lo + 1, -1, dtype=np.int64)
            lookup[distinct] = np.arange(distinct.size)
            return (distinct + lo).astype(np.int64), lookup[values - lo]
    found = np.unique(values, return_inverse=True)
    return found[0].astype(np.int64), np.asarray(found[1], dtype=np.int64).ravel()


def dawid_skene(
    units: npt.ArrayLike,
    workers: npt.ArrayLike,
    values: npt.ArrayLike,
    n_classes: int,
    *,
    iterations: int = 100,
    tol: float = 1e-7,
    smoothing: float = 0.01,
) -> DawidSkeneResult:
    """Dawid and Skene (1979): EM over true classes and each worker's confusion matrix.

    Long form, one row per label: ``units``, ``workers`` (any integer ids) and ``values`` (class codes
    0..n_classes-1). Starts from the vote shares of each unit (the soft majority vote), so on data where
    every worker is equally reliable it returns the majority, and it stops when the log-likelihood
    changes by less than ``tol`` (relative) or after ``iterations`` rounds. ``smoothing`` is a
    pseudo-count added to every confusion cell, so a worker seen only a few times never gets a
    probability of exactly 0 or 1. No Django, no database.

    Each round is a few bincounts over the labels (O(L K) per round), so a million labels take well
    under a second for a binary variable.
    """
    if n_classes < 2:
        raise ValueError("n_classes must be at least 2")
    u_ids, w_ids, v = (np.asarray(a).ravel() for a in (units, workers, values))
    if not u_ids.shape == w_ids.shape == v.shape:
        raise ValueError("units, workers and values differ in length")
    codes = v.astype(np.int64)
    if v.size and (codes.min() < 0 or codes.max() >= n_classes or not np.array_equal(codes, v)):
        raise ValueError(f"values must be class codes in 0..{n_classes - 1}")
    v = codes
    unit_ids, u = dense_codes(u_ids)
    worker_ids, w = dense_codes(w_ids)
    n_units, n_workers, k = unit_ids.size, worker_ids.size, n_classes
    if v.size == 0:
        return DawidSkeneResult(
            unit_ids, worker_ids, np.zeros((0, k)), np.zeros((0, k, k)), np.full(k, 1.0 / k), 0, True, 0.0
        )

    cell = w * k + v  # the (worker, given label) cell of each label
    cell_totals = np.bincount(cell, minlength=n_workers * k).astype(np.float64)
    # Soft majority vote as the starting posteriors (class-major: one contiguous row per class).
    posteriors = np.empty((k, n_units))
    for c in range(k):
        posteriors[c] = np.bincount(u, weights=v == c, minlength=n_units)
    posteriors /= posteriors.sum(axis=0)

    log_likelihood = -np.inf
    converged = False
    rounds = 0
    confusion = np.empty((n_workers, k, k))
    priors = np.full(k, 1.0 / k)
    for _ in range(iterations):
        rounds += 1
        # M-step: class shares and confusion counts weighted by the current posteriors. The last
        # class's counts are what the others leave of each cell's total (one pass over labels fewer).
        priors = (posteriors.sum(axis=1) + smoothing) / (n_units + k * smoothing)
        rest = cell_totals.copy()
        for true in range(k - 1):
            counts = np.bincount(cell, weights=posteriors[true][u], minlength=n_workers * k)
            rest -= counts
            confusion[:, true, :] = counts.reshape(n_workers, k)
        confusion[:, k - 1, :] = np.maximum(rest, 0.0).reshape(n_workers, k)
        confusion += smoothing
        confusion /= confusion.sum(axis=2, keepdims=True)
        # E-step: log P(class) + sum over the unit's labels of log P(label | class), normalised.
        log_conf = np.log(confusion)
        log_post = np.empty((k, n_units))
        for true in range(k):
            log_post[true] = np.log(priors[true]) + np.bincount(
                u, weights=log_conf[:, true, :].ravel()[cell], minlength=n_units
            )
        top = log_post.max(axis=0)
        norm = top + np.log(np.exp(log_post - top).sum(axis=0))
        posteriors = np.exp(log_post - norm)
        previous, log_likelihood = log_likelihood, float(norm.sum())
        if abs(log_likelihood - previous) <= tol * abs(log_likelihood):
            converged = True
            break
    return DawidSkeneResult(
        unit_ids,
        worker_ids,
        np.ascontiguousarray(posteriors.T),
        confusion,
        priors,
        rounds,
        converged,
        log_likelihood,
    )


# --------------------------------------------------------------------------------------------------
# The adjudication queue


@dataclass(frozen=True)
class AdjudicationCase:
    """An item waiting for an admin, with what its workers said (vote counts, not who said what)."""

    item: WorkItem
    votes: dict[str, Any]


def _queue(project: Project, stage: int | None) -> QuerySet[WorkItem]:
    # Matches the partial index workitem_adjudication_queue: (project, stage, id) where
    # needs_adjudication and settled_at is null.
    items = WorkItem.objects.filter(project=project, needs_adjudication=True, settled_at__isnull=True)
    if stage is not None:
        items = items.filter(stage=stage)
    return items.order_by("stage", "id")


def adjudication_queue_count(*, project: Project, stage: int | None = None) -> int:
    return _queue(project, stage).count()


def _stage1_votes(masks: Sequence[int]) -> dict[str, Any]:
    return {
        "labels": len(masks),
        "is_safe": {"safe": sum(1 for m in masks if m == 0), "unsafe": sum(1 for m in masks if m != 0)},
        "categories": {c.key: n for c in HARM_CATEGORIES if (n := sum(1 for m in masks if m & (1 << c.id)))},
    }


def _stage2_votes(answers: Sequence[tuple[int, int]]) -> dict[str, Any]:
    return {
        "labels": len(answers),
        "better": [sum(1 for b, _ in answers if b == side) for side in (0, 1)],
        "safer": [sum(1 for _, s in answers if s == side) for side in (0, 1)],
    }


def adjudication_queue(
    *, project: Project, stage: int | None = None, limit: int = 100, offset: int = 0
) -> list[AdjudicationCase]:
    """Items waiting for an admin's decision, oldest first, each with its labels' vote counts.

    `offset` and `limit` page the queue in SQL (OFFSET/LIMIT over the (stage, id) order, which is total,
    so a page is the same rows whichever way it is read): a page fetches only its own rows and their
    labels, however deep it is. Three queries whatever the page size: the items (with what they show),
    then the labels of each stage's items.
    """
    if offset < 0 or limit < 0:
        raise ValueError("offset and limit must not be negative")
    items = list(
        _queue(project, stage).select_related(
            "qa_pair__prompt", "response_pair__prompt", "response_pair__qa_a", "response_pair__qa_b"
        )[offset : offset + limit]
    )
    masks: dict[int, list[int]] = {}
    qa_ids = [item.qa_pair_id for item in items if item.qa_pair_id is not None]
    for qa_pair_id, mask in Stage1Label.objects.filter(qa_pair_id__in=qa_ids).values_list(
        "qa_pair_id", "categories"
    ):
        masks.setdefault(qa_pair_id, []).append(mask)
    answers: dict[int, list[tuple[int, int]]] = {}
    pair_ids = [item.response_pair_id for item in items if item.response_pair_id is not None]
    for pair_id, better, safer in Stage2Label.objects.filter(response_pair_id__in=pair_ids).values_list(
        "response_pair_id", "better", "safer"
    ):
        answers.setdefault(pair_id, []).append((better, safer))
    cases = []
    for item in items:
        if item.stage == Stage.CLASSIFY:
            votes = _stage1_votes(masks.get(item.qa_pair_id or 0, []))
        else:
            votes = _stage2_votes(answers.get(item.response_pair_id or 0, []))
        cases.append(AdjudicationCase(item=item, votes=votes))
    return cases


def adjudication_item(*, project: Project, work_item_id: int) -> WorkItem:
    """A work item of this project (404 otherwise), for an admin's decision."""
    item = (
        WorkItem.objects.select_related("qa_pair", "response_pair")
        .filter(pk=work_item_id, project=project)
        .first()
    )
    if item is None:
        raise Http404("No such work item in this project.")
    return item


# --------------------------------------------------------------------------------------------------
# Deciding


def _stage1_decision(categories: Any, better: Any, safer: Any) -> int:
    if better is not None or safer is not None:
        raise ValidationError("A stage-1 item is decided with categories, not better/safer.")
    if not isinstance(categories, list | tuple) or not all(isinstance(key, str) for key in categories):
        raise ValidationError({"categories": ["A list of harm category keys (empty for safe)."]})
    try:
        return mask_from_keys(categories)
    except UnknownCategoryError as exc:
        raise ValidationError({"categories": [str(exc)]}) from None


def _stage2_decision(item: WorkItem, categories: Any, better: Any, safer: Any) -> tuple[int, int]:
    if categories is not None:
        raise ValidationError("A stage-2 item is decided with better and safer, not categories.")
    for name, value in (("better", better), ("safer", safer)):
        if isinstance(value, bool) or value not in (0, 1):
            raise ValidationError(
                {name: ["Must be 0 or 1 (the pair's canonical order: 0 = the first response)."]}
            )
    pair = item.response_pair
    assert pair is not None
    check_harmless_invariant(pair, int(safer), known_safety([pair.qa_a_id, pair.qa_b_id]), field="safer")
    return int(better), int(safer)


@transaction.atomic
def adjudication_decide(
    *,
    item: WorkItem,
    admin: Any,
    categories: list[str] | None = None,
    better: int | None = None,
    safer: int | None = None,
    note: str = "",
    now: datetime | None = None,
) -> Adjudication:
    """Record an admin's decision on an item that did not settle and make it the item's consensus.

    Stage 1 takes ``categories`` (keys; empty = safe) and then pairs the prompt's settled responses
    for stage 2, as a settling label would. Stage 2 takes ``better`` and ``safer`` in the pair's
    canonical order and must keep the invariant: when exactly one response is safe, it is the safer.
    The workers' labels are kept as they are.
    """
    now = now or timezone.now()
    # Lock order as in the assignment engine: the work item, then (for stage 1) the prompt.
    locked = (
        WorkItem.objects.select_for_update(of=("self",))
        .select_related("project", "qa_pair", "response_pair")
        .get(pk=item.pk)
    )
    if locked.settled_at is not None:
        raise ValidationError("This item is already settled.")
    if not locked.needs_adjudication:
        raise ValidationError("This item does not need adjudication: its labels are not all in yet.")
    adjudication = Adjudication(work_item=locked, decided_by=admin, decided_at=now, note=note.strip())
    if locked.stage == Stage.CLASSIFY:
        mask = _stage1_decision(categories, better, safer)
        adjudication.categories, adjudication.is_safe = mask, mask == 0
        locked.consensus_categories, locked.consensus_safe = mask, mask == 0
    else:
        adjudication.better, adjudication.safer = _stage2_decision(locked, categories, better, safer)
        locked.consensus_better, locked.consensus_safer = adjudication.better, adjudication.safer
    adjudication.save()
    locked.settled_at = now
    locked.save(
        update_fields=[
            "settled_at",
            "consensus_categories",
            "consensus_safe",
            "consensus_better",
            "consensus_safer",
        ]
    )
    if locked.stage == Stage.CLASSIFY and locked.qa_pair is not None:
        response_pairs_create_for_prompt(project=locked.project, prompt_id=locked.qa_pair.prompt_id)
    return adjudication
