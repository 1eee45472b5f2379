"""What a snapshot selects: the filters as requested, checked and written out in full.

A snapshot stores its filters with every key explicit (defaults filled in), so its manifest and dataset
card state exactly what was selected, and rebuilding from the stored filters selects the same rows.
See docs/exports.md for what each filter means for each format.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from annotate.models import ExportFormat, Stage

FILTER_KEYS = (
    "stage",
    "settled_only",
    "include_gold",
    "min_agreement",
    "date_from",
    "date_to",
    "guideline_version",
)

# The stage each released format is made of; `raw` may take either or both.
FORMAT_STAGE: dict[str, int | None] = {
    ExportFormat.BEAVERTAILS: Stage.CLASSIFY,
    ExportFormat.PKU_SAFERLHF: Stage.RANK,
    ExportFormat.RAW: None,
}


@dataclass(frozen=True)
class ExportFilters:
    # beavertails: 1, pku-saferlhf: 2; raw: 1, 2 or None (both stages).
    stage: int | None
    # beavertails/pku-saferlhf: only final consensus (worker majority, adjudication, or an expert label
    # when include_gold); False adds a provisional majority of the labels so far. raw: labels of
    # settled items only (default False there: every label).
    settled_only: bool
    # Rows whose only consensus is an expert (gold) label; raw: labels given on gold items.
    include_gold: bool
    # Share of an item's worker labels that agree with its consensus (0..1), or None for no minimum.
    min_agreement: float | None
    # Inclusive bounds on the consensus time (raw: the label's created_at), ISO 8601, UTC.
    date_from: str | None
    date_to: str | None
    guideline_version: int | None

    @property
    def needs_labels(self) -> bool:
        """Whether deciding a row needs its worker labels, not only the consensus on the item."""
        return not self.settled_only or self.min_agreement is not None or self.guideline_version is not None

    @property
    def date_from_value(self) -> dt.datetime | None:
        return _parse_bound(self.date_from, end=False) if self.date_from else None

    @property
    def date_to_value(self) -> dt.datetime | None:
        return _parse_bound(self.date_to, end=True) if self.date_to else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_filters(format: str, raw: Any) -> ExportFilters:
    """Check the requested filters for `format` and fill in the defaults; a ValidationError names
    every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValidationError({"filters": ['An object of filters, e.g. {"min_agreement": 0.66}.']})
    problems: list[str] = []
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        problems.append(f"unknown filter {', '.join(map(repr, unknown))}; use {', '.join(FILTER_KEYS)}")

    is_raw = format == ExportFormat.RAW
    stage = FORMAT_STAGE.get(format)
    if raw.get("stage") is not None:
        asked = raw["stage"]
        if isinstance(asked, bool) or asked not in (1, 2):
            problems.append("stage must be 1 or 2")
        elif not is_raw and asked != stage:
            problems.append(f"the {format} format is made of stage {stage} only")
        else:
            stage = int(asked)

    settled_only = _boolean(raw, "settled_only", default=not is_raw, problems=problems)
    # Expert labels as consensus are off unless asked: a dataset used to measure workers must not hold
    # the expert answers they are scored against; one meant for training may ask for them. Raw exports
    # hold no expert labels, only the workers' own (those given on gold items too), so they keep them.
    include_gold = _boolean(raw, "include_gold", default=is_raw, problems=problems)

    min_agreement = raw.get("min_agreement")
    if min_agreement is not None:
        if isinstance(min_agreement, bool) or not isinstance(min_agreement, int | float):
            problems.append("min_agreement must be a number from 0 to 1")
            min_agreement = None
        elif not 0 <= min_agreement <= 1:
            problems.append(f"min_agreement must be from 0 to 1, got {min_agreement}")
            min_agreement = None
        elif is_raw:
            problems.append(
                "min_agreement applies to consensus rows (beavertails, pku-saferlhf), not raw labels"
            )
        else:
            min_agreement = float(min_agreement)

    dates: dict[str, str | None] = {}
    for key in ("date_from", "date_to"):
        value = raw.get(key)
        if value in (None, ""):
            dates[key] = None
        elif not isinstance(value, str) or _parse_bound(value, end=key == "date_to") is None:
            problems.append(f"{key} must be an ISO 8601 date or date-time, e.g. 2026-11-29, got {value!r}")
            dates[key] = None
        else:
            dates[key] = value
    if dates["date_from"] and dates["date_to"]:
        low, high = _parse_bound(dates["date_from"], end=False), _parse_bound(dates["date_to"], end=True)
        if low is not None and high is not None and low > high:
            problems.append("date_from is after date_to")

    version = raw.get("guideline_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        problems.append("guideline_version must be a whole number from 1")
        version = None

    if problems:
        raise ValidationError({"filters": problems})
    return ExportFilters(
        stage=stage,
        settled_only=settled_only,
        include_gold=include_gold,
        min_agreement=min_agreement,
        date_from=dates["date_from"],
        date_to=dates["date_to"],
        guideline_version=version,
    )


def _boolean(raw: dict[str, Any], key: str, *, default: bool, problems: list[str]) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.append(f"{key} must be true or false")
        return default
    return value


def _parse_bound(value: str, *, end: bool) -> dt.datetime | None:
    """An aware datetime (UTC when no zone is given). A bare date as the upper bound means the end of
    that day, so date_to=2026-11-29 includes the whole 29th."""
    try:
        # A bare date first: parse_datetime would read it as midnight.
        day = parse_date(value)
        if day is not None:
            moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min)
        else:
            parsed = parse_datetime(value)
            if parsed is None:
                return None
            moment = parsed
    except ValueError:
        return None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt.UTC)
    return moment
