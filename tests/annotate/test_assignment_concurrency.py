"""Many workers claiming and submitting at once on PostgreSQL: no over-assignment, no lost label."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from annotate.assignment import assignment_claim, label_submit_for_worker
from annotate.models import Assignment, AssignmentStatus, ResponsePair, Stage, Stage1Label, WorkItem
from tests.factories import ProjectFactory, PromptFactory, QAPairFactory, Stage1WorkItemFactory, annotator

WORKERS = 24
ITEMS = 60
OVERLAP = 3


@pytest.fixture(params=["statements", "orm"])
def engine_path(request, settings):
    settings.WORKER_LOOP_FAST_PATH = request.param == "statements"
    return request.param


def _run_at_once(work: Callable[[Any], None], args: list[Any], timeout: float = 120) -> None:
    """Run work(arg) for every arg, each in its own thread, all released at the same moment; fail on
    any thread that raised or hung. Each thread closes its own database connection."""
    start = threading.Barrier(len(args))
    errors: list[BaseException] = []

    def run(arg: Any) -> None:
        try:
            start.wait(timeout=30)
            work(arg)
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert errors == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_over_assign_or_lose_labels(engine_path):
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency guarantee under test is PostgreSQL's SKIP LOCKED claim")
    project = ProjectFactory(overlap_stage1=OVERLAP, gold_rate=0.0)
    for _ in range(ITEMS):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    workers = [annotator(project, f"concurrent{i}") for i in range(WORKERS)]
    submitted: Counter[int] = Counter()

    def work(worker) -> None:
        for _ in range(ITEMS):  # bounded: a worker can label each item at most once
            lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
            if lease is None:
                return
            payload = {"categories": [] if worker.pk % 2 else ["self_harm"]}
            label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload=payload)
            submitted[worker.pk] += 1

    _run_at_once(work, workers)

    assert sum(submitted.values()) == ITEMS * OVERLAP  # nothing lost, nothing extra
    assert Stage1Label.objects.count() == ITEMS * OVERLAP
    per_item = Counter(Stage1Label.objects.values_list("qa_pair_id", flat=True))
    assert set(per_item.values()) == {OVERLAP}
    for item in WorkItem.objects.filter(project=project):
        assert (item.taken, item.labels_count, item.is_open) == (OVERLAP, OVERLAP, False)
    assert not Assignment.objects.filter(status=AssignmentStatus.LEASED).exists()
    assert Assignment.objects.filter(status=AssignmentStatus.SUBMITTED).count() == ITEMS * OVERLAP


PROMPTS = 6
RESPONSES = 5  # per prompt: C(5, 2) = 10 response pairs each once all five settle


@pytest.mark.django_db(transaction=True)
def test_responses_of_one_prompt_settling_at_once_get_every_pair_exactly_once(engine_path):
    """Sibling responses settle in concurrent submits: each must see the other's consensus (or their
    pair is never made) and only one may create a pair still missing (or a unique violation is a 500)."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent settling needs PostgreSQL")
    project = ProjectFactory(overlap_stage1=OVERLAP, gold_rate=0.0)
    prompts = [PromptFactory(project=project) for _ in range(PROMPTS)]
    for prompt in prompts:
        for _ in range(RESPONSES):
            Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt))
    workers = [annotator(project, f"settler{i}") for i in range(WORKERS)]

    def work(worker) -> None:
        for _ in range(PROMPTS * RESPONSES):
            lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
            if lease is None:
                return
            # All agree: every item settles.
            label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload={"categories": []})

    _run_at_once(work, workers)

    assert (
        WorkItem.objects.filter(stage=Stage.CLASSIFY, settled_at__isnull=False).count() == PROMPTS * RESPONSES
    )
    pairs_per_prompt = Counter(ResponsePair.objects.values_list("prompt_id", flat=True))
    assert pairs_per_prompt == {prompt.pk: RESPONSES * (RESPONSES - 1) // 2 for prompt in prompts}
    assert WorkItem.objects.filter(stage=Stage.RANK).count() == PROMPTS * RESPONSES * (RESPONSES - 1) // 2


@pytest.mark.django_db(transaction=True)
def test_one_worker_asking_from_many_tabs_at_once_gets_one_lease(engine_path):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    project = ProjectFactory(overlap_stage1=OVERLAP, gold_rate=0.0)
    for _ in range(10):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    worker = annotator(project, "many_tabs")
    tabs = 8
    got: list[int] = []

    def ask(_tab: int) -> None:
        lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
        got.append(lease.pk)

    _run_at_once(ask, list(range(tabs)), timeout=60)
    assert len(got) == tabs and len(set(got)) == 1  # every tab shows the same task
    assert Assignment.objects.filter(worker=worker, status=AssignmentStatus.LEASED).count() == 1
    assert sum(WorkItem.objects.filter(project=project).values_list("taken", flat=True)) == 1
