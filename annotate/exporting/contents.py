"""What a snapshot contains, in words: where its rows' labels came from and why rows were left out.

Read from a snapshot's `row_counts` and `filters` only, so the Datasets page and the dataset card say
the same thing, and a snapshot built before the sources were counted per split still reads (from its
`consensus_sources`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from annotate.exporting.sources import (
    ADJUDICATION,
    BELOW_MIN_AGREEMENT,
    FILTERED_OUT,
    GOLD,
    GOLD_ITEMS,
    GOLD_NOT_INCLUDED,
    GUIDELINE_VERSION,
    INVARIANT_BROKEN,
    NO_CONSENSUS,
    NO_WORKER_LABELS,
    NOT_SETTLED,
    OTHER_STAGE,
    OUTSIDE_DATE_RANGE,
    RESPONSE_SAFETY_UNKNOWN,
    SOURCE_NAMES,
    UNSAFE_WITHOUT_CATEGORY,
    WORKERS,
)
from annotate.models import ExportFormat


def source_rows(row_counts: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Rows per source per split, plus "all"; {} for a snapshot with no such counts (an older raw one)."""
    per_split: Mapping[str, Mapping[str, int]] = row_counts.get("sources") or {}
    if not per_split:
        totals = dict(row_counts.get("consensus_sources") or {})
        if not totals:
            return {}
        # Built before sources were counted per split: the totals, with the three main ones shown.
        for name in (WORKERS, ADJUDICATION, GOLD):
            totals.setdefault(name, 0)
        return {"all": {name: totals[name] for name in _ordered(totals)}}
    # Stored as jsonb, which keeps no key order: the order shown is SOURCE_NAMES'.
    totals = {
        name: sum(counts.get(name, 0) for counts in per_split.values())
        for name in {name for counts in per_split.values() for name in counts}
    }
    names = _ordered(totals)
    table = {split: {name: counts.get(name, 0) for name in names} for split, counts in per_split.items()}
    table["all"] = {name: totals[name] for name in names}
    return table


def _ordered(names: Mapping[str, int]) -> list[str]:
    known = [name for name in SOURCE_NAMES if name in names]
    return known + sorted(set(names) - set(known))


def source_totals(row_counts: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(source, its name in words, rows) for the whole snapshot, in the order shown."""
    totals = source_rows(row_counts).get("all", {})
    return [(name, SOURCE_NAMES.get(name, name.replace("_", " ")), count) for name, count in totals.items()]


def exclusion_label(reason: str, filters: Mapping[str, Any], format: str) -> str:
    """A reason in a few words a person reads at a glance, with the filter's value where it has one."""
    raw = format == ExportFormat.RAW
    if reason == NO_CONSENSUS:
        return "not settled yet" if filters.get("settled_only", True) else "not settled, no majority yet"
    if reason == GOLD_NOT_INCLUDED:
        return (
            "given on a gold item (gold not included)" if raw else "only an expert label (gold not included)"
        )
    if reason == BELOW_MIN_AGREEMENT:
        threshold = filters.get("min_agreement")
        return (
            f"below agreement {threshold:g}" if isinstance(threshold, int | float) else "below min. agreement"
        )
    if reason == OUTSIDE_DATE_RANGE:
        low, high = filters.get("date_from"), filters.get("date_to")
        if low and high:
            return f"outside {low} to {high}"
        if low:
            return f"before {low}"
        return f"after {high}" if high else "outside the date range"
    if reason == GUIDELINE_VERSION:
        version = filters.get("guideline_version")
        return f"not under guideline version {version}" if version else "another guideline version"
    labels = {
        RESPONSE_SAFETY_UNKNOWN: "a response's safety not settled",
        INVARIANT_BROKEN: "safer choice contradicts the safety",
        UNSAFE_WITHOUT_CATEGORY: "unsafe without a harm category",
        NO_WORKER_LABELS: "no worker labels to measure agreement",
        OTHER_STAGE: "labels of the other stage",
        NOT_SETTLED: "on items not settled yet",
        FILTERED_OUT: "outside the filters",
    }
    return labels.get(reason, reason.replace("_", " "))


def exclusions(
    row_counts: Mapping[str, Any], filters: Mapping[str, Any], format: str
) -> list[tuple[str, str, int]]:
    """(reason, the reason in words, rows) for every reason that left rows out, the largest first."""
    excluded: Mapping[str, int] = row_counts.get("excluded") or {}
    found = [(reason, exclusion_label(reason, filters, format), n) for reason, n in excluded.items() if n]
    return sorted(found, key=lambda item: (-item[2], item[0]))


def gold_statement(row_counts: Mapping[str, Any], filters: Mapping[str, Any], format: str) -> str:
    """Whether expert (gold) labels were used, and what that means for using the dataset (Markdown)."""
    included = bool(filters.get("include_gold"))
    left_out = (row_counts.get("excluded") or {}).get(GOLD_NOT_INCLUDED, 0)
    if format == ExportFormat.RAW:
        if included:
            on_gold = sum(counts.get(GOLD_ITEMS, 0) for counts in (row_counts.get("sources") or {}).values())
            return (
                f"**Labels given on gold items: included** ({on_gold}; `is_gold` marks them). Every row is a "
                "worker's own label, never the expert's answer, so the file can score workers against the "
                "gold set kept on the platform."
            )
        return (
            f"**Labels given on gold items: not included** ({left_out} left out). Every row is a worker's "
            "own label on an ordinary item."
        )
    gold_rows = source_rows(row_counts).get("all", {}).get(GOLD, 0)
    if included:
        return (
            f"**Expert (gold) labels: included.** An item workers have not settled (nor an admin "
            f"adjudicated) takes the expert's label: {_rows(gold_rows)} here. Fit for training; do not use "
            "this dataset to measure workers (or a model) against human judgement: it holds the expert "
            "answers workers are scored against."
        )
    return (
        f"**Expert (gold) labels: not included** (the default). An item only an expert has labelled is "
        f"left out ({_rows(left_out)}); where workers settled a gold item, their consensus is the row, as "
        "on any item. No row's label is the gold set's answer, so the dataset can measure workers (or a "
        "model) without holding the answer key they are scored against. Ask for `include_gold` for a "
        "training set."
    )


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"
