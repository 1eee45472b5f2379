"""The admin dashboard through Django's test client: who may open it, how the stored report renders
(undefined values as n/a, never NaN), sorting, htmx partials and polling, the adjudication queue and
its decisions, the "no report yet" state, and the number of queries a page view costs."""

from __future__ import annotations

import datetime as dt
import json
import re
from html import unescape
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotate.categories import mask_from_keys
from annotate.models import Adjudication, AgreementReport, Stage1Label
from tests.factories import ProjectFactory, PromptFactory, QAPairFactory, Stage1WorkItemFactory
from tests.frontend.dashboard_payload import (
    empty_payload,
    make_labellers,
    make_report,
    queue_item_stage1,
    queue_item_stage2,
    sample_payload,
)

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def url(slug: str = "demo-project") -> str:
    return reverse("frontend:dashboard", args=[slug])


def client_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def htmx(target: str) -> dict[str, str]:
    return {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": target}


INLINE_TAG = re.compile(r"</?(?:strong|span|a|em|time)\b[^>]*>")


def text_of(html: str) -> str:
    """The page's text as a person reads it: inline tags dropped, block tags as spaces, entities decoded."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", INLINE_TAG.sub("", html)))).replace(
        "\u2009", " "
    )


def chart_island(html: str) -> dict:
    match = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "no chart data island"
    return json.loads(match.group(1))


# --- Who may open it ------------------------------------------------------------------------------


def test_it_requires_login(project):
    response = client_for().get(url())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_it_requires_admin_or_researcher(project, worker, outsider, admin_user, researcher):
    assert client_for(worker).get(url()).status_code == 403
    assert client_for(outsider).get(url()).status_code == 404
    assert client_for(admin_user).get(url()).status_code == 200
    assert client_for(researcher).get(url()).status_code == 200
    assert client_for(admin_user).get(url("no-such-project")).status_code == 404


def test_the_project_tabs_link_the_dashboard_for_admins_and_researchers_only(project, worker, researcher):
    detail = reverse("frontend:project-detail", args=[project.slug])
    assert url().encode() in client_for(researcher).get(detail).content
    assert url().encode() not in client_for(worker).get(detail).content


# --- No report yet --------------------------------------------------------------------------------


def test_without_a_report_it_says_so_and_offers_admins_compute_now(project, admin_user, researcher):
    page = client_for(admin_user).get(url()).content.decode()
    assert "No agreement statistics yet" in page
    assert reverse("frontend:dashboard-recompute", args=[project.slug]) in page
    assert "Compute now" in page
    assert 'id="dashboard-data"' not in page

    page = client_for(researcher).get(url()).content.decode()
    assert "No agreement statistics yet" in page
    assert "Compute now" not in page


# --- Rendering the stored report ------------------------------------------------------------------


def test_it_renders_the_stored_report(project, admin_user):
    make_report(project)
    response = client_for(admin_user).get(url())
    html = response.content.decode()
    text = text_of(html)
    assert response.status_code == 200
    # Computed at, and the alert at the top.
    assert "2026-11-29 22:10 UTC" in text
    assert "1 agreement figure below the alert threshold" in text
    assert "Stage 1 · Self-harm · alpha: 0.310 (n = 140; threshold 0.40)" in text
    # How to read the figures, with the sources of the bands.
    assert "alpha ≥ 0.800 is reliable" in text and "Landis & Koch (1977)" in text
    assert text.index("below the alert threshold") < text.index("Progress")
    assert "1 worker flagged on gold accuracy" in text
    assert "These statistics cover labels up to guideline version 3" in text  # the project is at version 1
    # Progress per stage.
    assert "Stage 1 · harm classification" in text and "1200 items" in text
    assert "Needs adjudication 20 (2%)" in text
    # The agreement table: every variable, formatted values, interval, percent agreement as a share.
    assert "Is safe" in text and "0.743" in text and "0.69 \u2013 0.79" in text
    assert "87.2%" in text  # percent agreement 0.8715
    for label in ("Animal abuse", "Violence, aiding and abetting, incitement", "Category set (MASI)"):
        assert label in text
    assert "More helpful (better)" in text and "More harmless (safer), free choices" in text
    # The headline safer figure leaves the forced pairs out, and says how many.
    assert "120 pairs (30%) left out: exactly one response is safe, so the answer was forced." in text
    # Gold and consensus.
    assert "81.0%" not in text and "0.810" in text  # a kappa is a number, not a share
    assert "Stage 1 · is safe 85.0% 90.0% 12" in text
    assert "Stage 2 · better 70.0% 75.0% 100 not converged" in text
    # Worker table.
    assert "alice" in text and "bob" in text and "Flagged" in text
    assert "14.0 s" in text and "91.0%" in text


def test_undefined_metrics_show_as_na_with_their_reason_never_nan(project, admin_user):
    make_report(project)
    html = client_for(admin_user).get(url()).content.decode()
    # The never-used category: alpha is 0/0, shown as n/a with the reason, percent agreement 100%.
    row = re.search(
        r"<tr[^>]*>\s*<th scope=\"row\">Animal abuse.*?</tr>",
        html,
        re.S,
    )
    assert row, "no row for animal abuse"
    assert 'title="no variation">n/a' in row.group(0)
    assert "100.0%" in row.group(0)
    # A worker without gold answers or timed labels.
    dave = re.search(r"<th scope=\"row\">dave</th>.*?</tr>", html, re.S)
    assert dave and dave.group(0).count(">n/a<") >= 4
    assert 'title="no gold answers yet"' in dave.group(0)
    for bad in ("NaN", "None", "nan%", "Infinity"):
        assert bad not in text_of(html), bad
    # The chart data keeps nulls as nulls.
    data = chart_island(html)
    assert data["alpha"]["labels"][2] == "Animal abuse"  # after is_safe and the category set
    assert data["alpha"]["values"][2] is None
    assert data["alpha"]["reasons"][2] == "no variation"
    assert data["by_day"]["is_safe"][2] is None


def test_an_empty_project_report_renders_without_errors(project, admin_user):
    make_report(project, empty_payload())
    html = client_for(admin_user).get(url()).content.decode()
    text = text_of(html)
    assert "No worker has labelled anything yet." in text
    assert "No labels in the last 24 hours." in text
    assert "below the alert threshold" not in text
    assert "NaN" not in html and "None" not in text
    assert "no value is available yet" in html  # the charts' text alternatives say so


def test_a_partial_payload_renders_with_gaps(project, admin_user):
    make_report(project, {"version": 1, "stage1": {"labels": 0}, "stage2": {"labels": 0}, "duration_ms": 1})
    response = client_for(admin_user).get(url())
    assert response.status_code == 200
    assert "not in this report" in response.content.decode()


def test_a_report_without_per_variable_consensus_shows_the_stage1_comparison(project, admin_user):
    payload = sample_payload()
    del payload["consensus"]["by_variable"]
    make_report(project, payload)
    text = text_of(client_for(admin_user).get(url()).content.decode())
    assert "Stage 1 · is safe 85.0% 90.0% \u2013" in text and "Stage 2 · better" not in text


def test_the_chart_data_island_follows_the_report(project, admin_user):
    make_report(project)
    data = chart_island(client_for(admin_user).get(url()).content.decode())
    assert data["threshold"] == project.agreement_alert_threshold
    assert len(data["alpha"]["labels"]) == 1 + 14 + 1 + 2
    assert data["alpha"]["values"][0] == 0.743
    assert data["alpha"]["low"][0] == pytest.approx(0.693)
    assert data["labels_per_hour"]["labels"][:2] == ["00:00", "01:00"]
    assert data["by_version"]["labels"] == ["v1", "v2", "v3"]
    assert data["by_day"]["labels"][0] == "2026-11-26"


def test_each_chart_has_a_text_alternative(project, admin_user):
    make_report(project)
    html = client_for(admin_user).get(url()).content.decode()
    canvases = re.findall(r"<canvas [^>]*>", html)
    assert len(canvases) == 4
    for canvas in canvases:
        assert 'role="img"' in canvas and 'aria-label="' in canvas
    assert "lowest Self-harm 0.31" in html


def test_the_latest_report_is_shown(project, admin_user):
    make_report(project, computed_at=dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC))
    make_report(project, computed_at=dt.datetime(2026, 11, 29, 22, 10, tzinfo=dt.UTC))
    text = text_of(client_for(admin_user).get(url()).content.decode())
    assert "2026-11-29 22:10 UTC" in text and "2026-11-28 09:00" not in text


# --- Worker table sorting -------------------------------------------------------------------------


def worker_order(html: str) -> list[str]:
    table = html[html.index('data-testid="workers"') :]
    return re.findall(r'<th scope="row">(\w+)</th>', table[: table.index("</table>")])


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("", ["bob", "alice", "carol", "dave"]),  # default: flagged first, then by name
        ("labels", ["dave", "bob", "carol", "alice"]),
        ("-labels", ["alice", "carol", "bob", "dave"]),
        ("gold", ["bob", "alice", "carol", "dave"]),  # no gold answers: last either way
        ("-gold", ["carol", "alice", "bob", "dave"]),
        ("loo", ["bob", "carol", "alice", "dave"]),
        ("-loo", ["alice", "carol", "bob", "dave"]),
        ("time", ["bob", "alice", "carol", "dave"]),
        ("-skip", ["bob", "carol", "alice", "dave"]),
        ("worker", ["alice", "bob", "carol", "dave"]),
        ("-worker", ["dave", "carol", "bob", "alice"]),
        ("bogus", ["bob", "alice", "carol", "dave"]),
    ],
)
def test_the_worker_table_sorts_server_side(project, admin_user, sort, expected):
    make_report(project)
    html = client_for(admin_user).get(url(), {"sort": sort} if sort else {}).content.decode()
    assert worker_order(html) == expected


def test_sort_links_and_aria_sort(project, admin_user):
    make_report(project)
    html = client_for(admin_user).get(url(), {"sort": "-labels"}).content.decode()
    header = re.search(
        r'<th scope="col"[^>]*aria-sort="descending">\s*<a class="sort-link" href="([^"]+)"', html
    )
    assert header and "sort=labels" in header.group(1)  # clicking again flips the order
    assert html.count("aria-sort=") == 1
    assert (
        'href="/projects/demo-project/dashboard/?sort=gold#worker-table"' in html
    )  # first click: worst first
    assert 'href="/projects/demo-project/dashboard/?sort=-skip#worker-table"' in html  # most skips first
    assert '<th scope="colgroup" colspan="3" class="group-head">Agreement with the other workers</th>' in html


def test_htmx_sort_swaps_only_the_worker_table(project, admin_user):
    make_report(project)
    response = client_for(admin_user).get(url(), {"sort": "worker"}, **htmx("worker-table"))
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="dash-section card" id="worker-table"')
    assert "<html" not in html and "Progress" not in html
    assert worker_order(html) == ["alice", "bob", "carol", "dave"]
    assert 'name="sort" value="worker"' in html


def test_many_workers_are_paged(project, admin_user):
    payload = sample_payload()
    template = payload["workers"][0]
    payload["workers"] = [{**template, "worker_id": i, "username": f"w{i:03d}"} for i in range(120)]
    make_report(project, payload)
    html = client_for(admin_user).get(url(), {"sort": "worker", "workers_page": 3}).content.decode()
    assert worker_order(html) == [f"w{i:03d}" for i in range(100, 120)]
    assert "Page 3 of 3" in html


# --- Polling --------------------------------------------------------------------------------------


def test_polling_returns_204_while_the_stored_report_is_unchanged(project, admin_user):
    report = make_report(project)
    client = client_for(admin_user)
    page = client.get(url()).content.decode()
    assert 'hx-trigger="every 30s"' in page
    assert f"?report={report.pk}" in page

    unchanged = client.get(url(), {"report": report.pk, "sort": "labels"}, **htmx("report"))
    assert unchanged.status_code == 204 and unchanged.content == b""

    newer = make_report(project, computed_at=dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC))
    swapped = client.get(url(), {"report": report.pk, "sort": "labels"}, **htmx("report"))
    html = swapped.content.decode()
    assert swapped.status_code == 200
    assert html.lstrip().startswith('<div id="report"')
    assert f"?report={newer.pk}" in html
    assert worker_order(html) == ["dave", "bob", "carol", "alice"]  # the sort survives the swap
    assert "Adjudication queue" not in html


def test_polling_without_a_report_waits_for_the_first_one(project, researcher):
    client = client_for(researcher)
    assert client.get(url(), {"report": ""}, **htmx("report")).status_code == 204
    make_report(project)
    assert "Agreement per variable" in client.get(url(), {"report": ""}, **htmx("report")).content.decode()


# --- Query count ----------------------------------------------------------------------------------


@pytest.fixture
def labellers(db):
    return make_labellers(4)


def test_a_page_view_reads_one_report_and_one_queue_page(project, admin_user, labellers):
    make_report(project)
    for _ in range(2):
        queue_item_stage1(project, [0, 1 << 10], labellers)
        queue_item_stage2(project, [(0, 1), (1, 0)], labellers)
    client = client_for(admin_user)
    client.get(url())  # warm the session

    with CaptureQueriesContext(connection) as small:
        assert client.get(url()).status_code == 200

    # A bigger project (more queued items of both stages, more labels, older reports) costs the same.
    for _ in range(30):
        queue_item_stage1(project, [0, 1 << 3, 1 << 5], labellers)
        queue_item_stage2(project, [(0, 0), (1, 1)], labellers)
    for day in range(5):
        make_report(project, computed_at=dt.datetime(2026, 11, 20 + day, tzinfo=dt.UTC))
    with CaptureQueriesContext(connection) as big:
        assert client.get(url()).status_code == 200
    # session, user, project + role, can-create-projects (nav), the report, the queue's count, its
    # page (items with their texts), the page's labels (stage 1, stage 2), the responses' known safety.
    assert len(small) <= 10, "\n".join(q["sql"] for q in small.captured_queries)
    assert len(big) <= len(small), "\n".join(q["sql"] for q in big.captured_queries)
    sql = "\n".join(q["sql"] for q in big.captured_queries)
    assert sql.count('FROM "annotate_agreementreport"') == 1
    assert "LIMIT 10" in sql  # one page of the queue
    assert sql.count('FROM "annotate_workitem"') == 2  # its count and its page, nothing else
    # Labels are read only for the page's items, by id.
    for query in big.captured_queries:
        if 'FROM "annotate_stage1label"' in query["sql"] or 'FROM "annotate_stage2label"' in query["sql"]:
            assert " IN (" in query["sql"]


def test_partials_read_only_what_they_show(project, admin_user, labellers):
    make_report(project)
    queue_item_stage1(project, [0, 1], labellers)
    client = client_for(admin_user)
    client.get(url())
    with CaptureQueriesContext(connection) as table:
        client.get(url(), {"sort": "gold"}, **htmx("worker-table"))
    assert not any("annotate_workitem" in q["sql"] for q in table.captured_queries)
    with CaptureQueriesContext(connection) as queue:
        client.get(url(), **htmx("adjudication"))
    assert not any("annotate_agreementreport" in q["sql"] for q in queue.captured_queries)


# --- The adjudication queue -----------------------------------------------------------------------


def test_the_queue_lists_items_with_vote_counts(project, admin_user, labellers):
    violence = mask_from_keys(["violence,aiding_and_abetting,incitement"])
    privacy = mask_from_keys(["privacy_violation"])
    queue_item_stage1(project, [0, violence, violence | privacy], labellers)
    queue_item_stage2(project, [(0, 1), (1, 1), (1, 0), (0, 0)], labellers)
    html = client_for(admin_user).get(url()).content.decode()
    queue = text_of(html[html.index('id="adjudication"') :])
    assert "Adjudication queue 2" in queue
    assert "Safe 1" in queue
    assert "Violence, aiding and abetting, incitement 2" in queue
    assert "Privacy violation 1" in queue
    assert "More helpful: A 2 · B 2; more harmless: A 2 · B 2" in queue
    assert "Answer A" in queue and "Answer B" in queue
    assert "Unsafe: checked categories" in queue


def test_researchers_see_the_queue_without_decision_forms(project, researcher, labellers):
    queue_item_stage1(project, [0, 1], labellers)
    html = client_for(researcher).get(url()).content.decode()
    assert 'data-testid="queue-item"' in html
    assert "Unsafe: checked categories" not in html and "Admins decide these." in html


def test_the_queue_filters_by_stage_and_pages(project, admin_user, labellers):
    for _ in range(12):
        queue_item_stage1(project, [0, 1], labellers)
    queue_item_stage2(project, [(0, 1), (1, 0)], labellers)
    client = client_for(admin_user)
    html = client.get(url(), {"queue_stage": 2}, **htmx("adjudication")).content.decode()
    assert html.lstrip().startswith('<section class="dash-section card" id="adjudication"')
    assert html.count('data-testid="queue-item"') == 1 and "Stage 2 · response pair" in html
    html = client.get(url(), {"queue_stage": 1, "queue_page": 2}).content.decode()
    assert html.count('data-testid="queue-item"') == 2 and "Page 2 of 2" in html


def test_the_queue_is_empty_when_nothing_is_queued(project, admin_user):
    item = Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    assert not item.needs_adjudication
    html = client_for(admin_user).get(url()).content.decode()
    assert 'data-testid="queue-empty"' in html


# --- Deciding queued items ------------------------------------------------------------------------


def decide_url(item) -> str:
    return reverse("frontend:dashboard-adjudicate", args=["demo-project", item.pk])


def test_an_admin_decides_a_stage1_item_with_htmx(project, admin_user, labellers):
    item = queue_item_stage1(project, [0, mask_from_keys(["self_harm"])], labellers)
    other = queue_item_stage1(project, [0, 1], labellers)
    response = client_for(admin_user).post(
        decide_url(item),
        {
            "categories": ["self_harm", "violence,aiding_and_abetting,incitement"],
            "decision": "unsafe",
            "note": " ties ",
        },
        **htmx("adjudication"),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section class="dash-section card" id="adjudication"')
    assert f"Item #{item.pk} decided: unsafe (Self-harm, Violence, aiding and abetting, incitement)." in html
    assert f'id="adj-{item.pk}"' not in html and f'id="adj-{other.pk}"' in html  # the queue moved on
    item.refresh_from_db()
    assert item.settled_at is not None
    assert item.consensus_categories == mask_from_keys(
        ["self_harm", "violence,aiding_and_abetting,incitement"]
    )
    assert item.consensus_safe is False
    decision = Adjudication.objects.get(work_item=item)
    assert decision.decided_by == admin_user and decision.note == "ties"
    assert Stage1Label.objects.filter(qa_pair=item.qa_pair).count() == 2  # the workers' labels are kept


def test_an_admin_decides_safe(project, admin_user, labellers):
    item = queue_item_stage1(project, [0, 1], labellers)
    client_for(admin_user).post(decide_url(item), {"decision": "safe"}, **htmx("adjudication"))
    item.refresh_from_db()
    assert item.consensus_safe is True and item.consensus_categories == 0


def test_an_admin_decides_a_stage2_item_without_javascript(project, admin_user, labellers):
    item = queue_item_stage2(project, [(0, 1), (1, 0)], labellers)
    client = client_for(admin_user)
    form = {
        "better": "1",
        "safer": "0",
        "decision": "rank",
        "queue_stage": "2",
        "queue_page": "1",
        "sort": "gold",
    }
    response = client.post(decide_url(item), form)
    assert response.status_code == 302
    assert response["Location"] == url() + "?sort=gold&queue_stage=2&queue_page=1#adjudication"
    item.refresh_from_db()
    assert (item.consensus_better, item.consensus_safer) == (1, 0)
    page = client.get(response["Location"])  # the message shows after the redirect
    assert f"Item #{item.pk} decided: B more helpful, A more harmless." in page.content.decode()


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"decision": "unsafe"}, "Tick at least one harm category"),
        ({"decision": "safe", "categories": ["self_harm"]}, "untick them"),
        ({"decision": "unsafe", "categories": ["not_a_category"]}, "unknown harm category"),
    ],
)
def test_a_bad_stage1_decision_is_explained_and_changes_nothing(
    project, admin_user, labellers, form, message
):
    item = queue_item_stage1(project, [0, 1], labellers)
    response = client_for(admin_user).post(decide_url(item), form, **htmx("adjudication"))
    html = response.content.decode()
    assert response.status_code == 200 and 'role="alert"' in html and message in unescape(html)
    assert f'id="adj-{item.pk}"' in html
    item.refresh_from_db()
    assert item.settled_at is None and not Adjudication.objects.filter(work_item=item).exists()


def test_after_a_decision_the_queue_keeps_its_filter_and_the_page_its_sort(project, admin_user, labellers):
    items = [queue_item_stage2(project, [(0, 1), (1, 0)], labellers) for _ in range(12)]
    queue_item_stage1(project, [0, 1], labellers)
    client = client_for(admin_user)
    page = client.get(url(), {"sort": "gold", "queue_stage": "2"}).content.decode()
    assert '<input type="hidden" name="sort" value="gold">' in page
    form = {"better": "0", "safer": "1", "queue_stage": "2", "queue_page": "1", "sort": "gold"}
    html = client.post(decide_url(items[0]), form, **htmx("adjudication")).content.decode()
    assert html.count('data-testid="queue-item"') == 10 and "Stage 1 · QA pair" not in html
    assert "Page 1 of 2" in html
    assert (
        'href="/projects/demo-project/dashboard/?sort=gold&amp;queue_stage=2&amp;queue_page=2#adjudication"'
        in html
    )


def test_a_stage2_decision_must_answer_both_questions(project, admin_user, labellers):
    item = queue_item_stage2(project, [(0, 1), (1, 0)], labellers)
    html = (
        client_for(admin_user)
        .post(decide_url(item), {"better": "0"}, **htmx("adjudication"))
        .content.decode()
    )
    assert "Choose which response is more harmless." in html
    item.refresh_from_db()
    assert item.settled_at is None


def test_a_decided_item_cannot_be_decided_again(project, admin_user, labellers):
    item = queue_item_stage1(project, [0, 1], labellers)
    client = client_for(admin_user)
    client.post(decide_url(item), {"decision": "safe"}, **htmx("adjudication"))
    html = client.post(decide_url(item), {"decision": "safe"}, **htmx("adjudication")).content.decode()
    assert "already settled" in html
    assert Adjudication.objects.filter(work_item=item).count() == 1


def test_deciding_requires_admin(project, worker, researcher, outsider, labellers):
    item = queue_item_stage1(project, [0, 1], labellers)
    assert client_for().post(decide_url(item), {"decision": "safe"}).status_code == 302
    assert client_for(worker).post(decide_url(item), {"decision": "safe"}).status_code == 403
    assert client_for(researcher).post(decide_url(item), {"decision": "safe"}).status_code == 403
    assert client_for(outsider).post(decide_url(item), {"decision": "safe"}).status_code == 404
    item.refresh_from_db()
    assert item.settled_at is None


def test_an_item_of_another_project_is_not_found(project, admin_user, labellers):
    other = ProjectFactory()
    item = queue_item_stage1(other, [0, 1], labellers)
    assert client_for(admin_user).post(decide_url(item), {"decision": "safe"}).status_code == 404


def test_deciding_only_posts(project, admin_user, labellers):
    item = queue_item_stage1(project, [0, 1], labellers)
    assert client_for(admin_user).get(decide_url(item)).status_code == 405


# --- Compute now ----------------------------------------------------------------------------------


def recompute_url() -> str:
    return reverse("frontend:dashboard-recompute", args=["demo-project"])


def test_compute_now_enqueues_the_task_after_commit(project, admin_user, django_capture_on_commit_callbacks):
    cache.clear()  # the request is debounced per project through the cache
    client = client_for(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(recompute_url(), **htmx("report"))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="report"')
    assert "Recomputation queued." in html and 'hx-trigger="every 5s"' in html
    assert len(callbacks) == 1  # the task is sent when the transaction commits, never run inline
    assert not AgreementReport.objects.filter(project=project).exists()
    with mock.patch("annotate.tasks.recompute_agreement.delay") as delay:
        callbacks[0]()
    delay.assert_called_once_with(project.pk)

    with django_capture_on_commit_callbacks(execute=False) as again:
        html = client.post(recompute_url(), **htmx("report")).content.decode()
    assert "queued a moment ago" in html and not again


def test_compute_now_without_javascript_redirects(project, admin_user, django_capture_on_commit_callbacks):
    cache.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(admin_user).post(recompute_url())
    assert response.status_code == 302 and response["Location"] == url()
    assert len(callbacks) == 1


def test_compute_now_requires_admin(project, researcher, worker, outsider):
    assert client_for(researcher).post(recompute_url()).status_code == 403
    assert client_for(worker).post(recompute_url()).status_code == 403
    assert client_for(outsider).post(recompute_url()).status_code == 404
    assert client_for(researcher).get(recompute_url()).status_code == 405


# --- A real computed report -----------------------------------------------------------------------


def test_it_renders_a_report_computed_by_the_backend(project, admin_user, labellers):
    """The payload contract end to end: the backend's own computation, rendered by the dashboard."""
    from annotate.agreement_report import agreement_report_compute

    violence = mask_from_keys(["violence,aiding_and_abetting,incitement"])
    for masks in ([0, 0, 0], [violence, violence, 0], [violence, violence, violence], [0, violence, 0]):
        queue_item_stage1(project, masks, labellers)
    agreement_report_compute(project=project)
    html = client_for(admin_user).get(url()).content.decode()
    text = text_of(html)
    assert "Agreement per variable" in text and "labeller0" in text
    for bad in ("NaN", "None", "Infinity", "not in this report"):
        assert bad not in text, bad
    data = chart_island(html)
    assert len(data["alpha"]["values"]) == 18
    assert data["alpha"]["values"][0] is not None  # is_safe alpha over four items


def test_a_deep_queue_page_shows_its_own_items_and_reads_only_them(project, admin_user, labellers):
    made = [queue_item_stage1(project, [0, 1], labellers) for _ in range(25)]
    client = client_for(admin_user)
    client.get(url())  # warm the session
    with CaptureQueriesContext(connection) as first:
        html = client.get(url(), {"queue_page": 1}, **htmx("adjudication")).content.decode()
    assert re.findall(r'id="adj-(\d+)"', html) == [str(item.pk) for item in made[:10]]
    with CaptureQueriesContext(connection) as third:
        html = client.get(url(), {"queue_page": 3}, **htmx("adjudication")).content.decode()
    assert re.findall(r'id="adj-(\d+)"', html) == [str(item.pk) for item in made[20:25]]
    assert "Page 3 of 3" in text_of(html)
    # The page's own rows, by OFFSET and LIMIT; never the pages before it.
    page_sql = [q["sql"] for q in third.captured_queries if 'FROM "annotate_workitem"' in q["sql"]]
    assert any("LIMIT 5 OFFSET 20" in sql for sql in page_sql), page_sql
    assert not any("LIMIT 25" in sql for sql in page_sql), page_sql
    assert len(third) <= len(first)
