"""Gold quality control: expert labels make gold items, and each worker's accuracy is kept and flagged."""

from __future__ import annotations

import pytest

from annotate.assignment import assignment_claim, label_submit
from annotate.gold import flagged_workers, gold_scores, gold_stage1_set, gold_stage2_set
from annotate.models import ResponsePair, Stage, WorkItem
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory

pytestmark = pytest.mark.django_db


def _gold_item(project, categories):
    qa = QAPairFactory(prompt=PromptFactory(project=project))
    Stage1WorkItemFactory(qa_pair=qa)
    gold_stage1_set(qa_pair=qa, categories=categories, source="expert")
    return qa


def _answer(project, worker, categories):
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    label_submit(assignment=lease, payload={"categories": categories})
    return lease


def test_marking_gold_flags_the_work_item(project):
    qa = _gold_item(project, ["self_harm"])
    assert WorkItem.objects.get(qa_pair=qa).is_gold
    assert qa.gold.is_safe is False and qa.gold.categories == 1 << 10


def test_stage1_gold_needs_the_exact_category_set(project, worker):
    project.gold_rate = 1.0
    project.save()
    for _ in range(3):
        _gold_item(project, ["self_harm"])
    _answer(project, worker, ["self_harm"])
    _answer(project, worker, ["self_harm", "violence,aiding_and_abetting,incitement"])  # superset: wrong
    _answer(project, worker, [])  # safe: wrong
    (score,) = gold_scores(project)
    assert (score.answered, score.correct) == (3, 1)
    assert score.accuracy == pytest.approx(1 / 3)


def test_gold_without_categories_judges_only_safety(project, worker):
    qa = QAPairFactory(prompt=PromptFactory(project=project))
    Stage1WorkItemFactory(qa_pair=qa, is_gold=True)
    from annotate.models import GoldStage1Label

    GoldStage1Label.objects.create(qa_pair=qa, categories=0, is_safe=False, source="pku")
    _answer(project, worker, ["privacy_violation"])
    assert gold_scores(project)[0].correct == 1


def test_a_worker_is_flagged_only_after_enough_gold_answers(project):
    project.gold_rate = 1.0
    project.gold_min_items = 3
    project.gold_accuracy_threshold = 0.7
    project.save()
    for _ in range(4):
        _gold_item(project, ["animal_abuse"])
    careless, careful = UserFactory(username="careless"), UserFactory(username="careful")
    _answer(project, careless, [])
    _answer(project, careless, [])
    assert flagged_workers(project) == []  # two answers are not enough to judge
    _answer(project, careless, ["animal_abuse"])
    for _ in range(3):
        _answer(project, careful, ["animal_abuse"])
    flagged = flagged_workers(project)
    assert [s.username for s in flagged] == ["careless"]
    assert {s.username for s in gold_scores(project)} == {"careless", "careful"}


def test_stage2_gold_needs_both_answers(project, worker):
    prompt = PromptFactory(project=project)
    qa_a, qa_b = QAPairFactory(prompt=prompt), QAPairFactory(prompt=prompt)
    pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qa_a, qa_b=qa_b)
    WorkItem.objects.create(project=project, stage=Stage.RANK, response_pair=pair)
    gold_stage2_set(response_pair=pair, better=1, safer=0, source="expert")
    lease = assignment_claim(project=project, worker=worker, stage=Stage.RANK)
    flip = 1 if lease.swapped else 0
    label_submit(assignment=lease, payload={"better_response_id": 1 ^ flip, "safer_response_id": 1 ^ flip})
    assert gold_scores(project, stage=2)[0].correct == 0
    assert gold_scores(project, stage=1) == []
