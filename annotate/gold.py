"""Gold quality control: expert labels on items, and each worker's accuracy against them.

Stage 1 is judged on the exact category set and is_safe. An expert label that says only "unsafe" with
no category (PKU-SafeRLHF gives no categories) is judged on is_safe alone. Stage 2 is judged on both
`better` and `safer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from annotate.assignment import check_harmless_invariant, known_safety
from annotate.audit import audit_history, audit_record
from annotate.categories import keys_from_mask, mask_from_keys
from annotate.models import (
    AuditAction,
    AuditEvent,
    GoldStage1Label,
    GoldStage2Label,
    Project,
    QAPair,
    ResponsePair,
    Stage1Label,
    Stage2Label,
    WorkItem,
)
from annotate.recompute import agreement_recompute_request


def _stage1_answer(gold: GoldStage1Label | None) -> dict[str, Any] | None:
    if gold is None:
        return None
    return {"categories": keys_from_mask(gold.categories), "is_safe": gold.is_safe, "source": gold.source}


def _stage2_answer(gold: GoldStage2Label | None) -> dict[str, Any] | None:
    if gold is None:
        return None
    return {"better": gold.better, "safer": gold.safer, "source": gold.source}


def _after_gold_change(project: Project) -> None:
    """Gold accuracy is computed from the gold answers whenever it is read (gold_scores); the stored
    agreement report keeps its own copy per worker, so it is recomputed."""
    agreement_recompute_request(project=project)


@transaction.atomic
def gold_stage1_set(
    *, qa_pair: QAPair, categories: list[str], source: str, changed_by: Any = None
) -> GoldStage1Label:
    """Make a QA pair a gold item with this expert category set (empty = safe). The change is kept in
    the audit log (who, when, the answer before and after)."""
    mask = mask_from_keys(categories)
    before = GoldStage1Label.objects.select_for_update().filter(qa_pair=qa_pair).first()
    old = _stage1_answer(before)
    gold, _ = GoldStage1Label.objects.update_or_create(
        qa_pair=qa_pair, defaults={"categories": mask, "is_safe": mask == 0, "source": source}
    )
    WorkItem.objects.filter(qa_pair=qa_pair).update(is_gold=True, is_open=True)
    new = _stage1_answer(gold)
    if new != old:
        audit_record(
            project=qa_pair.project,
            actor=changed_by,
            action=AuditAction.GOLD_SET,
            target=f"qa_pair:{qa_pair.pk}",
            old=old,
            new=new,
        )
        _after_gold_change(qa_pair.project)
    return gold


@transaction.atomic
def gold_stage2_set(
    *, response_pair: ResponsePair, better: int, safer: int, source: str, changed_by: Any = None
) -> GoldStage2Label:
    """Make a response pair a gold item with this expert preference (canonical order: 0 = qa_a).

    The stage-2 invariant holds for experts as for workers: when exactly one response is safe (by its
    settled stage-1 consensus, else its stage-1 gold), the expert's harmless answer must be that one, or
    every worker held to the invariant would be marked wrong."""
    if isinstance(better, bool) or isinstance(safer, bool) or better not in (0, 1) or safer not in (0, 1):
        raise ValidationError("better and safer must be 0 or 1.")
    check_harmless_invariant(
        response_pair,
        safer,
        known_safety([response_pair.qa_a_id, response_pair.qa_b_id]),
        field="safer",
    )
    before = GoldStage2Label.objects.select_for_update().filter(response_pair=response_pair).first()
    old = _stage2_answer(before)
    gold, _ = GoldStage2Label.objects.update_or_create(
        response_pair=response_pair, defaults={"better": better, "safer": safer, "source": source}
    )
    WorkItem.objects.filter(response_pair=response_pair).update(is_gold=True, is_open=True)
    new = _stage2_answer(gold)
    if new != old:
        audit_record(
            project=response_pair.project,
            actor=changed_by,
            action=AuditAction.GOLD_SET,
            target=f"response_pair:{response_pair.pk}",
            old=old,
            new=new,
        )
        _after_gold_change(response_pair.project)
    return gold


def gold_history(
    *, project: Project, qa_pair_id: int | None = None, response_pair_id: int | None = None
) -> list[AuditEvent]:
    """The recorded changes of one item's gold answer, newest first."""
    target = f"qa_pair:{qa_pair_id}" if qa_pair_id is not None else f"response_pair:{response_pair_id}"
    return audit_history(project=project, target=target)


@dataclass(frozen=True)
class GoldScore:
    worker_id: int
    username: str
    answered: int
    correct: int
    flagged: bool

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None


def _stage1_tallies(project: Project) -> dict[int, list[Any]]:
    labels = Stage1Label.objects.filter(qa_pair__project=project, qa_pair__gold__isnull=False).values_list(
        "worker_id",
        "worker__username",
        "categories",
        "is_safe",
        "qa_pair__gold__categories",
        "qa_pair__gold__is_safe",
    )
    tallies: dict[int, list[Any]] = {}
    for worker_id, username, mask, is_safe, gold_mask, gold_safe in labels:
        safety_only = not gold_safe and gold_mask == 0
        correct = is_safe == gold_safe if safety_only else mask == gold_mask
        tally = tallies.setdefault(worker_id, [username, 0, 0])
        tally[1] += 1
        tally[2] += int(correct)
    return tallies


def _stage2_tallies(project: Project) -> dict[int, list[Any]]:
    labels = Stage2Label.objects.filter(
        response_pair__project=project, response_pair__gold__isnull=False
    ).values_list(
        "worker_id",
        "worker__username",
        "better",
        "safer",
        "response_pair__gold__better",
        "response_pair__gold__safer",
    )
    tallies: dict[int, list[Any]] = {}
    for worker_id, username, better, safer, gold_better, gold_safer in labels:
        tally = tallies.setdefault(worker_id, [username, 0, 0])
        tally[1] += 1
        tally[2] += int(better == gold_better and safer == gold_safer)
    return tallies


def gold_scores(project: Project, *, stage: int | None = None) -> list[GoldScore]:
    """Each worker's accuracy on gold items (both stages unless one is named), worst first.

    A worker is flagged, never removed, when they answered at least `gold_min_items` gold items and
    their accuracy is under the project's threshold.
    """
    merged: dict[int, list[Any]] = {}
    sources = (
        [_stage1_tallies, _stage2_tallies]
        if stage is None
        else [(_stage1_tallies, _stage2_tallies)[stage - 1]]
    )
    for tallies in (source(project) for source in sources):
        for worker_id, (username, answered, correct) in tallies.items():
            entry = merged.setdefault(worker_id, [username, 0, 0])
            entry[1] += answered
            entry[2] += correct
    scores = [
        GoldScore(
            worker_id=worker_id,
            username=username,
            answered=answered,
            correct=correct,
            flagged=answered >= project.gold_min_items
            and correct / answered < project.gold_accuracy_threshold,
        )
        for worker_id, (username, answered, correct) in merged.items()
    ]
    return sorted(scores, key=lambda s: (s.accuracy if s.accuracy is not None else 1.0, s.username))


def flagged_workers(project: Project) -> list[GoldScore]:
    return [score for score in gold_scores(project) if score.flagged]


__all__ = [
    "GoldScore",
    "flagged_workers",
    "gold_history",
    "gold_scores",
    "gold_stage1_set",
    "gold_stage2_set",
]
