"""The Moderation page (the active model, its metrics, the models, scoring runs, the model against the
humans, the disagreements) and a moderation job's evaluation on the training job page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from moderation.models import ScoringRun, ScoringRunStatus
from moderation.selectors import human_agreement
from moderation.tasks import score_project
from tests.moderation.conftest import register_moderation_model
from tests.moderation.test_scoring import judged  # noqa: F401  (a fixture)
from training.models import JobKind
from training.selectors import active_model
from training.services import model_activate

pytestmark = pytest.mark.django_db


def url(project, name="moderation", *args):
    return reverse(f"frontend:{name}", args=[project.slug, *args])


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_it_requires_a_researcher_or_admin(client, project, worker, outsider):
    client.force_login(worker)
    assert client.get(url(project)).status_code == 403
    client.force_login(outsider)
    assert client.get(url(project)).status_code == 404


def test_without_a_model_it_says_what_to_do(client, project, researcher):
    client.force_login(researcher)
    page = client.get(url(project)).content.decode()
    assert "No moderation model is active for this project or the platform" in page
    assert reverse("frontend:training", args=[project.slug]) in page


def test_it_shows_the_model_its_metrics_and_the_model_against_the_humans(client, project, researcher, judged):  # noqa: F811
    model, qas = judged
    model_activate(model=model, project=project, actor=researcher)
    ScoringRun.objects.create(
        project=project,
        model=model,
        status=ScoringRunStatus.SUCCEEDED,
        total=6,
        done=6,
        human_agreement=human_agreement(project=project, model=model),
    )
    client.force_login(researcher)
    html = client.get(url(project)).content.decode()
    text = text_of(html)
    assert f"#{model.pk} (this project's)" in text
    assert "0.970" in text and "0.710" in text  # the registered test metrics
    # The agreement table: flagged row with the model's kappa 1/3 and the annotators' 5/7.
    assert "Flagged (any category) 0.333 0.714 agrees less" in text
    assert "6 QA pairs with a settled human consensus" in text
    # The disagreements, most confident first, each linking to its item.
    first, second = (
        html.index(reverse("frontend:gold-qa", args=[project.slug, qa.pk])) for qa in (qas[5], qas[2])
    )
    assert first < second
    assert "0.900" in text and "0.700" in text


def test_activate_and_score_from_the_page(
    client, project, researcher, monkeypatch, django_capture_on_commit_callbacks
):
    model = register_moderation_model(project, Path("/m"))
    client.force_login(researcher)
    page = client.get(url(project)).content.decode()
    assert url(project, "moderation-activate", model.pk) in page
    client.post(url(project, "moderation-activate", model.pk))
    assert active_model(JobKind.MODERATION, project) == model
    sent = []
    monkeypatch.setattr(score_project, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url(project, "moderation-score"))
    assert response.status_code == 302
    run = ScoringRun.objects.get()
    assert sent == [run.pk] and run.model == model and run.status == ScoringRunStatus.QUEUED
    page = client.get(url(project)).content.decode()
    assert 'hx-trigger="every 3s"' in page  # the runs section polls while a run is queued


def test_the_training_page_offers_the_classifier_on_beavertails_snapshots(client, project, researcher):
    from annotate.models import ExportFormat, Snapshot, SnapshotStatus

    snapshot = Snapshot.objects.create(
        project=project,
        format=ExportFormat.BEAVERTAILS,
        status=SnapshotStatus.SUCCEEDED,
        files=[{"name": "train.jsonl", "split": "train", "rows": 10, "path": "x", "config": "default"}],
    )
    client.force_login(researcher)
    page = client.get(reverse("frontend:training", args=[project.slug])).content.decode()
    assert f"?snapshot={snapshot.pk}&amp;kind=moderation" in page
    form = client.get(
        reverse("frontend:training-new", args=[project.slug]) + "?kind=moderation"
    ).content.decode()
    assert "QA moderation" in form and 'name="threshold_strategy"' in form
    assert 'name="max_length" value="256"' in form  # the classifier's own defaults
    assert f'<option value="{snapshot.pk}" selected>' in form or f'value="{snapshot.pk}"' in form
    reward = client.get(
        reverse("frontend:training-new", args=[project.slug]) + "?kind=reward"
    ).content.decode()
    assert 'name="threshold_strategy"' not in reward and f'value="{snapshot.pk}"' not in reward


def test_a_moderation_jobs_page_shows_its_evaluation(client, project, researcher):
    import numpy as np

    from training.trainers.moderation import evaluate, headline_metrics

    rng = np.random.default_rng(1)
    truth = rng.random((40, 14)) < 0.2
    evaluation = evaluate(np.clip(truth * 0.7 + rng.random((40, 14)) * 0.4, 0, 1), truth, [0.5] * 14)
    model = register_moderation_model(project, Path("/m"))
    job = model.job
    job.eval_metrics = {"metrics": headline_metrics(evaluation), "moderation": evaluation}
    job.save()
    client.force_login(researcher)
    text = text_of(client.get(url(project, "training-job", job.pk)).content.decode())
    assert "Per harm category, at its tuned threshold" in text
    assert "Child abuse" in text and "Flagged (any category) against the test split's is_safe" in text
    assert f"{evaluation['flagged']['f1']:.3f}" in text
    assert (
        f"Safe {evaluation['confusion']['safe_flagged']} {evaluation['confusion']['safe_not_flagged']}"
        in text
    )
