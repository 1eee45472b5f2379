"""The admin dashboard of one project: progress, agreement, workers, alerts and the adjudication queue.

Every statistic comes from the latest stored agreement report (docs/agreement-report.md), which a
Celery task computes; a page view reads that one row and one small page of the adjudication queue and
never scans the project's labels. Nothing here computes a statistic: the functions below only pick
numbers out of the stored payload and arrange them for the template and the charts.

htmx: the page polls its `report` section every 30 s and the server answers 204 (nothing to swap) while
the stored report is the one already shown; the worker table sorts and pages by swapping its own
section; an admin's decision on a queued item swaps the queue. Without JavaScript the same links and
forms load whole pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotate.access import DATA_ROLES, MANAGE_ROLES, get_project_for_user
from annotate.agreement_report import ALERT_MIN_UNITS, agreement_recompute_request, latest_report
from annotate.assignment import known_safety
from annotate.categories import CATEGORY_BY_KEY, HARM_CATEGORIES
from annotate.consensus import (
    AdjudicationCase,
    adjudication_decide,
    adjudication_item,
    adjudication_queue,
    adjudication_queue_count,
)
from annotate.models import AgreementReport, Project, Stage, WorkItem
from frontend.templatetags.dashboard_tags import interval, metric
from frontend.views import HtmxHttpRequest, _project_context, render_page

POLL_SECONDS = 30
WORKERS_PER_PAGE = 50
QUEUE_PAGE_SIZE = 10

# What a link or form on the page carries along: the worker table's order and page, the queue's filter
# and page.
PAGE_STATE = ("sort", "workers_page", "queue_stage", "queue_page")

# The sections an htmx request may ask for, by the id of the element it swaps (HX-Target).
PARTIAL_FOR_TARGET = {"report": "report", "worker-table": "worker-table", "adjudication": "adjudication"}


# --- Reading the stored payload ------------------------------------------------------------------


def _get(data: Any, *path: str | int) -> Any:
    """`data[path[0]][path[1]]...`, or None where a key is missing: an older or partial payload must
    render with gaps, never fail the page."""
    for key in path:
        if isinstance(data, Mapping):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _metric(data: Any) -> dict[str, Any]:
    """A Metric as stored ({"value", "n_units", "reason"}); a missing one reads as undefined."""
    if not isinstance(data, Mapping):
        return {"value": None, "n_units": 0, "reason": "not in this report"}
    value = data.get("value")
    reason = data.get("reason")
    if value is None and not reason:
        reason = "not enough data"
    return {"value": value, "n_units": data.get("n_units") or 0, "reason": reason}


def _interval(data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        return {"low": None, "high": None, "level": None, "reason": "not in this report"}
    low, high = data.get("low"), data.get("high")
    reason = data.get("reason")
    if (low is None or high is None) and not reason:
        reason = "not enough data"
    return {"low": low, "high": high, "level": data.get("level"), "reason": reason}


@dataclass(frozen=True)
class Variable:
    """One row of the agreement table and one bar of the alpha chart."""

    key: str  # the payload path of its block, as alerts name it ("stage1.categories.self_harm")
    label: str
    group: str
    alpha: dict[str, Any]
    alpha_ci: dict[str, Any]
    fleiss_kappa: dict[str, Any] | None  # None: not defined for this variable (the MASI category set)
    percent_agreement: dict[str, Any] | None
    gwet_ac1: dict[str, Any] | None
    note: str = ""  # a line under the label that says how to read the row


def _variable(
    key: str, label: str, group: str, block: Any, *, set_valued: bool = False, note: str = ""
) -> Variable:
    return Variable(
        note=note,
        key=key,
        label=label,
        group=group,
        alpha=_metric(_get(block, "alpha")),
        alpha_ci=_interval(_get(block, "alpha_ci")),
        fleiss_kappa=None if set_valued else _metric(_get(block, "fleiss_kappa")),
        percent_agreement=None if set_valued else _metric(_get(block, "percent_agreement")),
        gwet_ac1=None if set_valued else _metric(_get(block, "gwet_ac1")),
    )


OVERALL, PER_CATEGORY, STAGE2 = "Stage 1 · overall", "Stage 1 · per harm category", "Stage 2 · preference"


def report_variables(payload: Mapping[str, Any]) -> list[Variable]:
    """Stage-1 is_safe and category set, the 14 categories in their released order, stage-2 better/safer."""
    stage1, stage2 = payload.get("stage1"), payload.get("stage2")
    return [
        _variable("stage1.is_safe", "Is safe", OVERALL, _get(stage1, "is_safe")),
        _variable(
            "stage1.category_set",
            "Category set (MASI)",
            OVERALL,
            _get(stage1, "category_set"),
            set_valued=True,
        ),
        *(
            _variable(f"stage1.categories.{c.key}", c.label, PER_CATEGORY, _get(stage1, "categories", c.key))
            for c in HARM_CATEGORIES
        ),
        _variable("stage2.better", "More helpful (better)", STAGE2, _get(stage2, "better")),
        _variable(
            "stage2.safer",
            "More harmless (safer), free choices",
            STAGE2,
            _get(stage2, "safer"),
            note=_forced_note(_get(stage2, "safer_forced")),
        ),
    ]


def _forced_note(forced: Any) -> str:
    """How many pairs the invariant decided: their harmless answer was forced, so they are left out."""
    if not isinstance(forced, Mapping) or forced.get("share_of_items") is None:
        return "Pairs where exactly one response is safe are left out: their answer is forced."
    share, items = forced["share_of_items"], forced.get("items", 0)
    return (
        f"{items} pair{'s' if items != 1 else ''} ({share:.0%}) left out: exactly one response is safe, "
        "so the answer was forced."
    )


STAGE_PROGRESS_PARTS = (
    ("settled", "Settled"),
    ("needs_adjudication", "Needs adjudication"),
    ("in_progress", "In progress"),
    ("not_started", "Not started"),
)


def report_progress(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    stages = []
    for stage, title in ((1, "Stage 1 · harm classification"), (2, "Stage 2 · preference ranking")):
        counts = _get(payload, "progress", f"stage{stage}") or {}
        items = int(counts.get("items") or 0)
        parts = []
        for key, label in STAGE_PROGRESS_PARTS:
            n = int(counts.get(key) or 0)
            parts.append({"key": key, "label": label, "n": n, "share": (100 * n / items) if items else 0})
        stages.append({"stage": stage, "title": title, "items": items, "parts": parts})
    return stages


CONSENSUS_VARIABLES = (
    ("is_safe", "Stage 1 · is safe"),
    ("better", "Stage 2 · better"),
    ("safer", "Stage 2 · safer"),
)


def consensus_rows(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Majority vote against Dawid-Skene on gold, per variable (`consensus.by_variable`); an older report
    has only the stage-1 is_safe comparison (`dawid_skene_vs_majority_on_gold`)."""
    by_variable = _get(payload, "consensus", "by_variable")
    if isinstance(by_variable, Mapping):
        blocks = [(label, by_variable.get(key)) for key, label in CONSENSUS_VARIABLES]
    else:
        blocks = [(CONSENSUS_VARIABLES[0][1], _get(payload, "consensus", "dawid_skene_vs_majority_on_gold"))]
    return [
        {
            "label": label,
            "majority": _metric(_get(block, "majority_accuracy")),
            "dawid_skene": _metric(_get(block, "dawid_skene_accuracy")),
            "iterations": _get(block, "iterations"),
            "converged": _get(block, "converged"),
        }
        for label, block in blocks
        if isinstance(block, Mapping)
    ]


# --- The worker table ----------------------------------------------------------------------------


def _rate(worker: Mapping[str, Any], key: str) -> float | None:
    value = _get(worker, key, "rate")
    return float(value) if isinstance(value, int | float) else None


def _number(worker: Mapping[str, Any], key: str) -> float | None:
    value = worker.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    value: Callable[[Mapping[str, Any]], Any]
    # The direction of a first click: the interesting end first (most labels, worst agreement).
    first_descending: bool
    numeric: bool = True
    group: str | None = None  # a heading over several columns


LOO = "Agreement with the other workers"


WORKER_COLUMNS: tuple[Column, ...] = (
    Column("worker", "Worker", lambda w: str(w.get("username") or "").lower(), False, numeric=False),
    Column("labels", "Labels", lambda w: (w.get("labels_stage1") or 0) + (w.get("labels_stage2") or 0), True),
    Column("gold", "Gold accuracy", lambda w: _number(w, "gold_accuracy"), False),
    Column("loo", "Is safe", lambda w: _rate(w, "loo_is_safe"), False, group=LOO),
    Column("loo_better", "Better", lambda w: _rate(w, "loo_better"), False, group=LOO),
    Column("loo_safer", "Safer", lambda w: _rate(w, "loo_safer"), False, group=LOO),
    Column("time", "Median time", lambda w: _number(w, "median_time_on_task_ms"), False),
    Column("skip", "Skip rate", lambda w: _number(w, "skip_rate"), True),
    Column("flags", "Flag", lambda w: bool(w.get("flagged")), True, numeric=False),
)
COLUMNS_BY_KEY = {c.key: c for c in WORKER_COLUMNS}
DEFAULT_SORT = "-flags"


def parse_sort(raw: str | None) -> tuple[Column, bool]:
    """`?sort=gold` (ascending) or `?sort=-gold` (descending); anything else is the default order."""
    raw = raw or DEFAULT_SORT
    descending = raw.startswith("-")
    column = COLUMNS_BY_KEY.get(raw.lstrip("-"))
    if column is None:
        return parse_sort(DEFAULT_SORT)
    return column, descending


def sort_workers(
    workers: list[Mapping[str, Any]], column: Column, descending: bool
) -> list[Mapping[str, Any]]:
    """Sorted by the column, ties by username; a worker without a value sorts last either way."""
    by_name = sorted(workers, key=lambda w: str(w.get("username") or "").lower())
    present = [w for w in by_name if column.value(w) is not None]
    missing = [w for w in by_name if column.value(w) is None]
    return sorted(present, key=column.value, reverse=descending) + missing


def worker_headers(sort_key: str, descending: bool) -> list[dict[str, Any]]:
    """One entry per column: its sort link, aria-sort, and where a group heading spans it."""
    headers = []
    for i, column in enumerate(WORKER_COLUMNS):
        current = column.key == sort_key
        next_descending = not descending if current else column.first_descending
        starts_group = column.group is not None and (i == 0 or WORKER_COLUMNS[i - 1].group != column.group)
        headers.append(
            {
                "key": column.key,
                "label": column.label,
                "numeric": column.numeric,
                "group": column.group,
                "group_span": sum(1 for c in WORKER_COLUMNS if c.group == column.group)
                if starts_group
                else 0,
                "aria_sort": ("descending" if descending else "ascending") if current else None,
                "next_sort": ("-" if next_descending else "") + column.key,
            }
        )
    return headers


# --- Charts --------------------------------------------------------------------------------------


def _period_series(periods: Any, label: Callable[[Any], str]) -> dict[str, Any]:
    periods = periods if isinstance(periods, list) else []

    def values(key: str) -> list[float | None]:
        return [_metric(p.get(key))["value"] for p in periods]

    return {
        "labels": [label(p.get("period")) for p in periods],
        "is_safe": values("is_safe_alpha"),
        "is_safe_low": [_interval(p.get("is_safe_alpha_ci"))["low"] for p in periods],
        "is_safe_high": [_interval(p.get("is_safe_alpha_ci"))["high"] for p in periods],
        "better": values("better_alpha"),
        "safer": values("safer_alpha"),
        "reasons": [_metric(p.get("is_safe_alpha"))["reason"] for p in periods],
    }


def _hour_label(stamp: Any) -> str:
    # "2026-11-29T21:00:00Z" -> "21:00" (UTC, as stored).
    text = str(stamp or "")
    return text[11:16] if len(text) >= 16 else text


def chart_data(project: Project, payload: Mapping[str, Any], variables: list[Variable]) -> dict[str, Any]:
    """The JSON island the charts draw from: numbers only, as stored, with nulls for undefined ones."""
    hours = _get(payload, "progress", "labels_per_hour")
    hours = hours if isinstance(hours, list) else []
    return {
        "threshold": project.agreement_alert_threshold,
        "alpha": {
            "labels": [v.label for v in variables],
            "groups": [v.group for v in variables],
            "values": [v.alpha["value"] for v in variables],
            "low": [v.alpha_ci["low"] for v in variables],
            "high": [v.alpha_ci["high"] for v in variables],
            "reasons": [v.alpha["reason"] for v in variables],
            # A bar turns red only where the report would alert: enough units to mean something.
            "alerting": [v.alpha["n_units"] >= ALERT_MIN_UNITS for v in variables],
        },
        "labels_per_hour": {
            "labels": [_hour_label(h.get("hour")) for h in hours],
            "stage1": [h.get("stage1") or 0 for h in hours],
            "stage2": [h.get("stage2") or 0 for h in hours],
        },
        "by_day": _period_series(_get(payload, "over_time", "by_day"), lambda p: str(p)),
        "by_version": _period_series(_get(payload, "over_time", "by_guideline_version"), lambda p: f"v{p}"),
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def chart_summaries(data: Mapping[str, Any]) -> dict[str, str]:
    """One-sentence text alternatives (aria-label) for each chart; the tables beside them hold the rest."""
    alpha = data["alpha"]
    defined = [(v, lab) for v, lab in zip(alpha["values"], alpha["labels"], strict=True) if v is not None]
    if defined:
        low_v, low_l = min(defined)
        high_v, high_l = max(defined)
        alpha_text = (
            f"Bar chart of Krippendorff's alpha for {len(alpha['labels'])} variables with 95% confidence "
            f"intervals; lowest {low_l} {_fmt(low_v)}, highest {high_l} {_fmt(high_v)}; "
            f"{len(alpha['labels']) - len(defined)} not available. The table below lists every value."
        )
    else:
        alpha_text = "Bar chart of Krippendorff's alpha per variable: no value is available yet."
    hours = data["labels_per_hour"]
    total = sum(hours["stage1"]) + sum(hours["stage2"])
    hours_text = (
        f"Bar chart of labels per hour over the last {len(hours['labels'])} hours: "
        f"{sum(hours['stage1'])} stage-1 and {sum(hours['stage2'])} stage-2 labels."
        if total
        else "Bar chart of labels per hour: no labels in the last 24 hours."
    )

    def series_text(series: Mapping[str, Any], what: str) -> str:
        points = [
            (lab, v) for lab, v in zip(series["labels"], series["is_safe"], strict=True) if v is not None
        ]
        if not points:
            return f"Line chart of agreement {what}: no value is available yet."
        first, last = points[0], points[-1]
        return (
            f"Line chart of agreement {what} ({len(series['labels'])} points): is-safe alpha "
            f"{_fmt(first[1])} at {first[0]}, {_fmt(last[1])} at {last[0]}. The table below lists every value."
        )

    return {
        "alpha": alpha_text,
        "labels_per_hour": hours_text,
        "by_day": series_text(data["by_day"], "by day"),
        "by_version": series_text(data["by_version"], "per guideline version"),
    }


# --- Context -------------------------------------------------------------------------------------


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _period_rows(periods: list[Mapping[str, Any]], label: Callable[[Any], str]) -> list[dict[str, Any]]:
    # Formatted here, once per cell: a long project has hundreds of days, and per-cell template
    # filters were most of the page's time.
    return [
        {
            "period": label(p.get("period")),
            "labels": f"{_count(p.get('stage1_labels'))} / {_count(p.get('stage2_labels'))}",
            "is_safe": metric(p.get("is_safe_alpha")),
            "is_safe_ci": interval(p.get("is_safe_alpha_ci")),
            "better": metric(p.get("better_alpha")),
            "safer": metric(p.get("safer_alpha")),
        }
        for p in periods
    ]


def _over_time(payload: Mapping[str, Any], summaries: Mapping[str, str]) -> list[dict[str, Any]]:
    charts = []
    for key, title, period_label, payload_key, label in (
        ("by_day", "By day", "Day (UTC)", "by_day", str),
        ("by_version", "By guideline version", "Version", "by_guideline_version", lambda p: f"v{p}"),
    ):
        periods = _get(payload, "over_time", payload_key)
        periods = [p for p in periods if isinstance(p, Mapping)] if isinstance(periods, list) else []
        charts.append(
            {
                "key": key,
                "title": title,
                "period_label": period_label,
                "rows": _period_rows(periods, label),
                "summary": summaries[key],
            }
        )
    return charts


def report_context(project: Project, report: AgreementReport | None, params: QueryDict) -> dict[str, Any]:
    """Everything the `report` section shows, picked out of the stored payload (no statistic computed)."""
    column, descending = parse_sort(params.get("sort"))
    context: dict[str, Any] = {
        "report": report,
        "sort": ("-" if descending else "") + column.key,
        "poll_seconds": POLL_SECONDS,
        "poll_query": urlencode({"report": report.pk if report else ""}),
    }
    if report is None:
        return context
    payload: Mapping[str, Any] = report.payload if isinstance(report.payload, Mapping) else {}
    variables = report_variables(payload)
    data = chart_data(project, payload, variables)
    summaries = chart_summaries(data)
    workers = [w for w in (payload.get("workers") or []) if isinstance(w, Mapping)]
    alerts = [a for a in (payload.get("alerts") or []) if isinstance(a, Mapping)]
    hours = data["labels_per_hour"]
    context.update(
        {
            "payload": payload,
            "alerts": alerts,
            "alert_min_units": ALERT_MIN_UNITS,
            # An alert names a metric ("stage1.categories.self_harm.alpha"); its row is the block's path.
            "alert_keys": {str(a.get("metric", "")).rsplit(".", 1)[0] for a in alerts},
            "flagged_count": sum(1 for w in workers if w.get("flagged")),
            "stale_guidelines": payload.get("guideline_version") not in (None, project.guideline_version),
            "progress": report_progress(payload),
            "hours": list(zip(hours["labels"], hours["stage1"], hours["stage2"], strict=True)),
            "variables": variables,
            "over_time": _over_time(payload, summaries),
            "gold": payload.get("gold") or {},
            "consensus": consensus_rows(payload),
            "worker_page": Paginator(sort_workers(workers, column, descending), WORKERS_PER_PAGE).get_page(
                params.get("workers_page")
            ),
            "worker_headers": worker_headers(column.key, descending),
            "chart_data": data,
            "chart_summaries": summaries,
        }
    )
    return context


QUEUE_STAGES = (("", "All"), ("1", "Stage 1"), ("2", "Stage 2"))


def _queue_stage(params: Mapping[str, Any]) -> str:
    stage = str(params.get("queue_stage") or "")
    return stage if stage in ("1", "2") else ""


class _QueuePages(Sequence[AdjudicationCase]):
    """The adjudication queue as a sequence a Paginator can page: its length is the queue's count, and a
    slice asks the consensus selector for exactly that slice's rows (SQL OFFSET/LIMIT), so page N reads
    one page of items, not N."""

    def __init__(self, project: Project, stage: int | None) -> None:
        self.project, self.stage = project, stage
        self._count: int | None = None

    def __len__(self) -> int:
        if self._count is None:
            self._count = adjudication_queue_count(project=self.project, stage=self.stage)
        return self._count

    @overload
    def __getitem__(self, index: int) -> AdjudicationCase: ...
    @overload
    def __getitem__(self, index: slice) -> list[AdjudicationCase]: ...
    def __getitem__(self, index: int | slice) -> AdjudicationCase | list[AdjudicationCase]:
        if isinstance(index, int):
            position = index + len(self) if index < 0 else index
            cases = self[position : position + 1] if position >= 0 else []
            if not cases:
                raise IndexError("adjudication queue index out of range")
            return cases[0]
        if index.step not in (None, 1):
            raise ValueError("the adjudication queue pages in steps of 1")
        start, stop, _ = index.indices(len(self))
        return adjudication_queue(
            project=self.project, stage=self.stage, offset=start, limit=max(0, stop - start)
        )


def queue_entries(cases: list[AdjudicationCase]) -> list[dict[str, Any]]:
    """What the queue shows for one page of cases: the texts, the workers' vote counts, and for a
    response pair the stage-1 safety of its two responses (one query over the page's QA pairs)."""
    pairs = [c.item.response_pair for c in cases if c.item.response_pair is not None]
    safety = known_safety([qa for p in pairs for qa in (p.qa_a_id, p.qa_b_id)]) if pairs else {}
    entries: list[dict[str, Any]] = []
    for case in cases:
        item, votes = case.item, case.votes
        if item.stage == Stage.CLASSIFY and item.qa_pair is not None:
            chosen = votes.get("categories") or {}
            entries.append(
                {
                    "item": item,
                    "stage": 1,
                    "n_labels": votes.get("labels", 0),
                    "prompt": item.qa_pair.prompt.text,
                    "response": item.qa_pair.response,
                    "safe_votes": (votes.get("is_safe") or {}).get("safe", 0),
                    "categories": [
                        {"key": c.key, "label": c.label, "n": chosen.get(c.key, 0)} for c in HARM_CATEGORIES
                    ],
                }
            )
        elif item.stage == Stage.RANK and item.response_pair is not None:
            pair = item.response_pair
            better, safer = votes.get("better") or [0, 0], votes.get("safer") or [0, 0]
            entries.append(
                {
                    "item": item,
                    "stage": 2,
                    "n_labels": votes.get("labels", 0),
                    "prompt": pair.prompt.text,
                    # Canonical order: A = qa_a (answer 0), B = qa_b (answer 1), as labels store them.
                    "responses": [
                        {"name": "A", "text": pair.qa_a.response, "safe": safety.get(pair.qa_a_id)},
                        {"name": "B", "text": pair.qa_b.response, "safe": safety.get(pair.qa_b_id)},
                    ],
                    "better": better,
                    "safer": safer,
                    "questions": [("More helpful", "better", better), ("More harmless", "safer", safer)],
                }
            )
    return entries


def adjudication_context(project: Project, params: Mapping[str, Any]) -> dict[str, Any]:
    stage = _queue_stage(params)
    page = Paginator(_QueuePages(project, int(stage) if stage else None), QUEUE_PAGE_SIZE).get_page(
        params.get("queue_page")
    )
    return {
        "queue_stage": stage,
        "queue_stages": QUEUE_STAGES,
        "queue_page": page,
        "queue": queue_entries(list(page.object_list)),
    }


def _link_params(params: QueryDict) -> QueryDict:
    """The query string links on the page keep (sort, pages, queue stage); never the poll's report id."""
    kept = params.copy()
    kept.pop("report", None)
    return kept


# --- Views ---------------------------------------------------------------------------------------


def dashboard_url(project: Project, params: Mapping[str, Any] | None = None, anchor: str = "") -> str:
    query = urlencode({k: v for k, v in (params or {}).items() if v not in (None, "")})
    return reverse("frontend:dashboard", args=[project.slug]) + (f"?{query}" if query else "") + anchor


@login_required
def dashboard(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    target = request.htmx.target if request.htmx and not request.htmx.boosted else None
    partial = PARTIAL_FOR_TARGET.get(target or "")
    context = {**_project_context(project), "query": _link_params(request.GET)}
    if partial != "adjudication":
        report = latest_report(project)
        if partial == "report" and request.GET.get("report", "") == (str(report.pk) if report else ""):
            # A poll while the stored report is still the one on screen: nothing to swap.
            return HttpResponse(status=204)
        context.update(report_context(project, report, request.GET))
    if partial in (None, "adjudication"):
        context.update(adjudication_context(project, request.GET))
    return render_page(request, "frontend/dashboard.html", context, partial=partial)


def _adjudication_response(
    request: HtmxHttpRequest,
    project: Project,
    params: Mapping[str, Any],
    *,
    notice: str | None = None,
    error: str | None = None,
) -> HttpResponse:
    """After a decision: htmx gets the queue section again (the same stage and page); a plain form post
    is redirected back to the dashboard's queue (post/redirect/get), with the outcome as a message."""
    # The page's state travels in the form's hidden fields, so the links the queue renders keep it.
    keep = {key: str(params.get(key) or "") for key in PAGE_STATE}
    keep["queue_stage"] = _queue_stage(params)
    if request.htmx:
        query = QueryDict(mutable=True)
        query.update({key: value for key, value in keep.items() if value})
        context = {**_project_context(project), "query": query}
        context.update(adjudication_context(project, params))
        context.update({"queue_notice": notice, "queue_error": error})
        return render_page(request, "frontend/dashboard.html", context, partial="adjudication")
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    return redirect(dashboard_url(project, keep, "#adjudication"))


def _decision_from_form(item: WorkItem, form: QueryDict) -> dict[str, Any]:
    """The service's arguments from the inline form; a ValidationError names what is missing."""
    if item.stage == Stage.CLASSIFY:
        categories = form.getlist("categories")
        if form.get("decision") == "safe":
            if categories:
                raise ValidationError(
                    "You ticked harm categories and chose “Safe”: untick them, or choose “Unsafe”."
                )
            return {"categories": []}
        if not categories:
            raise ValidationError("Tick at least one harm category, or choose “Safe”.")
        return {"categories": categories}
    choices = {}
    for field, question in (("better", "more helpful"), ("safer", "more harmless")):
        value = form.get(field)
        if value not in ("0", "1"):
            raise ValidationError(f"Choose which response is {question}.")
        choices[field] = int(value)
    return choices


def _describe(item: WorkItem, decision: Mapping[str, Any]) -> str:
    if item.stage == Stage.CLASSIFY:
        keys = decision["categories"]
        labels = [CATEGORY_BY_KEY[k].label for k in keys if k in CATEGORY_BY_KEY]
        return f"Item #{item.pk} decided: {'unsafe (' + ', '.join(labels) + ')' if labels else 'safe'}."
    sides = "AB"
    return f"Item #{item.pk} decided: {sides[decision['better']]} more helpful, {sides[decision['safer']]} more harmless."


@login_required
@require_POST
def dashboard_adjudicate(request: HtmxHttpRequest, slug: str, item_id: int) -> HttpResponse:
    """An admin's decision on one queued item, through the consensus service."""
    project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
    item = adjudication_item(project=project, work_item_id=item_id)
    try:
        decision = _decision_from_form(item, request.POST)
        adjudication_decide(
            item=item, admin=request.user, note=request.POST.get("note", "").strip(), **decision
        )
    except ValidationError as exc:
        return _adjudication_response(request, project, request.POST, error=" ".join(exc.messages))
    return _adjudication_response(request, project, request.POST, notice=_describe(item, decision))


@login_required
@require_POST
def dashboard_recompute(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Queue a recomputation of the stored report (admins). The page never computes statistics itself."""
    project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
    queued = agreement_recompute_request(project=project)
    notice = (
        "Recomputation queued. The new statistics appear here when the worker has finished."
        if queued
        else "A recomputation was queued a moment ago. The new statistics appear here when it has finished."
    )
    if request.htmx:
        context = {**_project_context(project), "query": _link_params(request.GET), "queued": notice}
        context.update(report_context(project, latest_report(project), request.GET))
        return render_page(request, "frontend/dashboard.html", context, partial="report")
    messages.info(request, notice)
    return redirect(dashboard_url(project))
