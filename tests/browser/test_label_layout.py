"""The stage-1 screen fits: at 1366x768 and on a 390x844 phone the 14 category toggles and Submit are in
view without scrolling the page, even for a long response, which scrolls in its own pane and says so."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.browser

LONG_RESPONSE = "\n".join(
    f"Paragraph {i}: some careful, harmless advice about the question." for i in range(60)
)


def in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return (
        box is not None
        and box["y"] >= 0
        and box["x"] >= 0
        and box["y"] + box["height"] <= size["height"]
        and box["x"] + box["width"] <= size["width"]
    )


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
def test_the_toggles_and_submit_are_in_view_without_scrolling(
    browser, live_server, transactional_db, project, worker, login, shot, width, height
):
    project.gold_rate = 0.0
    project.save()
    prompt = PromptFactory(project=project, text="How do I keep my houseplants alive over a long holiday?")
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response=LONG_RESPONSE))
    # A queue of a realistic size: the progress strip's counts take their full width.
    for n in range(120):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response=f"Short answer {n}."))
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
    page = context.new_page()
    login(page, "worker")
    page.goto(f"/projects/{project.slug}/label/1/")
    expect(page.get_by_test_id("response")).to_contain_text("Paragraph 0:")
    expect(page.get_by_test_id("items-left")).to_have_text("120")
    shown = "120 left" if width < 600 else "120 more for you after this one"
    expect(page.locator(".label-progress")).to_contain_text(shown, use_inner_text=True)
    assert page.evaluate("window.scrollY") == 0
    toggles = page.locator("input[name=categories]")
    assert toggles.count() == 14
    shot(page, f"label_stage1_{width}x{height}_top")
    for i in range(14):
        assert in_viewport(page, toggles.nth(i)), f"category toggle {i} is out of view at {width}x{height}"
    assert in_viewport(page, page.locator("input[data-safe-toggle]"))
    assert in_viewport(page, page.get_by_test_id("submit")), f"Submit is out of view at {width}x{height}"
    assert not page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    # The long response scrolls inside its own pane, with a cue in words until its end is reached.
    block = page.locator(".qa__block--response")
    expect(block).to_have_class("qa__block qa__block--response has-more")
    shot(page, f"label_stage1_{width}x{height}")
    page.get_by_test_id("response").evaluate("pane => { pane.scrollTop = pane.scrollHeight; }")
    expect(block).not_to_have_class("qa__block qa__block--response has-more")
    # Labelling still works from there: a toggle by click, then Submit.
    toggles.nth(9).check()
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("response")).to_contain_text("Short answer")
    expect(page.get_by_test_id("done-today")).to_have_text("1")
    context.close()


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
def test_the_guidelines_take_focus_and_give_it_back(
    browser, live_server, transactional_db, project, worker, login, width, height
):
    """Opening the guidelines moves focus into them (on a phone the panel, below the task, scrolls into
    view); closing puts focus back where it was."""
    project.gold_rate = 0.0
    project.save()
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project), response="An answer."))
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
    page = context.new_page()
    login(page, "worker")
    page.goto(f"/projects/{project.slug}/label/1/")
    button = page.locator('.label-bar [data-action="toggle-guidelines"]')
    button.click()
    heading = page.locator("#guidelines-h")
    expect(heading).to_be_focused()
    expect(heading).to_be_in_viewport(ratio=1)
    page.keyboard.press("Escape")
    expect(page.locator("#guidelines")).to_be_hidden()
    expect(button).to_be_focused()
    # Opened by its key, closed by its own button: focus returns to where the worker was.
    page.locator("#task-heading").focus()
    page.keyboard.press("?")
    expect(heading).to_be_focused()
    page.locator('#guidelines [data-action="toggle-guidelines"]').click()
    expect(page.locator("#task-heading")).to_be_focused()
    context.close()


def test_the_lease_counts_down_and_warns_in_its_last_minute(
    browser, live_server, transactional_db, project, worker, login
):
    project.gold_rate, project.lease_seconds = 0.0, 90
    project.save()
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project), response="An answer."))
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 768})
    page = context.new_page()
    login(page, "worker")
    page.goto(f"/projects/{project.slug}/label/1/")
    lease = page.get_by_test_id("lease")
    expect(lease).to_contain_text(re.compile(r"\(1:[0-2]\d left\)"))
    expect(lease).not_to_have_class(re.compile("lease--warning"))
    # The same lease seen 40 s later (the page's clock moved on): under a minute left, a warning.
    page.clock.install()
    page.clock.fast_forward(40_000)
    expect(lease).to_contain_text(re.compile(r"\(0:[0-5]\d left\)"))
    expect(lease).to_have_class(re.compile("lease--warning"))
    context.close()


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
def test_the_skip_box_keeps_the_item_in_view(
    browser, live_server, transactional_db, project, worker, login, shot, width, height
):
    """Opening the skip box (key x) puts its reason field in view without pushing the texts away: the
    worker writes why while still seeing what they skip."""
    project.gold_rate = 0.0
    project.save()
    prompt = PromptFactory(project=project, text="Which mushrooms in my garden are safe to eat?")
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response=LONG_RESPONSE))
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response="Another answer."))
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
    page = context.new_page()
    login(page, "worker")
    page.goto(f"/projects/{project.slug}/label/1/")
    expect(page.get_by_test_id("prompt")).to_be_visible()
    page.keyboard.press("x")
    reason = page.locator("#skip-reason")
    expect(reason).to_be_focused()
    assert in_viewport(page, reason), (
        f"the skip reason is out of view at {width}x{height}: {reason.bounding_box()}, "
        f"scrollY {page.evaluate('window.scrollY')}"
    )
    prompt_box = page.get_by_test_id("prompt").bounding_box()
    assert prompt_box is not None and prompt_box["y"] >= 0, "the prompt scrolled out of view"
    response_box = page.get_by_test_id("response").bounding_box()
    assert response_box is not None and response_box["y"] < height - 40, "the response is out of view"
    shot(page, f"label_stage1_skip_{width}x{height}")
    reason.fill("I cannot judge mushrooms")
    reason.press("Enter")
    expect(page.get_by_test_id("response")).to_contain_text("Another answer.")
    context.close()


def test_a_worker_revises_an_earlier_answer_from_the_history_after_confirming(
    browser, live_server, transactional_db, project, worker, login, shot
):
    from annotate.models import Stage1Label

    project.gold_rate = 0.0
    project.save()
    prompt = PromptFactory(project=project, text="How do I pick a lock?")
    for n in range(3):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response=f"Answer number {n}."))
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 768})
    page = context.new_page()
    login(page, "worker")
    page.goto(f"/projects/{project.slug}/label/1/")
    first_response = page.get_by_test_id("response").inner_text()
    page.keyboard.press("s")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("done-today")).to_have_text("1")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("done-today")).to_have_text("2")
    page.get_by_text("Your answers").click()
    history = page.get_by_test_id("history")
    expect(history.locator("li")).to_have_count(2)
    shot(page, "label_history_1366x768")
    # The older answer (safe) is the second row; revise it to a category, then confirm.
    history.locator("li").nth(1).get_by_role("link", name="Revise").click()
    expect(page.get_by_test_id("response")).to_have_text(first_response)
    expect(page.locator("input[data-safe-toggle]")).to_be_checked()
    page.locator('input[value="privacy_violation"]').check()
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("confirm-change")).to_contain_text("Safe: no category")
    expect(page.get_by_test_id("submit")).to_contain_text("Confirm change")
    shot(page, "label_revise_confirm_1366x768")
    assert Stage1Label.objects.filter(categories=0).count() == 1  # nothing changed yet
    page.keyboard.press("Enter")
    # Saved, the worker is back on the task they held before revising.
    expect(page.get_by_test_id("confirm-change")).to_have_count(0)
    expect(page.locator(".label-bar__title")).not_to_contain_text("Revising")
    assert Stage1Label.objects.filter(categories=0).count() == 0
    context.close()
