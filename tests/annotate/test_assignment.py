"""The assignment engine: overlap, leases, expiry, no repeats, breadth-first order, gold mixing, settling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotate import assignment as engine
from annotate.assignment import (
    SlotTaken,
    assignment_claim,
    assignment_release_expired,
    assignment_skip,
    label_submit_for_worker,
    stage1_consensus,
)
from annotate.categories import CATEGORY_KEYS, mask_from_keys
from annotate.models import (
    Assignment,
    AssignmentStatus,
    GoldStage1Label,
    Project,
    ResponsePair,
    Stage,
    Stage1Label,
    WorkItem,
)
from annotate.selectors import assignment_view
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, annotator

pytestmark = pytest.mark.django_db

UNSAFE = {"categories": ["privacy_violation"]}
SAFE: dict[str, list[str]] = {"categories": []}


def _items(project, n, **kwargs):
    return [
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)), **kwargs)
        for _ in range(n)
    ]


def _workers(n, prefix="w", project=None):
    """n annotators of `project` (the test's project unless another is named)."""
    project = project or Project.objects.get(slug="demo-project")
    return [annotator(project, f"{prefix}{i}") for i in range(n)]


@pytest.fixture(params=["statements", "orm"], autouse=True)
def engine_path(request, settings):
    """Every engine test runs on both paths: the prepared statements of annotate.fastpath (PostgreSQL)
    and the ORM services (every database). On SQLite both params take the ORM path."""
    settings.WORKER_LOOP_FAST_PATH = request.param == "statements"
    return request.param


def _submit(lease, payload):
    """Submit as the API does: by id, as the lease's worker (the fast path, or label_submit)."""
    return label_submit_for_worker(worker=lease.worker, assignment_id=lease.pk, payload=payload)


def _claim_submit(project, worker, payload=UNSAFE, stage=Stage.CLASSIFY):
    lease = assignment_claim(project=project, worker=worker, stage=stage)
    assert lease is not None
    _submit(lease, payload)
    return lease


def test_each_item_gets_overlap_distinct_workers_and_no_more(project):
    project.overlap_stage1 = 3
    project.save()
    (item,) = _items(project, 1)
    workers = _workers(4)
    for w in workers[:3]:
        _claim_submit(project, w)
    assert assignment_claim(project=project, worker=workers[3], stage=Stage.CLASSIFY) is None
    item.refresh_from_db()
    assert (item.taken, item.labels_count, item.is_open) == (3, 3, False)
    assert Stage1Label.objects.filter(qa_pair=item.qa_pair).values("worker").distinct().count() == 3


def test_a_worker_never_gets_the_same_item_twice(project, worker):
    _items(project, 2)
    first = _claim_submit(project, worker)
    second = _claim_submit(project, worker)
    assert first.work_item_id != second.work_item_id
    assert assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY) is None


def test_asking_again_with_a_live_lease_returns_the_same_lease(project, worker):
    _items(project, 3)
    first = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    again = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    assert first is not None and again is not None and first.pk == again.pk
    assert WorkItem.objects.get(pk=first.work_item_id).taken == 1


def test_in_progress_items_are_finished_before_new_ones(project):
    items = _items(project, 5)
    a, b = _workers(2)
    first = _claim_submit(project, a)
    # b is served the item a already started, not a fresh one.
    assert (
        assignment_claim(project=project, worker=b, stage=Stage.CLASSIFY).work_item_id == first.work_item_id
    )
    assert first.work_item_id == items[0].pk


def test_an_expired_lease_returns_its_slot_to_the_pool(project):
    project.overlap_stage1 = 1
    project.save()
    (item,) = _items(project, 1)
    slow, fast = _workers(2)
    lease = assignment_claim(project=project, worker=slow, stage=Stage.CLASSIFY)
    assert assignment_claim(project=project, worker=fast, stage=Stage.CLASSIFY) is None
    later = timezone.now() + timedelta(seconds=project.lease_seconds + 1)
    assert assignment_release_expired(now=later) == 1
    lease.refresh_from_db()
    assert lease.status == AssignmentStatus.EXPIRED
    taken_over = assignment_claim(project=project, worker=fast, stage=Stage.CLASSIFY)
    assert taken_over is not None and taken_over.work_item_id == item.pk
    _submit(taken_over, UNSAFE)
    # The slow worker's late answer would over-fill the item: it is refused with a clear message.
    with pytest.raises(SlotTaken, match="given to another worker"):
        _submit(lease, UNSAFE)
    assert Stage1Label.objects.count() == 1


def test_a_late_submit_is_accepted_while_the_slot_is_still_free(project, worker):
    (item,) = _items(project, 1)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    assignment_release_expired(now=timezone.now() + timedelta(hours=1))
    _submit(lease, SAFE)
    item.refresh_from_db()
    assert (item.taken, item.labels_count) == (1, 1)


def test_a_claim_that_finds_nothing_sweeps_lapsed_leases_first(project):
    project.overlap_stage1 = 1
    project.save()
    _items(project, 1)
    slow, fast = _workers(2)
    lease = assignment_claim(project=project, worker=slow, stage=Stage.CLASSIFY)
    Assignment.objects.filter(pk=lease.pk).update(
        leased_at=timezone.now() - timedelta(hours=2), expires_at=timezone.now() - timedelta(hours=1)
    )
    assert assignment_claim(project=project, worker=fast, stage=Stage.CLASSIFY) is not None


def test_skip_records_the_reason_and_frees_the_slot(project):
    project.overlap_stage1 = 1
    project.save()
    (item,) = _items(project, 1)
    a, b = _workers(2)
    lease = assignment_claim(project=project, worker=a, stage=Stage.CLASSIFY)
    with pytest.raises(ValidationError):
        assignment_skip(assignment=lease, reason="  ")
    assignment_skip(assignment=lease, reason="I do not read this language")
    lease.refresh_from_db()
    assert lease.status == AssignmentStatus.SKIPPED and lease.skip_reason == "I do not read this language"
    assert assignment_claim(project=project, worker=b, stage=Stage.CLASSIFY).work_item_id == item.pk
    assert assignment_claim(project=project, worker=a, stage=Stage.CLASSIFY) is None


def test_gold_items_are_mixed_in_at_the_gold_rate(project, worker, monkeypatch):
    project.overlap_stage1 = 1
    project.gold_rate = 0.25
    project.save()
    _items(project, 200)
    _items(project, 200, is_gold=True)
    engine.rng.seed(1234)
    served_gold = 0
    for _ in range(200):
        lease = _claim_submit(project, worker)
        served_gold += WorkItem.objects.get(pk=lease.work_item_id).is_gold
    assert 30 <= served_gold <= 70  # 50 expected; a 4-sigma band


def test_gold_rate_zero_still_serves_gold_when_nothing_else_is_left(project, worker):
    project.gold_rate = 0.0
    project.save()
    (gold,) = _items(project, 1, is_gold=True)
    assert assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY).work_item_id == gold.pk


def test_unknown_category_is_refused(project, worker):
    _items(project, 1)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    with pytest.raises(ValidationError, match="unknown harm category") as refused:
        _submit(lease, {"categories": ["not_a_category"]})
    assert not Stage1Label.objects.exists()
    # The message names every valid key, so a client can correct itself.
    message = " ".join(refused.value.messages)
    assert all(key in message for key in CATEGORY_KEYS), message


def test_time_on_task_and_guideline_version_are_recorded(project, worker):
    project.guideline_version = 4
    project.save()
    _items(project, 1)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    Assignment.objects.filter(pk=lease.pk).update(leased_at=timezone.now() - timedelta(seconds=7))
    _submit(lease, UNSAFE)
    label = Stage1Label.objects.get()
    assert label.guideline_version == 4
    assert 6_500 <= label.time_on_task_ms <= 60_000


def test_a_worker_may_revise_until_the_item_settles(project):
    (item,) = _items(project, 1)
    a, b, c = _workers(3)
    lease = _claim_submit(project, a, UNSAFE)
    _submit(lease, SAFE)  # a second submit revises
    assert Stage1Label.objects.get(worker=a).is_safe is True
    _claim_submit(project, b, SAFE)
    _claim_submit(project, c, SAFE)
    item.refresh_from_db()
    assert item.settled_at is not None and item.consensus_safe is True
    with pytest.raises(ValidationError, match="settled"):
        _submit(lease, UNSAFE)


def test_stage1_consensus_is_a_majority_per_category():
    privacy, theft = (
        mask_from_keys(["privacy_violation"]),
        mask_from_keys(["financial_crime,property_crime,theft"]),
    )
    assert stage1_consensus([privacy, privacy | theft, privacy]) == (privacy, False)
    assert stage1_consensus([0, 0, privacy]) == (0, True)
    # Unsafe by majority, but no category has a majority: not exportable, so not settled.
    assert stage1_consensus([privacy, theft, mask_from_keys(["self_harm"])]) is None
    assert stage1_consensus([0, privacy]) is None  # a tie


def _settle_responses(project, prompt, verdicts):
    """Three workers label each response of `prompt`; verdicts[i] is the payload for response i."""
    qas = [QAPairFactory(prompt=prompt) for _ in verdicts]
    for qa in qas:
        Stage1WorkItemFactory(qa_pair=qa)
    workers = _workers(3, prefix=f"s1-{prompt.pk}-")
    for w in workers:
        for verdict in verdicts:
            _claim_submit(project, w, verdict)
    return qas


def test_settled_responses_of_a_prompt_are_paired_for_stage_2(project):
    prompt = PromptFactory(project=project)
    _settle_responses(project, prompt, [SAFE, UNSAFE, SAFE])
    pairs = ResponsePair.objects.filter(prompt=prompt)
    assert pairs.count() == 3
    assert all(p.qa_a_id < p.qa_b_id for p in pairs)
    assert WorkItem.objects.filter(stage=Stage.RANK, response_pair__prompt=prompt).count() == 3


def test_max_pairs_per_prompt_caps_stage_2_pairs(project):
    project.max_pairs_per_prompt = 1
    project.save()
    prompt = PromptFactory(project=project)
    _settle_responses(project, prompt, [SAFE, UNSAFE, SAFE])
    assert ResponsePair.objects.filter(prompt=prompt).count() == 1


def test_stage2_labels_are_stored_in_canonical_order_and_the_safe_one_must_be_safer(project, worker):
    prompt = PromptFactory(project=project)
    qa_safe, qa_unsafe = _settle_responses(project, prompt, [SAFE, UNSAFE])
    pair = ResponsePair.objects.get(prompt=prompt)
    assert (pair.qa_a_id, pair.qa_b_id) == (qa_safe.pk, qa_unsafe.pk)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.RANK)
    shown_safe = 1 if lease.swapped else 0  # the display position of the safe response
    with pytest.raises(ValidationError, match="more harmless"):
        _submit(lease, {"better_response_id": 0, "safer_response_id": 1 - shown_safe})
    _submit(lease, {"better_response_id": 1 - shown_safe, "safer_response_id": shown_safe})
    label = pair.stage2_labels.get()
    assert (label.better, label.safer) == (1, 0)  # canonical: qa_unsafe more helpful, qa_safe safer


@pytest.mark.parametrize("swapped", [False, True])
def test_a_stage2_submit_on_a_live_lease_is_one_statement_on_postgresql(
    project, worker, engine_path, swapped
):
    if engine_path != "statements" or connection.vendor != "postgresql":
        pytest.skip("the one-statement submit is the PostgreSQL fast path")
    prompt = PromptFactory(project=project)
    _settle_responses(project, prompt, [SAFE, UNSAFE])
    pair = ResponsePair.objects.get(prompt=prompt)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.RANK)
    Assignment.objects.filter(pk=lease.pk).update(swapped=swapped)
    shown_safe = 1 if swapped else 0
    with CaptureQueriesContext(connection) as queries:
        done = _submit(lease, {"better_response_id": 1 - shown_safe, "safer_response_id": shown_safe})
    assert len([q for q in queries if "SAVEPOINT" not in q["sql"]]) == 1
    assert done.status == AssignmentStatus.SUBMITTED
    label = pair.stage2_labels.get()
    assert (label.better, label.safer, label.assignment_id) == (1, 0, lease.pk)  # canonical order
    assert WorkItem.objects.get(pk=lease.work_item_id).labels_count == 1


def test_display_order_is_randomised_per_assignment(project):
    prompt = PromptFactory(project=project)
    _settle_responses(project, prompt, [SAFE, SAFE])
    project.overlap_stage2 = 40
    project.save()
    swaps = {assignment_claim(project=project, worker=w, stage=Stage.RANK).swapped for w in _workers(30, "r")}
    assert swaps == {True, False}


def _gold_only_pair(project, *, safe_a, safe_b):
    """A stage-2 pair whose responses have expert (gold) stage-1 verdicts and no worker consensus yet,
    as a PKU-SafeRLHF import makes them."""
    prompt = PromptFactory(project=project)
    qa_a, qa_b = QAPairFactory(prompt=prompt), QAPairFactory(prompt=prompt)
    for qa, safe in ((qa_a, safe_a), (qa_b, safe_b)):
        Stage1WorkItemFactory(qa_pair=qa, is_gold=True)
        GoldStage1Label.objects.create(qa_pair=qa, categories=0, is_safe=safe, source="test")
    pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qa_a, qa_b=qa_b)
    WorkItem.objects.create(project=project, stage=Stage.RANK, response_pair=pair)
    return pair


def test_gold_stage1_safety_is_neither_shown_nor_enforced_in_stage_2(project, worker):
    """A stage-2 badge or refusal built on a gold verdict would tell the worker a stage-1 gold answer."""
    _gold_only_pair(project, safe_a=True, safe_b=False)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.RANK)
    shown = assignment_view(lease)["item"]["responses"]
    assert [r["is_safe"] for r in shown] == [None, None]
    unsafe_shown = 0 if lease.swapped else 1
    _submit(lease, {"better_response_id": 0, "safer_response_id": unsafe_shown})  # accepted
    assert Assignment.objects.get(pk=lease.pk).status == AssignmentStatus.SUBMITTED


def test_the_workers_settled_stage1_safety_binds_the_stage2_invariant(project, worker):
    pair = _gold_only_pair(project, safe_a=False, safe_b=False)  # gold says the opposite of the workers
    WorkItem.objects.filter(qa_pair=pair.qa_a).update(
        settled_at=timezone.now(), consensus_safe=True, consensus_categories=0
    )
    WorkItem.objects.filter(qa_pair=pair.qa_b).update(
        settled_at=timezone.now(), consensus_safe=False, consensus_categories=1
    )
    lease = assignment_claim(project=project, worker=worker, stage=Stage.RANK)
    shown = assignment_view(lease)["item"]["responses"]
    assert [r["is_safe"] for r in shown] == ([False, True] if lease.swapped else [True, False])
    unsafe_shown = 0 if lease.swapped else 1
    with pytest.raises(ValidationError, match="Exactly one response is safe"):
        _submit(lease, {"better_response_id": 0, "safer_response_id": unsafe_shown})
    _submit(lease, {"better_response_id": 0, "safer_response_id": 1 - unsafe_shown})
    assert Assignment.objects.get(pk=lease.pk).status == AssignmentStatus.SUBMITTED


def test_claim_runs_a_bounded_number_of_queries(project, worker, engine_path):
    _items(project, 50)
    project.gold_rate = 0.0
    with CaptureQueriesContext(connection) as queries:
        assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    assert len(queries) <= 8
    if engine_path == "statements" and connection.vendor == "postgresql":
        # The regular pool has work: one statement claims it (the gold pool is only tried after).
        # The test's own transaction adds a savepoint around it, which production does not have.
        statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
        assert len(statements) == 1 and statements[0].lstrip().startswith("WITH live AS")


def test_a_stage1_submit_on_a_live_lease_is_one_statement_on_postgresql(project, worker, engine_path):
    if engine_path != "statements" or connection.vendor != "postgresql":
        pytest.skip("the one-statement submit is the PostgreSQL fast path")
    _items(project, 2)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    with CaptureQueriesContext(connection) as queries:
        shown = _submit(lease, UNSAFE)
    # Not counting the savepoint that the test's own transaction puts around it.
    assert len([q for q in queries if "SAVEPOINT" not in q["sql"]]) == 1
    # What the API shows comes back with it: the status and the item's texts, without another read.
    assert shown.status == AssignmentStatus.SUBMITTED and shown.submitted_at is not None
    assert shown.work_item.qa_pair.response == lease.work_item.qa_pair.response
    assert shown.work_item.qa_pair.prompt.text == lease.work_item.qa_pair.prompt.text
    label = Stage1Label.objects.get()
    assert (label.assignment_id, label.worker_id, label.is_safe) == (lease.pk, worker.pk, False)
    assert WorkItem.objects.get(pk=lease.work_item_id).labels_count == 1


def test_the_last_label_settles_the_item_in_the_same_submit(project):
    (item,) = _items(project, 1)
    for worker in _workers(3):
        _claim_submit(project, worker, SAFE)
    item.refresh_from_db()
    assert (item.labels_count, item.consensus_safe, item.consensus_categories) == (3, True, 0)
    assert item.settled_at is not None


def test_submitting_to_someone_elses_assignment_is_a_404_whatever_the_payload(project, worker, second_worker):
    _items(project, 1)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    for payload in (UNSAFE, {"categories": ["not_a_category"]}, {"better_response_id": 0}):
        with pytest.raises(Http404):
            label_submit_for_worker(worker=second_worker, assignment_id=lease.pk, payload=payload)
    assert not Stage1Label.objects.exists()
    assert Assignment.objects.get(pk=lease.pk).status == AssignmentStatus.LEASED


def test_a_second_live_lease_for_the_same_worker_and_stage_is_refused_by_the_database(project, worker):
    first, second = _items(project, 2)
    assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.create(
            project=project,
            work_item=second if first.assignments.exists() else first,
            worker=worker,
            stage=Stage.CLASSIFY,
            leased_at=timezone.now(),
            expires_at=timezone.now() + timedelta(minutes=5),
        )


# --- Gold that never runs out ------------------------------------------------------------------------


def _labels_until_done(project, worker, limit=500):
    """Claim and answer until nothing is left for the worker; the work items they answered."""
    answered = []
    for _ in range(limit):
        lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
        if lease is None:
            return answered
        _submit(lease, SAFE)
        answered.append(lease.work_item_id)
    raise AssertionError("the worker never ran out of work")


def test_gold_measures_every_worker_not_only_the_first_k(project):
    """With k = 3 and 5 gold items the old slot rule allowed 15 gold answers in the whole project: the
    fourth worker on was never measured. Every worker now answers every gold item once, and the regular
    items still get exactly k labels each."""
    project.overlap_stage1, project.gold_rate = 3, 0.5
    project.save()
    gold = {item.pk for item in _items(project, 5, is_gold=True)}
    regular = _items(project, 40)
    engine.rng.seed(7)
    workers = _workers(12)
    answered: dict[int, list[int]] = {w.pk: [] for w in workers}
    # Round-robin, as workers really interleave: everyone has regular work for a while.
    for _ in range(15):
        for worker in workers:
            lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
            if lease is not None:
                _submit(lease, SAFE)
                answered[worker.pk].append(lease.work_item_id)
    for worker in workers:
        seen = [item for item in answered[worker.pk] if item in gold]
        assert sorted(seen) == sorted(set(seen)), "a gold item came twice to one worker"
        assert seen, f"{worker.username} was never measured on gold"
    gold_labels = Stage1Label.objects.filter(qa_pair__work_item__in=gold).count()
    assert gold_labels > 5 * 3
    for item in WorkItem.objects.filter(pk__in=[r.pk for r in regular]):
        assert item.labels_count <= 3 and item.taken <= 3
    for item in WorkItem.objects.filter(pk__in=gold):
        assert item.is_open  # a gold item never closes
        assert item.settled_at is not None  # its first three labels made its consensus


def test_a_worker_who_joins_late_is_measured_on_every_gold_item(project):
    project.overlap_stage1, project.gold_rate = 3, 0.5
    project.save()
    gold = {item.pk for item in _items(project, 5, is_gold=True)}
    _items(project, 60)
    engine.rng.seed(11)
    for worker in _workers(6, "early"):
        for _ in range(12):
            _claim_submit(project, worker, SAFE)
    assert all(WorkItem.objects.get(pk=pk).labels_count >= 3 for pk in gold)  # "full" under the old rule
    (late,) = _workers(1, "late")
    answered = _labels_until_done(project, late)
    assert sorted(pk for pk in answered if pk in gold) == sorted(gold)


def test_gold_is_not_served_as_a_run_once_regular_work_is_gone(project):
    """Gold is mixed into real work. With no regular item left for a worker, only gold items that still
    need labels for their own consensus are work; a gold item with its k labels is not served alone."""
    project.overlap_stage1, project.gold_rate = 1, 1.0
    project.save()
    (gold,) = _items(project, 1, is_gold=True)
    (regular,) = _items(project, 1)
    first, second = _workers(2)
    assert _labels_until_done(project, first) == [gold.pk, regular.pk]
    # The regular item is full (k = 1) and the gold item has its consensus label: nothing for the second.
    assert assignment_claim(project=project, worker=second, stage=Stage.CLASSIFY) is None


def test_gold_items_that_still_need_their_consensus_are_ordinary_work(project):
    """A PKU-SafeRLHF project is all gold in stage 1: its items must still get their k labels."""
    project.overlap_stage1, project.gold_rate = 2, 0.0
    project.save()
    items = _items(project, 3, is_gold=True)
    workers = _workers(3)
    assert len(_labels_until_done(project, workers[0])) == 3
    assert len(_labels_until_done(project, workers[1])) == 3
    assert _labels_until_done(project, workers[2]) == []  # consensus reached, no regular work
    for item in WorkItem.objects.filter(pk__in=[i.pk for i in items]):
        assert item.settled_at is not None and item.is_open


def test_a_late_answer_on_a_gold_item_is_accepted_whatever_its_count(project):
    project.overlap_stage1, project.gold_rate = 1, 1.0
    project.save()
    (gold,) = _items(project, 1, is_gold=True)
    _items(project, 3)
    first, late = _workers(2)
    lease = assignment_claim(project=project, worker=late, stage=Stage.CLASSIFY)
    assert lease.work_item_id == gold.pk
    assignment_release_expired(now=timezone.now() + timedelta(hours=1))
    _claim_submit(project, first, SAFE)  # takes the gold item meanwhile (its one slot under k = 1)
    _submit(lease, SAFE)
    assert Stage1Label.objects.filter(qa_pair__work_item=gold).count() == 2


# --- Membership re-checked on every call --------------------------------------------------------------


@pytest.mark.parametrize("payload", [UNSAFE, SAFE])
def test_a_removed_member_can_no_longer_submit_their_lease(project, worker, payload):
    from annotate.services import membership_remove

    _items(project, 2)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    item_before = WorkItem.objects.get(pk=lease.work_item_id)
    assert membership_remove(project=project, user=worker) == 1
    # Their live lease was released: the slot is back in the pool.
    item = WorkItem.objects.get(pk=lease.work_item_id)
    assert (item.taken, item.is_open) == (item_before.taken - 1, True)
    assert Assignment.objects.get(pk=lease.pk).status == AssignmentStatus.EXPIRED
    with pytest.raises(Http404):
        _submit(lease, payload)
    assert not Stage1Label.objects.exists()


def test_a_member_moved_to_a_role_that_does_not_label_gets_a_403(project, worker):
    from django.core.exceptions import PermissionDenied

    from annotate.models import Role
    from annotate.services import membership_set

    _items(project, 2)
    first = _claim_submit(project, worker, SAFE)
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    membership_set(project=project, user=worker, role=Role.RESEARCHER)
    assert Assignment.objects.get(pk=lease.pk).status == AssignmentStatus.EXPIRED
    for target, payload in ((lease, SAFE), (first, UNSAFE)):  # a fresh answer, and a revision
        with pytest.raises(PermissionDenied):
            _submit(target, payload)
    assert Stage1Label.objects.get().categories == 0  # the revision did not land either
