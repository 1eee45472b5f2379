"""Inter-annotator agreement: pure functions over numpy arrays (no Django, no database).

Conventions shared by every function here (docs/agreement.md has the formulas):

- Ratings come in "long" form, one row per label: ``units[i]``, ``coders[i]`` (where it matters) and
  ``values[i]``, with arbitrary integer ids, which is how the platform stores ~1,000,000 labels. A wide
  units x coders matrix with a missing marker is converted to long form by :func:`wide_to_long`.
- Count-table metrics (Fleiss, Gwet, percent agreement) take a units x categories table of counts, built
  once by :func:`count_table` and shared between them.
- Nothing returns NaN or inf, because results go to JSON: a metric that is undefined for the data (no
  labels, one label per unit, no variation) comes back as ``Metric(value=None, reason=...)``.
  Malformed input (arrays of different lengths, a category code outside the table) raises ValueError:
  that is a bug in the caller, not a property of the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats import inter_rater

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Bootstrap resamples behind every confidence interval (the stored report uses the same): at 95%, the
# interval's ends are the 25th and 975th of 1,000 sorted resamples, where 200 left five on each side and
# the ends moved by a few hundredths between two seeds.
N_RESAMPLES = 1000

# Up to this many distinct values a units x values count table is held dense: for a binary or small
# nominal variable that is N x 2 numbers, and dense row operations beat enumerating sparse pairs by an
# order of magnitude. Larger domains (category sets under MASI) stay sparse.
_DENSE_MAX_VALUES = 8

# A bound on the elements of one temporary block (value-distance blocks, bootstrap weight blocks), so
# memory stays at tens of MB whatever the number of units or distinct values.
_BLOCK_ELEMENTS = 4_000_000


class Reason(StrEnum):
    """Why a metric has no value. A StrEnum, so it serialises to JSON as its plain string."""

    NO_DATA = "no data"
    NO_PAIRABLE_UNITS = "no unit has 2 or more labels"
    NO_VARIATION = "no variation"
    TOO_FEW_UNITS = "too few units"
    TOO_FEW_CATEGORIES = "fewer than 2 categories"
    UNEQUAL_RATERS = "units have different numbers of raters"
    NO_MAJORITY = "no unit with a clear majority among the other workers"
    UNSTABLE = "undefined in too many bootstrap resamples"
    NOT_FINITE = "numerically undefined"


@dataclass(frozen=True, slots=True)
class Metric:
    """One agreement number, or an explicit "not enough data".

    ``n_units`` is the number of units that entered the computation (e.g. pairable units for alpha), so a
    dashboard can show how much evidence a value rests on.
    """

    value: float | None
    n_units: int
    reason: str | None = None

    @classmethod
    def of(cls, value: float, n_units: int) -> Metric:
        # The single gate every computed number passes, so a NaN can never leak into JSON.
        value = float(value)
        if not math.isfinite(value):
            return cls(None, n_units, Reason.NOT_FINITE)
        return cls(value, n_units, None)

    @classmethod
    def undefined(cls, reason: Reason, n_units: int = 0) -> Metric:
        return cls(None, n_units, reason)

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {"value": self.value, "n_units": self.n_units, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ConfidenceInterval:
    """A percentile bootstrap interval around a point estimate.

    ``n_valid`` counts the resamples where the statistic was defined; the others (e.g. a resample of a
    rare category that drew no positive label) are left out of the percentiles, and when they are more
    than 1 - level of all resamples no interval is given (reason "undefined in too many ...").
    """

    estimate: Metric
    low: float | None
    high: float | None
    level: float
    n_resamples: int
    n_valid: int
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.as_dict(),
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "n_resamples": self.n_resamples,
            "n_valid": self.n_valid,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class WorkerAgreement:
    """Leave-one-out agreement of one worker with the majority of the other workers.

    ``n_compared`` counts the worker's labels on units where at least ``min_others`` other workers
    labelled and their majority was unique; ``n_tied`` the labels where the others were tied (left out
    of the rate, because there is no majority to agree with).
    """

    worker: int
    n_labels: int
    n_compared: int
    n_agree: int
    n_tied: int
    rate: float | None
    reason: str | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {
            "worker": self.worker,
            "n_labels": self.n_labels,
            "n_compared": self.n_compared,
            "n_agree": self.n_agree,
            "n_tied": self.n_tied,
            "rate": self.rate,
            "reason": self.reason,
        }


# --------------------------------------------------------------------------------------------------
# Input shaping


def wide_to_long(matrix: npt.ArrayLike, *, missing: float = -1) -> tuple[IntArray, IntArray, np.ndarray]:
    """Turn a units x coders matrix into long form ``(units, coders, values)``.

    NaN is always missing in a float matrix; ``missing`` is the marker in an integer one (-1 by default,
    since 0 is a real value: the empty category set).
    """
    data = np.asarray(matrix)
    if data.ndim != 2:
        raise ValueError(f"expected a units x coders matrix, got shape {data.shape}")
    present = data != missing
    if np.issubdtype(data.dtype, np.floating):
        present &= ~np.isnan(data)
    units, coders = np.nonzero(present)
    return units.astype(np.int64), coders.astype(np.int64), data[units, coders]


def _long_arrays(*arrays: npt.ArrayLike) -> tuple[np.ndarray, ...]:
    out = tuple(np.asarray(a).ravel() for a in arrays)
    if len({a.shape[0] for a in out}) > 1:
        raise ValueError(f"long-form arrays differ in length: {[a.shape[0] for a in out]}")
    values = out[-1]
    if np.issubdtype(values.dtype, np.floating):
        # NaN is "no value" in long form too, so a float column straight from a DataFrame works.
        keep = ~np.isnan(values)
        if not keep.all():
            out = tuple(a[keep] for a in out)
    return out


def _factorize(x: np.ndarray) -> tuple[np.ndarray, IntArray]:
    """Sorted distinct values and the code of each element (like ``np.unique(..., return_inverse)``).

    Database ids and category masks are small non-negative integers, for which a lookup table is O(n)
    instead of the O(n log n) sort ``np.unique`` does; that is most of the cost of alpha at 1M labels.
    """
    if x.size and np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo >= 0 and hi < 4 * x.size + 65_536:
            present = np.zeros(hi + 1, dtype=bool)
            present[x] = True
            uniques = np.flatnonzero(present)
            lookup = np.full(hi + 1, -1, dtype=np.int64)
            lookup[uniques] = np.arange(uniques.size)
            return uniques.astype(x.dtype), lookup[x]
    # Indexed rather than unpacked: mypy 1.19 crashes unpacking this overload of np.unique.
    found = np.unique(x, return_inverse=True)
    return found[0], np.asarray(found[1], dtype=np.int64).ravel()


def _csr_counts(unit_codes: IntArray, value_codes: IntArray, n_units: int, n_values: int) -> Any:
    """Units x values count matrix in canonical CSR (duplicates summed, columns sorted within rows)."""
    counts = sparse.csr_array(
        (np.ones(unit_codes.size), (unit_codes, value_codes)), shape=(n_units, n_values), dtype=np.float64
    )
    counts.sum_duplicates()
    return counts


def count_table(units: npt.ArrayLike, values: npt.ArrayLike, n_categories: int | None = None) -> IntArray:
    """Units x categories table of label counts, one row per unit that has at least one label.

    ``values`` are category codes 0..n_categories-1. Pass ``n_categories`` as the size of the scale (2
    for a binary variable) even when a category is never used: Gwet's chance term depends on it. Without
    it the columns are the distinct values that occur, in sorted order.
    """
    u, v = _long_arrays(units, values)
    if u.size == 0:
        return np.zeros((0, n_categories or 0), dtype=np.int64)
    _, unit_codes = _factorize(u)
    n_units = int(unit_codes.max()) + 1
    if n_categories is None:
        _, value_codes = _factorize(v)
        n_categories = int(value_codes.max()) + 1
    else:
        value_codes = v.astype(np.int64)
        if value_codes.min() < 0 or value_codes.max() >= n_categories or not np.array_equal(value_codes, v):
            raise ValueError(f"values must be integer codes in 0..{n_categories - 1}")
    # Category-major, so each category's column is contiguous (see _dense_unit_disagreement).
    flat = np.bincount(value_codes * n_units + unit_codes, minlength=n_units * n_categories)
    return flat.reshape(n_categories, n_units).astype(np.int64).T


def count_table_from_confusion(confusion: npt.ArrayLike) -> IntArray:
    """Two raters' Q x Q confusion table -> the units x Q count table of the same data.

    Cell (i, j) with count c stands for c units where rater 1 said i and rater 2 said j, so the
    multi-rater formulas can be applied to (and checked against) two-rater published tables.
    """
    conf = np.asarray(confusion, dtype=np.int64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or (conf < 0).any():
        raise ValueError("expected a square table of non-negative counts")
    q = conf.shape[0]
    rows, cols = np.indices(conf.shape)
    first = np.repeat(rows.ravel(), conf.ravel())
    second = np.repeat(cols.ravel(), conf.ravel())
    table = np.zeros((first.size, q), dtype=np.int64)
    np.add.at(table, (np.arange(first.size), first), 1)
    np.add.at(table, (np.arange(first.size), second), 1)
    return table


def _expand_segments(starts: IntArray, lengths: IntArray) -> tuple[IntArray, IntArray]:
    """For segments ``starts[s] .. starts[s] + lengths[s] - 1``: (segment id, index) of every element.

    The vectorised form of a nested loop over variable-length groups (values within a unit), which is
    how per-unit pairs are enumerated without a Python loop over 300,000 units.
    """
    segment = np.repeat(np.arange(starts.size, dtype=np.int64), lengths)
    out_starts = np.cumsum(lengths) - lengths
    index = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(out_starts - starts, lengths)
    return segment, index


# --------------------------------------------------------------------------------------------------
# Distances between values (for Krippendorff's alpha)


class Distance(Protocol):
    """delta(c, k) between the values at domain positions ``i`` and ``j`` (broadcast arrays).

    ``domain`` holds the distinct pairable values in ascending order and ``n_c`` how often each occurs
    among pairable values; the ordinal distance needs those marginals, the others ignore them. A
    distance must be symmetric and zero on the diagonal.
    """

    def __call__(self, i: IntArray, j: IntArray, domain: np.ndarray, n_c: FloatArray) -> FloatArray: ...


def nominal_distance(i: IntArray, j: IntArray, domain: np.ndarray, n_c: FloatArray) -> FloatArray:
    return (i != j).astype(np.float64)


def interval_distance(i: IntArray, j: IntArray, domain: np.ndarray, n_c: FloatArray) -> FloatArray:
    diff = domain[i].astype(np.float64) - domain[j].astype(np.float64)
    return np.asarray(diff * diff, dtype=np.float64)


def ordinal_distance(i: IntArray, j: IntArray, domain: np.ndarray, n_c: FloatArray) -> FloatArray:
    # Krippendorff: (sum of n_g for g from c to k, minus half of n_c and n_k) squared.
    cumulative = np.cumsum(n_c)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    between = cumulative[hi] - cumulative[lo] + (n_c[lo] - n_c[hi]) / 2
    return np.asarray(between * between, dtype=np.float64)


def _masi_table(max_bits: int = 64) -> FloatArray:
    """MASI distance indexed by (|A|, |B|, |A & B|): those three numbers determine it completely.

    A is a subset of B exactly when |A & B| = |A|, and A = B when also |A| = |B|, so the monotonicity
    term is a function of the sizes too. A table lookup replaces ~10 array operations per pair.
    """
    size_a, size_b, shared = np.indices((max_bits + 1,) * 3, dtype=np.float64)
    union = size_a + size_b - shared
    # Two empty sets are equal (Jaccard 1); an empty set against a non-empty one has Jaccard 0.
    jaccard = np.divide(shared, union, out=np.ones_like(union), where=union > 0)
    monotonicity = np.select(
        [(shared == size_a) & (shared == size_b), (shared == size_a) | (shared == size_b), shared > 0],
        [1.0, 2.0 / 3.0, 1.0 / 3.0],
        0.0,
    )
    table = 1.0 - jaccard * monotonicity
    # Combinations that cannot occur (|A & B| above |A| or |B|) are never looked up.
    return np.asarray(table, dtype=np.float64)


_MASI = _masi_table()


def masi_distance(i: IntArray, j: IntArray, domain: np.ndarray, n_c: FloatArray) -> FloatArray:
    """MASI distance (Passonneau 2006) between category sets stored as bit masks.

    1 - Jaccard * monotonicity, monotonicity 1 for equal sets, 2/3 for a subset, 1/3 for overlap, 0 for
    disjoint. Two empty sets (two "safe" labels) are equal: distance 0. An empty set against a non-empty
    one is disjoint: Jaccard 0, distance 1.
    """
    masks = _as_masks(domain)
    sizes = np.bitwise_count(masks).astype(np.int32)
    # Slice the table down to the set sizes that occur (15^3 entries for 14 categories) so the gather
    # below stays in cache, and build one flat int32 index for np.take, the cheapest gather numpy has;
    # this runs over the whole V x V block of the expected disagreement.
    side = int(sizes.max(initial=0)) + 1
    table = np.ascontiguousarray(_MASI[:side, :side, :side]).ravel()
    flat = (sizes[i] * side + sizes[j]) * side + np.bitwise_count(masks[i] & masks[j])
    return np.asarray(np.take(table, flat), dtype=np.float64)


def _as_masks(values: np.ndarray) -> npt.NDArray[np.int64]:
    masks = values.astype(np.int64)
    if (masks < 0).any() or not np.array_equal(masks, values):
        raise ValueError("MASI values must be non-negative integer bit masks")
    return masks


class _ValueDistances:
    """The value x value distance matrix over the distinct pairable values, built once, blockwise.

    Only values that occur are in the domain (a handful for a binary variable, at most the distinct masks
    seen for MASI, never all 16,384), and a large domain is evaluated in row blocks on demand instead
    of being held as one dense V x V array.
    """

    def __init__(self, domain: np.ndarray, n_c: FloatArray, distance: Distance) -> None:
        self.domain, self.n_c, self.distance = domain, n_c, distance
        size = domain.size
        self.rows_per_block = max(1, _BLOCK_ELEMENTS // max(size, 1))
        # A matrix that fits in one block is kept (the bootstrap walks it once per block of resamples);
        # a larger one is recomputed on each walk rather than held in memory.
        self.keep = size * size <= _BLOCK_ELEMENTS
        self.kept: list[tuple[IntArray, FloatArray]] | None = None

    def pairs(self, i: IntArray, j: IntArray) -> FloatArray:
        return self.distance(i, j, self.domain, self.n_c)

    def blocks(self) -> Iterator[tuple[IntArray, FloatArray]]:
        if not self.keep:
            return self._compute_blocks()
        if self.kept is None:
            self.kept = list(self._compute_blocks())
        return iter(self.kept)

    def _compute_blocks(self) -> Iterator[tuple[IntArray, FloatArray]]:
        every = np.arange(self.domain.size, dtype=np.int64)
        for start in range(0, self.domain.size, self.rows_per_block):
            rows = every[start : start + self.rows_per_block]
            yield rows, self.pairs(rows[:, None], every[None, :])

    def expected_pairs(self, n: FloatArray) -> FloatArray:
        """Per row b of ``n`` (B x V): sum over c, k of n_c (n_k - [c = k]) delta(c, k).

        This is (n - 1) times the expected-disagreement sum of the e_ck coincidences; the bootstrap
        calls it with one row of value counts per resample.
        """
        total = np.zeros(n.shape[0])
        for rows, block in self.blocks():
            total += ((n @ block.T) * n[:, rows]).sum(axis=1)
            total -= n[:, rows] @ block[np.arange(rows.size), rows]
        return total


# --------------------------------------------------------------------------------------------------
# Krippendorff's alpha


@dataclass(frozen=True)
class _AlphaParts:
    """Per-unit pieces of alpha over the pairable units, so a bootstrap resample is a weighted sum.

    ``counts`` is pairable units x distinct pairable values, ``disagreement[u]`` the observed
    disagreement of unit u: sum over its ordered pairs of values of delta, divided by (m_u - 1).
    """

    counts: Any
    disagreement: FloatArray
    distances: _ValueDistances

    @property
    def n_units(self) -> int:
        return int(self.disagreement.size)


def _alpha_parts(counts: Any, domain: np.ndarray, distance: Distance) -> _AlphaParts | Reason:
    """The pieces of alpha, or why there are none (the reason becomes the Metric's)."""
    per_unit = np.asarray(counts.sum(axis=1)).ravel()
    if per_unit.sum() == 0:
        return Reason.NO_DATA
    counts = counts[per_unit >= 2]
    if counts.shape[0] == 0:
        return Reason.NO_PAIRABLE_UNITS
    n_c = np.asarray(counts.sum(axis=0)).ravel()
    used = n_c > 0
    if not used.all():
        # Values seen only in unpairable units play no part; dropping them keeps the domain minimal.
        counts, domain, n_c = counts[:, used], domain[used], n_c[used]
    distances = _ValueDistances(domain, n_c, distance)
    if sparse.issparse(counts):
        counts.sum_duplicates()
        return _AlphaParts(counts, _unit_disagreement(counts, distances), distances)
    return _AlphaParts(counts, _dense_unit_disagreement(counts, distances), distances)


@dataclass(frozen=True)
class _UnitPairs:
    """Each unit's contribution to the coincidence matrix, one row per ordered pair of its values.

    ``weight`` is n_uc * n_uk (minus n_uc on the diagonal: a label does not pair with itself) over
    m_u - 1, so o_ck is the sum of ``weight`` over the rows with (first, second) = (c, k).
    """

    unit: IntArray
    first: IntArray
    second: IntArray
    weight: FloatArray


def _unit_pairs(counts: Any) -> _UnitPairs:
    # Pairs of the distinct values inside each unit: at most min(m_u, V)^2 per unit, so a gold item
    # with 50 raters of a binary variable costs 4 pairs, not 2,450.
    per_row = np.diff(counts.indptr).astype(np.int64)
    row_of_entry = np.repeat(np.arange(per_row.size, dtype=np.int64), per_row)
    left, right = _expand_segments(counts.indptr[row_of_entry].astype(np.int64), per_row[row_of_entry])
    data = counts.data
    products = data[left] * data[right] - np.where(left == right, data[left], 0.0)
    per_unit = np.asarray(counts.sum(axis=1)).ravel()
    unit = row_of_entry[left]
    return _UnitPairs(unit, counts.indices[left], counts.indices[right], products / (per_unit[unit] - 1))


def _unit_disagreement(counts: Any, distances: _ValueDistances) -> FloatArray:
    pairs = _unit_pairs(counts)
    weighted = pairs.weight * distances.pairs(pairs.first, pairs.second)
    return np.asarray(np.bincount(pairs.unit, weights=weighted, minlength=counts.shape[0]), dtype=np.float64)


def _dense_unit_disagreement(counts: FloatArray, distances: _ValueDistances) -> FloatArray:
    """The same sum as _unit_disagreement for a small dense table: sum over c, k of n_uc n_uk delta_ck.

    A loop over the at most 8 x 8 value pairs, each a whole-column operation: numpy reductions along a
    length-2 row axis, or matmuls with an inner dimension of 2, are many times slower on 300,000 rows.
    """
    size = counts.shape[1]
    every = np.arange(size, dtype=np.int64)
    delta = distances.pairs(every[:, None], every[None, :])
    columns = [np.ascontiguousarray(counts[:, c]) for c in range(size)]
    pair_sums = np.zeros(counts.shape[0])
    per_unit = np.zeros(counts.shape[0])
    for c in range(size):
        per_unit += columns[c]
        if delta[c, c]:
            pair_sums -= delta[c, c] * columns[c]
        for k in range(size):
            if delta[c, k]:
                pair_sums += delta[c, k] * columns[c] * columns[k]
    return pair_sums / (per_unit - 1.0)


def _alpha_values(parts: _AlphaParts, weight_blocks: Iterable[FloatArray]) -> FloatArray:
    """Alpha for each row of unit weights (blocks of B x units); NaN where expected disagreement is 0.

    Weights of 1 give the point estimate, bootstrap multiplicities give resamples. Every resample's value
    counts are gathered first so the value-distance blocks are walked once for all of them. NaN is
    internal only: the public functions turn it into Metric(None, reason).
    """
    counts, observed = [], []
    for weights in weight_blocks:
        counts.append(np.asarray(parts.counts.T @ weights.T).T)
        observed.append(weights @ parts.disagreement)
    value_counts, observed_sum = np.vstack(counts), np.concatenate(observed)
    expected = parts.distances.expected_pairs(value_counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (value_counts.sum(axis=1) - 1.0) * observed_sum / expected
    return np.where(expected > 0, alpha, np.nan)


def _alpha_metric(parts: _AlphaParts | Reason) -> Metric:
    if isinstance(parts, Reason):
        return Metric.undefined(parts)
    value = _alpha_values(parts, [np.ones((1, parts.n_units))])[0]
    if np.isnan(value):
        # Krippendorff: with no variation among pairable values alpha is 0/0. percent_agreement on the
        # same data is then 1.0, which is what a dashboard shows beside it.
        return Metric.undefined(Reason.NO_VARIATION, parts.n_units)
    return Metric.of(value, parts.n_units)


def _long_parts(units: npt.ArrayLike, values: npt.ArrayLike, distance: Distance) -> _AlphaParts | Reason:
    u, v = _long_arrays(units, values)
    if u.size == 0:
        return Reason.NO_DATA
    _, unit_codes = _factorize(u)
    domain, value_codes = _factorize(v)
    n_units, n_values = int(unit_codes.max()) + 1, domain.size
    if n_values <= _DENSE_MAX_VALUES:
        # Value-major, so the units x values view is column-contiguous: each value's column is one
        # contiguous vector, and row sums are additions of columns.
        flat = np.bincount(value_codes * n_units + unit_codes, minlength=n_units * n_values)
        return _alpha_parts(flat.reshape(n_values, n_units).astype(np.float64).T, domain, distance)
    return _alpha_parts(_csr_counts(unit_codes, value_codes, n_units, n_values), domain, distance)


def krippendorff_alpha_long(
    units: npt.ArrayLike, values: npt.ArrayLike, *, distance: Distance = nominal_distance
) -> Metric:
    """Krippendorff's alpha from long-form labels (one row per label).

    Which coder gave a label does not enter alpha (only the values within each unit do), so no coder
    column is needed. Units with fewer than 2 labels are not pairable and drop out.
    """
    return _alpha_metric(_long_parts(units, values, distance))


def krippendorff_alpha(
    matrix: npt.ArrayLike, *, distance: Distance = nominal_distance, missing: float = -1
) -> Metric:
    """Krippendorff's alpha from a units x coders matrix (NaN or ``missing`` marks no label)."""
    units, _, values = wide_to_long(matrix, missing=missing)
    return krippendorff_alpha_long(units, values, distance=distance)


def krippendorff_alpha_table(
    table: npt.ArrayLike, *, distance: Distance = nominal_distance, domain: npt.ArrayLike | None = None
) -> Metric:
    """Krippendorff's alpha from a units x values count table (dense or scipy sparse).

    ``domain`` gives the value of each column (ascending, which the ordinal distance relies on); by
    default the column index. This is the entry point that shares one :func:`count_table` with Fleiss,
    Gwet and percent agreement.
    """
    counts: Any
    if sparse.issparse(table) or np.shape(table)[-1] > _DENSE_MAX_VALUES:
        counts = sparse.csr_array(table, dtype=np.float64)
        counts.sum_duplicates()
        counts.eliminate_zeros()
        if (counts.data < 0).any():
            raise ValueError("expected a units x values table of non-negative counts")
    else:
        counts = np.asfortranarray(_as_table(table))
    values = np.arange(counts.shape[1]) if domain is None else np.asarray(domain)
    if values.size != counts.shape[1]:
        raise ValueError("domain must have one value per table column")
    return _alpha_metric(_alpha_parts(counts, values, distance))


def coincidence_matrix(units: npt.ArrayLike, values: npt.ArrayLike) -> tuple[np.ndarray, Any]:
    """The distinct pairable values and Krippendorff's coincidence matrix o_ck (scipy sparse, V x V).

    Off-diagonal mass shows which values are confused with which (e.g. which category sets).
    """
    parts = _long_parts(units, values, nominal_distance)
    if isinstance(parts, Reason):
        return np.zeros(0), sparse.csr_array((0, 0))
    pairs = _unit_pairs(sparse.csr_array(parts.counts))
    size = parts.distances.domain.size
    o = sparse.csr_array((pairs.weight, (pairs.first, pairs.second)), shape=(size, size))
    o.sum_duplicates()
    o.eliminate_zeros()
    return parts.distances.domain, o


# --------------------------------------------------------------------------------------------------
# Count-table metrics: percent agreement, Gwet's AC1, Fleiss' kappa


def _as_table(table: npt.ArrayLike) -> FloatArray:
    data = np.asarray(table, dtype=np.float64)
    if data.ndim != 2 or (data < 0).any():
        raise ValueError("expected a units x categories table of non-negative counts")
    return data


def _unit_pair_agreement(data: FloatArray) -> tuple[FloatArray, BoolArray]:
    """Per unit: the share of ordered pairs of its labels that agree, and whether it is pairable."""
    raters = data.sum(axis=1)
    pairable = raters >= 2
    agreeing = (data * (data - 1)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(pairable, agreeing / (raters * (raters - 1)), 0.0)
    return share, pairable


def percent_agreement(table: npt.ArrayLike) -> Metric:
    """Pairwise percent agreement: per unit the share of agreeing pairs, averaged over pairable units."""
    share, pairable = _unit_pair_agreement(_as_table(table))
    n = int(pairable.sum())
    if n == 0:
        return Metric.undefined(Reason.NO_PAIRABLE_UNITS)
    return Metric.of(share[pairable].mean(), n)


def _gwet_pieces(data: FloatArray) -> FloatArray:
    """Per unit: [agreeing-pair share if pairable, pairable, rated, share of its labels in each category].

    AC1 of any weighting of units is then one mat-vec with these columns, so a bootstrap resample costs
    a matrix product, not a pass over the table.
    """
    share, pairable = _unit_pair_agreement(data)
    raters = data.sum(axis=1)
    rated = raters >= 1
    with np.errstate(divide="ignore", invalid="ignore"):
        proportions = np.where(rated[:, None], data / raters[:, None], 0.0)
    return np.column_stack([share * pairable, pairable, rated, proportions]).astype(np.float64)


def _gwet_values(pieces: FloatArray, weights: FloatArray) -> FloatArray:
    """Gwet's AC1 for each row of unit weights (B x units); NaN where no unit is pairable."""
    sums = weights @ pieces
    n_categories = pieces.shape[1] - 3
    with np.errstate(divide="ignore", invalid="ignore"):
        # Gwet (2008): pa over units with 2+ raters, the category prevalences pi_q over all rated units.
        pa = sums[:, 0] / sums[:, 1]
        pi = sums[:, 3:] / sums[:, 2:3]
        pe = (pi * (1.0 - pi)).sum(axis=1) / (n_categories - 1)
        return np.asarray((pa - pe) / (1.0 - pe), dtype=np.float64)


def gwet_ac1(table: npt.ArrayLike) -> Metric:
    """Gwet's AC1 for any number of raters per unit.

    AC1 = (pa - pe) / (1 - pe), pe = 1/(Q-1) * sum_q pi_q (1 - pi_q), Q = the number of table columns
    (the scale, used or not). pe <= 1/Q, so AC1 is defined whenever a unit is pairable, including when
    everyone agrees on one category (AC1 = 1), which is where kappa and alpha break down.
    """
    data = _as_table(table)
    if data.shape[1] < 2:
        return Metric.undefined(Reason.TOO_FEW_CATEGORIES)
    _, pairable = _unit_pair_agreement(data)
    n = int(pairable.sum())
    if n == 0:
        return Metric.undefined(Reason.NO_PAIRABLE_UNITS)
    return Metric.of(_gwet_values(_gwet_pieces(data), np.ones((1, data.shape[0])))[0], n)


def fleiss_kappa(table: npt.ArrayLike, *, n_raters: int | None = None) -> Metric:
    """Fleiss' kappa (statsmodels) over units that all have the same number of raters.

    Units without labels are ignored. With ``n_raters`` only the units with exactly that many labels are
    used (the complete ones, while a project is still being labelled); without it, any difference in
    rater counts makes kappa "not enough data" rather than silently wrong.
    """
    data = _as_table(table)
    raters = data.sum(axis=1)
    data, raters = data[raters > 0], raters[raters > 0]
    if n_raters is not None:
        data, raters = data[raters == n_raters], raters[raters == n_raters]
    if data.shape[0] == 0:
        return Metric.undefined(Reason.NO_DATA)
    if (raters != raters[0]).any():
        return Metric.undefined(Reason.UNEQUAL_RATERS, data.shape[0])
    if raters[0] < 2:
        return Metric.undefined(Reason.NO_PAIRABLE_UNITS, data.shape[0])
    if data.shape[0] < 2:
        return Metric.undefined(Reason.TOO_FEW_UNITS, data.shape[0])
    if np.count_nonzero(data.sum(axis=0)) < 2:
        # Chance agreement is 1: kappa is 0/0.
        return Metric.undefined(Reason.NO_VARIATION, data.shape[0])
    return Metric.of(inter_rater.fleiss_kappa(data, method="fleiss"), data.shape[0])


def fleiss_kappa_wide(
    matrix: npt.ArrayLike, *, n_categories: int | None = None, missing: float = -1
) -> Metric:
    """Fleiss' kappa from a units x raters matrix of category codes, via statsmodels' aggregate_raters.

    Rows with no label at all are ignored; a row with some labels missing makes rater counts unequal.
    """
    data = np.asarray(matrix)
    if data.ndim != 2:
        raise ValueError(f"expected a units x raters matrix, got shape {data.shape}")
    present = data != missing
    if np.issubdtype(data.dtype, np.floating):
        present &= ~np.isnan(data)
    data, present = data[present.any(axis=1)], present[present.any(axis=1)]
    if data.shape[0] == 0:
        return Metric.undefined(Reason.NO_DATA)
    if not present.all():
        return Metric.undefined(Reason.UNEQUAL_RATERS, data.shape[0])
    table, _ = inter_rater.aggregate_raters(data.astype(np.int64), n_cat=n_categories)
    return fleiss_kappa(table)


def agreement_summary(table: npt.ArrayLike, *, n_raters: int | None = None) -> dict[str, Metric]:
    """Alpha (nominal), Fleiss' kappa, percent agreement and Gwet's AC1 from one count table."""
    return {
        "krippendorff_alpha": krippendorff_alpha_table(table),
        "fleiss_kappa": fleiss_kappa(table, n_raters=n_raters),
        "percent_agreement": percent_agreement(table),
        "gwet_ac1": gwet_ac1(table),
    }


# --------------------------------------------------------------------------------------------------
# Cohen's kappa (a worker against gold)


def cohen_kappa(labels_a: npt.ArrayLike, labels_b: npt.ArrayLike) -> Metric:
    """Cohen's kappa between two aligned label vectors (scikit-learn), e.g. a worker and gold."""
    a, b = np.asarray(labels_a).ravel(), np.asarray(labels_b).ravel()
    if a.shape != b.shape:
        raise ValueError("label vectors differ in length")
    if a.size == 0:
        return Metric.undefined(Reason.NO_DATA)
    if np.unique(np.concatenate([a, b])).size < 2:
        # Both said the same single category throughout: chance agreement is 1, kappa is 0/0.
        return Metric.undefined(Reason.NO_VARIATION, a.size)
    return Metric.of(cohen_kappa_score(a, b), a.size)


def cohen_kappa_table(confusion: npt.ArrayLike) -> Metric:
    """Cohen's kappa from a Q x Q confusion table (rows: rater 1, columns: rater 2)."""
    conf = _as_table(confusion)
    if conf.shape[0] != conf.shape[1]:
        raise ValueError("a confusion table must be square")
    n = conf.sum()
    if n == 0:
        return Metric.undefined(Reason.NO_DATA)
    po = np.trace(conf) / n
    pe = float(conf.sum(axis=1) @ conf.sum(axis=0)) / (n * n)
    if pe >= 1.0:
        return Metric.undefined(Reason.NO_VARIATION, int(n))
    return Metric.of((po - pe) / (1.0 - pe), int(n))


# --------------------------------------------------------------------------------------------------
# Bootstrap over units


def _identical_rows(table: Any) -> tuple[IntArray, IntArray]:
    """Group identical rows of a count table: (one representative row per group, group sizes).

    Resampling N units whose rows fall into G distinct patterns draws Multinomial(N, sizes / N) copies
    of each pattern, exactly. For a binary variable with 3 workers there are a handful of patterns
    (3-0, 2-1, ...), so a resample costs G numbers instead of N. Where grouping does not pay (a sparse
    table of category sets, or many distinct rows) every row is its own group.
    """
    n = table.shape[0]
    singletons = (np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64))
    if n == 0 or sparse.issparse(table) or table.shape[1] == 0:
        return singletons
    ints = np.asarray(table).astype(np.int64)
    base = int(ints.max()) + 1
    if not np.array_equal(ints, table) or table.shape[1] * math.log2(base + 1) > 62:
        return singletons
    key = np.zeros(n, dtype=np.int64)
    for column in range(table.shape[1]):
        key = key * base + ints[:, column]
    _, codes = _factorize(key)
    n_groups = int(codes.max()) + 1
    # A multinomial over G groups costs about G binomial draws; a unit-level resample about N.
    if 4 * n_groups > n:
        return singletons
    representative = np.empty(n_groups, dtype=np.int64)
    representative[codes] = np.arange(n)
    return representative, np.bincount(codes, minlength=n_groups).astype(np.int64)


def _bootstrap_weights(rng: np.random.Generator, sizes: IntArray, n_resamples: int) -> Iterator[FloatArray]:
    """Blocks of resampling multiplicities (resamples x groups): how often each group was drawn.

    A resample of units with replacement is the same as weighting each unit by its multiplicity, which
    lets every statistic below be computed as weighted sums of per-unit pieces. Blocks keep memory at
    tens of MB (1,000 resamples x 330,000 units at once would be 2.6 GB).
    """
    n_units, n_groups = int(sizes.sum()), sizes.size
    per_block = max(1, _BLOCK_ELEMENTS // n_groups)
    for start in range(0, n_resamples, per_block):
        size = min(per_block, n_resamples - start)
        if n_groups < n_units:
            yield rng.multinomial(n_units, sizes / n_units, size=size).astype(np.float64)
            continue
        block = np.empty((size, n_units))
        for row in block:
            # One bincount per resample measured faster than one over a whole offset block.
            row[:] = np.bincount(rng.integers(0, n_units, size=n_units, dtype=np.int32), minlength=n_units)
        yield block


def _percentile_ci(
    statistic: Callable[[Iterator[FloatArray]], FloatArray],
    estimate: Metric,
    sizes: IntArray,
    *,
    n_resamples: int,
    level: float,
    seed: int | None,
) -> ConfidenceInterval:
    """Percentile interval of ``statistic`` (weight blocks -> one value per resample, NaN if undefined).

    ``sizes`` are the group sizes from _identical_rows (all 1 when units are resampled one by one).
    """
    _check_interval_args(n_resamples, level)
    if estimate.value is None:
        return _no_interval(estimate, estimate.reason, n_resamples=n_resamples, level=level)
    if sizes.sum() < 2:
        return _no_interval(estimate, Reason.TOO_FEW_UNITS, n_resamples=n_resamples, level=level)
    draws = statistic(_bootstrap_weights(np.random.default_rng(seed), sizes, n_resamples))
    valid = draws[np.isfinite(draws)]
    # If more resamples are undefined than the tails the interval cuts off (1 - level), where its ends
    # fall depends on which resamples were dropped (for a rare category: those that missed the few
    # positives, which biases it upwards), so no interval is better than a misleading one.
    if valid.size < level * n_resamples:
        return ConfidenceInterval(estimate, None, None, level, n_resamples, int(valid.size), Reason.UNSTABLE)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(valid, [tail, 1.0 - tail])
    return ConfidenceInterval(estimate, float(low), float(high), level, n_resamples, int(valid.size))


def _check_interval_args(n_resamples: int, level: float) -> None:
    if not 0.0 < level < 1.0 or n_resamples < 1:
        raise ValueError("level must be in (0, 1) and n_resamples positive")


def _no_interval(
    estimate: Metric, reason: str | None, *, n_resamples: int, level: float
) -> ConfidenceInterval:
    # Checked here too, so a bad level fails the same way with or without data.
    _check_interval_args(n_resamples, level)
    return ConfidenceInterval(estimate, None, None, level, n_resamples, 0, reason)


def _per_block(statistic: Callable[[FloatArray], FloatArray]) -> Callable[[Iterator[FloatArray]], FloatArray]:
    return lambda blocks: np.concatenate([statistic(weights) for weights in blocks])


def bootstrap_alpha(
    units: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    distance: Distance = nominal_distance,
    n_resamples: int = N_RESAMPLES,
    level: float = 0.95,
    seed: int | None = None,
) -> ConfidenceInterval:
    """Percentile bootstrap CI of Krippendorff's alpha, resampling pairable units with replacement.

    Each unit's disagreement and value counts are computed once; a resample is a weighted sum of them,
    not a recomputation. The ordinal distance is held at the full-sample marginals (exact for nominal,
    interval and MASI, which do not depend on them).
    """
    parts = _long_parts(units, values, distance)
    estimate = _alpha_metric(parts)
    if isinstance(parts, Reason):
        return _no_interval(estimate, estimate.reason, n_resamples=n_resamples, level=level)
    rows, sizes = _identical_rows(parts.counts)
    grouped = _AlphaParts(parts.counts[rows], parts.disagreement[rows], parts.distances)
    return _percentile_ci(
        lambda blocks: _alpha_values(grouped, blocks),
        estimate,
        sizes,
        n_resamples=n_resamples,
        level=level,
        seed=seed,
    )


def bootstrap_percent_agreement(
    table: npt.ArrayLike, *, n_resamples: int = N_RESAMPLES, level: float = 0.95, seed: int | None = None
) -> ConfidenceInterval:
    """Percentile bootstrap CI of percent agreement, resampling pairable units."""
    data = _as_table(table)
    share, pairable = _unit_pair_agreement(data)
    rows, sizes = _identical_rows(data[pairable])
    share = share[pairable][rows]
    return _percentile_ci(
        _per_block(lambda weights: np.asarray(weights @ share / weights.sum(axis=1), dtype=np.float64)),
        percent_agreement(data),
        sizes,
        n_resamples=n_resamples,
        level=level,
        seed=seed,
    )


def bootstrap_gwet_ac1(
    table: npt.ArrayLike, *, n_resamples: int = N_RESAMPLES, level: float = 0.95, seed: int | None = None
) -> ConfidenceInterval:
    """Percentile bootstrap CI of Gwet's AC1, resampling rated units (they all enter pi_q)."""
    data = _as_table(table)
    data = data[data.sum(axis=1) > 0]
    rows, sizes = _identical_rows(data)
    pieces = _gwet_pieces(data)[rows]
    return _percentile_ci(
        _per_block(lambda weights: _gwet_values(pieces, weights)),
        gwet_ac1(data),
        sizes,
        n_resamples=n_resamples,
        level=level,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------------
# Leave-one-out agreement per worker


def leave_one_out_agreement(
    units: npt.ArrayLike, workers: npt.ArrayLike, values: npt.ArrayLike, *, min_others: int = 2
) -> list[WorkerAgreement]:
    """For each worker: how often their label equals the majority label of the other workers.

    A label is compared when at least ``min_others`` other workers labelled the unit and their most
    frequent value is unique; ties among the others are counted in ``n_tied`` and left out of the rate.
    Values are compared exactly (for category sets: the whole set; pass one bit for per-category rates).
    """
    if min_others < 1:
        raise ValueError("min_others must be at least 1")
    u, w, v = _long_arrays(units, workers, values)
    if u.size == 0:
        return []
    _, unit_codes = _factorize(u)
    worker_ids, worker_codes = _factorize(w)
    _, value_codes = _factorize(v)
    counts = _csr_counts(unit_codes, value_codes, int(unit_codes.max()) + 1, int(value_codes.max()) + 1)
    per_unit = np.asarray(counts.sum(axis=1)).ravel()

    eligible = np.flatnonzero(per_unit[unit_codes] - 1 >= min_others)
    agree, tied = _majority_of_others(counts, unit_codes[eligible], value_codes[eligible])

    n_workers = worker_ids.size
    n_labels = np.bincount(worker_codes, minlength=n_workers)
    n_agree = np.bincount(worker_codes[eligible], weights=agree, minlength=n_workers).astype(np.int64)
    n_tied = np.bincount(worker_codes[eligible], weights=tied, minlength=n_workers).astype(np.int64)
    n_compared = np.bincount(worker_codes[eligible], weights=~tied, minlength=n_workers).astype(np.int64)
    return [
        WorkerAgreement(
            worker=int(worker_ids[k]),
            n_labels=int(n_labels[k]),
            n_compared=int(n_compared[k]),
            n_agree=int(n_agree[k]),
            n_tied=int(n_tied[k]),
            rate=float(n_agree[k] / n_compared[k]) if n_compared[k] else None,
            reason=None if n_compared[k] else Reason.NO_MAJORITY,
        )
        for k in range(n_workers)
    ]


def _majority_of_others(
    counts: Any, unit_codes: IntArray, value_codes: IntArray
) -> tuple[BoolArray, BoolArray]:
    """Per label: (agrees with the unique majority of the others, the others are tied).

    Walks, for each label, the distinct values of its unit with this label removed from the counts.
    Every segment is non-empty (the label's own value is in its unit), as reduceat requires.
    """
    if unit_codes.size == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    starts = counts.indptr[unit_codes].astype(np.int64)
    lengths = np.diff(counts.indptr)[unit_codes].astype(np.int64)
    label, entry = _expand_segments(starts, lengths)
    own = counts.indices[entry] == value_codes[label]
    others = counts.data[entry] - own
    segment_starts = np.cumsum(lengths) - lengths
    best = np.maximum.reduceat(others, segment_starts)
    n_best = np.add.reduceat((others == best[label]).astype(np.int64), segment_starts)
    own_best = np.logical_or.reduceat(own & (others == best[label]), segment_starts)
    tied = n_best > 1
    return own_best & ~tied, tied
