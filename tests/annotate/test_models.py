"""The model's invariants hold in the database itself, whatever code path writes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.categories import ALL_CATEGORIES_MASK
from annotate.models import Assignment, ResponsePair, Stage, Stage1Label, Stage2Label, WorkItem
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.django_db


def _violates(make) -> bool:
    try:
        with transaction.atomic():
            make()
    except IntegrityError:
        return True
    return False


def test_one_stage1_label_per_item_and_worker(worker):
    qa = QAPairFactory()
    Stage1Label.objects.create(qa_pair=qa, worker=worker, categories=1, is_safe=False, guideline_version=1)
    assert _violates(
        lambda: Stage1Label.objects.create(
            qa_pair=qa, worker=worker, categories=0, is_safe=True, guideline_version=1
        )
    )


def test_stage1_is_safe_must_match_empty_category_set(worker):
    qa = QAPairFactory()
    assert _violates(
        lambda: Stage1Label.objects.create(
            qa_pair=qa, worker=worker, categories=4, is_safe=True, guideline_version=1
        )
    )
    assert _violates(
        lambda: Stage1Label.objects.create(
            qa_pair=qa, worker=worker, categories=0, is_safe=False, guideline_version=1
        )
    )
    assert _violates(
        lambda: Stage1Label.objects.create(
            qa_pair=qa, worker=worker, categories=ALL_CATEGORIES_MASK + 1, is_safe=False, guideline_version=1
        )
    )


def test_response_pair_is_stored_in_canonical_order_once():
    prompt = PromptFactory()
    first, second = QAPairFactory(prompt=prompt), QAPairFactory(prompt=prompt)
    assert _violates(
        lambda: ResponsePair.objects.create(project=prompt.project, prompt=prompt, qa_a=second, qa_b=first)
    )
    ResponsePair.objects.create(project=prompt.project, prompt=prompt, qa_a=first, qa_b=second)
    assert _violates(
        lambda: ResponsePair.objects.create(project=prompt.project, prompt=prompt, qa_a=first, qa_b=second)
    )


def test_stage2_label_choices_are_0_or_1(worker):
    prompt = PromptFactory()
    pair = ResponsePair.objects.create(
        project=prompt.project,
        prompt=prompt,
        qa_a=QAPairFactory(prompt=prompt),
        qa_b=QAPairFactory(prompt=prompt),
    )
    assert _violates(
        lambda: Stage2Label.objects.create(
            response_pair=pair, worker=worker, better=2, safer=0, guideline_version=1
        )
    )
    Stage2Label.objects.create(response_pair=pair, worker=worker, better=1, safer=0, guideline_version=1)
    assert _violates(
        lambda: Stage2Label.objects.create(
            response_pair=pair, worker=worker, better=0, safer=0, guideline_version=1
        )
    )


def test_work_item_target_must_match_its_stage():
    qa = QAPairFactory()
    assert _violates(lambda: WorkItem.objects.create(project=qa.project, stage=Stage.RANK, qa_pair=qa))


def test_a_worker_is_assigned_an_item_at_most_once(worker):
    item = Stage1WorkItemFactory()
    now = timezone.now()
    lease = {"project": item.project, "work_item": item, "worker": worker, "stage": Stage.CLASSIFY}
    Assignment.objects.create(**lease, leased_at=now, expires_at=now + timedelta(minutes=10))
    assert _violates(
        lambda: Assignment.objects.create(**lease, leased_at=now, expires_at=now + timedelta(minutes=10))
    )


def test_duplicate_content_hash_is_refused_within_a_project_only():
    qa = QAPairFactory()
    assert _violates(lambda: QAPairFactory(prompt=qa.prompt, response=qa.response))
    other = PromptFactory(text=qa.prompt.text)  # same text, another project: allowed
    assert other.project_id != qa.project_id
