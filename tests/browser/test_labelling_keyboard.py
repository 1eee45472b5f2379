"""Labelling by keyboard alone in real Chromium: a worker classifies stage-1 items, two more workers
complete the overlap, the settled responses become a stage-2 pair, and it is ranked by keyboard."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from annotate.models import ResponsePair, Stage1Label, Stage2Label, WorkItem
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.browser


def _label_stage1_by_keyboard(page, keys_per_item: list[str]) -> None:
    """On the stage-1 screen, answer one item per entry ("s" = safe, else category shortcut letters)."""
    for keys in keys_per_item:
        heading = page.locator("#task-heading")
        expect(heading).to_be_visible()
        prompt_before = page.get_by_test_id("response").inner_text()
        for key in keys:
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        # The next task (or the "nothing left" card) swaps in without a page load.
        expect(
            page.get_by_test_id("response").or_(page.get_by_text("Nothing left for you"))
        ).not_to_have_text(prompt_before)


def _login_keyboard(page, username: str) -> None:
    page.goto("/login/")
    # The username field has focus on load; typing before the page has applied it would lose keys.
    expect(page.locator("input[name=username]")).to_be_focused()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type("Test-pass-123")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"^https?://[^/]+/$"))


def test_two_stages_by_keyboard_alone(
    browser, live_server, transactional_db, project, worker, second_worker, shot
):
    from tests.factories import MembershipFactory, UserFactory

    third = UserFactory(username="third_worker")
    MembershipFactory(project=project, user=third, role="annotator")
    project.gold_rate = 0.0
    project.save()
    prompt = PromptFactory(project=project, text="How can I get my neighbour's wifi password?")
    safe = QAPairFactory(prompt=prompt, response="Ask your neighbour; using it without consent is illegal.")
    unsafe = QAPairFactory(prompt=prompt, response="Run a dictionary attack against their router.")
    for qa in (safe, unsafe):
        Stage1WorkItemFactory(qa_pair=qa)

    # Worker 1, keyboard only: the first item (the safe answer) is safe, the second is a privacy violation.
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _login_keyboard(page, "worker")
    page.goto(f"/projects/{project.slug}/label/1/")
    expect(page.get_by_test_id("response")).to_have_text(safe.response)
    page.keyboard.press("?")
    expect(page.locator("#guidelines")).to_be_visible()
    shot(page, "label_stage1_guidelines")
    page.keyboard.press("Escape")
    expect(page.locator("#guidelines")).to_be_hidden()
    # s marks the answer safe; j toggles privacy_violation (category 9, the tenth letter).
    page.keyboard.press("s")
    expect(page.locator("[data-safe-toggle]")).to_be_checked()
    shot(page, "label_stage1")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("response")).to_have_text(unsafe.response)
    page.keyboard.press("j")
    expect(page.locator('input[value="privacy_violation"]')).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Nothing left for you in this stage")).to_be_visible()
    expect(page.get_by_test_id("done-today")).to_have_text("2")
    assert Stage1Label.objects.filter(worker=worker).count() == 2

    # Two more workers complete the overlap of 3 with the same answers.
    for username in ("second_worker", "third_worker"):
        other = browser.new_context(base_url=live_server.url).new_page()
        _login_keyboard(other, username)
        other.goto(f"/projects/{project.slug}/label/1/")
        _label_stage1_by_keyboard(other, ["s", "j"])
        expect(other.get_by_text("Nothing left for you in this stage")).to_be_visible()
        other.context.close()

    assert WorkItem.objects.filter(qa_pair__in=[safe, unsafe], settled_at__isnull=False).count() == 2
    pair = ResponsePair.objects.get(prompt=prompt)

    # Stage 2 for worker 1, keyboard only: the unsafe answer is more helpful, the safe one more harmless.
    page.goto(f"/projects/{project.slug}/label/2/")
    expect(page.get_by_text("Which response is more helpful?")).to_be_visible()
    expect(page.get_by_test_id("invariant-note")).to_be_visible()
    shown_first = page.get_by_test_id("response-0").inner_text()
    safe_key, unsafe_key = ("1", "2") if shown_first == safe.response else ("2", "1")
    expect(page.get_by_test_id("safety-0")).to_have_text("Safe" if safe_key == "1" else "Unsafe")
    page.keyboard.press(unsafe_key)  # more helpful
    page.keyboard.press(str(int(safe_key) + 2))  # more harmless: 3 = A, 4 = B
    shot(page, "label_stage2")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Nothing left for you in this stage")).to_be_visible()
    label = Stage2Label.objects.get(response_pair=pair, worker=worker)
    assert (label.better, label.safer) == (1, 0)  # canonical order: qa_a = safe (lower id), qa_b = unsafe
    context.close()
    assert not errors, errors


def test_skip_by_keyboard_asks_for_a_reason(page, project, worker):
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    page.goto("/login/")
    _login_keyboard(page, "worker")
    page.goto(f"/projects/{project.slug}/label/1/")
    page.keyboard.press("x")
    expect(page.get_by_label("Why do you skip it?")).to_be_focused()
    page.keyboard.type("I cannot judge medical advice")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Nothing left for you in this stage")).to_be_visible()
    assert worker.assignments.get().skip_reason == "I cannot judge medical advice"
