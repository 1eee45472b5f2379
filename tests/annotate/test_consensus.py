"""Consensus beyond the majority: Dawid-Skene, the adjudication queue and admins' decisions."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.http import Http404

from annotate.assignment import assignment_claim, label_submit
from annotate.categories import mask_from_keys
from annotate.consensus import (
    adjudication_decide,
    adjudication_item,
    adjudication_queue,
    adjudication_queue_count,
    dawid_skene,
    dense_codes,
)
from annotate.models import Adjudication, ResponsePair, Stage, Stage1Label, Stage2Label, WorkItem
from tests.annotate.labelled_project import SELF_HARM, VIOLENCE, build, label_all
from tests.factories import ProjectFactory, PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory

# --------------------------------------------------------------------------------------------------
# Dawid-Skene (pure: no database)


def _simulate(rng, truth, accuracies, n_classes=2):
    """Every worker labels every unit; worker w is right with probability accuracies[w]."""
    units, workers, values = [], [], []
    for w, accuracy in enumerate(accuracies):
        right = rng.random(truth.size) < accuracy
        wrong = (truth + rng.integers(1, n_classes, truth.size)) % n_classes
        units.append(np.arange(truth.size))
        workers.append(np.full(truth.size, w))
        values.append(np.where(right, truth, wrong))
    return np.concatenate(units), np.concatenate(workers), np.concatenate(values)


def _majority(units, values, n_units):
    ones = np.bincount(units, weights=values, minlength=n_units)
    totals = np.bincount(units, minlength=n_units)
    return np.where(2 * ones > totals, 1, np.where(2 * ones < totals, 0, -1))


def test_dawid_skene_recovers_the_truth_where_the_majority_fails():
    rng = np.random.default_rng(7)
    truth = (rng.random(2000) < 0.4).astype(np.int64)
    # Two reliable workers and one adversary who always answers the opposite.
    units, workers, values = _simulate(rng, truth, [0.9, 0.9, 0.0])
    majority = _majority(units, values, truth.size)
    result = dawid_skene(units, workers, values, 2)
    majority_accuracy = (majority == truth).mean()
    ds_accuracy = (result.labels() == truth).mean()
    # Where the two reliable workers disagree (~18% of items) the adversary decides the majority, wrongly.
    assert majority_accuracy < 0.85
    assert ds_accuracy > 0.99
    assert result.converged
    # The adversary's confusion matrix is learned as inverted; the reliable ones as ~90% right.
    assert result.confusion[2, 0, 1] > 0.95 and result.confusion[2, 1, 0] > 0.95
    assert result.confusion[0, 0, 0] == pytest.approx(0.9, abs=0.03)
    assert result.priors[1] == pytest.approx(0.4, abs=0.03)
    assert np.allclose(result.posteriors.sum(axis=1), 1.0)


def test_dawid_skene_matches_the_majority_when_workers_are_equally_reliable():
    rng = np.random.default_rng(11)
    truth = (rng.random(3000) < 0.5).astype(np.int64)
    units, workers, values = _simulate(rng, truth, [0.8, 0.8, 0.8])
    result = dawid_skene(units, workers, values, 2)
    assert np.array_equal(result.labels(), _majority(units, values, truth.size))


def test_dawid_skene_multiclass_and_arbitrary_ids():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 1500)
    units, workers, values = _simulate(rng, truth, [0.85, 0.75, 0.7, 0.35], n_classes=3)
    result = dawid_skene(units * 10 + 5, workers + 100, values, 3)
    assert result.units[:3].tolist() == [5, 15, 25]
    assert result.workers.tolist() == [100, 101, 102, 103]
    assert result.confusion.shape == (4, 3, 3)
    assert np.allclose(result.confusion.sum(axis=2), 1.0)
    votes = np.zeros((truth.size, 3))
    np.add.at(votes, (units, values), 1)
    plurality = votes.argmax(axis=1)  # ties to the lower class
    assert (result.labels() == truth).mean() > max(0.85, (plurality == truth).mean())


def test_dawid_skene_with_missing_labels_and_a_single_label_unit():
    units = np.array([0, 0, 0, 1, 1, 2])
    workers = np.array([1, 2, 3, 1, 2, 3])
    values = np.array([1, 1, 0, 0, 0, 1])
    result = dawid_skene(units, workers, values, 2)
    assert result.posteriors.shape == (3, 2)
    assert np.all(np.isfinite(result.posteriors))
    assert result.labels()[:2].tolist() == [1, 0]


def test_dawid_skene_edge_cases():
    empty = dawid_skene([], [], [], 2)
    assert empty.posteriors.shape == (0, 2) and empty.iterations == 0
    with pytest.raises(ValueError, match="class codes"):
        dawid_skene([0, 1], [0, 0], [0, 2], 2)
    with pytest.raises(ValueError, match="class codes"):
        dawid_skene([0, 1], [0, 0], [0, 0.5], 2)
    with pytest.raises(ValueError, match="differ in length"):
        dawid_skene([0, 1], [0], [0, 1], 2)
    with pytest.raises(ValueError, match="at least 2"):
        dawid_skene([0], [0], [0], 1)


def test_dense_codes_match_numpy_unique():
    ids = np.array([40, 7, 7, 1000, 40, 3])
    distinct, codes = dense_codes(ids)
    expected, inverse = np.unique(ids, return_inverse=True)
    assert np.array_equal(distinct, expected) and np.array_equal(codes, inverse)
    distinct, codes = dense_codes(np.array([10**15, 3, 10**15]))  # too wide for a lookup table
    assert distinct.tolist() == [3, 10**15] and codes.tolist() == [1, 0, 1]


# --------------------------------------------------------------------------------------------------
# The adjudication queue and decisions


@pytest.fixture
def labelled(project):
    return build(project)


@pytest.mark.django_db
def test_the_queue_lists_unsettled_items_with_their_vote_counts(labelled):
    cases = adjudication_queue(project=labelled.project)
    assert [case.item.qa_pair_id for case in cases] == [labelled.items["i8"].pk]
    assert cases[0].votes == {
        "labels": 3,
        "is_safe": {"safe": 1, "unsafe": 2},
        "categories": {SELF_HARM: 1, VIOLENCE: 1},
    }
    assert adjudication_queue_count(project=labelled.project) == 1
    assert adjudication_queue(project=labelled.project, stage=Stage.RANK) == []
    assert adjudication_queue_count(project=labelled.project, stage=Stage.RANK) == 0


@pytest.mark.django_db
def test_the_queue_is_a_fixed_number_of_queries(labelled, django_assert_max_num_queries):
    # The items with what they show, then each stage's labels (a stage with no items costs nothing).
    with django_assert_max_num_queries(3):
        cases = adjudication_queue(project=labelled.project)
        assert cases[0].item.qa_pair.prompt.text


@pytest.mark.django_db
def test_a_stage1_decision_settles_the_item_keeps_the_labels_and_feeds_stage2(labelled, admin_user):
    project = labelled.project
    # i8 shares no prompt yet: give its prompt a second, settled response so a pair can form.
    qa8 = labelled.items["i8"]
    sibling = QAPairFactory(prompt=qa8.prompt, response="another answer")
    Stage1WorkItemFactory(qa_pair=sibling)
    for worker in labelled.workers.values():
        label_all(project, worker, {sibling.pk: []})
    assert WorkItem.objects.get(qa_pair=sibling).settled_at is not None
    labels_before = list(Stage1Label.objects.filter(qa_pair=qa8).values_list("worker_id", "categories"))

    item = adjudication_item(project=project, work_item_id=WorkItem.objects.get(qa_pair=qa8).pk)
    adjudication = adjudication_decide(item=item, admin=admin_user, categories=[SELF_HARM], note=" tie ")

    item.refresh_from_db()
    assert item.settled_at is not None
    assert (item.consensus_categories, item.consensus_safe) == (mask_from_keys([SELF_HARM]), False)
    assert (adjudication.categories, adjudication.is_safe, adjudication.note) == (1 << 10, False, "tie")
    assert adjudication.decided_by == admin_user
    assert (
        list(Stage1Label.objects.filter(qa_pair=qa8).values_list("worker_id", "categories")) == labels_before
    )
    assert adjudication_queue(project=project) == []
    pair = ResponsePair.objects.get(prompt=qa8.prompt)
    assert WorkItem.objects.filter(response_pair=pair, stage=Stage.RANK).exists()


@pytest.mark.django_db
def test_a_stage1_decision_of_safe(labelled, admin_user):
    item = WorkItem.objects.get(qa_pair=labelled.items["i8"])
    adjudication_decide(item=item, admin=admin_user, categories=[])
    item.refresh_from_db()
    assert (item.consensus_categories, item.consensus_safe) == (0, True)
    assert Adjudication.objects.get(work_item=item).is_safe is True


@pytest.mark.django_db
def test_bad_stage1_decisions_are_refused(labelled, admin_user):
    item = WorkItem.objects.get(qa_pair=labelled.items["i8"])
    with pytest.raises(ValidationError, match="unknown harm category"):
        adjudication_decide(item=item, admin=admin_user, categories=["nope"])
    with pytest.raises(ValidationError, match="categories"):
        adjudication_decide(item=item, admin=admin_user, better=0, safer=0)
    with pytest.raises(ValidationError, match="harm category keys"):
        adjudication_decide(item=item, admin=admin_user, categories=None)
    settled = WorkItem.objects.get(qa_pair=labelled.items["i1"])
    with pytest.raises(ValidationError, match="already settled"):
        adjudication_decide(item=settled, admin=admin_user, categories=[])
    in_progress = WorkItem.objects.get(qa_pair=labelled.items["i7"])
    with pytest.raises(ValidationError, match="does not need adjudication"):
        adjudication_decide(item=in_progress, admin=admin_user, categories=[])
    assert not Adjudication.objects.exists()


def _tied_pair(project, safe_a: bool, safe_b: bool):
    """A response pair whose two stage-2 labels tie (overlap 2), its QA pairs' safety known."""
    project.overlap_stage2 = 2
    project.save()
    prompt = PromptFactory(project=project)
    qa_a, qa_b = QAPairFactory(prompt=prompt), QAPairFactory(prompt=prompt)
    for qa, safe in ((qa_a, safe_a), (qa_b, safe_b)):
        WorkItem.objects.create(
            project=project,
            stage=Stage.CLASSIFY,
            qa_pair=qa,
            settled_at="2026-01-01T00:00:00Z",
            consensus_safe=safe,
            consensus_categories=0 if safe else 1,
            is_open=False,
        )
    pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qa_a, qa_b=qa_b)
    WorkItem.objects.create(project=project, stage=Stage.RANK, response_pair=pair)
    safe_side = 0 if safe_a else 1
    for n, better in enumerate((0, 1)):
        worker = UserFactory(username=f"ranker{n}")
        lease = assignment_claim(project=project, worker=worker, stage=Stage.RANK)
        flip = 1 if lease.swapped else 0
        safer = safe_side if safe_a != safe_b else better
        label_submit(
            assignment=lease, payload={"better_response_id": better ^ flip, "safer_response_id": safer ^ flip}
        )
    item = WorkItem.objects.get(response_pair=pair)
    assert item.needs_adjudication and item.settled_at is None
    return item


@pytest.mark.django_db
def test_a_stage2_decision(project, admin_user):
    item = _tied_pair(project, safe_a=True, safe_b=False)
    (case,) = adjudication_queue(project=project, stage=Stage.RANK)
    assert case.votes == {"labels": 2, "better": [1, 1], "safer": [2, 0]}
    adjudication_decide(item=item, admin=admin_user, better=1, safer=0)
    item.refresh_from_db()
    assert (item.consensus_better, item.consensus_safer, item.settled_at is not None) == (1, 0, True)
    assert Stage2Label.objects.filter(response_pair=item.response_pair).count() == 2


@pytest.mark.django_db
def test_a_stage2_decision_must_keep_the_safe_response_safer(project, admin_user):
    item = _tied_pair(project, safe_a=False, safe_b=True)
    with pytest.raises(ValidationError, match="must be the more harmless"):
        adjudication_decide(item=item, admin=admin_user, better=0, safer=0)
    with pytest.raises(ValidationError, match="canonical order"):
        adjudication_decide(item=item, admin=admin_user, better=2, safer=1)
    with pytest.raises(ValidationError, match="not categories"):
        adjudication_decide(item=item, admin=admin_user, categories=[], better=0, safer=1)
    adjudication_decide(item=item, admin=admin_user, better=0, safer=1)
    item.refresh_from_db()
    assert item.consensus_safer == 1


@pytest.mark.django_db
def test_both_safe_pairs_may_go_either_way(project, admin_user):
    item = _tied_pair(project, safe_a=True, safe_b=True)
    adjudication_decide(item=item, admin=admin_user, better=0, safer=1)
    item.refresh_from_db()
    assert item.consensus_safer == 1


@pytest.mark.django_db
def test_an_item_of_another_project_is_a_404(labelled):
    other = ProjectFactory()
    item = WorkItem.objects.get(qa_pair=labelled.items["i8"])
    with pytest.raises(Http404):
        adjudication_item(project=other, work_item_id=item.pk)
    with pytest.raises(Http404):
        adjudication_item(project=labelled.project, work_item_id=10**9)


# --------------------------------------------------------------------------------------------------
# Paging the queue


class _RowsFetched:
    """Rows each SELECT returned, by table: what a page of the queue really reads from the database."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int]] = []

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT"):
            table = sql.split(" FROM ", 1)[1].split()[0].strip('"') if " FROM " in sql else ""
            self.rows.append((table, context["cursor"].rowcount))
        return result

    def of(self, table: str) -> int:
        return sum(n for t, n in self.rows if t == table)


def _queued_items(project, n_stage1: int, n_stage2: int) -> list[WorkItem]:
    """Queued items of both stages, created interleaved so that id order differs from queue order."""
    from tests.frontend.dashboard_payload import make_labellers, queue_item_stage1, queue_item_stage2

    labellers = make_labellers(2)
    made = []
    for n in range(max(n_stage1, n_stage2)):
        if n < n_stage2:
            made.append(queue_item_stage2(project, [(0, 1), (1, 0)], labellers))
        if n < n_stage1:
            made.append(queue_item_stage1(project, [0, 1 << n % 3], labellers))
    return sorted(made, key=lambda item: (item.stage, item.pk))


@pytest.mark.django_db
def test_a_page_of_the_queue_is_the_right_cases_in_a_stable_order(project):
    items = _queued_items(project, n_stage1=17, n_stage2=8)  # 25 cases: page 3 of 10 holds the last 5
    everything = adjudication_queue(project=project, limit=100)
    assert [case.item.pk for case in everything] == [item.pk for item in items]

    page3 = adjudication_queue(project=project, offset=20, limit=10)
    assert [case.item.pk for case in page3] == [item.pk for item in items[20:25]]
    assert all(case.item.stage == Stage.RANK for case in page3)
    assert [case.votes for case in page3] == [case.votes for case in everything[20:25]]
    # Page 2 straddles the stages: stage-1 items first, then stage 2, each by id.
    page2 = adjudication_queue(project=project, offset=10, limit=10)
    assert [case.item.pk for case in page2] == [item.pk for item in items[10:20]]
    assert [case.item.stage for case in page2] == [Stage.CLASSIFY] * 7 + [Stage.RANK] * 3
    assert page2[0].votes["labels"] == 2 and page2[-1].votes == {
        "labels": 2,
        "better": [1, 1],
        "safer": [1, 1],
    }
    # Within a stage filter, and past the end.
    stage1 = adjudication_queue(project=project, stage=Stage.CLASSIFY, offset=15, limit=10)
    assert [case.item.pk for case in stage1] == [item.pk for item in items[15:17]]
    assert adjudication_queue(project=project, offset=25, limit=10) == []
    assert adjudication_queue(project=project, offset=3, limit=0) == []
    with pytest.raises(ValueError, match="negative"):
        adjudication_queue(project=project, offset=-1)


@pytest.mark.django_db
def test_a_deep_page_reads_no_more_rows_than_the_first(project, django_assert_max_num_queries):
    from django.db import connection

    _queued_items(project, n_stage1=15, n_stage2=15)  # three pages of ten, two labels each
    fetched = []
    for offset in (0, 10, 20):
        counter = _RowsFetched()
        with django_assert_max_num_queries(3), connection.execute_wrapper(counter):
            cases = adjudication_queue(project=project, offset=offset, limit=10)
        assert len(cases) == 10
        fetched.append(
            (
                counter.of("annotate_workitem"),
                counter.of("annotate_stage1label") + counter.of("annotate_stage2label"),
            )
        )
    # Each page reads its own ten items and their twenty labels: page 3 does not read pages 1 and 2.
    assert fetched == [(10, 20)] * 3
    # The counter does see more rows when more are read (what the old limit-only selector did for page 3).
    counter = _RowsFetched()
    with connection.execute_wrapper(counter):
        adjudication_queue(project=project, limit=30)
    assert counter.of("annotate_workitem") == 30
