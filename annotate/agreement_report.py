"""The stored agreement report: load a project's labels as numpy arrays and assemble the payload.

The payload is specified in docs/agreement-report.md; the maths is annotate/agreement.py (see
docs/agreement.md). The report is computed by a Celery task and served as stored: no page view
recomputes it.

Speed (the target is ~1,000,000 stage-1 labels loaded and computed in 5 s on PostgreSQL):

- Labels are read with one `COPY (SELECT ...) TO STDOUT (FORMAT binary)` per stage and parsed with a
  single `np.frombuffer` over fixed-width rows: no Python object per label. Other databases (the
  embedded SQLite default) stream `values_list(...).iterator()` in chunks.
- A binary variable's statistics depend only on each unit's (labels, positives) count row, and with 3
  workers a project has a handful of distinct rows. Every statistic here is evaluated over the
  distinct rows weighted by how many units share each (`_Patterns`), through the per-unit pieces
  annotate.agreement already builds for its bootstrap (the same functions, so the same formulas and
  the same undefined cases). A bootstrap resample of N units over G patterns is exactly a
  Multinomial(N, sizes / N) draw, which is how annotate.agreement resamples grouped rows too. The MASI
  category set groups units by their multiset of category masks the same way. Fifteen binary
  variables and the category set then cost a few bincounts over the labels, not fifteen passes of
  every metric over 330,000 units. tests/annotate/test_agreement_report.py checks every grouped value
  against the public functions of annotate.agreement on the expanded arrays.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone
from scipy import sparse

from annotate import agreement as ag
from annotate.agreement import ConfidenceInterval, Metric, Reason
from annotate.categories import HARM_CATEGORIES
from annotate.consensus import dawid_skene, dense_codes
from annotate.gold import gold_scores
from annotate.models import (
    AgreementReport,
    Assignment,
    AssignmentStatus,
    GoldStage1Label,
    GoldStage2Label,
    Project,
    QAPair,
    ResponsePair,
    Stage,
    Stage1Label,
    Stage2Label,
    WorkItem,
)
from annotate.recompute import agreement_recompute_request
from annotate.rules import forced_safer

IntArray = npt.NDArray[np.int64]

PAYLOAD_VERSION = 1
N_RESAMPLES = ag.N_RESAMPLES
LEVEL = 0.95
# Reports are snapshots; the history a dashboard needs (agreement over time) is inside each payload,
# so only the latest few are kept.
KEEP_REPORTS = 20
_SEED = 20_231_107


# --------------------------------------------------------------------------------------------------
# Loading labels


@dataclass(frozen=True)
class LabelArrays:
    """One stage's labels in long form, one row per label.

    ``unit`` is the QA pair (stage 1) or response pair (stage 2) id, ``created`` the label's creation
    time in whole UTC seconds, ``time_ms`` its time on task (-1 where unknown). ``values`` holds the
    answer columns: ``mask`` for stage 1, ``better`` and ``safer`` (canonical order) for stage 2.
    """

    unit: IntArray
    worker: IntArray
    version: IntArray
    created: IntArray
    time_ms: IntArray
    values: dict[str, IntArray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.unit.size)

    def where(self, keep: npt.NDArray[np.bool_]) -> LabelArrays:
        """The labels where `keep` is true."""
        return LabelArrays(
            self.unit[keep],
            self.worker[keep],
            self.version[keep],
            self.created[keep],
            self.time_ms[keep],
            {name: values[keep] for name, values in self.values.items()},
        )


# (column expression, numpy dtype of its binary COPY form). The columns are sent in their stored types
# (a cast or a function per row would cost more than the transfer); every one is NOT NULL (the time on
# task is coalesced), so each COPY row has the same width and the stream parses as one structured
# array. A timestamptz is microseconds since 2000-01-01 UTC. A column whose type changed makes the
# parser fail loudly rather than misread.
_STAGE1_COLUMNS = (
    ("l.qa_pair_id", ">i8"),
    ("l.worker_id", ">i4"),
    ("l.guideline_version", ">i4"),
    ("l.created_at", ">i8"),
    ("coalesce(l.time_on_task_ms, -1)", ">i4"),
    ("l.categories", ">i4"),
)
_STAGE2_COLUMNS = (
    ("l.response_pair_id", ">i8"),
    ("l.worker_id", ">i4"),
    ("l.guideline_version", ">i4"),
    ("l.created_at", ">i8"),
    ("coalesce(l.time_on_task_ms, -1)", ">i4"),
    ("l.better", ">i2"),
    ("l.safer", ">i2"),
)
_POSTGRES_EPOCH_S = 946_684_800
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _parse_copy_binary(data: memoryview | bytes, dtypes: list[str]) -> list[IntArray]:
    """Columns of a PostgreSQL binary COPY stream whose rows are all fixed-width and non-NULL."""
    buffer = memoryview(data)
    if bytes(buffer[:11]) != _COPY_SIGNATURE:
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension = int.from_bytes(buffer[15:19], "big")
    body = buffer[19 + extension : len(buffer) - 2]
    if bytes(buffer[len(buffer) - 2 :]) != b"\xff\xff":
        raise ValueError("binary COPY stream without its trailer")
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, dtype in enumerate(dtypes):
        fields += [(f"len{i}", ">i4"), (f"v{i}", dtype)]
    row = np.dtype(fields)
    if len(body) % row.itemsize:
        raise ValueError("binary COPY rows are not fixed-width (a NULL or an unexpected type)")
    rows = np.frombuffer(body, dtype=row)
    if rows.size and (
        (rows["n"] != len(dtypes)).any()
        or any((rows[f"len{i}"] != np.dtype(d).itemsize).any() for i, d in enumerate(dtypes))
    ):
        raise ValueError("binary COPY rows are not fixed-width (a NULL or an unexpected type)")
    return [rows[f"v{i}"].astype(np.int64) for i in range(len(dtypes))]


def _copy_columns(sql: str, params: list[Any], columns: tuple[tuple[str, str], ...]) -> list[IntArray]:
    select = ", ".join(expression for expression, _ in columns)
    with transaction.atomic(), connection.cursor() as cursor:
        # The project filter is a hash join over its QA (or response) pairs; with the default 4 MB
        # of work_mem a BeaverTails-size project spills it to disk in batches.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        raw = cursor.cursor
        query = raw.mogrify(sql.format(select=select), params).decode()
        out = io.BytesIO()
        raw.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", out)
    unit, worker, version, created, time_ms, *values = _parse_copy_binary(
        out.getbuffer(), [dtype for _, dtype in columns]
    )
    created = created // 1_000_000 + _POSTGRES_EPOCH_S
    return [unit, worker, version, created, time_ms, *values]


def _can_copy() -> bool:
    # COPY ... TO STDOUT through psycopg2's copy_expert; psycopg 3 or another database streams rows.
    database = getattr(connection, "Database", None)
    return connection.vendor == "postgresql" and getattr(database, "__name__", "") == "psycopg2"


def _stream_columns(rows: Iterator[tuple[Any, ...]], n_columns: int, chunk: int = 50_000) -> list[IntArray]:
    """Build int64 columns from an iterator of tuples, a chunk at a time (the non-PostgreSQL path)."""
    parts: list[IntArray] = []
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == chunk:
            parts.append(np.array(batch, dtype=np.int64).reshape(-1, n_columns))
            batch = []
    if batch:
        parts.append(np.array(batch, dtype=np.int64).reshape(-1, n_columns))
    table = np.concatenate(parts) if parts else np.zeros((0, n_columns), dtype=np.int64)
    return [np.ascontiguousarray(table[:, i]) for i in range(n_columns)]


def _orm_rows(queryset: Any, fields: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    for row in queryset.values_list(*fields).iterator(chunk_size=20_000):
        created = row[3]
        yield (*row[:3], int(created.timestamp()), -1 if row[4] is None else row[4], *row[5:])


def _label_arrays(columns: list[IntArray], value_names: tuple[str, ...]) -> LabelArrays:
    unit, worker, version, created, time_ms, *values = columns
    return LabelArrays(unit, worker, version, created, time_ms, dict(zip(value_names, values, strict=True)))


def _contiguous_ids(model: Any, project: Project) -> tuple[int, int] | None:
    """(lo, hi) when the project's rows of ``model`` are exactly the ids lo..hi, else None.

    Then no other project has an id in that span, and the labels are selected by a range of their
    foreign key instead of a join with the project's 330,000 QA pairs (which is most of the cost of
    reading them). Imports create a project's rows in bulk, so their ids are usually one run.
    """
    span = model.objects.filter(project=project).aggregate(lo=Min("id"), hi=Max("id"), n=Count("id"))
    if span["n"] and span["hi"] - span["lo"] + 1 == span["n"]:
        return int(span["lo"]), int(span["hi"])
    return None


def _label_source(label_model: Any, target_model: Any, fk: str, project: Project) -> tuple[str, list[Any]]:
    """FROM ... WHERE selecting a project's labels: a range of the foreign key, or the join."""
    span = _contiguous_ids(target_model, project)
    if span is not None:
        return f"FROM {label_model._meta.db_table} l WHERE l.{fk} BETWEEN %s AND %s", list(span)
    return (
        f"FROM {label_model._meta.db_table} l JOIN {target_model._meta.db_table} t ON t.id = l.{fk} "
        "WHERE t.project_id = %s",
        [project.pk],
    )


def load_stage1_labels(project: Project) -> LabelArrays:
    """Every stage-1 label of the project as arrays (unit = QA pair id, values["mask"])."""
    if _can_copy():
        source, params = _label_source(Stage1Label, QAPair, "qa_pair_id", project)
        return _label_arrays(_copy_columns("SELECT {select} " + source, params, _STAGE1_COLUMNS), ("mask",))
    fields = ("qa_pair_id", "worker_id", "guideline_version", "created_at", "time_on_task_ms", "categories")
    rows = _orm_rows(Stage1Label.objects.filter(qa_pair__project=project), fields)
    return _label_arrays(_stream_columns(rows, len(fields)), ("mask",))


def load_stage2_labels(project: Project) -> LabelArrays:
    """Every stage-2 label of the project as arrays (unit = response pair id, better and safer)."""
    if _can_copy():
        source, params = _label_source(Stage2Label, ResponsePair, "response_pair_id", project)
        return _label_arrays(
            _copy_columns("SELECT {select} " + source, params, _STAGE2_COLUMNS), ("better", "safer")
        )
    fields = ("response_pair_id", "worker_id", "guideline_version", "created_at", "time_on_task_ms")
    rows = _orm_rows(Stage2Label.objects.filter(response_pair__project=project), (*fields, "better", "safer"))
    return _label_arrays(_stream_columns(rows, len(fields) + 2), ("better", "safer"))


# --------------------------------------------------------------------------------------------------
# Grouped statistics


@dataclass(frozen=True)
class Patterns:
    """The distinct count rows of one variable's rated units, and how many units share each row.

    ``rows`` is patterns x values (dense float64, or scipy CSR for category sets), ``domain`` the value
    of each column, ``sizes`` the number of units with that row. The scale of a binary variable is
    always both columns, used or not (Gwet's chance term depends on it).
    """

    rows: Any
    sizes: IntArray
    domain: np.ndarray

    @property
    def n_units(self) -> int:
        return int(self.sizes.sum())

    def expand(self) -> Any:
        """The units x values table these patterns stand for (tests compare against it)."""
        if sparse.issparse(self.rows):
            return sparse.csr_array(self.rows)[np.repeat(np.arange(self.sizes.size), self.sizes)]
        return np.repeat(np.asarray(self.rows), self.sizes, axis=0)


def binary_patterns(
    totals: npt.ArrayLike, positives: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> Patterns:
    """Patterns of a 0/1 variable from each unit's number of labels and of 1s among them.

    With ``weights`` each entry stands for that many identical units (a group of :class:`UnitSets`).
    """
    m = np.asarray(totals, dtype=np.int64)
    p = np.asarray(positives).astype(np.int64)
    w = None if weights is None else np.asarray(weights, dtype=np.int64)
    if m.size and m.min() < 1:
        rated = m > 0
        m, p, w = m[rated], p[rated], None if w is None else w[rated]
    if m.size == 0:
        return Patterns(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), np.arange(2))
    base = int(m.max()) + 1
    counts = np.bincount(m * base + p, weights=w)
    keys = np.flatnonzero(counts)
    n_labels, n_ones = keys // base, keys % base
    rows = np.asfortranarray(np.column_stack([n_labels - n_ones, n_ones]).astype(np.float64))
    return Patterns(rows, np.rint(counts[keys]).astype(np.int64), np.arange(2))


@dataclass(frozen=True)
class UnitSets:
    """Units grouped by their multiset of category masks: identical units share one group.

    Group g stands for ``sizes[g]`` units with ``lengths[g]`` labels each, whose masks (sorted) are
    ``masks[starts[g] : starts[g] + lengths[g]]``. Every per-unit statistic of stage 1 (is_safe, each
    category, the category set) is a function of that multiset, so it is computed once per group.
    With 3 workers a BeaverTails-size project has a few thousand groups for 330,000 units.
    """

    lengths: IntArray
    sizes: IntArray
    masks: IntArray
    starts: IntArray

    def binary(self, bits: npt.NDArray[Any]) -> Patterns:
        """Patterns of a 0/1 property of each label (``bits``: one entry per entry of ``masks``)."""
        if self.starts.size == 0:
            return binary_patterns(self.lengths, self.lengths, self.sizes)
        positives = np.add.reduceat(bits.astype(np.int64), self.starts)
        return binary_patterns(self.lengths, positives, self.sizes)

    def category_sets(self) -> Patterns:
        """Patterns of the whole category sets (alpha uses the pairable ones, 2 or more labels)."""
        if self.starts.size == 0:
            return Patterns(
                sparse.csr_array((0, 0)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            )
        domain = np.unique(self.masks)
        rows = sparse.csr_array(
            (
                np.ones(self.masks.size),
                (np.repeat(np.arange(self.lengths.size), self.lengths), np.searchsorted(domain, self.masks)),
            ),
            shape=(self.lengths.size, domain.size),
        )
        rows.sum_duplicates()
        return Patterns(rows, self.sizes, domain)


def _segment_positions(starts: IntArray, lengths: IntArray) -> IntArray:
    """The indexes starts[s] .. starts[s] + lengths[s] - 1 of every segment s, concatenated."""
    firsts = np.cumsum(lengths) - lengths
    return np.asarray(
        np.repeat(starts, lengths) + np.arange(int(lengths.sum())) - np.repeat(firsts, lengths),
        dtype=np.int64,
    )


def unit_sets(unit_codes: IntArray, masks: IntArray) -> UnitSets:
    """Group units (codes 0..n-1) by their multiset of 14-bit category masks.

    Units with at most 4 labels are keyed exactly by their sorted masks packed into one int64 (14 bits
    each, and the count above them); larger units (gold items many workers saw) each form their own
    group. One sort of the labels, then work per unit, then per group.
    """
    empty = np.zeros(0, dtype=np.int64)
    if unit_codes.size == 0:
        return UnitSets(empty, empty, empty, empty)
    keyed = np.sort((unit_codes << 14) | masks)
    units, values = keyed >> 14, keyed & 0x3FFF
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    lengths = np.diff(np.r_[starts, units.size])
    position = np.arange(units.size) - np.repeat(starts, lengths)
    packed = np.where(np.repeat(lengths <= 4, lengths), values << (14 * np.minimum(position, 3)), 0)
    keys = np.bitwise_or.reduceat(packed, starts) | (lengths.astype(np.int64) << 56)
    keys = np.where(lengths <= 4, keys, -1 - np.arange(starts.size))
    _, first, sizes = np.unique(keys, return_index=True, return_counts=True)
    group_lengths = lengths[first].astype(np.int64)
    return UnitSets(
        group_lengths,
        sizes.astype(np.int64),
        values[_segment_positions(starts[first], group_lengths)],
        (np.cumsum(group_lengths) - group_lengths).astype(np.int64),
    )


def _interval(estimate: Metric, reason: str | None) -> ConfidenceInterval:
    return ConfidenceInterval(estimate, None, None, LEVEL, N_RESAMPLES, 0, reason)


def alpha_interval(
    patterns: Patterns, *, distance: ag.Distance = ag.nominal_distance, seed: int
) -> ConfidenceInterval:
    """Krippendorff's alpha (the interval's estimate) and its bootstrap interval over units."""
    if patterns.n_units == 0:
        return _interval(Metric.undefined(Reason.NO_DATA), Reason.NO_DATA)
    per_unit = np.asarray(patterns.rows.sum(axis=1)).ravel()
    pairable = per_unit >= 2
    if not pairable.any():
        return _interval(Metric.undefined(Reason.NO_PAIRABLE_UNITS), Reason.NO_PAIRABLE_UNITS)
    rows = patterns.rows[pairable]
    if not sparse.issparse(rows):
        rows = np.asfortranarray(rows)
    parts = ag._alpha_parts(rows, patterns.domain, distance)
    if isinstance(parts, Reason):
        return _interval(Metric.undefined(parts), parts)
    sizes = patterns.sizes[pairable]
    n_units = int(sizes.sum())
    value = ag._alpha_values(parts, [sizes[None, :].astype(np.float64)])[0]
    estimate = (
        Metric.undefined(Reason.NO_VARIATION, n_units) if np.isnan(value) else Metric.of(value, n_units)
    )
    return ag._percentile_ci(
        lambda blocks: ag._alpha_values(parts, blocks),
        estimate,
        sizes,
        n_resamples=N_RESAMPLES,
        level=LEVEL,
        seed=seed,
    )


def percent_agreement(patterns: Patterns) -> Metric:
    share, pairable = ag._unit_pair_agreement(np.asarray(patterns.rows, dtype=np.float64))
    n = int(patterns.sizes[pairable].sum())
    if n == 0:
        return Metric.undefined(Reason.NO_PAIRABLE_UNITS)
    return Metric.of(float(patterns.sizes[pairable] @ share[pairable]) / n, n)


def gwet_ac1(patterns: Patterns) -> Metric:
    rows = np.asarray(patterns.rows, dtype=np.float64)
    if rows.shape[1] < 2:
        return Metric.undefined(Reason.TOO_FEW_CATEGORIES)
    _, pairable = ag._unit_pair_agreement(rows)
    n = int(patterns.sizes[pairable].sum())
    if n == 0:
        return Metric.undefined(Reason.NO_PAIRABLE_UNITS)
    value = ag._gwet_values(ag._gwet_pieces(rows), patterns.sizes[None, :].astype(np.float64))[0]
    return Metric.of(value, n)


def fleiss_kappa(patterns: Patterns, *, n_raters: int | None) -> Metric:
    """Fleiss' kappa over the units with exactly ``n_raters`` labels (statsmodels' formula, weighted).

    The undefined cases are those of annotate.agreement.fleiss_kappa, in the same order.
    """
    rows = np.asarray(patterns.rows, dtype=np.float64)
    raters = rows.sum(axis=1)
    keep = raters > 0
    if n_raters is not None:
        keep &= raters == n_raters
    rows, raters, sizes = rows[keep], raters[keep], patterns.sizes[keep].astype(np.float64)
    n = int(sizes.sum())
    if n == 0:
        return Metric.undefined(Reason.NO_DATA)
    if (raters != raters[0]).any():
        return Metric.undefined(Reason.UNEQUAL_RATERS, n)
    k = float(raters[0])
    if k < 2:
        return Metric.undefined(Reason.NO_PAIRABLE_UNITS, n)
    if n < 2:
        return Metric.undefined(Reason.TOO_FEW_UNITS, n)
    totals = sizes @ rows
    if np.count_nonzero(totals) < 2:
        return Metric.undefined(Reason.NO_VARIATION, n)
    p_category = totals / (n * k)
    p_unit = ((rows * rows).sum(axis=1) - k) / (k * (k - 1.0))
    p_mean = float(sizes @ p_unit) / n
    p_expected = float((p_category * p_category).sum())
    return Metric.of((p_mean - p_expected) / (1.0 - p_expected), n)


def variable_block(patterns: Patterns, *, n_raters: int | None, seed: int) -> dict[str, Any]:
    """alpha, alpha_ci, fleiss_kappa, percent_agreement, gwet_ac1 of one variable (the payload's block)."""
    interval = alpha_interval(patterns, seed=seed)
    return {
        "alpha": interval.estimate.as_dict(),
        "alpha_ci": interval.as_dict(),
        "fleiss_kappa": fleiss_kappa(patterns, n_raters=n_raters).as_dict(),
        "percent_agreement": percent_agreement(patterns).as_dict(),
        "gwet_ac1": gwet_ac1(patterns).as_dict(),
    }


# --------------------------------------------------------------------------------------------------
# Sections of the payload


def _seed(name: str) -> int:
    # A fixed seed per statistic: recomputing unchanged data gives the same intervals.
    return _SEED + sum(ord(c) * (i + 1) for i, c in enumerate(name))


def stage1_section(labels: LabelArrays, *, overlap: int) -> dict[str, Any]:
    """The payload's "stage1": is_safe, each category as a 0/1 variable, and the set under MASI."""
    units, unit_codes = dense_codes(labels.unit)
    groups = unit_sets(unit_codes, labels.values["mask"])
    section: dict[str, Any] = {
        "labels": labels.size,
        "items": int(units.size),
        "workers": int(np.unique(labels.worker).size),
        "is_safe": variable_block(groups.binary(groups.masks == 0), n_raters=overlap, seed=_seed("is_safe")),
        "categories": {
            category.key: variable_block(
                groups.binary((groups.masks >> category.id) & 1), n_raters=overlap, seed=_seed(category.key)
            )
            for category in HARM_CATEGORIES
        },
    }
    interval = alpha_interval(groups.category_sets(), distance=ag.masi_distance, seed=_seed("category_set"))
    section["category_set"] = {"alpha": interval.estimate.as_dict(), "alpha_ci": interval.as_dict()}
    return section


def forced_safer_units(project: Project) -> IntArray:
    """The project's response pairs whose harmless answer is forced: exactly one response is safe by the
    workers' settled stage-1 consensus (annotate.rules.forced_safer, the rule workers are held to)."""
    rows = ResponsePair.objects.filter(project=project).values_list(
        "id",
        "qa_a__work_item__settled_at",
        "qa_a__work_item__consensus_safe",
        "qa_b__work_item__settled_at",
        "qa_b__work_item__consensus_safe",
    )
    forced = [
        pk
        for pk, settled_a, safe_a, settled_b, safe_b in rows.iterator(chunk_size=20_000)
        if forced_safer(safe_a if settled_a is not None else None, safe_b if settled_b is not None else None)
        is not None
    ]
    return np.asarray(forced, dtype=np.int64)


def free_safer_labels(labels: LabelArrays, forced_units: IntArray) -> LabelArrays:
    """The stage-2 labels whose harmless answer was the worker's own choice (their pair is not forced)."""
    return labels.where(~np.isin(labels.unit, forced_units))


def stage2_section(
    labels: LabelArrays, *, overlap: int, forced_units: IntArray | None = None
) -> dict[str, Any]:
    """The payload's "stage2": better and safer, in the pair's canonical orientation.

    Where exactly one response is safe the harmless answer is forced, so every worker "agrees": the
    headline `safer` is over the free choices only (both responses safe, or both unsafe), with
    `safer_forced` saying how many pairs were forced and `safer_all` the figure over every pair."""
    forced_units = np.zeros(0, dtype=np.int64) if forced_units is None else forced_units
    units, unit_codes = dense_codes(labels.unit)
    totals = np.bincount(unit_codes, minlength=units.size)
    section: dict[str, Any] = {
        "labels": labels.size,
        "items": int(units.size),
        "workers": int(np.unique(labels.worker).size),
    }

    def block(arrays: LabelArrays, name: str, seed_name: str) -> dict[str, Any]:
        codes_units, codes = dense_codes(arrays.unit)
        counts = np.bincount(codes, minlength=codes_units.size)
        positives = np.bincount(codes, weights=arrays.values[name], minlength=codes_units.size)
        return variable_block(binary_patterns(counts, positives), n_raters=overlap, seed=_seed(seed_name))

    positives = np.bincount(unit_codes, weights=labels.values["better"], minlength=units.size)
    section["better"] = variable_block(
        binary_patterns(totals, positives), n_raters=overlap, seed=_seed("better")
    )
    free = free_safer_labels(labels, forced_units)
    section["safer"] = block(free, "safer", "safer")
    forced_items = int(np.isin(units, forced_units).sum())
    section["safer_forced"] = {
        "items": forced_items,
        "labels": labels.size - free.size,
        "share_of_items": forced_items / units.size if units.size else None,
    }
    section["safer_all"] = block(labels, "safer", "safer_all")
    return section


def _progress(project: Project, s1: LabelArrays, s2: LabelArrays, now: datetime) -> dict[str, Any]:
    unsettled = Q(settled_at__isnull=True)
    rows = (
        WorkItem.objects.filter(project=project)
        .values("stage")
        .annotate(
            n_items=Count("id"),
            n_settled=Count("id", filter=Q(settled_at__isnull=False)),
            n_adjudication=Count("id", filter=unsettled & Q(needs_adjudication=True)),
            n_not_started=Count(
                "id", filter=unsettled & Q(needs_adjudication=False, taken=0, labels_count=0)
            ),
        )
    )
    by_stage = {row["stage"]: row for row in rows}
    progress: dict[str, Any] = {}
    for stage in Stage:
        row = by_stage.get(stage.value, {})
        items = row.get("n_items", 0)
        settled, adjudication, not_started = (
            row.get("n_settled", 0),
            row.get("n_adjudication", 0),
            row.get("n_not_started", 0),
        )
        progress[f"stage{stage.value}"] = {
            "items": items,
            "settled": settled,
            "in_progress": items - settled - adjudication - not_started,
            "not_started": not_started,
            "needs_adjudication": adjudication,
        }
    last_hour = int(now.timestamp()) // 3600
    hours = np.arange(last_hour - 23, last_hour + 1)

    def per_hour(created: IntArray) -> IntArray:
        offset = created // 3600 - hours[0]
        recent = (offset >= 0) & (offset < hours.size)
        return np.bincount(offset[recent], minlength=hours.size)

    stage1, stage2 = per_hour(s1.created), per_hour(s2.created)
    progress["labels_per_hour"] = [
        {"hour": _iso(int(hour) * 3600), "stage1": int(a), "stage2": int(b)}
        for hour, a, b in zip(hours, stage1, stage2, strict=True)
    ]
    return progress


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Gold:
    """Gold answers aligned with a stage's labels: ``hit`` marks labels on gold items."""

    hit: npt.NDArray[np.bool_]
    index: IntArray
    ids: IntArray
    columns: dict[str, IntArray]

    def at(self, name: str) -> IntArray:
        return self.columns[name][self.index[self.hit]]


def _align_gold(unit: IntArray, ids: IntArray, columns: dict[str, IntArray]) -> _Gold:
    """Which labels are on gold items, and the index of their gold row (a lookup table over unit ids)."""
    if ids.size == 0 or unit.size == 0:
        return _Gold(np.zeros(unit.size, dtype=bool), np.zeros(unit.size, dtype=np.int64), ids, columns)
    top = int(max(ids.max(), unit.max())) + 1
    if top <= 4 * unit.size + 1_000_000:
        lookup = np.full(top, -1, dtype=np.int64)
        lookup[ids] = np.arange(ids.size)
        index = lookup[unit]
        return _Gold(index >= 0, np.maximum(index, 0), ids, columns)
    order = np.argsort(ids)
    ids, columns = ids[order], {name: column[order] for name, column in columns.items()}
    index = np.minimum(np.searchsorted(ids, unit), ids.size - 1)
    return _Gold(ids[index] == unit, index, ids, columns)


def _gold_stage1(project: Project, labels: LabelArrays) -> _Gold:
    rows = np.array(
        GoldStage1Label.objects.filter(qa_pair__project=project).values_list(
            "qa_pair_id", "categories", "is_safe"
        ),
        dtype=np.int64,
    ).reshape(-1, 3)
    return _align_gold(labels.unit, rows[:, 0], {"mask": rows[:, 1], "safe": rows[:, 2]})


def _gold_stage2(project: Project, labels: LabelArrays) -> _Gold:
    rows = np.array(
        GoldStage2Label.objects.filter(response_pair__project=project).values_list(
            "response_pair_id", "better", "safer"
        ),
        dtype=np.int64,
    ).reshape(-1, 3)
    return _align_gold(labels.unit, rows[:, 0], {"better": rows[:, 1], "safer": rows[:, 2]})


def _share(correct: npt.NDArray[np.bool_]) -> Metric:
    if correct.size == 0:
        return Metric.undefined(Reason.NO_DATA)
    return Metric.of(float(correct.mean()), int(correct.size))


def _stage1_gold_correct(labels: LabelArrays, gold: _Gold) -> npt.NDArray[np.bool_]:
    # annotate.gold's rule: an expert "unsafe" with no category is judged on is_safe alone.
    masks = labels.values["mask"][gold.hit]
    gold_mask, gold_safe = gold.at("mask"), gold.at("safe").astype(bool)
    safety_only = ~gold_safe & (gold_mask == 0)
    return np.asarray(np.where(safety_only, (masks == 0) == gold_safe, masks == gold_mask), dtype=bool)


def _gold_section(s1: LabelArrays, g1: _Gold, s2: LabelArrays, g2: _Gold) -> dict[str, Any]:
    stage2_correct = (s2.values["better"][g2.hit] == g2.at("better")) & (
        s2.values["safer"][g2.hit] == g2.at("safer")
    )
    return {
        "stage1_is_safe_kappa": ag.cohen_kappa(
            (s1.values["mask"][g1.hit] == 0).astype(np.int64), g1.at("safe")
        ).as_dict(),
        "stage1_exact_accuracy": _share(_stage1_gold_correct(s1, g1)).as_dict(),
        "stage2_accuracy": _share(np.asarray(stage2_correct, dtype=bool)).as_dict(),
    }


def _median_per_worker(workers: IntArray, times: IntArray) -> dict[int, int]:
    known = times >= 0
    workers, times = workers[known], times[known]
    if workers.size == 0:
        return {}
    ids, codes = dense_codes(workers)
    ordered = np.sort((codes << 32) | times)
    codes_sorted, times_sorted = ordered >> 32, ordered & 0xFFFFFFFF
    starts = np.searchsorted(codes_sorted, np.arange(ids.size))
    ends = np.r_[starts[1:], codes_sorted.size]
    lower, upper = (
        times_sorted[starts + (ends - starts - 1) // 2],
        times_sorted[starts + (ends - starts) // 2],
    )
    return {int(w): round((lo + hi) / 2) for w, lo, hi in zip(ids, lower, upper, strict=True)}


def binary_leave_one_out(
    unit_codes: IntArray, workers: IntArray, bits: IntArray
) -> dict[int, dict[str, Any]]:
    """annotate.agreement.leave_one_out_agreement (min_others=2) for a 0/1 variable, in closed form.

    A label's unit has m labels of which p are 1; the other workers' majority is 1 when 2 (p - v) >
    m - 1, 0 when it is less, and a tie otherwise, so each label's outcome is a few array operations,
    not a walk over its unit's values. Equal to the general function (tested), at a tenth of its cost.
    """
    if unit_codes.size == 0:
        return {}
    n_units = int(unit_codes.max()) + 1
    v = bits.astype(np.int64)
    m = np.bincount(unit_codes, minlength=n_units)[unit_codes]
    p = np.bincount(unit_codes, weights=v, minlength=n_units).astype(np.int64)[unit_codes]
    margin = 2 * (p - v) - (m - 1)  # > 0: the others say 1; < 0: they say 0; 0: tied (left out)
    eligible = m - 1 >= 2
    compared = eligible & (margin != 0)
    agree = compared & ((margin > 0) == (v == 1))
    ids, codes = dense_codes(workers)
    n_compared = np.bincount(codes, weights=compared, minlength=ids.size).astype(np.int64)
    n_agree = np.bincount(codes, weights=agree, minlength=ids.size).astype(np.int64)
    return {
        int(worker): {
            "rate": float(n_agree[i] / n_compared[i]) if n_compared[i] else None,
            "n_compared": int(n_compared[i]),
            "reason": None if n_compared[i] else Reason.NO_MAJORITY.value,
        }
        for i, worker in enumerate(ids)
    }


_NO_LOO = {"rate": None, "n_compared": 0, "reason": Reason.NO_DATA.value}


def _workers_section(
    project: Project, s1: LabelArrays, g1: _Gold, s2: LabelArrays, s2_free: LabelArrays
) -> list[dict[str, Any]]:
    outcomes: dict[int, dict[str, int]] = {}
    for worker_id, status, n in (
        Assignment.objects.filter(
            project=project, status__in=[AssignmentStatus.SUBMITTED, AssignmentStatus.SKIPPED]
        )
        .values_list("worker_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        outcomes.setdefault(worker_id, {})[status] = n
    worker_ids = sorted(
        set(np.unique(s1.worker).tolist()) | set(np.unique(s2.worker).tolist()) | set(outcomes)
    )
    if not worker_ids:
        return []
    usernames = dict(get_user_model().objects.filter(pk__in=worker_ids).values_list("pk", "username"))
    s1_counts = dict(zip(*np.unique(s1.worker, return_counts=True), strict=True))
    s2_counts = dict(zip(*np.unique(s2.worker, return_counts=True), strict=True))
    _, s1_units = dense_codes(s1.unit)
    _, s2_units = dense_codes(s2.unit)
    loo_safe = binary_leave_one_out(s1_units, s1.worker, s1.values["mask"] == 0)
    loo_better = binary_leave_one_out(s2_units, s2.worker, s2.values["better"])
    # As the headline: a forced harmless answer agrees with everyone by construction.
    _, free_units = dense_codes(s2_free.unit)
    loo_safer = binary_leave_one_out(free_units, s2_free.worker, s2_free.values["safer"])
    scores = {score.worker_id: score for score in gold_scores(project)}
    medians = _median_per_worker(
        np.concatenate([s1.worker, s2.worker]), np.concatenate([s1.time_ms, s2.time_ms])
    )
    kappas = _gold_kappa_per_worker(s1, g1)

    rows = []
    for worker_id in worker_ids:
        score = scores.get(worker_id)
        done = outcomes.get(worker_id, {})
        submitted, skipped = done.get(AssignmentStatus.SUBMITTED, 0), done.get(AssignmentStatus.SKIPPED, 0)
        rows.append(
            {
                "worker_id": worker_id,
                "username": usernames.get(worker_id, ""),
                "labels_stage1": int(s1_counts.get(worker_id, 0)),
                "labels_stage2": int(s2_counts.get(worker_id, 0)),
                "loo_is_safe": loo_safe.get(worker_id, _NO_LOO),
                "loo_better": loo_better.get(worker_id, _NO_LOO),
                "loo_safer": loo_safer.get(worker_id, _NO_LOO),
                "gold_answered": score.answered if score else 0,
                "gold_correct": score.correct if score else 0,
                "gold_accuracy": score.accuracy if score else None,
                "gold_kappa_is_safe": kappas.get(worker_id, Metric.undefined(Reason.NO_DATA)).as_dict(),
                "skip_rate": skipped / (submitted + skipped) if submitted + skipped else None,
                "median_time_on_task_ms": medians.get(worker_id),
                "flagged": bool(score and score.flagged),
            }
        )
    rows.sort(key=lambda row: (row["username"], row["worker_id"]))
    return rows


def _gold_kappa_per_worker(labels: LabelArrays, gold: _Gold) -> dict[int, Metric]:
    if not gold.hit.any():
        return {}
    ids, codes = dense_codes(labels.worker[gold.hit])
    said_safe = (labels.values["mask"][gold.hit] == 0).astype(np.int64)
    confusion = np.bincount(codes * 4 + said_safe * 2 + gold.at("safe"), minlength=ids.size * 4)
    return {
        int(worker): ag.cohen_kappa_table(table.reshape(2, 2))
        for worker, table in zip(ids, confusion.reshape(-1, 4), strict=True)
    }


def _period_alphas(
    labels: LabelArrays, period: IntArray, variables: dict[str, npt.NDArray[Any]], *, with_ci: set[str]
) -> dict[int, dict[str, Any]]:
    """Alpha (and an interval where asked) of each 0/1 variable within each period's labels only.

    Per variable, one sort of (period, unit, bit) packed into an int64 gives every (period, unit)'s
    label count and 1s as segment lengths and sums; each period's patterns then come from those.
    """
    if labels.size == 0:
        return {}
    _, unit_codes = dense_codes(labels.unit)
    periods, period_codes = dense_codes(period)
    out: dict[int, dict[str, Any]] = {}
    for code, n in zip(*np.unique(period_codes, return_counts=True), strict=True):
        out[int(periods[code])] = {"labels": int(n)}
    for name, values in variables.items():
        keyed = np.sort((period_codes << 42) | (unit_codes << 1) | values.astype(np.int64))
        cell = keyed >> 1
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        totals = np.diff(np.r_[starts, keyed.size])
        ones = np.add.reduceat(keyed & 1, starts)
        cell_period = cell[starts] >> 41
        bounds = np.flatnonzero(np.r_[True, cell_period[1:] != cell_period[:-1], True])
        for start, end in itertools.pairwise(bounds):
            key = int(periods[cell_period[start]])
            interval = alpha_interval(
                binary_patterns(totals[start:end], ones[start:end]), seed=_seed(f"{name}:{key}")
            )
            out[key][name] = interval.estimate.as_dict()
            if name in with_ci:
                out[key][f"{name}_ci"] = interval.as_dict()
    return out


def _over_time(s1: LabelArrays, s2: LabelArrays, free: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Agreement per day and per guideline version; `safer` over the free choices (``free``: which
    stage-2 labels were not forced), as the headline."""
    s2_free = s2.where(free)

    def series(key1: IntArray, key2: IntArray, label: Callable[[int], Any]) -> list[dict[str, Any]]:
        first = _period_alphas(s1, key1, {"is_safe": s1.values["mask"] == 0}, with_ci={"is_safe"})
        second = _period_alphas(s2, key2, {"better": s2.values["better"]}, with_ci=set())
        for code, values in _period_alphas(
            s2_free, key2[free], {"safer": s2_free.values["safer"]}, with_ci=set()
        ).items():
            second.setdefault(code, {"labels": 0})["safer"] = values["safer"]
        missing = Metric.undefined(Reason.NO_DATA).as_dict()
        rows = []
        for code in sorted(set(first) | set(second)):
            a, b = first.get(code, {}), second.get(code, {})
            rows.append(
                {
                    "period": label(code),
                    "stage1_labels": a.get("labels", 0),
                    "stage2_labels": b.get("labels", 0),
                    "is_safe_alpha": a.get("is_safe", missing),
                    "is_safe_alpha_ci": a.get(
                        "is_safe_ci", _interval(Metric.undefined(Reason.NO_DATA), Reason.NO_DATA).as_dict()
                    ),
                    "better_alpha": b.get("better", missing),
                    "safer_alpha": b.get("safer", missing),
                }
            )
        return rows

    def day(code: int) -> str:
        return datetime.fromtimestamp(code * 86400, tz=UTC).date().isoformat()

    return {
        "by_day": series(s1.created // 86400, s2.created // 86400, day),
        "by_guideline_version": series(s1.version, s2.version, int),
    }


def _majority_accuracy(
    unit_codes: IntArray, values: IntArray, gold_units: IntArray, gold_values: IntArray
) -> Metric:
    """Share of gold units whose strict majority label is the gold answer (a tie is no decision)."""
    n_units = int(unit_codes.max()) + 1 if unit_codes.size else 0
    totals = np.bincount(unit_codes, minlength=n_units)
    ones = np.bincount(unit_codes, weights=values.astype(np.float64), minlength=n_units)
    decided = np.where(2 * ones > totals, 1, np.where(2 * ones < totals, 0, -1))
    if gold_units.size == 0:
        return Metric.undefined(Reason.NO_DATA)
    return Metric.of(float((decided[gold_units] == gold_values).mean()), int(gold_units.size))


def _consensus_on_gold(
    labels: LabelArrays, values: IntArray, gold: _Gold, gold_values: IntArray
) -> dict[str, Any]:
    """Majority vote and Dawid-Skene against gold on one 0/1 variable."""
    if not gold.hit.any():
        undefined = Metric.undefined(Reason.NO_DATA).as_dict()
        return {
            "majority_accuracy": undefined,
            "dawid_skene_accuracy": undefined,
            "iterations": 0,
            "converged": False,
        }
    _, unit_codes = dense_codes(labels.unit)
    result = dawid_skene(unit_codes, labels.worker, values, 2)
    # Gold units that have labels, each once, with their gold answer.
    gold_unit_codes, first = np.unique(unit_codes[gold.hit], return_index=True)
    answers = gold_values[first]
    ds_correct = result.labels()[gold_unit_codes] == answers
    return {
        "majority_accuracy": _majority_accuracy(unit_codes, values, gold_unit_codes, answers).as_dict(),
        "dawid_skene_accuracy": Metric.of(float(ds_correct.mean()), int(gold_unit_codes.size)).as_dict(),
        "iterations": result.iterations,
        "converged": result.converged,
    }


def _consensus(s1: LabelArrays, g1: _Gold, s2: LabelArrays, g2: _Gold) -> dict[str, Any]:
    by_variable = {
        "is_safe": _consensus_on_gold(s1, (s1.values["mask"] == 0).astype(np.int64), g1, g1.at("safe")),
        "better": _consensus_on_gold(s2, s2.values["better"], g2, g2.at("better")),
        "safer": _consensus_on_gold(s2, s2.values["safer"], g2, g2.at("safer")),
    }
    main = by_variable["is_safe"]
    return {
        "dawid_skene_vs_majority_on_gold": {
            "majority_accuracy": main["majority_accuracy"],
            "dawid_skene_accuracy": main["dawid_skene_accuracy"],
        },
        "by_variable": by_variable,
    }


def _alert_candidates(payload: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    stage1, stage2 = payload["stage1"], payload["stage2"]
    yield "stage1.is_safe.alpha", "Stage 1 · Is safe · alpha", stage1["is_safe"]["alpha"]
    for category in HARM_CATEGORIES:
        block = stage1["categories"][category.key]
        yield f"stage1.categories.{category.key}.alpha", f"Stage 1 · {category.label} · alpha", block["alpha"]
    yield (
        "stage1.category_set.alpha",
        "Stage 1 · Category set (MASI) · alpha",
        stage1["category_set"]["alpha"],
    )
    yield "stage2.better.alpha", "Stage 2 · More helpful · alpha", stage2["better"]["alpha"]
    yield "stage2.safer.alpha", "Stage 2 · More harmless · alpha", stage2["safer"]["alpha"]
    yield (
        "gold.stage1_is_safe_kappa",
        "Gold · Stage 1 is safe · Cohen's kappa",
        payload["gold"]["stage1_is_safe_kappa"],
    )


# Below this many units an agreement figure's bootstrap interval is wide enough to hold both "poor" and
# "good" (with 10 units alpha's 95% interval typically spans more than 0.5), so a low value is noise, not
# news: it is shown with its n and interval, but raises no alert.
ALERT_MIN_UNITS = 30


def _alerts(payload: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    """Every defined agreement figure under the project's threshold that rests on at least
    ALERT_MIN_UNITS units (undefined ones, and ones from too few units, never alert)."""
    return [
        {
            "metric": path,
            "label": label,
            "value": metric["value"],
            "n_units": metric["n_units"],
            "threshold": threshold,
        }
        for path, label, metric in _alert_candidates(payload)
        if metric["value"] is not None
        and metric["value"] < threshold
        and metric["n_units"] >= ALERT_MIN_UNITS
    ]


def _label_watermarks() -> dict[str, int]:
    # Taken before the labels are read: anything newer counts towards the next recompute.
    return {
        "stage1_label_id": Stage1Label.objects.aggregate(top=Max("id"))["top"] or 0,
        "stage2_label_id": Stage2Label.objects.aggregate(top=Max("id"))["top"] or 0,
    }


def agreement_payload(*, project: Project, now: datetime | None = None) -> dict[str, Any]:
    """Compute the whole payload of docs/agreement-report.md from the database (reads only)."""
    started = time.perf_counter()
    now = now or timezone.now()
    watermark = _label_watermarks()
    s1, s2 = load_stage1_labels(project), load_stage2_labels(project)
    g1, g2 = _gold_stage1(project, s1), _gold_stage2(project, s2)
    forced = forced_safer_units(project)
    free = ~np.isin(s2.unit, forced)
    payload: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "computed_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_ms": 0,
        "guideline_version": project.guideline_version,
        "progress": _progress(project, s1, s2, now),
        "stage1": stage1_section(s1, overlap=project.overlap_stage1),
        "stage2": stage2_section(s2, overlap=project.overlap_stage2, forced_units=forced),
        "gold": _gold_section(s1, g1, s2, g2),
        "workers": _workers_section(project, s1, g1, s2, s2.where(free)),
        "over_time": _over_time(s1, s2, free),
        "consensus": _consensus(s1, g1, s2, g2),
        "watermark": watermark,
    }
    payload["alerts"] = _alerts(payload, project.agreement_alert_threshold)
    payload["duration_ms"] = round((time.perf_counter() - started) * 1000)
    # A NaN here would be a bug upstream; fail the task loudly rather than store invalid JSON.
    json.dumps(payload, allow_nan=False)
    return payload


# --------------------------------------------------------------------------------------------------
# Services and selectors


@transaction.atomic
def agreement_report_compute(*, project: Project) -> AgreementReport:
    """Compute and store a fresh report; older reports beyond the last KEEP_REPORTS are deleted."""
    now = timezone.now()
    payload = agreement_payload(project=project, now=now)
    report = AgreementReport.objects.create(
        project=project,
        computed_at=now,
        stage1_labels=payload["stage1"]["labels"],
        stage2_labels=payload["stage2"]["labels"],
        duration_ms=payload["duration_ms"],
        payload=payload,
    )
    stale = list(
        AgreementReport.objects.filter(project=project)
        .order_by("-computed_at", "-id")
        .values_list("id", flat=True)[KEEP_REPORTS:]
    )
    if stale:
        AgreementReport.objects.filter(pk__in=stale).delete()
    return report


def latest_report(project: Project) -> AgreementReport | None:
    """The project's most recent stored report (index agreementreport_latest)."""
    return AgreementReport.objects.filter(project=project).order_by("-computed_at", "-id").first()


def project_needs_recompute(project: Project, *, now: datetime | None = None) -> bool:
    """No report yet; or at least `agreement_recompute_labels` labels newer than the last report's; or
    any newer label once the last report is AGREEMENT_REFRESH_S old, so that the dashboard follows the
    labels within about a minute (the beat asks every 30 s) without recomputing on every label.

    Cheap at any size: the last report stores the highest label ids it had seen (its watermark), and
    the new labels are counted from there with a LIMIT, walking the primary key index.
    """
    row = (
        AgreementReport.objects.filter(project=project)
        .order_by("-computed_at", "-id")
        .values_list("payload__watermark", "computed_at")
        .first()
    )
    if row is None:
        return True
    watermark = row[0] if isinstance(row[0], dict) else {}
    old_enough = (now or timezone.now()) - row[1] >= timedelta(seconds=settings.AGREEMENT_REFRESH_S)
    needed = 1 if old_enough else max(1, project.agreement_recompute_labels)
    new = (
        Stage1Label.objects.filter(qa_pair__project=project, pk__gt=watermark.get("stage1_label_id", 0))
        .values("pk")[:needed]
        .count()
    )
    if new >= needed:
        return True
    new += (
        Stage2Label.objects.filter(response_pair__project=project, pk__gt=watermark.get("stage2_label_id", 0))
        .values("pk")[: needed - new]
        .count()
    )
    return new >= needed


def agreement_recompute_due() -> list[int]:
    """Queue a recompute for every project that needs one; the ids of the projects queued."""
    queued = []
    for project in Project.objects.only("id", "agreement_recompute_labels").order_by("id"):
        if project_needs_recompute(project) and agreement_recompute_request(project=project):
            queued.append(project.pk)
    return queued
