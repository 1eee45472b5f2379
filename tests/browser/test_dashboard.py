"""The admin dashboard in real Chromium: the charts draw (a Chart.js instance on every canvas, and ink on
it), the worker table sorts by htmx swap and without JavaScript, a refreshed report redraws the charts,
and an admin decides a queued item inline."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from annotate.categories import mask_from_keys
from tests.frontend.dashboard_payload import (
    make_labellers,
    make_report,
    queue_item_stage1,
    queue_item_stage2,
    sample_payload,
)

pytestmark = pytest.mark.browser

CHARTS = ("alpha", "labels_per_hour", "by_day", "by_version")

# For each chart canvas: whether Chart.js owns it, and how many pixels carry ink (alpha > 0).
CHART_STATE = """
() => Array.from(document.querySelectorAll("canvas[data-chart]")).map((canvas) => {
  const chart = window.Chart && window.Chart.getChart(canvas);
  const ctx = canvas.getContext("2d");
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) ink++; }
  return {name: canvas.dataset.chart, chart: Boolean(chart), type: chart ? chart.config.type : null,
          width: canvas.width, height: canvas.height, ink: ink};
})
"""

ALL_DRAWN = """
() => {
  const canvases = Array.from(document.querySelectorAll("canvas[data-chart]"));
  return canvases.length === 4 && canvases.every((canvas) => {
    const chart = window.Chart && window.Chart.getChart(canvas);
    return chart && canvas.width > 0 && !window.Chart.animator.running(chart);
  });
}
"""


def assert_charts_drew(page) -> None:
    page.wait_for_function(ALL_DRAWN)  # drawn, and the first-draw animation finished
    states = {s["name"]: s for s in page.evaluate(CHART_STATE)}
    assert sorted(states) == sorted(CHARTS)
    for name, state in states.items():
        assert state["chart"], f"{name}: no Chart instance"
        # A blank canvas has no ink; axes, labels and bars give thousands of pixels.
        assert state["ink"] > 2000, f"{name}: the canvas looks blank ({state})"
    assert states["alpha"]["type"] == "bar" and states["by_day"]["type"] == "line"


@pytest.fixture
def busy_project(project):
    make_report(project)
    workers = make_labellers(4)
    violence = mask_from_keys(["violence,aiding_and_abetting,incitement"])
    privacy = mask_from_keys(["privacy_violation"])
    stage1 = queue_item_stage1(
        project,
        [0, violence, privacy],
        workers,
        prompt="How do I find out where my ex lives now?",
        response="Look up their new address through mutual friends' social media check-ins, then wait outside.",
    )
    stage2 = queue_item_stage2(
        project, [(0, 1), (1, 0)], workers, prompt="What household chemicals should never be mixed?"
    )
    return {"stage1": stage1, "stage2": stage2}


def test_the_dashboard_draws_its_charts(page, project, admin_user, busy_project, login, shot):
    login(page, "admin")
    page.get_by_role("link", name="Demo project", exact=True).click()
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url(re.compile(r"/projects/demo-project/dashboard/$"))
    expect(page.get_by_role("heading", name="Agreement per variable")).to_be_visible()
    expect(page.get_by_test_id("alerts")).to_contain_text("Self-harm")
    assert_charts_drew(page)

    # The alpha chart carries the stored numbers, nulls as gaps, and the interval whiskers' ends.
    alpha = page.evaluate(
        """() => { const c = Chart.getChart(document.querySelector('canvas[data-chart="alpha"]'));
                   return {data: c.data.datasets[0].data, low: c.data.datasets[0].ciLow, labels: c.data.labels}; }"""
    )
    assert alpha["data"][0] == 0.743 and alpha["data"][2] is None
    assert alpha["labels"][2] == "Animal abuse (n/a: no variation)"
    assert alpha["low"][0] == pytest.approx(0.693)
    # Undefined numbers read "n/a", with the reason on hover.
    na = (
        page.get_by_test_id("variables")
        .get_by_role("row", name=re.compile("Animal abuse"))
        .locator(".na")
        .first
    )
    expect(na).to_have_attribute("title", "no variation")
    expect(page.locator("main")).not_to_contain_text("NaN")
    shot(page, "dashboard_admin")

    page.emulate_media(color_scheme="dark")
    page.reload()
    assert_charts_drew(page)
    shot(page, "dashboard_admin_dark")


def test_the_worker_table_sorts_by_htmx_and_keeps_the_charts(
    page, project, researcher, busy_project, login, shot
):
    login(page, "researcher")
    page.goto("/projects/demo-project/dashboard/")
    assert_charts_drew(page)
    page.evaluate("() => { window.__noReload = true }")
    table = page.get_by_test_id("workers")
    expect(table.locator("tbody th").first).to_have_text("bob")  # flagged first

    with page.expect_response(lambda r: r.request.headers.get("hx-target") == "worker-table"):
        table.get_by_role("link", name="Labels").click()
    expect(page).to_have_url(re.compile(r"sort=-labels"))
    expect(page.get_by_test_id("workers").locator("tbody th").first).to_have_text("alice")
    expect(page.get_by_test_id("workers").locator("th[aria-sort='descending']")).to_contain_text("Labels")

    page.get_by_test_id("workers").get_by_role("link", name="Labels").click()
    expect(page).to_have_url(re.compile(r"sort=labels"))
    expect(page.get_by_test_id("workers").locator("tbody th").first).to_have_text("dave")
    assert page.evaluate("() => window.__noReload") is True
    assert_charts_drew(page)
    # Researchers watch the queue; only admins decide.
    expect(page.get_by_test_id("queue-item")).to_have_count(2)
    expect(page.get_by_role("button", name="Safe")).to_have_count(0)
    shot(page, "dashboard_sorted_researcher")


def test_refresh_swaps_in_a_newer_report_and_redraws(page, project, admin_user, busy_project, login):
    login(page, "admin")
    page.goto("/projects/demo-project/dashboard/?sort=worker")
    assert_charts_drew(page)
    page.evaluate("() => { window.__noReload = true }")

    payload = sample_payload()
    payload["stage1"]["is_safe"]["alpha"]["value"] = 0.9
    make_report(project, payload, computed_at=dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC))
    with page.expect_response(lambda r: r.request.headers.get("hx-target") == "report"):
        page.get_by_role("link", name="Refresh", exact=True).click()
    expect(page.locator(".dash-meta")).to_contain_text("2026-11-30 08:00")
    assert_charts_drew(page)
    value = page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas[data-chart=\"alpha\"]')).data.datasets[0].data[0]"
    )
    assert value == 0.9
    # The sort chosen before the swap is kept.
    expect(page.get_by_test_id("workers").locator("tbody th").first).to_have_text("alice")
    assert page.evaluate("() => window.__noReload") is True


def test_sorting_works_without_javascript(no_js_page, project, admin_user, busy_project, shot):
    page = no_js_page
    page.goto("/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("Test-pass-123")
    page.get_by_role("button", name="Log in").click()
    page.goto("/projects/demo-project/dashboard/")
    page.get_by_test_id("workers").get_by_role("link", name="Worker").click()
    expect(page).to_have_url(re.compile(r"\?sort=worker#worker-table$"))
    expect(page.get_by_test_id("workers").locator("tbody th").first).to_have_text("alice")
    # With no script the charts' tables are still there.
    expect(page.get_by_test_id("variables")).to_contain_text("Is safe")
    shot(page, "dashboard_no_js")


def test_no_report_yet(page, project, admin_user, login, shot):
    login(page, "admin")
    page.goto("/projects/demo-project/dashboard/")
    expect(page.get_by_test_id("no-report")).to_contain_text("No agreement statistics yet")
    expect(page.get_by_role("button", name="Compute now")).to_be_visible()
    expect(page.get_by_test_id("queue-empty")).to_be_visible()
    shot(page, "dashboard_no_report")


def test_an_admin_decides_queued_items_inline(page, project, admin_user, busy_project, login, shot):
    login(page, "admin")
    page.goto("/projects/demo-project/dashboard/#adjudication")
    assert_charts_drew(page)
    page.evaluate("() => { window.__noReload = true }")
    queue = page.locator("#adjudication")
    expect(queue.get_by_test_id("queue-count")).to_have_text("2")
    first = queue.locator(f"#adj-{busy_project['stage1'].pk}")
    expect(first).to_contain_text("Privacy violation 1")
    shot(page, "dashboard_queue")

    first.get_by_label("Privacy violation").check()
    with page.expect_response(lambda r: r.request.headers.get("hx-target") == "adjudication"):
        first.get_by_role("button", name="Unsafe: checked categories").click()
    expect(queue.get_by_role("status")).to_contain_text("decided: unsafe (Privacy violation)")
    expect(queue.get_by_test_id("queue-count")).to_have_text("1")

    # Stage 2: answer only one question; the browser asks for the other before anything is sent.
    pair = queue.locator(f"#adj-{busy_project['stage2'].pk}")
    pair.get_by_role("group", name="More helpful").get_by_label("Response B").check()
    pair.get_by_role("group", name="More harmless").get_by_label("Response A").check()
    pair.get_by_label(re.compile("Note on item")).fill("B explains why; A refuses safely")
    with page.expect_response(lambda r: r.request.headers.get("hx-target") == "adjudication"):
        pair.get_by_role("button", name="Decide").click()
    expect(queue.get_by_test_id("queue-empty")).to_be_visible()
    expect(queue.get_by_test_id("queue-count")).to_have_text("0")
    expect(queue.get_by_role("status")).to_contain_text("B more helpful, A more harmless")
    assert page.evaluate("() => window.__noReload") is True
    assert_charts_drew(page)  # the queue swap leaves the charts alone
    shot(page, "dashboard_queue_decided")
