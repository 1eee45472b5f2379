"""Many workers claiming and submitting at once on PostgreSQL: no over-assignment, no lost label."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from annotate.assignment import assignment_claim, label_submit
from annotate.models import Assignment, AssignmentStatus, Stage, Stage1Label, WorkItem
from tests.factories import ProjectFactory, PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory

WORKERS = 24
ITEMS = 60
OVERLAP = 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_over_assign_or_lose_labels():
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency guarantee under test is PostgreSQL's SKIP LOCKED claim")
    project = ProjectFactory(overlap_stage1=OVERLAP, gold_rate=0.0)
    for _ in range(ITEMS):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    workers = [UserFactory(username=f"concurrent{i}") for i in range(WORKERS)]
    submitted: Counter[int] = Counter()
    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS)

    def work(worker) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(ITEMS):  # bounded: a worker can label each item at most once
                lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
                if lease is None:
                    return
                label_submit(assignment=lease, payload={"categories": [] if worker.pk % 2 else ["self_harm"]})
                submitted[worker.pk] += 1
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert errors == []

    assert sum(submitted.values()) == ITEMS * OVERLAP  # nothing lost, nothing extra
    assert Stage1Label.objects.count() == ITEMS * OVERLAP
    per_item = Counter(Stage1Label.objects.values_list("qa_pair_id", flat=True))
    assert set(per_item.values()) == {OVERLAP}
    for item in WorkItem.objects.filter(project=project):
        assert (item.taken, item.labels_count, item.is_open) == (OVERLAP, OVERLAP, False)
    assert not Assignment.objects.filter(status=AssignmentStatus.LEASED).exists()
    assert Assignment.objects.filter(status=AssignmentStatus.SUBMITTED).count() == ITEMS * OVERLAP
