"""The stored agreement report: loading labels, every section of the payload, and the bad-input cases.

The project is labelled through the real services (tests/annotate/labelled_project.py) and every
number is checked against annotate.agreement's public functions on the same arrays, or by hand.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from annotate import agreement as ag
from annotate import agreement_report as report_module
from annotate.agreement_report import (
    LabelArrays,
    agreement_payload,
    agreement_report_compute,
    alpha_interval,
    binary_leave_one_out,
    binary_patterns,
    fleiss_kappa,
    gwet_ac1,
    latest_report,
    load_stage1_labels,
    load_stage2_labels,
    percent_agreement,
    project_needs_recompute,
    stage2_section,
    unit_sets,
)
from annotate.assignment import assignment_claim, label_submit
from annotate.categories import CATEGORY_KEYS, HARM_CATEGORIES, mask_from_keys
from annotate.models import AgreementReport, Stage, Stage1Label, WorkItem
from tests.annotate.labelled_project import ANSWERS, PRIVACY, SELF_HARM, VIOLENCE, build
from tests.factories import ProjectFactory, PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(project):
    return build(project)


def _valid_json(payload):
    text = json.dumps(payload, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    return json.loads(text)


def _known_long(labelled):
    """The test's answer table as long-form arrays: (units, workers, masks) over submitted labels."""
    units, workers, masks = [], [], []
    for name, answers in ANSWERS.items():
        for item, categories in answers.items():
            if categories is not None:
                units.append(labelled.items[item].pk)
                workers.append(labelled.workers[name].pk)
                masks.append(mask_from_keys(categories))
    return np.array(units), np.array(workers), np.array(masks)


def _close(metric, expected):
    if expected.value is None:
        assert metric["value"] is None and metric["reason"] == expected.reason
    else:
        assert metric["value"] == pytest.approx(expected.value, abs=1e-12)
    assert metric["n_units"] == expected.n_units


# --------------------------------------------------------------------------------------------------
# Loading


def test_labels_load_as_arrays_exactly_as_stored(labelled):
    s1 = load_stage1_labels(labelled.project)
    rows = sorted(
        Stage1Label.objects.filter(qa_pair__project=labelled.project).values_list(
            "qa_pair_id", "worker_id", "categories", "guideline_version", "time_on_task_ms", "created_at"
        )
    )
    got = sorted(
        zip(
            s1.unit.tolist(),
            s1.worker.tolist(),
            s1.values["mask"].tolist(),
            s1.version.tolist(),
            s1.time_ms.tolist(),
            s1.created.tolist(),
            strict=True,
        )
    )
    assert [r[:5] for r in got] == [r[:5] for r in rows]
    assert [r[5] for r in got] == [int(r[5].timestamp()) for r in rows]
    s2 = load_stage2_labels(labelled.project)
    assert s2.size == 3 and sorted(s2.values["better"].tolist()) == [0, 0, 1]
    assert s2.values["safer"].tolist() == [0, 0, 0]


def test_the_streaming_path_and_the_join_path_read_the_same_labels(labelled, monkeypatch):
    # Another project's QA pair in the middle of this project's ids: the range shortcut must not apply.
    other = ProjectFactory()
    QAPairFactory(prompt=PromptFactory(project=other))
    QAPairFactory(prompt=PromptFactory(project=labelled.project))
    copied = load_stage1_labels(labelled.project)
    assert report_module._contiguous_ids(report_module.QAPair, labelled.project) is None
    monkeypatch.setattr(report_module, "_can_copy", lambda: False)
    streamed = load_stage1_labels(labelled.project)
    order_a, order_b = np.lexsort((copied.worker, copied.unit)), np.lexsort((streamed.worker, streamed.unit))
    for name in ("unit", "worker", "version", "created", "time_ms"):
        assert np.array_equal(getattr(copied, name)[order_a], getattr(streamed, name)[order_b]), name
    assert np.array_equal(copied.values["mask"][order_a], streamed.values["mask"][order_b])


def test_the_copy_parser_refuses_a_stream_it_cannot_read():
    with pytest.raises(ValueError, match="binary COPY"):
        report_module._parse_copy_binary(b"not a copy stream at all", [">i4"])


# --------------------------------------------------------------------------------------------------
# Stage 1 and stage 2 statistics against annotate.agreement


def test_stage1_statistics_equal_annotate_agreement_on_the_same_arrays(labelled):
    payload = _valid_json(agreement_payload(project=labelled.project))
    units, _, masks = _known_long(labelled)
    stage1 = payload["stage1"]
    assert (stage1["labels"], stage1["items"], stage1["workers"]) == (22, 8, 3)

    variables = {"is_safe": (masks == 0).astype(int)}
    variables |= {c.key: (masks >> c.id) & 1 for c in HARM_CATEGORIES}
    for name, values in variables.items():
        block = stage1["is_safe"] if name == "is_safe" else stage1["categories"][name]
        table = ag.count_table(units, values, 2)
        _close(block["alpha"], ag.krippendorff_alpha_long(units, values))
        _close(block["fleiss_kappa"], ag.fleiss_kappa(table, n_raters=3))
        _close(block["percent_agreement"], ag.percent_agreement(table))
        _close(block["gwet_ac1"], ag.gwet_ac1(table))
        assert block["alpha_ci"]["estimate"] == block["alpha"]
    _close(
        stage1["category_set"]["alpha"], ag.krippendorff_alpha_long(units, masks, distance=ag.masi_distance)
    )
    assert list(stage1["categories"]) == list(CATEGORY_KEYS)
    # i7 has one label: it counts as rated (AC1) but not pairable (alpha).
    assert stage1["is_safe"]["alpha"]["n_units"] == 7
    assert stage1["is_safe"]["fleiss_kappa"]["n_units"] == 7


def test_a_category_nobody_used_has_no_alpha_but_full_percent_agreement_and_ac1(labelled):
    block = _valid_json(agreement_payload(project=labelled.project))["stage1"]["categories"]["animal_abuse"]
    assert block["alpha"] == {"value": None, "n_units": 7, "reason": "no variation"}
    assert block["fleiss_kappa"]["reason"] == "no variation"
    assert block["percent_agreement"]["value"] == 1.0
    assert block["gwet_ac1"]["value"] == 1.0
    assert block["alpha_ci"]["low"] is None and block["alpha_ci"]["reason"] == "no variation"


def test_stage2_statistics_use_the_canonical_order(labelled):
    stage2 = _valid_json(agreement_payload(project=labelled.project))["stage2"]
    assert (stage2["labels"], stage2["items"], stage2["workers"]) == (3, 1, 3)
    # better: 0, 1, 0 on one pair (whatever order each worker saw); safer: 0, 0, 0.
    expected = ag.krippendorff_alpha_long([1, 1, 1], [0, 1, 0])
    _close(stage2["better"]["alpha"], expected)
    # Exactly one of the pair's responses is safe, so its harmless answer was forced: the headline (free
    # choices only) has no data, and the figure over every pair shows what it would have hidden.
    assert stage2["safer"]["alpha"]["reason"] == "no data"
    assert stage2["safer_forced"] == {"items": 1, "labels": 3, "share_of_items": 1.0}
    assert stage2["safer_all"]["alpha"]["reason"] == "no variation"
    assert stage2["safer_all"]["percent_agreement"]["value"] == 1.0
    assert stage2["better"]["fleiss_kappa"]["reason"] == "too few units"


def test_safer_agreement_is_over_free_choices_with_the_forced_share_beside_it():
    """Forced pairs (exactly one response safe) agree by construction and would inflate `safer`."""
    units = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
    safer = np.array([0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1])  # pairs 3 and 4 forced: everyone agrees
    labels = LabelArrays(
        unit=units,
        worker=np.tile([10, 11, 12], 4),
        version=np.ones(12, dtype=np.int64),
        created=np.zeros(12, dtype=np.int64),
        time_ms=np.full(12, -1),
        values={"better": np.zeros(12, dtype=np.int64), "safer": safer},
    )
    section = stage2_section(labels, overlap=3, forced_units=np.array([3, 4, 99]))
    _close(section["safer"]["alpha"], ag.krippendorff_alpha_long(units[:6], safer[:6]))
    _close(section["safer_all"]["alpha"], ag.krippendorff_alpha_long(units, safer))
    assert section["safer"]["alpha"]["n_units"] == 2 and section["safer_all"]["alpha"]["n_units"] == 4
    assert section["safer"]["alpha"]["value"] < section["safer_all"]["alpha"]["value"]
    assert section["safer_forced"] == {"items": 2, "labels": 6, "share_of_items": 0.5}


def test_a_pair_is_forced_only_by_the_workers_settled_safety(project):
    from django.utils import timezone

    from annotate.agreement_report import forced_safer_units
    from annotate.models import GoldStage1Label, ResponsePair, WorkItem

    prompt = PromptFactory(project=project)
    qas = [QAPairFactory(prompt=prompt) for _ in range(5)]
    settled = {0: True, 1: False, 2: True}  # 3 is gold only, 4 is not judged at all
    for n, qa in enumerate(qas):
        Stage1WorkItemFactory(qa_pair=qa)
        if n in settled:
            WorkItem.objects.filter(qa_pair=qa).update(
                settled_at=timezone.now(),
                consensus_safe=settled[n],
                consensus_categories=0 if settled[n] else 1,
            )
    GoldStage1Label.objects.create(qa_pair=qas[3], categories=1, is_safe=False, source="expert")
    pairs = {
        (a, b): ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qas[a], qa_b=qas[b]).pk
        for a, b in ((0, 1), (0, 2), (1, 2), (0, 3), (0, 4))
    }
    assert sorted(forced_safer_units(project).tolist()) == sorted([pairs[(0, 1)], pairs[(1, 2)]])


# --------------------------------------------------------------------------------------------------
# Workers, gold, progress


def test_worker_rows_leave_one_out_gold_skips_and_time(labelled):
    payload = _valid_json(agreement_payload(project=labelled.project))
    rows = {row["username"]: row for row in payload["workers"]}
    assert list(rows) == ["ann", "bob", "cat"]
    # Leave-one-out on is_safe, by hand (ties among the two others are left out; i7 has no others):
    # ann agrees on i1 i2 i5 (i3 i4 i6 i8 tied); bob agrees on i1 i2 i5, not on i4 i6 (i3 i8 tied);
    # cat agrees on i1 i2 i5, not on i3 i8 (i4 i6 tied).
    assert rows["ann"]["loo_is_safe"]["n_compared"] == 3  # i1 i2 i5; i3 i4 i6 i8 tied
    assert rows["ann"]["loo_is_safe"]["rate"] == pytest.approx(1.0)
    assert rows["bob"]["loo_is_safe"]["n_compared"] == 5 and rows["bob"]["loo_is_safe"][
        "rate"
    ] == pytest.approx(3 / 5)
    assert rows["cat"]["loo_is_safe"]["n_compared"] == 5 and rows["cat"]["loo_is_safe"][
        "rate"
    ] == pytest.approx(3 / 5)
    # The same through annotate.agreement's general function.
    units, workers, masks = _known_long(labelled)
    for agreement in ag.leave_one_out_agreement(units, workers, (masks == 0).astype(int)):
        row = next(r for r in rows.values() if r["worker_id"] == agreement.worker)
        assert (row["loo_is_safe"]["rate"], row["loo_is_safe"]["n_compared"]) == (
            agreement.rate,
            agreement.n_compared,
        )
    assert rows["ann"]["labels_stage1"] == 7 and rows["bob"]["labels_stage1"] == 8
    assert all(row["labels_stage2"] == 1 for row in rows.values())
    # Skips: ann and cat skipped i7 (1 of 8 stage-1 tasks, plus 1 stage-2 task submitted).
    assert rows["ann"]["skip_rate"] == pytest.approx(1 / 9)
    assert rows["cat"]["skip_rate"] == pytest.approx(1 / 9)
    assert rows["bob"]["skip_rate"] == 0.0
    # Gold: i2 = [self_harm], i4 = [] ; bob said privacy on i4.
    assert (rows["ann"]["gold_answered"], rows["ann"]["gold_correct"], rows["ann"]["gold_accuracy"]) == (
        2,
        2,
        1.0,
    )
    assert (rows["bob"]["gold_answered"], rows["bob"]["gold_correct"]) == (2, 1)
    assert rows["bob"]["flagged"] is True and rows["ann"]["flagged"] is False
    assert rows["ann"]["gold_kappa_is_safe"]["value"] == pytest.approx(1.0)
    # bob said unsafe on both: po = 0.5, pe = 0.5, kappa 0.
    assert rows["bob"]["gold_kappa_is_safe"]["value"] == pytest.approx(0.0)
    assert all(isinstance(row["median_time_on_task_ms"], int) for row in rows.values())


def test_median_time_on_task_per_worker():
    workers = np.array([1, 1, 1, 2, 2, 3, 3, 3, 3])
    times = np.array([30, 10, 20, 5, 7, -1, 100, 200, 400])
    assert report_module._median_per_worker(workers, times) == {1: 20, 2: 6, 3: 200}


def test_gold_section(labelled):
    gold = _valid_json(agreement_payload(project=labelled.project))["gold"]
    # Labels on gold items: i2 unsafe x3 (gold unsafe), i4 safe, unsafe, safe (gold safe).
    expected = ag.cohen_kappa([0, 0, 0, 1, 0, 1], [0, 0, 0, 1, 1, 1])
    _close(gold["stage1_is_safe_kappa"], expected)
    assert gold["stage1_exact_accuracy"] == {"value": pytest.approx(5 / 6), "n_units": 6, "reason": None}
    assert gold["stage2_accuracy"] == {"value": None, "n_units": 0, "reason": "no data"}


def test_progress_counts_and_labels_per_hour(labelled):
    progress = _valid_json(agreement_payload(project=labelled.project))["progress"]
    assert progress["stage1"] == {
        "items": 8,
        "settled": 6,
        "in_progress": 1,
        "not_started": 0,
        "needs_adjudication": 1,
    }
    assert progress["stage2"] == {
        "items": 1,
        "settled": 1,
        "in_progress": 0,
        "not_started": 0,
        "needs_adjudication": 0,
    }
    hours = progress["labels_per_hour"]
    assert len(hours) == 24
    assert hours[-1]["hour"] == timezone.now().strftime("%Y-%m-%dT%H:00:00Z")
    assert sum(h["stage1"] for h in hours) == 22 and sum(h["stage2"] for h in hours) == 3


def test_over_time_by_day_and_by_guideline_version(labelled):
    project = labelled.project
    earlier = [labelled.items[name].pk for name in ("i5", "i6", "i8")]
    yesterday = timezone.now() - timedelta(days=1)
    Stage1Label.objects.filter(qa_pair_id__in=earlier).update(created_at=yesterday, guideline_version=2)
    over_time = _valid_json(agreement_payload(project=project))["over_time"]
    units, _, masks = _known_long(labelled)
    late = ~np.isin(units, earlier)

    by_day = over_time["by_day"]
    assert [row["period"] for row in by_day] == [
        yesterday.date().isoformat(),
        timezone.now().date().isoformat(),
    ]
    assert [row["stage1_labels"] for row in by_day] == [9, 13]
    assert [row["stage2_labels"] for row in by_day] == [0, 3]
    _close(
        by_day[0]["is_safe_alpha"], ag.krippendorff_alpha_long(units[~late], (masks[~late] == 0).astype(int))
    )
    _close(
        by_day[1]["is_safe_alpha"], ag.krippendorff_alpha_long(units[late], (masks[late] == 0).astype(int))
    )
    assert by_day[0]["better_alpha"]["reason"] == "no data"
    assert by_day[1]["is_safe_alpha_ci"]["estimate"] == by_day[1]["is_safe_alpha"]

    by_version = over_time["by_guideline_version"]
    assert [row["period"] for row in by_version] == [1, 2]
    assert [row["stage1_labels"] for row in by_version] == [13, 9]
    assert [row["stage2_labels"] for row in by_version] == [3, 0]
    assert by_version[1]["is_safe_alpha"] == by_day[0]["is_safe_alpha"]
    assert by_version[0]["is_safe_alpha"] == by_day[1]["is_safe_alpha"]


def test_alerts_name_every_defined_figure_under_the_threshold(labelled, monkeypatch):
    import annotate.agreement_report as report

    project = labelled.project
    project.agreement_alert_threshold = 0.99
    project.save()
    # Eight QA pairs are too few to alert on: a low figure from them is within its own noise.
    few = _valid_json(agreement_payload(project=project))
    assert few["stage1"]["is_safe"]["alpha"]["n_units"] < report.ALERT_MIN_UNITS
    assert few["stage1"]["is_safe"]["alpha"]["value"] < 0.99 and few["alerts"] == []
    monkeypatch.setattr(report, "ALERT_MIN_UNITS", 1)
    payload = _valid_json(agreement_payload(project=project))
    alerts = {alert["metric"]: alert for alert in payload["alerts"]}
    is_safe = payload["stage1"]["is_safe"]["alpha"]
    assert alerts["stage1.is_safe.alpha"] == {
        "metric": "stage1.is_safe.alpha",
        "label": "Stage 1 · Is safe · alpha",
        "value": is_safe["value"],
        "n_units": is_safe["n_units"],
        "threshold": 0.99,
    }
    assert "stage1.categories.animal_abuse.alpha" not in alerts  # undefined never alerts
    assert "stage2.safer.alpha" not in alerts
    assert alerts["stage1.categories.self_harm.alpha"]["label"] == "Stage 1 · Self-harm · alpha"
    project.agreement_alert_threshold = 0.0
    project.save()
    assert agreement_payload(project=project)["alerts"] == []


def test_consensus_section_compares_majority_and_dawid_skene_on_gold(labelled):
    consensus = _valid_json(agreement_payload(project=labelled.project))["consensus"]
    main = consensus["dawid_skene_vs_majority_on_gold"]
    # Gold i2 (unsafe: 3-0) and i4 (safe: 2-1): the majority is right on both.
    assert main["majority_accuracy"] == {"value": 1.0, "n_units": 2, "reason": None}
    assert main["dawid_skene_accuracy"]["n_units"] == 2
    assert consensus["by_variable"]["better"]["majority_accuracy"]["reason"] == "no data"


# --------------------------------------------------------------------------------------------------
# Storing, serving, recomputing


def test_compute_stores_the_report_and_latest_report_serves_it(labelled):
    assert latest_report(labelled.project) is None
    report = agreement_report_compute(project=labelled.project)
    assert latest_report(labelled.project) == report
    assert (report.stage1_labels, report.stage2_labels) == (22, 3)
    assert report.payload["version"] == 1 and report.payload["duration_ms"] == report.duration_ms
    assert report.payload["guideline_version"] == labelled.project.guideline_version
    assert set(report.payload) >= {
        "version", "computed_at", "duration_ms", "guideline_version", "progress", "stage1", "stage2",
        "gold", "workers", "over_time", "consensus", "alerts",
    }  # fmt: skip
    _valid_json(report.payload)


def test_only_the_latest_reports_are_kept(project, monkeypatch):
    monkeypatch.setattr(report_module, "KEEP_REPORTS", 2)
    reports = [agreement_report_compute(project=project) for _ in range(3)]
    assert list(AgreementReport.objects.filter(project=project).order_by("id")) == reports[1:]


def test_needs_recompute_counts_labels_since_the_last_report(project):
    project.agreement_recompute_labels = 2
    project.gold_rate = 0
    project.save()
    assert project_needs_recompute(project) is True  # no report yet
    agreement_report_compute(project=project)
    assert project_needs_recompute(project) is False
    worker = UserFactory(username="w")
    for n in range(2):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
        lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
        label_submit(assignment=lease, payload={"categories": []})
        assert project_needs_recompute(project) is (n == 1)
    agreement_report_compute(project=project)
    assert project_needs_recompute(project) is False


def test_an_older_report_follows_any_new_label(project, settings):
    """The dashboard is live: once the report is AGREEMENT_REFRESH_S old, one new label is enough."""
    from datetime import timedelta

    from django.utils import timezone

    settings.AGREEMENT_REFRESH_S = 20
    project.agreement_recompute_labels = 500
    project.gold_rate = 0
    project.save()
    report = agreement_report_compute(project=project)
    later = report.computed_at + timedelta(seconds=30)
    assert project_needs_recompute(project, now=later) is False  # old, but nothing new
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    lease = assignment_claim(project=project, worker=UserFactory(username="w"), stage=Stage.CLASSIFY)
    label_submit(assignment=lease, payload={"categories": []})
    assert project_needs_recompute(project, now=report.computed_at + timedelta(seconds=5)) is False
    assert project_needs_recompute(project, now=later) is True
    assert project_needs_recompute(project, now=timezone.now() + timedelta(seconds=30)) is True


def test_needs_recompute_is_a_few_cheap_queries(project, django_assert_max_num_queries):
    agreement_report_compute(project=project)
    with django_assert_max_num_queries(3):
        project_needs_recompute(project)


# --------------------------------------------------------------------------------------------------
# Bad input: a defined value or a reason, never a crash, never NaN


def test_a_project_with_no_labels(project):
    payload = _valid_json(agreement_payload(project=project))
    assert payload["stage1"]["labels"] == 0
    assert payload["stage1"]["is_safe"]["alpha"]["reason"] == "no data"
    assert payload["stage1"]["category_set"]["alpha"]["reason"] == "no data"
    assert payload["stage1"]["is_safe"]["percent_agreement"]["reason"] == "no unit has 2 or more labels"
    assert payload["stage2"]["better"]["fleiss_kappa"]["reason"] == "no data"
    assert payload["workers"] == [] and payload["alerts"] == []
    assert payload["over_time"] == {"by_day": [], "by_guideline_version": []}
    assert payload["gold"]["stage1_is_safe_kappa"]["reason"] == "no data"


def test_one_worker(project):
    project.overlap_stage1 = 1
    project.gold_rate = 0
    project.save()
    worker = UserFactory(username="solo")
    for _ in range(3):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    for categories in ([], [SELF_HARM], [PRIVACY]):
        lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
        label_submit(assignment=lease, payload={"categories": categories})
    payload = _valid_json(agreement_payload(project=project))
    assert payload["stage1"]["is_safe"]["alpha"]["reason"] == "no unit has 2 or more labels"
    assert payload["stage1"]["is_safe"]["fleiss_kappa"]["reason"] == "no unit has 2 or more labels"
    assert payload["stage1"]["is_safe"]["gwet_ac1"]["reason"] == "no unit has 2 or more labels"
    assert payload["stage1"]["category_set"]["alpha"]["reason"] == "no unit has 2 or more labels"
    (row,) = payload["workers"]
    assert row["loo_is_safe"] == {"rate": None, "n_compared": 0, "reason": ag.Reason.NO_MAJORITY.value}


def test_all_workers_agreeing(project):
    project.gold_rate = 0
    project.save()
    for _ in range(3):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    answers = [[], [VIOLENCE], [VIOLENCE, SELF_HARM]]
    for name in ("a", "b", "c"):
        worker = UserFactory(username=name)
        while (lease := assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)) is not None:
            index = sorted(WorkItem.objects.filter(project=project).values_list("id", flat=True)).index(
                lease.work_item_id
            )
            label_submit(assignment=lease, payload={"categories": answers[index]})
    stage1 = _valid_json(agreement_payload(project=project))["stage1"]
    for block in (stage1["is_safe"], stage1["categories"][VIOLENCE], stage1["categories"][SELF_HARM]):
        assert block["alpha"]["value"] == pytest.approx(1.0)
        assert block["fleiss_kappa"]["value"] == pytest.approx(1.0)
        assert block["percent_agreement"]["value"] == 1.0
    assert stage1["category_set"]["alpha"]["value"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# The grouped statistics equal the public functions on the expanded arrays


def _random_labels(seed, n_units=300, max_raters=7):
    rng = np.random.default_rng(seed)
    raters = rng.choice([1, 2, 3, 3, 3, 4, max_raters], size=n_units)
    units = np.repeat(np.arange(n_units) * 3 + 11, raters)  # sparse, non-zero ids
    truth = np.where(rng.random(n_units) < 0.4, 0, 1 << rng.integers(0, 14, n_units))
    masks = np.repeat(truth, raters)
    noise = rng.random(masks.size) < 0.25
    masks = np.where(noise, masks ^ (1 << rng.integers(0, 14, masks.size)), masks)
    workers = rng.integers(0, 12, masks.size)
    return units, workers, masks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grouped_statistics_equal_the_public_functions(seed):
    units, _, masks = _random_labels(seed)
    _, codes = report_module.dense_codes(units)
    groups = unit_sets(codes, masks)
    assert groups.sizes.sum() == np.unique(units).size
    for bits in [(masks == 0).astype(int), (masks >> 3) & 1, (masks >> 13) & 1]:
        table = ag.count_table(units, bits, 2)
        patterns = binary_patterns(table.sum(axis=1), table[:, 1])
        assert np.array_equal(np.sort(patterns.expand(), axis=0), np.sort(table.astype(float), axis=0))
        interval = alpha_interval(patterns, seed=0)
        _close(interval.estimate.as_dict(), ag.krippendorff_alpha_long(units, bits))
        _close(fleiss_kappa(patterns, n_raters=3).as_dict(), ag.fleiss_kappa(table, n_raters=3))
        _close(fleiss_kappa(patterns, n_raters=None).as_dict(), ag.fleiss_kappa(table))
        _close(percent_agreement(patterns).as_dict(), ag.percent_agreement(table))
        _close(gwet_ac1(patterns).as_dict(), ag.gwet_ac1(table))
        # A different but equivalent resampling (multinomial over patterns): close, not equal.
        reference = ag.bootstrap_alpha(units, bits, seed=0)
        assert interval.low == pytest.approx(reference.low, abs=0.05)
        assert interval.high == pytest.approx(reference.high, abs=0.05)
        assert interval.low <= interval.estimate.value <= interval.high
    # The same through the mask groups (what the report uses).
    for bit in (0, 5, 13):
        bits = (masks >> bit) & 1
        grouped = groups.binary((groups.masks >> bit) & 1)
        _close(alpha_interval(grouped, seed=0).estimate.as_dict(), ag.krippendorff_alpha_long(units, bits))
        _close(gwet_ac1(grouped).as_dict(), ag.gwet_ac1(ag.count_table(units, bits, 2)))
    grouped_safe = groups.binary(groups.masks == 0)
    _close(
        percent_agreement(grouped_safe).as_dict(),
        ag.percent_agreement(ag.count_table(units, (masks == 0).astype(int), 2)),
    )
    sets = groups.category_sets()
    _close(
        alpha_interval(sets, distance=ag.masi_distance, seed=0).estimate.as_dict(),
        ag.krippendorff_alpha_long(units, masks, distance=ag.masi_distance),
    )


@pytest.mark.parametrize("seed", [4, 5])
def test_binary_leave_one_out_equals_the_general_function(seed):
    units, workers, masks = _random_labels(seed)
    _, codes = report_module.dense_codes(units)
    for bits in [(masks == 0).astype(int), (masks >> 2) & 1]:
        fast = binary_leave_one_out(codes, workers, bits)
        for agreement in ag.leave_one_out_agreement(units, workers, bits):
            row = fast[agreement.worker]
            assert row["n_compared"] == agreement.n_compared
            assert row["rate"] == agreement.rate
            assert row["reason"] == agreement.reason
