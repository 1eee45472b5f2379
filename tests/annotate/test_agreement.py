"""Agreement metrics: published reference values, the GPL reference package (test-only), slow
obviously-correct re-implementations, and the undefined cases. No database."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

import krippendorff
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from statsmodels.stats import inter_rater

from annotate import agreement as ag
from annotate.agreement import Metric, Reason

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", 4 coders x 12 units, "." = missing.
K2011 = [
    "1 2 3 3 2 1 4 1 2 . . .",
    "1 2 3 3 2 2 4 1 2 5 . 3",
    ". 3 3 3 2 3 4 2 2 5 1 .",
    "1 2 3 3 2 4 4 1 2 5 1 .",
]
# coders x units, as the paper (and the reference package) lay it out.
K2011_CODERS = np.array([[np.nan if x == "." else float(x) for x in row.split()] for row in K2011])

# Fleiss (1971) as on Wikipedia: 10 subjects, 14 raters each, 5 categories.
FLEISS_TABLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)

GWET_CONFUSION = [[13, 0, 0], [0, 20, 7], [0, 4, 56]]


def assert_json_safe(*results: object) -> None:
    """What the API will do with a result: no NaN or inf may get through."""
    for result in results:
        payload = result.as_dict() if hasattr(result, "as_dict") else result
        json.dumps(payload, allow_nan=False)


def assert_contains(ci: ag.ConfidenceInterval, value: float | None) -> None:
    assert ci.low is not None and ci.high is not None and value is not None, ci
    assert ci.low <= value <= ci.high, ci


# --------------------------------------------------------------------------------------------------
# Slow, obviously-correct references


def slow_alpha(units_by_coder: list[list[int | None]], delta: Callable[[int, int], Fraction]) -> float | None:
    """Krippendorff's alpha straight from the definition: all ordered pairs of values within a unit."""
    pairable = [[v for v in unit if v is not None] for unit in units_by_coder]
    pairable = [unit for unit in pairable if len(unit) >= 2]
    values = [v for unit in pairable for v in unit]
    n = len(values)
    if n == 0:
        return None
    observed = sum(
        Fraction(1, len(unit) - 1) * sum(delta(a, b) for a, b in itertools.permutations(unit, 2))
        for unit in pairable
    )
    expected = Fraction(1, n - 1) * sum(delta(a, b) for a, b in itertools.permutations(values, 2))
    if expected == 0:
        return None
    return float(1 - observed / expected)


def slow_masi(a: int, b: int) -> Fraction:
    set_a = {i for i in range(64) if a >> i & 1}
    set_b = {i for i in range(64) if b >> i & 1}
    if set_a == set_b:
        return Fraction(0)
    jaccard = Fraction(len(set_a & set_b), len(set_a | set_b))
    if set_a <= set_b or set_b <= set_a:
        monotonicity = Fraction(2, 3)
    elif set_a & set_b:
        monotonicity = Fraction(1, 3)
    else:
        monotonicity = Fraction(0)
    return 1 - jaccard * monotonicity


def masi_for_reference_package(v1, v2, i1, i2, n_v, dtype=np.float64):
    """The pure-Python MASI in the calling convention of krippendorff.alpha(level_of_measurement=...)."""
    v1, v2 = np.broadcast_arrays(v1, v2)
    out = np.array([float(slow_masi(int(a), int(b))) for a, b in zip(v1.ravel(), v2.ravel(), strict=True)])
    return out.reshape(v1.shape).astype(dtype)


def slow_leave_one_out(units, workers, values, min_others=2):
    by_unit: dict[int, list[tuple[int, int]]] = {}
    for u, w, v in zip(units, workers, values, strict=True):
        by_unit.setdefault(int(u), []).append((int(w), int(v)))
    result: dict[int, list[int]] = {}  # worker -> [labels, compared, agree, tied]
    for labels in by_unit.values():
        for index, (worker, value) in enumerate(labels):
            row = result.setdefault(worker, [0, 0, 0, 0])
            row[0] += 1
            others = Counter(v for k, (_, v) in enumerate(labels) if k != index)
            if sum(others.values()) < min_others:
                continue
            top = max(others.values())
            winners = [v for v, c in others.items() if c == top]
            if len(winners) > 1:
                row[3] += 1
            else:
                row[1] += 1
                row[2] += winners[0] == value
    return result


# --------------------------------------------------------------------------------------------------
# Published reference values


def test_krippendorff_2011_nominal_alpha_is_0743():
    metric = ag.krippendorff_alpha(K2011_CODERS.T)
    assert metric.value == pytest.approx(0.743, abs=5e-4)
    assert metric.n_units == 11  # unit 12 has a single value and is not pairable
    assert metric.reason is None


def test_krippendorff_2011_same_alpha_from_every_entry_point():
    expected = ag.krippendorff_alpha(K2011_CODERS.T).value
    as_int = np.where(np.isnan(K2011_CODERS), -1, K2011_CODERS).astype(np.int64).T
    units, _, values = ag.wide_to_long(as_int)
    assert ag.krippendorff_alpha(as_int).value == pytest.approx(expected, abs=1e-12)
    assert ag.krippendorff_alpha_long(units, values).value == pytest.approx(expected, abs=1e-12)
    table = ag.count_table(units, values - 1, n_categories=5)
    assert ag.krippendorff_alpha_table(table).value == pytest.approx(expected, abs=1e-12)


def test_krippendorff_2011_coincidences_match_the_paper():
    units, _, values = ag.wide_to_long(K2011_CODERS.T)
    domain, o = ag.coincidence_matrix(units, values)
    dense = o.toarray()
    assert list(domain) == [1, 2, 3, 4, 5]
    assert dense[0, 0] == pytest.approx(7)
    assert dense[0, 1] == pytest.approx(4 / 3)
    assert dense[1, 1] == pytest.approx(10)
    assert dense[4, 4] == pytest.approx(3)
    assert dense.sum() == pytest.approx(40)  # n = 40 pairable values
    np.testing.assert_allclose(dense, dense.T)


@pytest.mark.parametrize(
    ("distance", "level", "published"),
    [(ag.ordinal_distance, "ordinal", 0.815), (ag.interval_distance, "interval", 0.849)],
)
def test_krippendorff_2011_other_levels(distance, level, published):
    metric = ag.krippendorff_alpha(K2011_CODERS.T, distance=distance)
    assert metric.value == pytest.approx(published, abs=5e-4)
    reference = krippendorff.alpha(reliability_data=K2011_CODERS, level_of_measurement=level)
    assert metric.value == pytest.approx(reference, abs=1e-9)


def test_fleiss_1971_wikipedia_kappa_is_0210():
    metric = ag.fleiss_kappa(FLEISS_TABLE)
    assert metric.value == pytest.approx(0.210, abs=5e-4)
    assert metric.n_units == 10


def test_fleiss_from_a_raters_matrix_goes_through_aggregate_raters():
    raters = np.array([np.repeat(np.arange(5), row) for row in FLEISS_TABLE])
    assert raters.shape == (10, 14)
    metric = ag.fleiss_kappa_wide(raters, n_categories=5)
    assert metric.value == pytest.approx(ag.fleiss_kappa(FLEISS_TABLE).value, abs=1e-12)


def test_cohen_kappa_from_table_is_04():
    metric = ag.cohen_kappa_table([[20, 5], [10, 15]])
    assert metric.value == pytest.approx(0.4, abs=1e-12)
    assert metric.n_units == 50


def test_cohen_kappa_from_vectors_matches_the_table():
    confusion = np.array([[20, 5], [10, 15]])
    rows, cols = np.indices(confusion.shape)
    first = np.repeat(rows.ravel(), confusion.ravel())
    second = np.repeat(cols.ravel(), confusion.ravel())
    assert ag.cohen_kappa(first, second).value == pytest.approx(0.4, abs=1e-12)


def test_gwet_ac1_two_rater_table_is_0849_through_the_multi_rater_formula():
    table = ag.count_table_from_confusion(GWET_CONFUSION)
    assert table.shape == (100, 3)
    metric = ag.gwet_ac1(table)
    assert metric.value == pytest.approx(0.849, abs=5e-4)
    assert metric.n_units == 100
    assert ag.percent_agreement(table).value == pytest.approx(0.89)


# --------------------------------------------------------------------------------------------------
# Properties of alpha


@st.composite
def reliability_matrices(draw, max_value: int = 4, missing: bool = True):
    """units x coders integer matrices, -1 = missing."""
    n_units = draw(st.integers(1, 25))
    n_coders = draw(st.integers(1, 5))
    low = -1 if missing else 0
    return draw(arrays(np.int64, (n_units, n_coders), elements=st.integers(low, max_value)))


def reference_alpha(matrix: np.ndarray, level) -> float | None:
    """The GPL package (coders x units, NaN = missing); None where it refuses or returns NaN."""
    data = np.where(matrix < 0, np.nan, matrix.astype(float)).T
    try:
        with np.errstate(all="ignore"):
            value = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    except ValueError:
        return None
    return None if math.isnan(value) else float(value)


@PROPERTY
@given(reliability_matrices())
def test_alpha_equals_the_reference_package_with_missing_values(matrix):
    ours = ag.krippendorff_alpha(matrix)
    expected = reference_alpha(matrix, "nominal")
    assert_json_safe(ours)
    if expected is None:
        assert ours.value is None
        assert ours.reason in {Reason.NO_DATA, Reason.NO_PAIRABLE_UNITS, Reason.NO_VARIATION}
    else:
        assert ours.value == pytest.approx(expected, abs=1e-9)


@PROPERTY
@given(reliability_matrices(max_value=2**5 - 1))
def test_masi_alpha_equals_the_reference_package_with_a_pure_python_distance(matrix):
    ours = ag.krippendorff_alpha(matrix, distance=ag.masi_distance)
    expected = reference_alpha(matrix, masi_for_reference_package)
    if expected is None:
        assert ours.value is None
    else:
        assert ours.value == pytest.approx(expected, abs=1e-9)


@PROPERTY
@given(reliability_matrices(max_value=2**4 - 1))
def test_masi_alpha_equals_the_definition(matrix):
    units = [[None if v < 0 else int(v) for v in row] for row in matrix]
    expected = slow_alpha(units, slow_masi)
    ours = ag.krippendorff_alpha(matrix, distance=ag.masi_distance)
    if expected is None:
        assert ours.value is None
    else:
        assert ours.value == pytest.approx(expected, abs=1e-9)


@PROPERTY
@given(st.data())
def test_alpha_is_one_for_perfect_agreement_with_variation(data):
    n_units = data.draw(st.integers(2, 30))
    truth = data.draw(arrays(np.int64, n_units, elements=st.integers(0, 3)))
    if np.unique(truth).size < 2:
        truth[0] = (truth[1] + 1) % 4
    n_coders = data.draw(st.integers(2, 5))
    matrix = np.repeat(truth[:, None], n_coders, axis=1)
    holes = data.draw(arrays(np.bool_, matrix.shape))
    holes[:, :2] = False  # every unit keeps two labels, so every unit stays pairable
    matrix[holes] = -1
    assert ag.krippendorff_alpha(matrix).value == 1.0
    assert ag.krippendorff_alpha(matrix, distance=ag.masi_distance).value == 1.0


@PROPERTY
@given(reliability_matrices(), st.randoms(use_true_random=False))
def test_alpha_is_invariant_to_coder_and_unit_order(matrix, rnd):
    base = ag.krippendorff_alpha(matrix)
    coders = list(range(matrix.shape[1]))
    units = list(range(matrix.shape[0]))
    rnd.shuffle(coders)
    rnd.shuffle(units)
    for permuted in (matrix[:, coders], matrix[units], matrix[units][:, coders]):
        other = ag.krippendorff_alpha(permuted)
        assert other.reason == base.reason
        if base.value is None:
            assert other.value is None
        else:
            assert other.value == pytest.approx(base.value, abs=1e-12)


@PROPERTY
@given(reliability_matrices())
def test_alpha_ignores_how_units_and_values_are_numbered(matrix):
    units, _, values = ag.wide_to_long(matrix)
    base = ag.krippendorff_alpha_long(units, values)
    relabelled = ag.krippendorff_alpha_long(units * 1_000_003 + 17, values * 7 + 1_000)
    assert relabelled == base


def test_masi_distance_cases():
    def masi(a: int, b: int) -> float:
        domain = np.array([a, b])
        return float(ag.masi_distance(np.array([0]), np.array([1]), domain, np.ones(2))[0])

    assert masi(0, 0) == 0.0  # two "safe" labels agree
    assert masi(0, 0b101) == 1.0  # safe against unsafe: disjoint
    assert masi(0b101, 0b101) == 0.0
    assert masi(0b001, 0b011) == pytest.approx(1 - 0.5 * 2 / 3)  # subset
    assert masi(0b011, 0b110) == pytest.approx(1 - 1 / 3 * 1 / 3)  # overlap
    assert masi(0b001, 0b010) == 1.0  # disjoint
    with pytest.raises(ValueError, match="bit masks"):
        masi(-1, 2)


@PROPERTY
@given(st.lists(st.integers(0, 2**14 - 1), min_size=1, max_size=30))
def test_masi_distance_matches_sets_for_14_bit_masks(masks):
    domain = np.unique(np.array([*masks, 0], dtype=np.int64))
    i, j = np.meshgrid(np.arange(domain.size), np.arange(domain.size), indexing="ij")
    ours = ag.masi_distance(i, j, domain, np.ones(domain.size))
    expected = np.array([[float(slow_masi(int(a), int(b))) for b in domain] for a in domain])
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_large_value_domain_is_evaluated_in_blocks(monkeypatch):
    """The V x V distances are built blockwise once V^2 passes the block size; same answer."""
    rng = np.random.default_rng(3)
    matrix = rng.integers(0, 2**8, size=(300, 3))
    matrix = np.where(rng.random(matrix.shape) < 0.7, matrix[:, :1], matrix)  # agreement with coder 0
    in_one_block = ag.krippendorff_alpha(matrix, distance=ag.masi_distance)
    monkeypatch.setattr(ag, "_BLOCK_ELEMENTS", 1000)
    in_blocks = ag.krippendorff_alpha(matrix, distance=ag.masi_distance)
    assert in_blocks.value == pytest.approx(in_one_block.value, abs=1e-12)
    assert in_blocks.value == pytest.approx(reference_alpha(matrix, masi_for_reference_package), abs=1e-9)


# --------------------------------------------------------------------------------------------------
# Count-table metrics against direct formulas and statsmodels


@st.composite
def count_tables(draw, min_raters: int = 0):
    n_units = draw(st.integers(1, 30))
    n_categories = draw(st.integers(2, 4))
    return draw(arrays(np.int64, (n_units, n_categories), elements=st.integers(0, 3)))


@PROPERTY
@given(count_tables())
def test_percent_agreement_is_the_mean_share_of_agreeing_pairs(table):
    shares = []
    for row in table:
        labels = [c for c, k in enumerate(row) for _ in range(k)]
        pairs = list(itertools.permutations(labels, 2))
        if pairs:
            shares.append(sum(a == b for a, b in pairs) / len(pairs))
    metric = ag.percent_agreement(table)
    if shares:
        assert metric.value == pytest.approx(sum(shares) / len(shares))
        assert metric.n_units == len(shares)
    else:
        assert metric.value is None
        assert metric.reason == Reason.NO_PAIRABLE_UNITS


@PROPERTY
@given(
    arrays(np.int64, st.tuples(st.integers(2, 4)).map(lambda q: (q[0], q[0])), elements=st.integers(0, 20))
)
def test_multi_rater_ac1_reduces_to_the_two_rater_formula(confusion):
    n = confusion.sum()
    metric = ag.gwet_ac1(ag.count_table_from_confusion(confusion))
    if n == 0:
        assert metric.value is None
        return
    q = confusion.shape[0]
    pa = np.trace(confusion) / n
    pi = (confusion.sum(axis=0) + confusion.sum(axis=1)) / (2 * n)
    pe = (pi * (1 - pi)).sum() / (q - 1)
    assert metric.value == pytest.approx((pa - pe) / (1 - pe), abs=1e-12)


@PROPERTY
@given(st.integers(2, 6), count_tables())
def test_fleiss_wraps_statsmodels_on_complete_tables(n_raters, table):
    # Give every unit exactly n_raters labels by topping up the first category.
    table = table.copy()
    table[:, 0] += np.maximum(n_raters - table.sum(axis=1), 0)
    table = table[table.sum(axis=1) == n_raters]
    metric = ag.fleiss_kappa(table)
    assert_json_safe(metric)
    if table.shape[0] >= 2 and np.count_nonzero(table.sum(axis=0)) >= 2:
        assert metric.value == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-12)
    else:
        assert metric.value is None


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=60))
def test_cohen_kappa_vectors_and_table_agree(pairs):
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    confusion = np.zeros((3, 3), dtype=np.int64)
    np.add.at(confusion, (a, b), 1)
    from_vectors, from_table = ag.cohen_kappa(a, b), ag.cohen_kappa_table(confusion)
    assert_json_safe(from_vectors, from_table)
    if from_table.value is None:
        assert from_vectors.value is None
    else:
        assert from_vectors.value == pytest.approx(from_table.value, abs=1e-12)


def test_agreement_summary_shares_one_table():
    table = ag.count_table_from_confusion([[40, 5], [3, 52]])
    summary = ag.agreement_summary(table)
    assert set(summary) == {"krippendorff_alpha", "fleiss_kappa", "percent_agreement", "gwet_ac1"}
    assert summary["percent_agreement"].value == pytest.approx(0.92)
    assert all(m.value is not None for m in summary.values())


# --------------------------------------------------------------------------------------------------
# Bootstrap


@PROPERTY
@given(st.data())
def test_bootstrap_ci_contains_the_estimate(data):
    n_units = data.draw(st.integers(30, 120))
    accuracy = data.draw(st.floats(0.6, 0.95))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_units)
    labels = np.where(rng.random((n_units, 3)) < accuracy, truth[:, None], rng.integers(0, 3, (n_units, 3)))
    units, _, values = ag.wide_to_long(labels)
    ci = ag.bootstrap_alpha(units, values, n_resamples=100, seed=seed)
    assert_json_safe(ci)
    assert ci.estimate == ag.krippendorff_alpha_long(units, values)
    assert_contains(ci, ci.estimate.value)


def test_bootstrap_is_seeded_and_covers_other_metrics():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 200)
    labels = np.where(rng.random((200, 3)) < 0.85, truth[:, None], 1 - truth[:, None])
    units, _, values = ag.wide_to_long(labels)
    first = ag.bootstrap_alpha(units, values, seed=7)
    assert first == ag.bootstrap_alpha(units, values, seed=7)
    assert first.n_valid == first.n_resamples == ag.N_RESAMPLES == 1000
    table = ag.count_table(units, values, n_categories=2)
    for ci in (ag.bootstrap_percent_agreement(table, seed=7), ag.bootstrap_gwet_ac1(table, seed=7)):
        assert_contains(ci, ci.estimate.value)


@pytest.mark.parametrize("sizes", [[1] * 50, [10, 25, 15]])
def test_bootstrap_resamples_draw_as_many_units_as_there_are(sizes):
    blocks = ag._bootstrap_weights(np.random.default_rng(1), np.array(sizes), 30)
    weights = np.vstack(list(blocks))
    assert weights.shape == (30, len(sizes))
    assert (weights.sum(axis=1) == 50).all()


def test_grouping_identical_units_gives_the_same_interval_as_resampling_units(monkeypatch):
    # A binary variable with 3 workers has a handful of unit patterns, so resamples are drawn per
    # pattern (multinomial); drawing unit by unit must give the same distribution.
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 3000)
    labels = np.where(rng.random((3000, 3)) < 0.8, truth[:, None], 1 - truth[:, None])
    units, _, values = ag.wide_to_long(labels)
    _, sizes = ag._identical_rows(ag.count_table(units, values, 2))
    assert sizes.size <= 4 and sizes.sum() == 3000
    grouped = ag.bootstrap_alpha(units, values, n_resamples=1000, seed=1)
    grouped_ac1 = ag.bootstrap_gwet_ac1(ag.count_table(units, values, 2), n_resamples=1000, seed=1)

    def no_groups(table):
        n = table.shape[0]
        return np.arange(n), np.ones(n, dtype=np.int64)

    monkeypatch.setattr(ag, "_identical_rows", no_groups)
    by_unit = ag.bootstrap_alpha(units, values, n_resamples=1000, seed=2)
    by_unit_ac1 = ag.bootstrap_gwet_ac1(ag.count_table(units, values, 2), n_resamples=1000, seed=2)
    assert grouped.estimate == by_unit.estimate
    # Two Monte Carlo estimates of the same quantiles: close, not equal (the CI is ~0.05 wide).
    for a, b in ((grouped, by_unit), (grouped_ac1, by_unit_ac1)):
        assert a.low == pytest.approx(b.low, abs=0.006)
        assert a.high == pytest.approx(b.high, abs=0.006)


def test_bootstrap_of_a_rare_category_reports_unstable_instead_of_a_biased_interval():
    # One positive label among 200 units: ~37% of resamples miss it, and alpha is undefined there.
    values = np.zeros((200, 3), dtype=np.int64)
    values[0, 0] = 1
    units, _, flat = ag.wide_to_long(values)
    ci = ag.bootstrap_alpha(units, flat, seed=0)
    assert ci.estimate.value is not None
    assert ci.low is None and ci.reason == Reason.UNSTABLE
    assert_json_safe(ci)


# --------------------------------------------------------------------------------------------------
# Leave-one-out per worker


def test_leave_one_out_worked_example():
    # unit 0: 1 1 0 -> worker 3 disagrees with the others' majority (1); workers 1 and 2 face a tie.
    # unit 1: all 0 -> everyone agrees with the others.
    units = [0, 0, 0, 1, 1, 1]
    workers = [1, 2, 3, 1, 2, 3]
    values = [1, 1, 0, 0, 0, 0]
    result = {w.worker: w for w in ag.leave_one_out_agreement(units, workers, values)}
    assert (result[3].n_compared, result[3].n_agree, result[3].rate) == (2, 1, 0.5)
    assert (result[1].n_compared, result[1].n_tied, result[1].rate) == (1, 1, 1.0)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.integers(0, 5), st.integers(0, 2)),
        max_size=60,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.integers(1, 3),
)
def test_leave_one_out_matches_the_slow_version(labels, min_others):
    units = [t[0] for t in labels]
    workers = [t[1] for t in labels]
    values = [t[2] for t in labels]
    expected = slow_leave_one_out(units, workers, values, min_others)
    result = ag.leave_one_out_agreement(units, workers, values, min_others=min_others)
    assert {w.worker for w in result} == set(expected)
    for w in result:
        assert [w.n_labels, w.n_compared, w.n_agree, w.n_tied] == expected[w.worker]
        assert w.rate == (w.n_agree / w.n_compared if w.n_compared else None)
        assert_json_safe(w)


# --------------------------------------------------------------------------------------------------
# Bad input: defined values or explicit "not enough data", never NaN, never a crash


def every_metric(units, workers, values, n_categories=2):
    table = ag.count_table(units, values, n_categories=n_categories)
    return {
        "alpha": ag.krippendorff_alpha_long(units, values),
        "masi": ag.krippendorff_alpha_long(units, values, distance=ag.masi_distance),
        "alpha_table": ag.krippendorff_alpha_table(table),
        "fleiss": ag.fleiss_kappa(table),
        "percent": ag.percent_agreement(table),
        "ac1": ag.gwet_ac1(table),
        "ci": ag.bootstrap_alpha(units, values, n_resamples=20, seed=0),
        "loo": ag.leave_one_out_agreement(units, workers, values),
    }


def test_a_project_with_no_labels():
    result = every_metric([], [], [])
    for name in ("alpha", "masi", "alpha_table", "fleiss"):
        assert result[name] == Metric(None, 0, Reason.NO_DATA), name
    assert result["percent"].reason == result["ac1"].reason == Reason.NO_PAIRABLE_UNITS
    assert result["ci"].low is None and result["ci"].reason == Reason.NO_DATA
    assert result["loo"] == []
    assert_json_safe(*(v for k, v in result.items() if k != "loo"))


def test_one_worker_means_nothing_is_pairable():
    result = every_metric([0, 1, 2], [7, 7, 7], [0, 1, 1])
    for name in ("alpha", "masi", "alpha_table", "fleiss", "percent", "ac1"):
        assert result[name].value is None and result[name].reason == Reason.NO_PAIRABLE_UNITS, name
    (only,) = result["loo"]
    assert (only.worker, only.n_labels, only.rate, only.reason) == (7, 3, None, Reason.NO_MAJORITY)
    assert_json_safe(*(v for k, v in result.items() if k != "loo"), only)


def test_a_category_never_used_and_everyone_agreeing():
    # Three workers, 50 items, nobody ever ticks this category.
    units = np.repeat(np.arange(50), 3)
    workers = np.tile([1, 2, 3], 50)
    values = np.zeros(150, dtype=np.int64)
    result = every_metric(units, workers, values)
    for name in ("alpha", "masi", "alpha_table", "fleiss"):
        assert result[name] == Metric(None, 50, Reason.NO_VARIATION), name
    # What the dashboard shows beside "no variation": everyone agreed.
    assert result["percent"] == Metric(1.0, 50)
    assert result["ac1"] == Metric(1.0, 50)
    assert all(w.rate == 1.0 for w in result["loo"])
    assert ag.cohen_kappa(values[:50], values[50:100]).reason == Reason.NO_VARIATION
    assert_json_safe(*(v for k, v in result.items() if k != "loo"))


def test_all_agreeing_with_variation_is_one_everywhere():
    units = np.repeat(np.arange(40), 3)
    workers = np.tile([1, 2, 3], 40)
    values = np.repeat(np.arange(40) % 2, 3)
    result = every_metric(units, workers, values)
    for name in ("alpha", "masi", "alpha_table", "fleiss", "percent", "ac1"):
        assert result[name].value == pytest.approx(1.0), name
    assert result["ci"].low == result["ci"].high == 1.0


def test_items_with_one_label_drop_out():
    units = [0, 0, 0, 1, 1, 1, 2, 3]
    workers = [1, 2, 3, 1, 2, 3, 1, 2]
    values = [1, 1, 0, 0, 0, 0, 1, 0]
    result = every_metric(units, workers, values)
    assert result["alpha"].n_units == 2
    assert result["percent"].n_units == 2
    assert result["fleiss"].reason == Reason.UNEQUAL_RATERS
    table = ag.count_table(units, values, n_categories=2)
    assert ag.fleiss_kappa(table, n_raters=3).n_units == 2
    assert ag.fleiss_kappa_wide([[0, 1, -1], [1, 1, 1]]).reason == Reason.UNEQUAL_RATERS


def test_fleiss_needs_two_units_and_two_raters():
    assert ag.fleiss_kappa([[1, 2]]).reason == Reason.TOO_FEW_UNITS
    assert ag.fleiss_kappa([[1, 0], [0, 1]]).reason == Reason.NO_PAIRABLE_UNITS
    assert ag.fleiss_kappa(np.zeros((3, 2))).reason == Reason.NO_DATA
    assert ag.fleiss_kappa([[1, 2], [3, 0]], n_raters=5).reason == Reason.NO_DATA


def test_gwet_needs_a_scale_of_two_categories():
    assert ag.gwet_ac1([[3], [2]]).reason == Reason.TOO_FEW_CATEGORIES


def test_cohen_kappa_edge_cases():
    assert ag.cohen_kappa([], []).reason == Reason.NO_DATA
    assert ag.cohen_kappa([1, 1], [0, 0]) == Metric(0.0, 2)  # always disagree, chance agreement 0
    assert ag.cohen_kappa_table([[0, 0], [0, 0]]).reason == Reason.NO_DATA
    assert ag.cohen_kappa_table([[5, 0], [0, 0]]).reason == Reason.NO_VARIATION
    with pytest.raises(ValueError, match="length"):
        ag.cohen_kappa([1, 0], [1])


def test_missing_markers_in_wide_and_long_form():
    with_nan = np.array([[1.0, np.nan, 1.0], [0.0, 0.0, np.nan], [np.nan, np.nan, np.nan]])
    with_marker = np.array([[1, -1, 1], [0, 0, -1], [-1, -1, -1]])
    assert ag.krippendorff_alpha(with_nan) == ag.krippendorff_alpha(with_marker)
    units, _, _ = ag.wide_to_long(with_marker)
    assert list(units) == [0, 0, 1, 1]
    # NaN in a long-form float column is "no label" as well.
    assert ag.krippendorff_alpha_long([0, 0, 1, 1, 1], [1.0, 1.0, 0.0, 0.0, np.nan]).value == 1.0


def test_metric_never_carries_nan():
    assert Metric.of(float("nan"), 3) == Metric(None, 3, Reason.NOT_FINITE)
    assert Metric.of(float("inf"), 3).value is None
    assert json.loads(json.dumps(Metric.undefined(Reason.NO_VARIATION, 4).as_dict())) == {
        "value": None,
        "n_units": 4,
        "reason": "no variation",
    }


def test_malformed_input_raises():
    with pytest.raises(ValueError, match="differ in length"):
        ag.krippendorff_alpha_long([0, 1], [1])
    with pytest.raises(ValueError, match="integer codes"):
        ag.count_table([0, 1], [0, 2], n_categories=2)
    with pytest.raises(ValueError, match="units x coders"):
        ag.krippendorff_alpha([1, 2, 3])
    for units, values in (([0, 0, 1, 1], [0, 1, 1, 1]), ([], [])):
        with pytest.raises(ValueError, match="level"):
            ag.bootstrap_alpha(units, values, level=95)


# --------------------------------------------------------------------------------------------------
# Scale (a sanity print, no timed assertions)


def test_scale_330k_units_by_3_workers(capsys):
    rng = np.random.default_rng(42)
    n = 330_000
    truth = rng.random(n) < 0.3
    binary = np.where(rng.random((n, 3)) < 0.9, truth[:, None], ~truth[:, None]).astype(np.int64)
    units, _, values = ag.wide_to_long(binary)

    started = time.perf_counter()
    alpha = ag.krippendorff_alpha_long(units, values)
    binary_s = time.perf_counter() - started
    reference = krippendorff.alpha(reliability_data=binary.T.astype(float), level_of_measurement="nominal")
    assert alpha.value == pytest.approx(reference, abs=1e-9)

    # Category sets: mostly safe, otherwise one to three categories, with noise per worker.
    sets = np.where(rng.random(n) < 0.5, 0, (1 << rng.integers(0, 14, n)) | (1 << rng.integers(0, 14, n)))
    flips = 1 << rng.integers(0, 14, (n, 3))
    masks = np.where(rng.random((n, 3)) < 0.8, sets[:, None], sets[:, None] ^ flips)
    mask_units, _, mask_values = ag.wide_to_long(masks)
    started = time.perf_counter()
    masi = ag.krippendorff_alpha_long(mask_units, mask_values, distance=ag.masi_distance)
    masi_s = time.perf_counter() - started

    started = time.perf_counter()
    ci = ag.bootstrap_alpha(units, values, n_resamples=200, seed=0)
    bootstrap_s = time.perf_counter() - started
    assert masi.value is not None
    assert_contains(ci, alpha.value)
    with capsys.disabled():
        print(
            f"\n330k x 3: nominal alpha {alpha.value:.4f} in {binary_s:.3f}s; "
            f"MASI alpha {masi.value:.4f} over {np.unique(mask_values).size} distinct sets in {masi_s:.3f}s; "
            f"bootstrap 200 resamples in {bootstrap_s:.2f}s"
        )
