"""No page is wider than a 390 px phone: every page of a project with data in it, as the role that uses
it (long model paths on the job page and long guidelines included)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotate.models import Stage
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory
from tests.training.job_helpers import make_job, make_pku_snapshot
from training.models import JobStatus

pytestmark = pytest.mark.browser

LONG_PATH = "/srv/models/" + "a-very-long-checkpoint-folder-name-without-spaces" * 3


def overflowing(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")


def test_no_page_overflows_a_phone(
    browser, live_server, transactional_db, project, admin_user, worker, login, shot
):
    project.guidelines = "| Category | Example |\n|---|---|\n| " + "x" * 200 + " | " + "y" * 200 + " |\n"
    project.gold_rate = 0.0
    project.save()
    prompt = PromptFactory(project=project, text="How do I pick a lock?")
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response="Call a locksmith. " * 40))
    snapshot = make_pku_snapshot(project)
    job = make_job(snapshot, status=JobStatus.FAILED, failure_reason="Could not load " + LONG_PATH)
    job.config = {**job.config, "base_model": LONG_PATH}
    job.log_tail = "loading " + LONG_PATH
    job.save()
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    login(page, "admin")
    slug = project.slug
    pages = ["/", f"/projects/{slug}/", f"/projects/{slug}/dashboard/", f"/projects/{slug}/gold/",
             f"/projects/{slug}/datasets/", f"/projects/{slug}/training/", f"/projects/{slug}/training/new/",
             f"/projects/{slug}/training/jobs/{job.pk}/", f"/projects/{slug}/moderation/",
             f"/projects/{slug}/import/", f"/projects/{slug}/team/", f"/projects/{slug}/settings/", "/projects/new/",
             "/profile/"]  # fmt: skip
    wide = []
    for url in pages:
        page.goto(url)
        if overflowing(page):
            wide.append(url)
            shot(page, "overflow" + url.replace("/", "_"))
    context.close()
    # The worker's screens, the guidelines panel open.
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    login(page, "worker")
    for stage in (Stage.CLASSIFY, Stage.RANK):
        url = f"/projects/{slug}/label/{stage}/"
        page.goto(url)
        page.get_by_role("button", name="Guidelines").first.click()
        if overflowing(page):
            wide.append(url)
            shot(page, "overflow" + url.replace("/", "_"))
    # Their history of answers, opened from the labelling screen, and as a page of its own.
    page.goto(f"/projects/{slug}/label/1/")
    page.keyboard.press("s")
    page.keyboard.press("Enter")
    # The submit swaps the task in (its bar included): open the list only once the swap is done.
    expect(page.get_by_test_id("done-today")).to_have_text("1")
    page.get_by_text("Answers", exact=True).click()
    page.get_by_test_id("history").wait_for()
    for url in (f"/projects/{slug}/label/1/", f"/projects/{slug}/label/1/history/"):
        if url.endswith("history/"):
            page.goto(url)
        if overflowing(page):
            wide.append(url)
            shot(page, "overflow" + url.replace("/", "_"))
    shot(page, "worker_history_390")
    context.close()
    assert wide == []
