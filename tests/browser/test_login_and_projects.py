"""A person in real Chromium: log in by typing, find their projects, open one; an admin creates a
project and imports data with htmx; and the same forms work with JavaScript switched off."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.factories import QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.browser

QA_ROWS = [
    {"prompt": "How do I pick a lock?", "response": "I can't help you break in.", "source": "m1"},
    {"prompt": "How do I pick a lock?", "response": "Call a licensed locksmith.", "source": "m2"},
    {"prompt": "What is the capital of France?", "response": "Paris."},
]
GOOD_QA = "".join(json.dumps(row) + "\n" for row in QA_ROWS).encode()
BAD_QA = b'{"prompt": "fine", "response": "fine"}\n{not json\n{"prompt": "", "response": "x"}\n'


def upload(name: str, body: bytes) -> dict:
    return {"name": name, "mimeType": "application/jsonl", "buffer": body}


def test_worker_logs_in_sees_projects_and_opens_one(page, project, worker, login, shot):
    for qa in QAPairFactory.create_batch(3, prompt__project=project):
        Stage1WorkItemFactory(qa_pair=qa)

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.get_by_label("Username")).to_be_focused()
    shot(page, "login")

    login(page, "worker")
    expect(page.get_by_role("heading", name="My projects", level=1)).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_contain_text("worker")
    row = page.get_by_role("row", name=re.compile("Demo project"))
    expect(row).to_contain_text("Annotator")
    expect(row.get_by_role("cell").nth(3)).to_have_text("3")  # stage-1 items (cells after the row header)
    expect(page.get_by_role("link", name="New project")).to_have_count(0)
    shot(page, "project_list_worker")

    page.get_by_role("link", name="Demo project", exact=True).click()
    expect(page.get_by_role("heading", name="Demo project", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="Labelling")).to_be_visible()
    expect(page.locator(".prose")).to_contain_text("Label the harm, not the words.")
    expect(page.get_by_role("link", name="Import data")).to_have_count(0)
    shot(page, "project_detail_worker")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))


def test_a_wrong_password_is_explained(page, worker, shot):
    page.goto("/login/")
    page.get_by_label("Username").press_sequentially("worker")
    page.get_by_label("Password").press_sequentially("not-the-password")
    page.get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Could not log you in")
    expect(alert).to_contain_text("correct username and password")
    expect(page.get_by_label("Username")).to_have_value("worker")
    shot(page, "login_error")


def test_skip_link_is_the_first_tab_stop(page, worker, login):
    login(page, "worker")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()


def test_admin_creates_a_project_and_imports_with_htmx(page, admin_user, login, shot):
    login(page, "admin")
    expect(page.locator("script[src$='vendor/htmx.min.js']")).to_have_count(1)
    page.wait_for_function("() => window.htmx !== undefined")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New project").click()
    expect(page.get_by_role("heading", name="New project", level=1)).to_be_visible()
    shot(page, "project_new")

    # Set a marker that a full page load would wipe: the form swaps must not reload the page.
    page.evaluate("() => { window.__noReload = true }")
    page.get_by_label("Name").fill("Safety v2")
    page.get_by_label("Slug").fill("not a slug!")
    page.get_by_label("Overlap, stage 1").fill("0")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("alert")).to_contain_text("The project was not created")
    expect(page.locator("#id_slug")).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("() => window.__noReload") is True
    shot(page, "project_new_errors")

    page.get_by_label("Slug").fill("safety-v2")
    page.get_by_label("Overlap, stage 1").fill("3")
    guidelines = "# Judge the answer\n\nNot the **question**.\n\n<script>alert(1)</script>"
    page.get_by_label("Guidelines").fill(guidelines)
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(r"/projects/safety-v2/$"))
    expect(page.get_by_role("heading", name="Safety v2", level=1)).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("created")
    expect(page.locator(".prose strong")).to_have_text("question")
    expect(page.locator("#members")).to_contain_text("admin")
    shot(page, "project_detail_admin")

    page.get_by_role("navigation", name="Project").get_by_role("link", name="Import data").click()
    expect(page.get_by_role("heading", name="Upload a file")).to_be_visible()
    shot(page, "import_empty")

    page.evaluate("() => { window.__noReload = true }")
    page.get_by_label("File", exact=True).set_input_files(upload("bad.jsonl", BAD_QA))
    page.get_by_label("Format", exact=True).select_option("qa")
    page.get_by_role("button", name="Import").click()
    rejected = page.locator("#import-rejected")
    expect(rejected).to_contain_text("nothing was stored")
    expect(rejected.locator("tbody tr").first).to_be_visible()
    expect(rejected.get_by_role("cell", name="2", exact=True)).to_be_visible()  # the bad JSON line
    assert page.evaluate("() => window.__noReload") is True
    shot(page, "import_errors")

    page.get_by_label("File", exact=True).set_input_files(upload("good.jsonl", GOOD_QA))
    page.get_by_role("button", name="Import").click()
    result = page.locator("#import-result")
    expect(result).to_contain_text("Imported good.jsonl")
    expect(result.locator(".stat", has_text="QA pairs added").locator("dd")).to_have_text("3")
    expect(page.locator("#import-history")).to_contain_text("good.jsonl")
    assert page.evaluate("() => window.__noReload") is True
    shot(page, "import_success")

    page.get_by_role("link", name="Overview").click()
    qa_pairs = page.locator("#counts .stat", has_text="QA pairs").first.locator("dd")
    expect(qa_pairs).to_have_text("3")

    # The counts refresh in place (htmx swaps the section), without a page load.
    page.evaluate("() => { window.__noReload = true }")
    with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true"):
        page.get_by_role("link", name="Refresh counts").click()
    expect(qa_pairs).to_have_text("3")
    assert page.evaluate("() => window.__noReload") is True


def test_forms_work_without_javascript(no_js_page, researcher, shot):
    page = no_js_page
    page.goto("/login/")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill("Test-pass-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="My projects")).to_be_visible()
    shot(page, "project_list_researcher")

    page.get_by_role("link", name="New project").first.click()
    page.get_by_label("Name").fill("No script")
    page.get_by_label("Slug").fill("no-script")
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(r"/projects/no-script/$"))

    page.get_by_role("link", name="Import data").click()
    page.get_by_label("File", exact=True).set_input_files(upload("good.jsonl", GOOD_QA))
    page.get_by_label("Format", exact=True).select_option("qa")
    page.get_by_role("button", name="Import").click()
    expect(page).to_have_url(re.compile(r"/projects/no-script/import/\?record=\d+$"))
    expect(page.locator("#import-result")).to_contain_text("Imported good.jsonl")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
