"""Where an export's rows come from: which consensus counts for each item, and which rows are left out.

Consensus, first that exists (docs/exports.md):
  1. an admin's adjudication of the item;
  2. the settled worker consensus (the majority that settled the item);
  3. the expert (gold) label, when `include_gold` (asked for; off by default): items imported with
     labels, or marked gold by a researcher, and never settled by workers are exported with the
     expert's answer (without it they are left out as `gold_not_included`);
  4. with `settled_only` off, a provisional majority of the labels given so far.
A row that has none is excluded as `no_consensus`. Every exclusion is counted by its reason, and each
exported row's consensus source is counted, for the manifest; `last_source` names the source of the
row just yielded, so the build can count the sources per split.

A source yields (file key, prompt content hash, row tuple in the format's column order) and counts as it
goes; `seen` and `total` give the progress.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from annotate.assignment import majority, stage1_consensus
from annotate.exporting import selectors
from annotate.exporting.filters import ExportFilters
from annotate.exporting.formats import (
    BEAVERTAILS_COLUMNS,
    PKU_SAFERLHF_COLUMNS,
    RAW_STAGE1_COLUMNS,
    RAW_STAGE2_COLUMNS,
    Column,
)
from annotate.exporting.streaming import stream
from annotate.models import ExportFormat, Project, Stage

ADJUDICATION, WORKERS, GOLD, PROVISIONAL = "adjudication", "workers", "gold", "provisional"
# A raw row is a worker's own label: counted by whether it was given on a gold item or an ordinary one.
ORDINARY_ITEMS, GOLD_ITEMS = "ordinary_items", "gold_items"
# What a row's label came from, in a few words (the Datasets page, the card), in the order shown.
SOURCE_NAMES = {
    WORKERS: "worker consensus",
    ADJUDICATION: "adjudicated",
    GOLD: "expert (gold)",
    PROVISIONAL: "provisional (unsettled)",
    ORDINARY_ITEMS: "labels on ordinary items",
    GOLD_ITEMS: "labels on gold items",
}

# Exclusion reasons, as counted in the manifest. Each filter that drops rows counts under its own
# reason; a row is counted once, under the first check it fails.
NO_CONSENSUS = "no_consensus"
GOLD_NOT_INCLUDED = "gold_not_included"
RESPONSE_SAFETY_UNKNOWN = "response_safety_unknown"
INVARIANT_BROKEN = "invariant_broken"
UNSAFE_WITHOUT_CATEGORY = "unsafe_without_category"
OUTSIDE_DATE_RANGE = "outside_date_range"
GUIDELINE_VERSION = "guideline_version"
NO_WORKER_LABELS = "no_worker_labels"
BELOW_MIN_AGREEMENT = "below_min_agreement"
OTHER_STAGE = "other_stage"
NOT_SETTLED = "not_settled"
# Snapshots built before raw exclusions had reasons of their own counted them all under this one.
FILTERED_OUT = "filtered_out"
EXCLUSION_REASONS = {
    NO_CONSENSUS: "no final consensus yet: not settled by workers nor adjudicated (with settled_only off: "
    "no majority among the labels so far either)",
    GOLD_NOT_INCLUDED: "the only label is an expert (gold) one (pku-saferlhf: for the pair or a response's "
    "safety), and include_gold is off; raw: a label given on a gold item, with include_gold off",
    RESPONSE_SAFETY_UNKNOWN: "a response of the pair has no stage-1 safety consensus",
    INVARIANT_BROKEN: "exactly one response is safe but the consensus ranks the other as safer",
    UNSAFE_WITHOUT_CATEGORY: "the consensus says unsafe without naming a harm category (a PKU-SafeRLHF expert "
    "verdict), which a BeaverTails row cannot state",
    OUTSIDE_DATE_RANGE: "the consensus was reached (raw: the label was given) outside date_from..date_to",
    GUIDELINE_VERSION: "a label behind the row was given under another guideline version, or there is none",
    NO_WORKER_LABELS: "min_agreement was asked but the row's consensus rests on no worker labels",
    BELOW_MIN_AGREEMENT: "the share of worker labels agreeing with the consensus is under min_agreement",
    OTHER_STAGE: "raw: a label of the stage the stage filter leaves out",
    NOT_SETTLED: "raw: a label on an item not settled nor adjudicated yet, with settled_only on",
    FILTERED_OUT: "a label outside the filters (stage, settled_only, include_gold, dates, guideline version)",
}
# Shares are compared with this slack, so min_agreement=0.6667 keeps two votes of three.
_AGREEMENT_SLACK = 1e-4


@dataclass(frozen=True)
class FileSpec:
    key: str  # "" for the released formats; "stage1"/"stage2" for raw
    columns: tuple[Column, ...]

    @property
    def config_name(self) -> str:
        return self.key or "default"

    def file_name(self, split: str, extension: str) -> str:
        return f"{self.key}-{split}{extension}" if self.key else f"{split}{extension}"


class Stats(Protocol):
    def observe(self, split: str, row: Sequence[Any]) -> None: ...

    def summary(self) -> dict[str, Any]: ...


class RowSource(Protocol):
    files: tuple[FileSpec, ...]
    total: int
    seen: int
    excluded: Counter[str]
    sources: Counter[str]
    # The sources this export's rows can come from, in the order they are shown (zeros included).
    source_names: tuple[str, ...]
    # The source of the row rows() yielded last.
    last_source: str

    def rows(self) -> Iterator[tuple[str, str, tuple[Any, ...]]]: ...

    def stats_for(self, key: str) -> Stats: ...

    def extra(self) -> dict[str, Any]: ...


class _LabelMerge:
    """Walks a label stream sorted by item id alongside an item stream sorted the same way."""

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._rows = iter(rows)
        self._head = next(self._rows, None)

    def take(self, key: int) -> list[tuple[Any, ...]]:
        head = self._head
        while head is not None and head[0] < key:
            head = next(self._rows, None)
        found = []
        while head is not None and head[0] == key:
            found.append(head)
            head = next(self._rows, None)
        self._head = head
        return found


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _outside(filters: ExportFilters, low: dt.datetime | None, high: dt.datetime | None, at: Any) -> bool:
    if low is None and high is None:
        return False
    if at is None:
        return True
    return (low is not None and at < low) or (high is not None and at > high)


# --- stats -------------------------------------------------------------------------------------------


class _SplitCounters:
    def __init__(self) -> None:
        self.by_split: defaultdict[str, Counter[Any]] = defaultdict(Counter)

    def counter(self, split: str) -> Counter[Any]:
        return self.by_split[split]

    def total(self) -> Counter[Any]:
        total: Counter[Any] = Counter()
        for counter in self.by_split.values():
            total.update(counter)
        return total


def _category_summary(masks: Counter[Any], rows: int) -> dict[str, Any]:
    from annotate.categories import HARM_CATEGORIES

    counts = {c.key: 0 for c in HARM_CATEGORIES}
    for mask, count in masks.items():
        for c in HARM_CATEGORIES:
            if mask & (1 << c.id):
                counts[c.key] += count
    return {
        "counts": counts,
        "share_of_rows": {key: _share(count, rows) for key, count in counts.items()},
    }


class BeaverTailsStats:
    """Rows, safe/unsafe and category counts, per split: rows are counted per category mask (a Counter
    keyed by the mask), which is expanded into categories at the end."""

    def __init__(self) -> None:
        self.counts = _SplitCounters()

    def observe(self, split: str, row: Sequence[Any]) -> None:
        self.counts.by_split[split][row[2]] += 1

    def _summary(self, masks: Counter[Any]) -> dict[str, Any]:
        rows = sum(masks.values())
        safe = masks.get(0, 0)
        return {
            "rows": rows,
            "safe": safe,
            "unsafe": rows - safe,
            "safe_share": _share(safe, rows),
            "unsafe_share": _share(rows - safe, rows),
            "categories": _category_summary(masks, rows),
        }

    def summary(self) -> dict[str, Any]:
        out = {split: self._summary(c) for split, c in sorted(self.counts.by_split.items())}
        out["all"] = self._summary(self.counts.total())
        return out


class PreferenceStats:
    """Safety of the two responses and the preference choices, per split."""

    def __init__(self, offset: int = 0) -> None:
        self.counts = _SplitCounters()
        # Where is_response_0_safe sits in the row (the raw stage-2 rows carry no safety: -1).
        self.offset = offset

    def observe(self, split: str, row: Sequence[Any]) -> None:
        counter = self.counts.counter(split)
        counter["rows"] += 1
        counter[("better", row[-2])] += 1
        counter[("safer", row[-1])] += 1
        counter[("better_is_safer", row[-2] == row[-1])] += 1
        if self.offset >= 0:
            safe_0, safe_1 = row[self.offset], row[self.offset + 1]
            counter[("safe", safe_0 + safe_1)] += 1

    def _summary(self, counter: Counter[Any]) -> dict[str, Any]:
        rows = counter.get("rows", 0)
        out: dict[str, Any] = {
            "rows": rows,
            "better_response_id": {"0": counter.get(("better", 0), 0), "1": counter.get(("better", 1), 0)},
            "safer_response_id": {"0": counter.get(("safer", 0), 0), "1": counter.get(("safer", 1), 0)},
            "better_is_safer": counter.get(("better_is_safer", True), 0),
        }
        if self.offset >= 0:
            both_safe, one_safe = counter.get(("safe", 2), 0), counter.get(("safe", 1), 0)
            safe_responses = 2 * both_safe + one_safe
            out.update(
                {
                    "both_safe": both_safe,
                    "one_safe": one_safe,
                    "both_unsafe": counter.get(("safe", 0), 0),
                    "safe_response_share": _share(safe_responses, 2 * rows),
                    "unsafe_response_share": _share(2 * rows - safe_responses, 2 * rows),
                }
            )
        return out

    def summary(self) -> dict[str, Any]:
        out = {split: self._summary(c) for split, c in sorted(self.counts.by_split.items())}
        out["all"] = self._summary(self.counts.total())
        return out


class RawStage1Stats(BeaverTailsStats):
    def observe(self, split: str, row: Sequence[Any]) -> None:
        self.counts.by_split[split][row[7]] += 1


def _consensus_source_names(filters: ExportFilters) -> tuple[str, ...]:
    """Worker consensus, adjudication and gold are always shown (a 0 says as much as a count);
    provisional majorities only where settled_only is off."""
    names = (WORKERS, ADJUDICATION, GOLD)
    return names if filters.settled_only else (*names, PROVISIONAL)


# --- beavertails -------------------------------------------------------------------------------------


class BeaverTailsSource:
    """One row per QA pair with a stage-1 consensus."""

    files: tuple[FileSpec, ...] = (FileSpec("", BEAVERTAILS_COLUMNS),)

    def __init__(self, project: Project, filters: ExportFilters) -> None:
        self.project = project
        self.filters = filters
        self.query = selectors.qa_pair_rows(project, filters)
        self.total = self.query.count()
        self.seen = 0
        self.excluded: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()
        self.source_names = _consensus_source_names(filters)
        self.last_source = WORKERS
        # Items the query left out for want of a final consensus: those only an expert label settles
        # (when gold is not included), and the others.
        gold_only = (
            selectors.stage1_gold_only_count(project)
            if filters.settled_only and not filters.include_gold
            else 0
        )
        self.excluded[GOLD_NOT_INCLUDED] = gold_only
        self.excluded[NO_CONSENSUS] = selectors.stage1_items_count(project) - self.total - gold_only
        self.stats = BeaverTailsStats()

    def stats_for(self, key: str) -> Stats:
        return self.stats

    def extra(self) -> dict[str, Any]:
        return {}

    def rows(self) -> Iterator[tuple[str, str, tuple[Any, ...]]]:
        filters = self.filters
        include_gold, settled_only = filters.include_gold, filters.settled_only
        low, high = filters.date_from_value, filters.date_to_value
        version, min_agreement = filters.guideline_version, filters.min_agreement
        merge = (
            _LabelMerge(selectors.stage1_labels_by_qa_pair(self.project)) if filters.needs_labels else None
        )
        excluded, sources = self.excluded, self.sources
        labels: list[tuple[Any, ...]] = []
        for row in stream(self.query, chunk_size=selectors.CHUNK_ROWS):
            self.seen += 1
            (pk, prompt_hash, prompt, response, settled_at, c_mask, c_safe, a_mask, a_safe, a_at, g_mask, g_safe, g_at) = row  # fmt: skip
            if merge is not None:
                labels = merge.take(pk)
            if a_mask is not None:
                mask, safe, at, source = a_mask, a_safe, a_at, ADJUDICATION
            elif settled_at and c_mask is not None:
                mask, safe, at, source = c_mask, c_safe, settled_at, WORKERS
            elif include_gold and g_mask is not None:
                mask, safe, at, source = g_mask, g_safe, g_at, GOLD
            elif not settled_only and labels:
                provisional = stage1_consensus([label[1] for label in labels])
                if provisional is None:
                    # Past the gold branch, an expert label means include_gold is off.
                    excluded[NO_CONSENSUS if g_mask is None else GOLD_NOT_INCLUDED] += 1
                    continue
                (mask, safe), at, source = provisional, max(label[3] for label in labels), PROVISIONAL
            else:
                excluded[NO_CONSENSUS if g_mask is None else GOLD_NOT_INCLUDED] += 1
                continue
            if _outside(filters, low, high, at):
                excluded[OUTSIDE_DATE_RANGE] += 1
                continue
            if version is not None and (not labels or any(label[2] != version for label in labels)):
                excluded[GUIDELINE_VERSION] += 1
                continue
            if min_agreement is not None:
                if not labels:
                    excluded[NO_WORKER_LABELS] += 1
                    continue
                agreeing = sum(1 for label in labels if label[1] == mask)
                if agreeing / len(labels) + _AGREEMENT_SLACK < min_agreement:
                    excluded[BELOW_MIN_AGREEMENT] += 1
                    continue
            if mask == 0 and not safe:
                excluded[UNSAFE_WITHOUT_CATEGORY] += 1
                continue
            sources[source] += 1
            self.last_source = source
            yield "", prompt_hash, (prompt, response, mask, mask == 0)


# --- pku-saferlhf ------------------------------------------------------------------------------------


def _response_safety(
    *,
    adjudicated: bool | None,
    settled_at: Any,
    consensus: bool | None,
    gold: bool | None,
    include_gold: bool,
    settled_only: bool,
    labels: int,
    safe_labels: int,
) -> tuple[bool, str] | None:
    if adjudicated is not None:
        return adjudicated, ADJUDICATION
    if settled_at and consensus is not None:
        return consensus, WORKERS
    if include_gold and gold is not None:
        return gold, GOLD
    if not settled_only and labels:
        if safe_labels * 2 > labels:
            return True, PROVISIONAL
        if (labels - safe_labels) * 2 > labels:
            return False, PROVISIONAL
    return None


class PkuSaferRlhfSource:
    """One row per response pair with a stage-2 consensus and a known stage-1 safety of both responses,
    in the pair's canonical order (response_0 is the QA pair with the lower id)."""

    files: tuple[FileSpec, ...] = (FileSpec("", PKU_SAFERLHF_COLUMNS),)

    def __init__(self, project: Project, filters: ExportFilters) -> None:
        self.project = project
        self.filters = filters
        self.query = selectors.response_pair_rows(project, filters)
        self.fields = selectors.pair_fields(filters)
        self.total = self.query.count()
        self.seen = 0
        self.excluded: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()
        self.safety_sources: Counter[str] = Counter()
        self.source_names = _consensus_source_names(filters)
        self.last_source = WORKERS
        gold_only = (
            selectors.stage2_gold_only_count(project)
            if filters.settled_only and not filters.include_gold
            else 0
        )
        self.excluded[GOLD_NOT_INCLUDED] = gold_only
        self.excluded[NO_CONSENSUS] = selectors.stage2_items_count(project) - self.total - gold_only
        self.stats = PreferenceStats(offset=3)

    def stats_for(self, key: str) -> Stats:
        return self.stats

    def extra(self) -> dict[str, Any]:
        return {"response_safety_sources": dict(sorted(self.safety_sources.items()))}

    def rows(self) -> Iterator[tuple[str, str, tuple[Any, ...]]]:
        filters = self.filters
        include_gold, settled_only = filters.include_gold, filters.settled_only
        low, high = filters.date_from_value, filters.date_to_value
        version, min_agreement = filters.guideline_version, filters.min_agreement
        merge = _LabelMerge(selectors.stage2_labels_by_pair(self.project)) if filters.needs_labels else None
        extra_index = {name: index for index, name in enumerate(self.fields)}
        has_counts = "a_labels" in extra_index
        has_versions = "a_other_version" in extra_index
        excluded, sources = self.excluded, self.sources
        labels: list[tuple[Any, ...]] = []
        for row in stream(self.query, chunk_size=selectors.CHUNK_ROWS):
            self.seen += 1
            (pk, prompt_hash, prompt, response_0, response_1, settled_at, c_better, c_safer, a_better, a_safer, a_at, g_better, g_safer, g_at, qa0_settled, qa0_consensus, qa0_adjudicated, qa0_gold, qa1_settled, qa1_consensus, qa1_adjudicated, qa1_gold) = row[:22]  # fmt: skip
            counts = (
                (row[extra_index["a_labels"]], row[extra_index["a_safe"]], row[extra_index["b_labels"]], row[extra_index["b_safe"]])
                if has_counts
                else (0, 0, 0, 0)
            )  # fmt: skip
            if merge is not None:
                labels = merge.take(pk)
            if a_better is not None:
                better, safer, at, source = a_better, a_safer, a_at, ADJUDICATION
            elif settled_at and c_better is not None:
                better, safer, at, source = c_better, c_safer, settled_at, WORKERS
            elif include_gold and g_better is not None:
                better, safer, at, source = g_better, g_safer, g_at, GOLD
            elif not settled_only and labels:
                better = majority(label[1] for label in labels)
                safer = majority(label[2] for label in labels)
                if better is None or safer is None:
                    excluded[NO_CONSENSUS if g_better is None else GOLD_NOT_INCLUDED] += 1
                    continue
                at, source = max(label[4] for label in labels), PROVISIONAL
            else:
                excluded[NO_CONSENSUS if g_better is None else GOLD_NOT_INCLUDED] += 1
                continue
            safety_0 = _response_safety(
                adjudicated=qa0_adjudicated, settled_at=qa0_settled, consensus=qa0_consensus, gold=qa0_gold,
                include_gold=include_gold, settled_only=settled_only, labels=counts[0], safe_labels=counts[1],
            )  # fmt: skip
            safety_1 = _response_safety(
                adjudicated=qa1_adjudicated, settled_at=qa1_settled, consensus=qa1_consensus, gold=qa1_gold,
                include_gold=include_gold, settled_only=settled_only, labels=counts[2], safe_labels=counts[3],
            )  # fmt: skip
            if safety_0 is None or safety_1 is None:
                # Left out for want of gold only when an expert label would give every missing safety.
                gold_would = (
                    not include_gold
                    and (safety_0 is not None or qa0_gold is not None)
                    and (safety_1 is not None or qa1_gold is not None)
                )
                excluded[GOLD_NOT_INCLUDED if gold_would else RESPONSE_SAFETY_UNKNOWN] += 1
                continue
            (safe_0, safety_source_0), (safe_1, safety_source_1) = safety_0, safety_1
            if _outside(filters, low, high, at):
                excluded[OUTSIDE_DATE_RANGE] += 1
                continue
            if version is not None and (
                not labels
                or any(label[3] != version for label in labels)
                or (
                    has_versions
                    and (row[extra_index["a_other_version"]] or row[extra_index["b_other_version"]])
                )
            ):
                excluded[GUIDELINE_VERSION] += 1
                continue
            if min_agreement is not None:
                if not labels:
                    excluded[NO_WORKER_LABELS] += 1
                    continue
                shares = [
                    sum(1 for label in labels if label[1] == better and label[2] == safer) / len(labels)
                ]
                for safe, (n, n_safe) in ((safe_0, counts[:2]), (safe_1, counts[2:])):
                    if n:
                        shares.append((n_safe if safe else n - n_safe) / n)
                if min(shares) + _AGREEMENT_SLACK < min_agreement:
                    excluded[BELOW_MIN_AGREEMENT] += 1
                    continue
            # The stage-2 invariant: when exactly one response is safe, it is the more harmless.
            if safe_0 != safe_1 and safer != (0 if safe_0 else 1):
                excluded[INVARIANT_BROKEN] += 1
                continue
            sources[source] += 1
            self.last_source = source
            self.safety_sources[safety_source_0] += 1
            self.safety_sources[safety_source_1] += 1
            yield "", prompt_hash, (prompt, response_0, response_1, safe_0, safe_1, better, safer)


# --- raw ---------------------------------------------------------------------------------------------


class Pseudonyms:
    """A worker's id in exports: HMAC-SHA256 of "<project id>:<user id>" keyed with SECRET_KEY.

    Stable within a project across snapshots (a worker can be followed from one snapshot to the next),
    different across projects, and not reversible to the account without the secret key. Rotating
    SECRET_KEY changes every pseudonym.
    """

    def __init__(self, project: Project) -> None:
        self.key = settings.SECRET_KEY.encode()
        self.prefix = f"{project.pk}:"
        self._known: dict[int, str] = {}

    def __call__(self, user_id: int) -> str:
        name = self._known.get(user_id)
        if name is None:
            digest = hmac.new(self.key, (self.prefix + str(user_id)).encode(), hashlib.sha256).hexdigest()
            name = self._known[user_id] = "w-" + digest[:16]
        return name


class _RawStage2Stats(PreferenceStats):
    def __init__(self) -> None:
        super().__init__(offset=-1)

    def observe(self, split: str, row: Sequence[Any]) -> None:
        # better and safer are not last in a raw row: pass them where PreferenceStats looks.
        super().observe(split, (row[10], row[11]))


# The reason a raw label is left out, by the filter that leaves it out (selectors.raw_exclusions).
_RAW_REASONS = {
    "stage": OTHER_STAGE,
    "settled_only": NOT_SETTLED,
    "include_gold": GOLD_NOT_INCLUDED,
    "guideline_version": GUIDELINE_VERSION,
    "dates": OUTSIDE_DATE_RANGE,
}


class RawSource:
    """One row per worker label; stage 1 and stage 2 in files of their own (their fields differ)."""

    def __init__(self, project: Project, filters: ExportFilters) -> None:
        self.project = project
        self.filters = filters
        stages = (Stage.CLASSIFY, Stage.RANK) if filters.stage is None else (filters.stage,)
        self.files = tuple(
            FileSpec(f"stage{stage}", RAW_STAGE1_COLUMNS if stage == Stage.CLASSIFY else RAW_STAGE2_COLUMNS)
            for stage in stages
        )
        self.queries = {
            stage: (
                selectors.raw_stage1_labels(project, filters)
                if stage == Stage.CLASSIFY
                else selectors.raw_stage2_labels(project, filters)
            )
            for stage in stages
        }
        counts = {stage: query.count() for stage, query in self.queries.items()}
        self.total = sum(counts.values())
        all_labels, dropped = selectors.raw_exclusions(project, filters)
        self.excluded: Counter[str] = Counter(
            {_RAW_REASONS[name]: count for name, count in dropped.items() if count}
        )
        # A label the reasons missed (none should be) is still counted.
        missed = all_labels - self.total - sum(self.excluded.values())
        if missed:
            self.excluded[FILTERED_OUT] += missed
        self.seen = 0
        # A raw row is a worker's own label: no consensus source (consensus_sources stays empty); the
        # rows are counted per split by the kind of item they were given on.
        self.sources: Counter[str] = Counter()
        self.source_names: tuple[str, ...] = (ORDINARY_ITEMS, GOLD_ITEMS)
        self.last_source = ORDINARY_ITEMS
        self.pseudonyms = Pseudonyms(project)
        self._stats: dict[str, Stats] = {"stage1": RawStage1Stats(), "stage2": _RawStage2Stats()}
        self.workers: dict[str, set[str]] = {"stage1": set(), "stage2": set()}

    def stats_for(self, key: str) -> Stats:
        return self._stats[key]

    def extra(self) -> dict[str, Any]:
        return {"workers": {key: len(names) for key, names in self.workers.items() if names}}

    def rows(self) -> Iterator[tuple[str, str, tuple[Any, ...]]]:
        pseudonym = self.pseudonyms
        for stage, query in self.queries.items():
            workers = self.workers[f"stage{stage}"]
            if stage == Stage.CLASSIFY:
                for row in stream(query, chunk_size=selectors.CHUNK_ROWS):
                    self.seen += 1
                    (pk, worker_id, prompt_id, prompt_hash, qa_pair_id, prompt, response, mask, safe, version, time_ms, created, updated, is_gold) = row  # fmt: skip
                    worker = pseudonym(worker_id)
                    workers.add(worker)
                    self.last_source = GOLD_ITEMS if is_gold else ORDINARY_ITEMS
                    yield "stage1", prompt_hash, (
                        pk, 1, worker, prompt_id, qa_pair_id, prompt, response, mask, safe, version, time_ms,
                        created.isoformat(), updated.isoformat(), bool(is_gold),
                    )  # fmt: skip
            else:
                for row in stream(query, chunk_size=selectors.CHUNK_ROWS):
                    self.seen += 1
                    (pk, worker_id, prompt_id, prompt_hash, pair_id, qa_a, qa_b, prompt, response_0, response_1, better, safer, swapped, version, time_ms, created, updated, is_gold) = row  # fmt: skip
                    worker = pseudonym(worker_id)
                    workers.add(worker)
                    self.last_source = GOLD_ITEMS if is_gold else ORDINARY_ITEMS
                    yield "stage2", prompt_hash, (
                        pk, 2, worker, prompt_id, pair_id, qa_a, qa_b, prompt, response_0, response_1, better,
                        safer, swapped, version, time_ms, created.isoformat(), updated.isoformat(), bool(is_gold),
                    )  # fmt: skip


def source_for(format: str, project: Project, filters: ExportFilters) -> RowSource:
    if format == ExportFormat.BEAVERTAILS:
        return BeaverTailsSource(project, filters)
    if format == ExportFormat.PKU_SAFERLHF:
        return PkuSaferRlhfSource(project, filters)
    return RawSource(project, filters)
