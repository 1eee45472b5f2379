"""Gold quality control: expert labels make gold items, and each worker's accuracy is kept and flagged."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotate.assignment import assignment_claim, label_submit
from annotate.gold import flagged_workers, gold_history, gold_scores, gold_stage1_set, gold_stage2_set
from annotate.models import AuditAction, GoldStage2Label, ResponsePair, Stage, WorkItem
from annotate.rules import HARMLESS_INVARIANT_MESSAGE
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


# --- The invariant, for experts too -------------------------------------------------------------------


def _pair_with_consensus(project, *, safe_a, safe_b):
    prompt = PromptFactory(project=project)
    qa_a, qa_b = QAPairFactory(prompt=prompt), QAPairFactory(prompt=prompt)
    for qa, safe in ((qa_a, safe_a), (qa_b, safe_b)):
        Stage1WorkItemFactory(
            qa_pair=qa, settled_at=timezone.now(), consensus_safe=safe, consensus_categories=0 if safe else 1
        )
    pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qa_a, qa_b=qa_b)
    WorkItem.objects.create(project=project, stage=Stage.RANK, response_pair=pair)
    return pair


def test_expert_stage2_gold_must_keep_the_invariant(project):
    """Workers are held to "the safe one is the more harmless"; a gold answer saying otherwise would mark
    every one of them wrong. It is refused with the message the workers get."""
    pair = _pair_with_consensus(project, safe_a=False, safe_b=True)
    with pytest.raises(ValidationError) as refused:
        gold_stage2_set(response_pair=pair, better=0, safer=0, source="expert")
    assert refused.value.message_dict == {"safer": [HARMLESS_INVARIANT_MESSAGE]}
    assert not GoldStage2Label.objects.exists()
    assert not WorkItem.objects.get(response_pair=pair).is_gold
    gold_stage2_set(response_pair=pair, better=0, safer=1, source="expert")
    assert GoldStage2Label.objects.get().safer == 1


def test_expert_stage2_gold_is_held_to_stage1_gold_before_any_consensus(project):
    prompt = PromptFactory(project=project)
    qa_a, qa_b = QAPairFactory(prompt=prompt), QAPairFactory(prompt=prompt)
    gold_stage1_set(qa_pair=qa_a, categories=[], source="expert")
    gold_stage1_set(qa_pair=qa_b, categories=["self_harm"], source="expert")
    pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qa_a, qa_b=qa_b)
    with pytest.raises(ValidationError, match="Exactly one response is safe"):
        gold_stage2_set(response_pair=pair, better=1, safer=1, source="expert")


# --- History, and accuracy that follows the changes -------------------------------------------------


def test_a_changed_gold_answer_keeps_its_history(project, admin_user, researcher):
    qa = _gold_item(project, ["self_harm"])  # first set without an actor (the system)
    gold_stage1_set(qa_pair=qa, categories=["animal_abuse"], source="expert:admin", changed_by=admin_user)
    gold_stage1_set(qa_pair=qa, categories=["animal_abuse"], source="expert:admin", changed_by=researcher)
    gold_stage1_set(qa_pair=qa, categories=[], source="expert:researcher", changed_by=researcher)
    history = gold_history(project=project, qa_pair_id=qa.pk)
    assert [(event.actor, event.old, event.new) for event in history] == [
        (
            researcher,
            {"categories": ["animal_abuse"], "is_safe": False, "source": "expert:admin"},
            {"categories": [], "is_safe": True, "source": "expert:researcher"},
        ),
        (
            admin_user,
            {"categories": ["self_harm"], "is_safe": False, "source": "expert"},
            {"categories": ["animal_abuse"], "is_safe": False, "source": "expert:admin"},
        ),
        (None, None, {"categories": ["self_harm"], "is_safe": False, "source": "expert"}),
    ]  # the unchanged second save by the researcher recorded nothing
    assert all(event.action == AuditAction.GOLD_SET for event in history)


def test_a_gold_change_rescores_the_workers_who_answered_it(
    project, worker, django_capture_on_commit_callbacks, monkeypatch
):
    project.gold_rate = 1.0
    project.save()
    qa = _gold_item(project, ["self_harm"])
    _items = [QAPairFactory(prompt=PromptFactory(project=project)) for _ in range(2)]
    for regular in _items:
        Stage1WorkItemFactory(qa_pair=regular)
    _answer(project, worker, [])  # safe: wrong against the first expert answer
    assert gold_scores(project)[0].correct == 0
    queued = []
    monkeypatch.setattr("annotate.tasks.recompute_agreement.delay", queued.append)
    cache.clear()
    with django_capture_on_commit_callbacks(execute=True):
        gold_stage1_set(qa_pair=qa, categories=[], source="expert:second look")
    assert gold_scores(project)[0].correct == 1  # the worker is right after all
    assert queued == [project.pk]  # the stored report's per-worker gold accuracy is recomputed
