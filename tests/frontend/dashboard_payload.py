"""Stored agreement report payloads shaped exactly as docs/agreement-report.md describes.

The dashboard only reads stored reports, so its tests build AgreementReport rows from these instead of
running the recompute. `sample_payload()` is a busy project with a few undefined metrics (value null
plus a reason) and one alert; `make_report()` stores one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model

from annotate.categories import CATEGORY_KEYS
from annotate.models import AgreementReport, Project, ResponsePair, Stage, Stage1Label, Stage2Label, WorkItem
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

COMPUTED_AT = dt.datetime(2026, 11, 29, 22, 10, tzinfo=dt.UTC)


def metric(value: float | None, n_units: int = 120, reason: str | None = None) -> dict[str, Any]:
    if value is None and reason is None:
        reason = "not enough data"
    return {"value": value, "n_units": n_units, "reason": reason}


def interval(value: float | None, half_width: float = 0.05, reason: str | None = None) -> dict[str, Any]:
    if value is None:
        return {
            "estimate": metric(None, 0, reason or "not enough data"),
            "low": None,
            "high": None,
            "level": 0.95,
            "n_resamples": 200,
            "n_valid": 0,
            "reason": reason or "not enough data",
        }
    return {
        "estimate": metric(value),
        "low": round(value - half_width, 4),
        "high": round(min(1.0, value + half_width), 4),
        "level": 0.95,
        "n_resamples": 200,
        "n_valid": 200,
        "reason": None,
    }


def variable_block(alpha: float | None, *, reason: str | None = None) -> dict[str, Any]:
    if alpha is None:
        return {
            "alpha": metric(None, 0, reason),
            "alpha_ci": interval(None, reason=reason),
            "fleiss_kappa": metric(None, 0, reason),
            "percent_agreement": metric(
                1.0 if reason == "no variation" else None, 40, None if reason == "no variation" else reason
            ),
            "gwet_ac1": metric(None, 0, reason),
        }
    return {
        "alpha": metric(alpha),
        "alpha_ci": interval(alpha),
        "fleiss_kappa": metric(round(alpha - 0.01, 4)),
        "percent_agreement": metric(round(0.5 + alpha / 2, 4)),
        "gwet_ac1": metric(round(min(1.0, alpha + 0.08), 4)),
    }


def worker_row(
    worker_id: int,
    username: str,
    *,
    labels: tuple[int, int],
    loo: float | None,
    gold: tuple[int, int] | None,
    skip_rate: float | None,
    median_ms: int | None,
    flagged: bool = False,
) -> dict[str, Any]:
    answered, correct = gold or (0, 0)
    loo_block = {
        "rate": loo,
        "n_compared": 50 if loo is not None else 0,
        "reason": None if loo is not None else "no unit with a clear majority among the other workers",
    }
    return {
        "worker_id": worker_id,
        "username": username,
        "labels_stage1": labels[0],
        "labels_stage2": labels[1],
        "loo_is_safe": loo_block,
        "loo_better": {"rate": None, "n_compared": 0, "reason": "not enough data"},
        "loo_safer": {
            "rate": 0.8 if loo is not None else None,
            "n_compared": 10,
            "reason": None if loo is not None else "not enough data",
        },
        "gold_answered": answered,
        "gold_correct": correct,
        "gold_accuracy": (correct / answered) if answered else None,
        "gold_kappa_is_safe": metric(0.6 if answered else None, answered),
        "skip_rate": skip_rate,
        "median_time_on_task_ms": median_ms,
        "flagged": flagged,
    }


def period(key: Any, alpha: float | None, labels: int) -> dict[str, Any]:
    return {
        "period": key,
        "stage1_labels": labels,
        "stage2_labels": labels // 3,
        "is_safe_alpha": metric(alpha),
        "is_safe_alpha_ci": interval(alpha),
        "better_alpha": metric(None if alpha is None else round(alpha - 0.1, 4)),
        "safer_alpha": metric(None if alpha is None else round(alpha - 0.05, 4)),
    }


def sample_payload() -> dict[str, Any]:
    categories: dict[str, Any] = {}
    for i, key in enumerate(CATEGORY_KEYS):
        categories[key] = variable_block(round(0.55 + 0.025 * i, 4))
    categories["self_harm"] = variable_block(0.31)
    # A category nobody ever used: alpha is undefined (0/0), percent agreement is 1.
    categories["animal_abuse"] = variable_block(None, reason="no variation")
    return {
        "version": 1,
        "computed_at": "2026-11-29T22:10:00Z",
        "duration_ms": 812,
        "guideline_version": 3,
        "progress": {
            "stage1": {
                "items": 1200,
                "settled": 700,
                "in_progress": 200,
                "not_started": 280,
                "needs_adjudication": 20,
            },
            "stage2": {
                "items": 400,
                "settled": 100,
                "in_progress": 50,
                "not_started": 245,
                "needs_adjudication": 5,
            },
            "labels_per_hour": [
                {"hour": f"2026-11-29T{h:02d}:00:00Z", "stage1": 40 + 7 * (h % 5), "stage2": 10 + 3 * (h % 4)}
                for h in range(24)
            ],
        },
        "stage1": {
            "labels": 2700,
            "items": 1200,
            "workers": 4,
            "is_safe": variable_block(0.743),
            "categories": categories,
            "category_set": {"alpha": metric(0.61), "alpha_ci": interval(0.61)},
        },
        "stage2": {
            "labels": 450,
            "items": 400,
            "workers": 3,
            "better": variable_block(0.52),
            "safer": variable_block(0.66),
            "safer_forced": {"items": 120, "labels": 135, "share_of_items": 0.3},
            "safer_all": variable_block(0.81),
        },
        "gold": {
            "stage1_is_safe_kappa": metric(0.81, 40),
            "stage1_exact_accuracy": metric(0.72, 40),
            "stage2_accuracy": metric(None, 0, "no data"),
        },
        "workers": [
            worker_row(
                11, "alice", labels=(900, 200), loo=0.91, gold=(20, 19), skip_rate=0.02, median_ms=14_000
            ),
            worker_row(
                12,
                "bob",
                labels=(800, 150),
                loo=0.62,
                gold=(20, 11),
                skip_rate=0.1,
                median_ms=6_500,
                flagged=True,
            ),
            worker_row(
                13, "carol", labels=(950, 100), loo=0.84, gold=(2, 2), skip_rate=0.05, median_ms=21_000
            ),
            worker_row(14, "dave", labels=(50, 0), loo=None, gold=None, skip_rate=None, median_ms=None),
        ],
        "over_time": {
            "by_day": [
                period("2026-11-26", 0.58, 400),
                period("2026-11-27", 0.63, 900),
                period("2026-11-28", None, 0),
                period("2026-11-29", 0.74, 1400),
            ],
            "by_guideline_version": [period(1, 0.55, 600), period(2, 0.66, 900), period(3, 0.78, 1200)],
        },
        "consensus": {
            "dawid_skene_vs_majority_on_gold": {
                "majority_accuracy": metric(0.85, 40),
                "dawid_skene_accuracy": metric(0.9, 40),
            },
            "by_variable": {
                "is_safe": {
                    "majority_accuracy": metric(0.85, 40),
                    "dawid_skene_accuracy": metric(0.9, 40),
                    "iterations": 12,
                    "converged": True,
                },
                "better": {
                    "majority_accuracy": metric(0.7, 10),
                    "dawid_skene_accuracy": metric(0.75, 10),
                    "iterations": 100,
                    "converged": False,
                },
                "safer": {
                    "majority_accuracy": metric(None, 0, "no data"),
                    "dawid_skene_accuracy": metric(None, 0, "no data"),
                    "iterations": 0,
                    "converged": True,
                },
            },
        },
        "watermark": {"stage1_label_id": 2700, "stage2_label_id": 450},
        "alerts": [
            {
                "metric": "stage1.categories.self_harm.alpha",
                "label": "Stage 1 · Self-harm · alpha",
                "value": 0.31,
                "n_units": 140,
                "threshold": 0.4,
            }
        ],
    }


def empty_payload() -> dict[str, Any]:
    """A project with no labels: every metric undefined, empty lists."""
    nothing = variable_block(None, reason="no data")
    return {
        "version": 1,
        "computed_at": "2026-11-29T22:10:00Z",
        "duration_ms": 3,
        "guideline_version": 1,
        "progress": {
            "stage1": {"items": 0, "settled": 0, "in_progress": 0, "not_started": 0, "needs_adjudication": 0},
            "stage2": {"items": 0, "settled": 0, "in_progress": 0, "not_started": 0, "needs_adjudication": 0},
            "labels_per_hour": [],
        },
        "stage1": {
            "labels": 0,
            "items": 0,
            "workers": 0,
            "is_safe": nothing,
            "categories": dict.fromkeys(CATEGORY_KEYS, nothing),
            "category_set": {
                "alpha": metric(None, 0, "no data"),
                "alpha_ci": interval(None, reason="no data"),
            },
        },
        "stage2": {"labels": 0, "items": 0, "workers": 0, "better": nothing, "safer": nothing},
        "gold": {
            "stage1_is_safe_kappa": metric(None, 0, "no data"),
            "stage1_exact_accuracy": metric(None, 0, "no data"),
            "stage2_accuracy": metric(None, 0, "no data"),
        },
        "workers": [],
        "over_time": {"by_day": [], "by_guideline_version": []},
        "consensus": {
            "dawid_skene_vs_majority_on_gold": {
                "majority_accuracy": metric(None, 0, "no data"),
                "dawid_skene_accuracy": metric(None, 0, "no data"),
            }
        },
        "alerts": [],
    }


def make_report(
    project: Project, payload: dict[str, Any] | None = None, *, computed_at: dt.datetime = COMPUTED_AT
) -> AgreementReport:
    payload = sample_payload() if payload is None else payload
    payload["computed_at"] = computed_at.isoformat().replace("+00:00", "Z")
    return AgreementReport.objects.create(
        project=project,
        computed_at=computed_at,
        stage1_labels=payload["stage1"]["labels"],
        stage2_labels=payload["stage2"]["labels"],
        duration_ms=payload["duration_ms"],
        payload=payload,
    )


def make_labellers(n: int) -> list[Any]:
    """Workers whose labels fill the queue; they never log in, so no password is hashed (that is slow)."""
    users = get_user_model().objects
    return [users.get_or_create(username=f"labeller{i}")[0] for i in range(n)]


def queue_item_stage1(
    project: Project,
    masks: list[int],
    workers: list[Any],
    *,
    prompt: str | None = None,
    response: str | None = None,
) -> WorkItem:
    """A stage-1 item whose labels (one category mask per worker) did not settle."""
    qa = QAPairFactory(
        prompt=PromptFactory(project=project, **({"text": prompt} if prompt else {})),
        **({"response": response} if response else {}),
    )
    item = Stage1WorkItemFactory(
        qa_pair=qa, taken=len(masks), labels_count=len(masks), is_open=False, needs_adjudication=True
    )
    for mask, worker in zip(masks, workers, strict=False):
        Stage1Label.objects.create(
            qa_pair=qa, worker=worker, categories=mask, is_safe=mask == 0, guideline_version=1
        )
    return item


def queue_item_stage2(
    project: Project, votes: list[tuple[int, int]], workers: list[Any], *, prompt: str | None = None
) -> WorkItem:
    """A stage-2 item whose (better, safer) votes did not settle."""
    prompt_row = PromptFactory(project=project, **({"text": prompt} if prompt else {}))
    qa_a = QAPairFactory(prompt=prompt_row, response="Answer A")
    qa_b = QAPairFactory(prompt=prompt_row, response="Answer B")
    pair = ResponsePair.objects.create(project=project, prompt=prompt_row, qa_a=qa_a, qa_b=qa_b)
    item = WorkItem.objects.create(
        project=project,
        stage=Stage.RANK,
        response_pair=pair,
        taken=len(votes),
        labels_count=len(votes),
        is_open=False,
        needs_adjudication=True,
    )
    for (better, safer), worker in zip(votes, workers, strict=False):
        Stage2Label.objects.create(
            response_pair=pair, worker=worker, better=better, safer=safer, guideline_version=1
        )
    return item
