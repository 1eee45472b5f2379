"""Reads for moderation: the model measured against the humans who made its labels (the BeaverTails
paper's model-versus-human comparison, on the project's own data), and where the two disagree most.

On the QA pairs whose stage-1 consensus is settled and that the model scored, per category and for
"flagged" (any category):

- the model against the consensus: Cohen's kappa;
- the average annotator against the consensus of the others: Cohen's kappa pooled over every label
  whose item has at least two other labels with a strict majority (leave-one-out, so no annotator is
  compared with a consensus their own label helped make);
- the humans among themselves: Krippendorff's alpha over their labels, and again with the model added as
  one more rater (does the model sit inside the human spread, or outside it?).

The model "agrees with the consensus better than the average annotator" when its kappa is higher by more
than AGREEMENT_MARGIN, worse when lower by more than it, and about as well otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Case, ExpressionWrapper, F, FloatField, Q, QuerySet, Value, When

from annotate.agreement import Metric, Reason, cohen_kappa, krippendorff_alpha_long
from annotate.categories import HARM_CATEGORIES
from annotate.models import Project, Stage, Stage1Label, WorkItem
from moderation.models import ModerationScore, ScoringRun
from training.models import RegisteredModel

AGREEMENT_MARGIN = 0.02
# The model's rater id in the alpha with the model (workers' ids are positive).
MODEL_RATER = -1


@dataclass(frozen=True)
class _Data:
    items: np.ndarray  # QA pair ids with a settled consensus and a model score
    consensus: np.ndarray  # their consensus masks
    model: np.ndarray  # the model's masks
    label_items: np.ndarray  # every stage-1 label on those items: its QA pair
    label_workers: np.ndarray
    label_masks: np.ndarray


def _load(project: Project, model: RegisteredModel) -> _Data:
    settled = dict(
        WorkItem.objects.filter(
            project=project,
            stage=Stage.CLASSIFY,
            settled_at__isnull=False,
            consensus_categories__isnull=False,
        ).values_list("qa_pair_id", "consensus_categories")
    )
    scored = dict(
        ModerationScore.objects.filter(model=model, qa_pair__project=project).values_list(
            "qa_pair_id", "categories"
        )
    )
    items = np.asarray(sorted(set(settled) & set(scored)), dtype=np.int64)
    labels = np.asarray(
        list(
            Stage1Label.objects.filter(qa_pair_id__in=items.tolist()).values_list(
                "qa_pair_id", "worker_id", "categories"
            )
        )
        if items.size
        else [],
        dtype=np.int64,
    ).reshape(-1, 3)
    return _Data(
        items=items,
        consensus=np.asarray([settled[i] for i in items.tolist()], dtype=np.int64),
        model=np.asarray([scored[i] for i in items.tolist()], dtype=np.int64),
        label_items=labels[:, 0],
        label_workers=labels[:, 1],
        label_masks=labels[:, 2],
    )


def _bits(masks: np.ndarray, variable: int | None) -> np.ndarray:
    """0/1 per mask: "flagged" (any category) when variable is None, else that category's bit."""
    if variable is None:
        return (masks != 0).astype(np.int64)
    return ((masks >> variable) & 1).astype(np.int64)


def _leave_one_out_pairs(items: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each label, the strict majority of the other labels of its item), where at least two others
    exist and they do not tie."""
    if items.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, codes = np.unique(items, return_inverse=True)
    count = np.bincount(codes)[codes]
    ones = np.bincount(codes, weights=bits).astype(np.int64)[codes]
    others, others_ones = count - 1, ones - bits
    margin = 2 * others_ones - others  # > 0: the others say 1; < 0: they say 0; 0: tied
    usable = (others >= 2) & (margin != 0)
    return bits[usable], (margin[usable] > 0).astype(np.int64)


def _verdict(model: Metric, annotator: Metric) -> str | None:
    if model.value is None or annotator.value is None:
        return None
    if model.value > annotator.value + AGREEMENT_MARGIN:
        return "better"
    if model.value < annotator.value - AGREEMENT_MARGIN:
        return "worse"
    return "same"


def _row(data: _Data, variable: int | None) -> dict[str, Any]:
    consensus, model = _bits(data.consensus, variable), _bits(data.model, variable)
    label_bits = _bits(data.label_masks, variable)
    model_kappa = cohen_kappa(consensus, model) if data.items.size else Metric.undefined(Reason.NO_DATA)
    own, others = _leave_one_out_pairs(data.label_items, label_bits)
    annotator_kappa = cohen_kappa(own, others) if own.size else Metric.undefined(Reason.NO_DATA)
    humans = krippendorff_alpha_long(data.label_items, label_bits)
    with_model = krippendorff_alpha_long(
        np.concatenate([data.label_items, data.items]), np.concatenate([label_bits, model])
    )
    return {
        "variable": "flagged" if variable is None else HARM_CATEGORIES[variable].key,
        "label": "Flagged (any category)" if variable is None else HARM_CATEGORIES[variable].label,
        "items": int(data.items.size),
        "consensus_positive": int(consensus.sum()),
        "model_positive": int(model.sum()),
        "model_kappa": model_kappa.as_dict(),
        "annotator_kappa": annotator_kappa.as_dict(),
        "annotator_comparisons": int(own.size),
        "alpha_humans": humans.as_dict(),
        "alpha_with_model": with_model.as_dict(),
        "model_vs_annotators": _verdict(model_kappa, annotator_kappa),
    }


def human_agreement(*, project: Project, model: RegisteredModel) -> dict[str, Any]:
    """The model against the project's human consensus and its annotators (module doc), per variable."""
    data = _load(project, model)
    return {
        "model": model.pk,
        "items": int(data.items.size),
        "labels": int(data.label_items.size),
        "workers": int(np.unique(data.label_workers).size),
        "margin": AGREEMENT_MARGIN,
        "rows": [_row(data, None), *(_row(data, c.id) for c in HARM_CATEGORIES)],
    }


def disagreements(*, project: Project, model: RegisteredModel) -> QuerySet[ModerationScore]:
    """Scored QA pairs where the model's flagged and the settled human consensus differ, the model's most
    confident first (its unsafe score when it flagged, one minus it when it did not): the likeliest label
    errors, or the model's worst mistakes."""
    unsafe_by_consensus = Q(qa_pair__work_item__consensus_categories__gt=0)
    return (
        ModerationScore.objects.filter(
            model=model,
            qa_pair__project=project,
            qa_pair__work_item__settled_at__isnull=False,
            qa_pair__work_item__consensus_categories__isnull=False,
        )
        .filter((Q(flagged=True) & ~unsafe_by_consensus) | (Q(flagged=False) & unsafe_by_consensus))
        .annotate(
            confidence=Case(
                When(flagged=True, then=F("unsafe_score")),
                default=ExpressionWrapper(Value(1.0) - F("unsafe_score"), output_field=FloatField()),
                output_field=FloatField(),
            ),
            consensus_categories=F("qa_pair__work_item__consensus_categories"),
        )
        .select_related("qa_pair__prompt")
        .order_by("-confidence", "qa_pair_id")
    )


def latest_runs(project: Project, *, limit: int = 10) -> QuerySet[ScoringRun]:
    return (
        ScoringRun.objects.filter(project=project)
        .select_related("model")
        .order_by("-created_at", "-pk")[:limit]
    )


def scored_count(project: Project, model: RegisteredModel) -> int:
    return ModerationScore.objects.filter(model=model, qa_pair__project=project).count()
