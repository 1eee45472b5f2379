"""Scoring a project's QA pairs (manage.py moderate), and the model measured against the humans."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotate.models import Stage1Label, WorkItem
from moderation.models import ModerationScore, ScoringRun, ScoringRunStatus
from moderation.selectors import disagreements, human_agreement
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory
from tests.moderation.conftest import register_moderation_model
from tests.training.helpers import MODERATION_WORDS
from training.services import model_activate

pytestmark = pytest.mark.django_db


def _pairs(project, responses):
    prompt = PromptFactory(project=project)
    return [
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response=r)).qa_pair for r in responses
    ]


def _moderate(*args):
    out = StringIO()
    call_command("moderate", *args, "--no-progress", stdout=out)
    return out.getvalue()


def test_moderate_scores_every_pair_once_and_resumes(project, moderation_model_dir, admin_user):
    model = register_moderation_model(project, moderation_model_dir)
    with pytest.raises(CommandError, match="No moderation model is active"):
        _moderate(project.slug)
    model_activate(model=model, project=project, actor=admin_user)
    qas = _pairs(
        project, [f"the {MODERATION_WORDS[0]} of it", "the of and a to", f"a {MODERATION_WORDS[13]} b"]
    )
    assert f"Scored 3 QA pairs of {project.slug} with model {model.pk}" in _moderate(project.slug)
    scores = {s.qa_pair_id: s for s in ModerationScore.objects.filter(model=model)}
    assert [scores[q.pk].flagged for q in qas] == [True, False, True]
    assert scores[qas[0].pk].categories & 1 and len(scores[qas[0].pk].scores) == 14
    assert scores[qas[0].pk].unsafe_score == max(scores[qas[0].pk].scores)
    assert "Scored 0 QA pairs" in _moderate(project.slug)  # nothing new: nothing scored again
    _pairs(project, ["more text here"])
    assert "Scored 1 QA pairs" in _moderate(project.slug)
    run = ScoringRun.objects.order_by("-pk").first()
    assert (
        run.status == ScoringRunStatus.SUCCEEDED
        and run.done == 1
        and run.human_agreement["model"] == model.pk
    )


def test_a_new_model_keeps_the_old_models_scores(project, moderation_model_dir, admin_user):
    old = register_moderation_model(project, moderation_model_dir)
    new = register_moderation_model(project, moderation_model_dir)
    _pairs(project, ["one", "two"])
    _moderate(project.slug, "--model", str(old.pk))
    _moderate(project.slug, "--model", str(new.pk))
    assert ModerationScore.objects.filter(model=old).count() == 2
    assert ModerationScore.objects.filter(model=new).count() == 2


def test_moderate_refuses_a_model_that_is_not_for_moderation(project):
    from training.models import JobKind, RegisteredModel

    model = register_moderation_model(project, Path("/m"))
    RegisteredModel.objects.filter(pk=model.pk).update(kind=JobKind.COST)
    with pytest.raises(CommandError, match="is a cost model, not a moderation model"):
        _moderate(project.slug, "--model", str(model.pk))


# --- the model against the humans, by hand -------------------------------------------------------------

# Six QA pairs, three workers (flagged = category 0, the only one used), the settled consensus, and the
# model's verdict with its unsafe score.
LABELS = [(1, 1, 1), (1, 1, 0), (1, 1, 1), (0, 0, 0), (0, 0, 1), (0, 0, 0)]
CONSENSUS = [1, 1, 1, 0, 0, 0]
MODEL = [1, 1, 0, 0, 0, 1]
UNSAFE_SCORE = [0.9, 0.8, 0.3, 0.1, 0.2, 0.9]


@pytest.fixture
def judged(project):
    model = register_moderation_model(project, Path("/m"))
    workers = [UserFactory(username=name) for name in ("a", "b", "c")]
    qas = _pairs(project, [f"r{n}" for n in range(6)])
    for qa, labels, consensus, verdict, score in zip(
        qas, LABELS, CONSENSUS, MODEL, UNSAFE_SCORE, strict=True
    ):
        WorkItem.objects.filter(qa_pair=qa).update(
            settled_at=timezone.now(), consensus_categories=consensus, consensus_safe=not consensus
        )
        for worker, bit in zip(workers, labels, strict=True):
            Stage1Label.objects.create(
                qa_pair=qa, worker=worker, categories=bit, is_safe=not bit, guideline_version=1
            )
        ModerationScore.objects.create(
            qa_pair=qa, model=model, scores=[score] + [0.0] * 13, categories=verdict, flagged=bool(verdict),
            unsafe_score=score,
        )  # fmt: skip
    return model, qas


def test_model_and_annotators_against_the_consensus_by_hand(project, judged):
    model, _ = judged
    report = human_agreement(project=project, model=model)
    assert (report["items"], report["labels"], report["workers"]) == (6, 18, 3)
    flagged = report["rows"][0]
    assert flagged["variable"] == "flagged"
    # Model vs consensus: TP 2, FN 1, FP 1, TN 2 -> p_o = 4/6, p_e = 1/2 -> kappa = 1/3.
    assert flagged["model_kappa"]["value"] == pytest.approx(1 / 3)
    # Each label against the majority of the other two (ties left out): 12 agree of 14, marginals 1/2
    # each -> kappa = (12/14 - 1/2) / (1/2) = 5/7.
    assert flagged["annotator_comparisons"] == 14
    assert flagged["annotator_kappa"]["value"] == pytest.approx(5 / 7)
    assert flagged["model_vs_annotators"] == "worse"
    # Alpha against the reference implementation (the krippendorff package), with and without the model.
    humans = np.array(LABELS, dtype=float).T
    assert flagged["alpha_humans"]["value"] == pytest.approx(
        krippendorff.alpha(reliability_data=humans, level_of_measurement="nominal")
    )
    with_model = np.vstack([humans, np.array(MODEL, dtype=float)])
    assert flagged["alpha_with_model"]["value"] == pytest.approx(
        krippendorff.alpha(reliability_data=with_model, level_of_measurement="nominal")
    )
    # Category 0 is the same variable here; a category nobody marked has nothing to measure.
    assert report["rows"][1]["model_kappa"] == flagged["model_kappa"]
    assert report["rows"][5]["model_kappa"]["value"] is None


def test_disagreements_come_most_confident_first(project, judged):
    model, qas = judged
    found = list(disagreements(project=project, model=model))
    # qas[5]: flagged at 0.9 against a safe consensus; qas[2]: not flagged at 0.3 (confidence 0.7) against
    # an unsafe one.
    assert [s.qa_pair_id for s in found] == [qas[5].pk, qas[2].pk]
    assert [round(s.confidence, 3) for s in found] == [0.9, 0.7]


def test_a_run_whose_model_cannot_load_fails_saying_why_and_can_run_again(project, tmp_path):
    from moderation.services import scoring_run_create, scoring_run_execute

    model = register_moderation_model(project, tmp_path / "not-there")
    _pairs(project, ["one"])
    run = scoring_run_execute(run=scoring_run_create(project=project, model=model, enqueue=False))
    assert run.status == ScoringRunStatus.FAILED and "cannot be loaded" in run.error
    assert not ModerationScore.objects.exists()
    # A failed run may be run again (once the model is back); a succeeded or running one is left alone.
    ScoringRun.objects.filter(pk=run.pk).update(status=ScoringRunStatus.RUNNING, heartbeat_at=timezone.now())
    assert scoring_run_execute(run=run).status == ScoringRunStatus.RUNNING
