"""The Moderation page and a moderation job's page in real Chromium, with real numbers: a model trained
here (tests/moderation/conftest.py), scored over the project by the moderate command, measured against
the workers' labels; at a desktop and a phone size."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.utils import timezone

from annotate.models import Stage1Label, WorkItem
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory
from tests.moderation.conftest import register_moderation_model
from tests.training.helpers import MODERATION_WORDS
from training.services import model_activate

pytestmark = pytest.mark.browser


@pytest.fixture
def scored_project(project, researcher, moderation_model_dir):
    """Eight QA pairs with three workers' labels and a settled consensus; two of the consensus verdicts
    are wrong (label errors the model should surface)."""
    from training.trainers.moderation import evaluate, headline_metrics

    model = register_moderation_model(project, moderation_model_dir)
    evaluation = evaluate(*_toy_evaluation())
    model.job.eval_metrics = {"metrics": headline_metrics(evaluation), "moderation": evaluation}
    model.job.save()
    model.eval_metrics = model.job.eval_metrics
    model.save()
    model_activate(model=model, project=project, actor=researcher)
    workers = [UserFactory(username=f"w{n}") for n in range(3)]
    prompt = PromptFactory(project=project, text="How should I handle this?")
    for n in range(8):
        unsafe = n % 2 == 0
        word = MODERATION_WORDS[n] if unsafe else "the"
        qa = Stage1WorkItemFactory(
            qa_pair=QAPairFactory(prompt=prompt, response=f"the {word} of it {n}")
        ).qa_pair
        said_unsafe = unsafe if n not in (2, 3) else not unsafe  # two label errors
        mask = (1 << n) if said_unsafe else 0
        WorkItem.objects.filter(qa_pair=qa).update(
            settled_at=timezone.now(), consensus_categories=mask, consensus_safe=not said_unsafe
        )
        for worker in workers:
            Stage1Label.objects.create(
                qa_pair=qa, worker=worker, categories=mask, is_safe=not mask, guideline_version=1
            )
    call_command("moderate", project.slug, "--no-progress")
    return model


def _toy_evaluation():
    import numpy as np

    rng = np.random.default_rng(5)
    truth = rng.random((80, 14)) < 0.15
    return np.clip(truth * 0.7 + rng.random((80, 14)) * 0.35, 0, 1), truth, [0.5] * 14


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
def test_a_researcher_reads_the_moderation_page_and_the_jobs_evaluation(
    browser, live_server, transactional_db, scored_project, project, researcher, shot, width, height
):
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/login/")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill("Test-pass-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"/projects/{project.slug}/moderation/")
    assert f"#{scored_project.pk} (this project's)" in page.get_by_test_id("active-model").inner_text()
    table = page.get_by_test_id("agreement-table")
    flagged_row = table.locator("tbody tr").first.inner_text()
    assert flagged_row.startswith("Flagged (any category)")
    assert any(ch.isdigit() for ch in flagged_row.split("\t")[1])  # a real kappa, not "n/a"
    disagreements = page.get_by_test_id("disagreements").locator("tbody tr")
    assert disagreements.count() >= 1
    shot(page, f"moderation-page-{width}")
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >
        document.documentElement.clientWidth + 1).map(e => e.tagName + '.' + e.className).slice(0, 8)"""
    )
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), wide

    page.goto(f"/projects/{project.slug}/training/jobs/{scored_project.job_id}/")
    rows = page.get_by_test_id("moderation-categories").locator("tbody tr")
    assert rows.count() == 14 and rows.first.inner_text().startswith("Animal abuse")
    shot(page, f"moderation-job-{width}")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    context.close()
    assert not errors, errors
