"""The domain rules of annotate/rules.py, and their SQL twins held to them over the same cases."""

from __future__ import annotations

import itertools

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from annotate import assignment as engine
from annotate.assignment import assignment_claim, label_submit_for_worker
from annotate.models import AssignmentStatus, ResponsePair, Stage, Stage2Label, WorkItem
from annotate.rules import HARMLESS_INVARIANT_MESSAGE, forced_safer, violates_harmless_invariant
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, annotator

SAFETIES = (None, True, False)


def test_forced_safer_by_hand():
    assert forced_safer(True, False) == 0 and forced_safer(False, True) == 1
    for free in ((True, True), (False, False), (None, True), (False, None), (None, None)):
        assert forced_safer(*free) is None
    assert violates_harmless_invariant(True, False, 1) and not violates_harmless_invariant(True, False, 0)
    assert not violates_harmless_invariant(True, True, 1) and not violates_harmless_invariant(None, False, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["statements", "orm"])
def test_the_stage2_submit_keeps_the_invariant_exactly_as_the_rule_says(project, settings, path):
    """Every (safety of A, safety of B, display swap, harmless answer) case, through the submit a worker
    makes: the one-statement path on PostgreSQL (SQL) and the ORM service (Python) accept and refuse
    exactly what annotate.rules says, by the workers' settled stage-1 safety."""
    if path == "statements" and connection.vendor != "postgresql":
        pytest.skip("the SQL twin is PostgreSQL's prepared statement")
    settings.WORKER_LOOP_FAST_PATH = path == "statements"
    project.overlap_stage2 = 1
    project.save()
    worker = annotator(project, "judge")
    cases = list(itertools.product(SAFETIES, SAFETIES, (False, True), (0, 1)))
    for safe_a, safe_b, swapped, safer in cases:
        prompt = PromptFactory(project=project)
        qa_a, qa_b = QAPairFactory(prompt=prompt), QAPairFactory(prompt=prompt)
        for qa, safe in ((qa_a, safe_a), (qa_b, safe_b)):
            settled = {} if safe is None else {"settled_at": timezone.now(), "consensus_safe": safe}
            Stage1WorkItemFactory(
                qa_pair=qa, consensus_categories=None if safe in (None, True) else 1, **settled
            )
        pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qa_a, qa_b=qa_b)
        WorkItem.objects.create(project=project, stage=Stage.RANK, response_pair=pair)
        engine.rng.seed(0)
        lease = assignment_claim(project=project, worker=worker, stage=Stage.RANK)
        assert lease.work_item.response_pair_id == pair.pk
        type(lease).objects.filter(pk=lease.pk).update(swapped=swapped)
        shown_safer = safer ^ int(swapped)
        payload = {"better_response_id": 0, "safer_response_id": shown_safer}
        refused = violates_harmless_invariant(safe_a, safe_b, safer)
        if refused:
            with pytest.raises(ValidationError) as error:
                label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload=payload)
            assert error.value.message_dict == {"safer_response_id": [HARMLESS_INVARIANT_MESSAGE]}
            assert not Stage2Label.objects.filter(response_pair=pair).exists()
            # Answered the right way, the lease completes, so the next case starts clean.
            payload["safer_response_id"] = (1 - safer) ^ int(swapped)
        label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload=payload)
        label = Stage2Label.objects.get(response_pair=pair)
        assert label.safer == (1 - safer if refused else safer), (safe_a, safe_b, swapped, safer)
        assert type(lease).objects.get(pk=lease.pk).status == AssignmentStatus.SUBMITTED
