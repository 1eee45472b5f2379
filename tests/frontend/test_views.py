"""The browser pages through Django's test client: who may open what, forms, imports, htmx partials."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotate.models import ImportRecord, Membership, Project, Prompt, QAPair, Role
from annotate.selectors import project_counts, projects_counts
from tests.factories import MembershipFactory, ProjectFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def client_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def list_url() -> str:
    return reverse("frontend:project-list")


def detail_url(slug: str = "demo-project") -> str:
    return reverse("frontend:project-detail", args=[slug])


def import_url(slug: str = "demo-project") -> str:
    return reverse("frontend:project-import", args=[slug])


def new_url() -> str:
    return reverse("frontend:project-new")


def jsonl(rows: list[dict], name: str = "data.jsonl") -> SimpleUploadedFile:
    body = "".join(json.dumps(row) + "\n" for row in rows).encode()
    return SimpleUploadedFile(name, body, content_type="application/jsonl")


GOOD_QA = [
    {"prompt": "How do I pick a lock?", "response": "I can't help you break in.", "source": "m1"},
    {"prompt": "How do I pick a lock?", "response": "Call a licensed locksmith.", "source": "m2"},
    {"prompt": "What is the capital of France?", "response": "Paris."},
]


# --- Anonymous users ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [list_url, detail_url, import_url, new_url])
def test_it_requires_login(project, url):
    response = client_for().get(url())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_login_page_renders_and_logs_in(worker):
    client = client_for()
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="username"' in page.content and b'autocomplete="current-password"' in page.content

    response = client.post(reverse("login"), {"username": "worker", "password": "Test-pass-123"})
    assert response.status_code == 302
    assert response["Location"] == list_url()


def test_login_shows_a_clear_error(worker):
    response = client_for().post(reverse("login"), {"username": "worker", "password": "wrong"})
    assert response.status_code == 200
    assert b"Could not log you in" in response.content
    assert b'role="alert"' in response.content
    assert b'aria-invalid="true"' in response.content


def test_logout_is_a_post_form(worker):
    client = client_for(worker)
    page = client.get(list_url()).content.decode()
    assert f'method="post" action="{reverse("logout")}"' in page
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(list_url()).status_code == 302  # logged out


# --- Layout ---------------------------------------------------------------------------------------


def test_base_layout_serves_htmx_from_static_and_sends_csrf(worker):
    page = client_for(worker).get(list_url()).content.decode()
    assert "/static/frontend/vendor/htmx.min.js" in page
    assert "unpkg.com" not in page and "cdn" not in page.lower()
    assert 'hx-headers=\'{"X-CSRFToken": "' in page
    assert 'class="skip-link" href="#main"' in page and 'id="main"' in page
    assert (
        'Signed in as <a href="/profile/" title="Your profile and API token"><strong>worker</strong></a>'
        in page
    )


def test_nav_links_follow_the_users_global_role(worker, admin_user):
    worker_page = client_for(worker).get(list_url()).content.decode()
    admin_page = client_for(admin_user).get(list_url()).content.decode()
    assert new_url() not in worker_page
    assert new_url() in admin_page


def test_static_files_are_served(live_server):
    import urllib.request

    for path in ("frontend/vendor/htmx.min.js", "frontend/css/app.css", "frontend/js/app.js"):
        with urllib.request.urlopen(f"{live_server.url}/static/{path}") as response:
            assert response.status == 200
            assert len(response.read()) > 500


# --- Project list ---------------------------------------------------------------------------------


def test_project_list_shows_role_and_counts_per_project(worker, researcher, project):
    QAPairFactory.create_batch(2, prompt__project=project)
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt__project=project))
    ProjectFactory(slug="not-mine")

    page = client_for(worker).get(list_url()).content.decode()
    assert "Demo project" in page and "not-mine" not in page
    assert 'badge--annotator">Annotator' in page
    assert '<td class="num">3</td>' in page  # prompts and QA pairs
    assert '<td class="num">1</td>' in page  # stage-1 items
    assert "Start labelling" in page
    assert import_url() not in page

    researcher_page = client_for(researcher).get(list_url()).content.decode()
    assert 'badge--researcher">Researcher' in researcher_page
    assert import_url() in researcher_page
    assert "Start labelling" not in researcher_page


def test_start_labelling_leads_to_the_stage_1_screen(worker):
    label_url = reverse("frontend:label", args=["demo-project", 1])
    page = client_for(worker).get(list_url()).content.decode()
    assert f'href="{label_url}"' in page
    assert client_for(worker).get(label_url).status_code == 200


def test_project_list_is_empty_for_an_outsider(outsider, project):
    page = client_for(outsider).get(list_url()).content.decode()
    assert "Demo project" not in page
    assert "You are not a member of any project" in page


def test_project_list_query_count_grows_with_neither_data_nor_projects(
    admin_user, project, django_assert_num_queries
):
    # session, user, projects, the counts (5 grouped queries), creator-group check (view and nav)
    client = client_for(admin_user)
    with django_assert_num_queries(10):
        assert client.get(list_url()).status_code == 200
    QAPairFactory.create_batch(5, prompt__project=project)
    for n in range(4):
        other = ProjectFactory(slug=f"more-{n}")
        MembershipFactory(project=other, user=admin_user, role=Role.ADMIN)
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt__project=other))
    with django_assert_num_queries(10):
        assert client.get(list_url()).status_code == 200


def test_the_grouped_counts_match_each_project(project, worker):
    other = ProjectFactory(slug="other")
    QAPairFactory.create_batch(3, prompt__project=project)
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt__project=other), is_gold=True)
    counts = projects_counts([project, other])
    assert counts[project.pk] == project_counts(project)
    assert counts[project.pk]["qa_pairs"] == 3 and counts[project.pk]["members"] == 1
    assert counts[other.pk] == {
        "prompts": 1,
        "qa_pairs": 1,
        "response_pairs": 0,
        "stage1_items": 1,
        "stage2_items": 0,
        "gold_items": 1,
        "members": 0,
    }


# --- Project detail -------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["worker", "admin_user", "researcher"])
def test_project_detail_renders_for_every_member(request, project, persona):
    user = request.getfixturevalue(persona)
    response = client_for(user).get(detail_url())
    assert response.status_code == 200
    page = response.content.decode()
    assert "Demo project" in page and 'id="counts"' in page and "Label the harm, not the words." in page


def test_it_requires_membership_for_project_pages(outsider, project):
    client = client_for(outsider)
    assert client.get(detail_url()).status_code == 404
    assert client.get(import_url()).status_code == 404
    assert client.get(detail_url("no-such-project")).status_code == 404


def test_project_detail_shows_members_by_role_to_admins_only(worker, second_worker, admin_user, researcher):
    admin_page = client_for(admin_user).get(detail_url()).content.decode()
    assert 'id="members"' in admin_page
    for name in ("worker", "second_worker", "admin", "researcher"):
        assert name in admin_page
    assert "Annotators <span" in admin_page

    for user in (worker, researcher):
        assert 'id="members"' not in client_for(user).get(detail_url()).content.decode()


def test_project_detail_labelling_section_is_for_labellers(worker, researcher):
    assert 'id="labelling"' in client_for(worker).get(detail_url()).content.decode()
    assert 'id="labelling"' not in client_for(researcher).get(detail_url()).content.decode()


def test_guidelines_markdown_is_rendered_and_sanitised(admin_user, project):
    project.guidelines = (
        "# Rules\n\n**Bold** and [a link](https://example.org).\n\n"
        "<script>alert('x')</script>\n\n<img src=x onerror=alert(1)>\n\n[bad](javascript:alert(1))"
    )
    project.save(update_fields=["guidelines"])
    page = client_for(admin_user).get(detail_url()).content.decode()
    assert "<h3>Rules</h3>" in page and "<strong>Bold</strong>" in page
    assert 'href="https://example.org"' in page
    assert "<script>alert" not in page and "onerror" not in page and "javascript:" not in page


def test_htmx_request_returns_just_the_partial(admin_user):
    response = client_for(admin_user).get(detail_url(), headers=HTMX)
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<section class="card" id="counts"')
    assert "<html" not in page and "Guidelines" not in page

    table = client_for(admin_user).get(list_url(), headers=HTMX).content.decode()
    assert table.lstrip().startswith('<div id="project-table">') and "<html" not in table


def test_a_boosted_htmx_navigation_gets_the_whole_page(admin_user):
    page = client_for(admin_user).get(detail_url(), headers={**HTMX, "HX-Boosted": "true"}).content.decode()
    assert "<html" in page and "Guidelines" in page


# --- New project ----------------------------------------------------------------------------------


def test_it_requires_a_creator_role_for_new_project(worker, outsider):
    for user in (worker, outsider):
        client = client_for(user)
        assert client.get(new_url()).status_code == 403
        assert client.post(new_url(), {"slug": "x", "name": "X"}).status_code == 403
    assert not Project.objects.filter(slug="x").exists()


@pytest.mark.parametrize("persona", ["admin_user", "researcher"])
def test_new_project_page_renders_for_creators(request, persona):
    response = client_for(request.getfixturevalue(persona)).get(new_url())
    assert response.status_code == 200
    page = response.content.decode()
    fields = ("slug", "name", "guidelines", "overlap_stage1", "overlap_stage2", "lease_seconds", "gold_rate")
    for field in fields:
        assert f'name="{field}"' in page
    assert 'value="600"' in page  # the model's default lease


def project_form(**overrides) -> dict:
    data = {
        "slug": "safety-v2",
        "name": "Safety v2",
        "guidelines": "# How to label\nJudge the answer, not the question.",
        "overlap_stage1": "3",
        "overlap_stage2": "2",
        "lease_seconds": "900",
        "gold_rate": "0.05",
        "gold_min_items": "5",
        "gold_accuracy_threshold": "0.7",
        "max_pairs_per_prompt": "",
    }
    data.update(overrides)
    return data


def test_creating_a_project_through_the_form_works(admin_user):
    client = client_for(admin_user)
    response = client.post(new_url(), project_form())
    assert response.status_code == 302
    assert response["Location"] == detail_url("safety-v2")

    project = Project.objects.get(slug="safety-v2")
    assert (project.name, project.overlap_stage1, project.overlap_stage2) == ("Safety v2", 3, 2)
    assert (project.lease_seconds, project.gold_rate, project.max_pairs_per_prompt) == (900, 0.05, None)
    assert project.created_by == admin_user
    assert Membership.objects.get(project=project, user=admin_user).role == Role.ADMIN

    page = client.get(response["Location"]).content.decode()
    assert "Safety v2" in page and "created" in page and "<h3>How to label</h3>" in page


def test_new_project_form_shows_field_errors(admin_user):
    form = project_form(slug="bad slug!", overlap_stage1="0", gold_rate="2")
    response = client_for(admin_user).post(new_url(), form)
    assert response.status_code == 200
    page = response.content.decode()
    assert "The project was not created" in page
    assert page.count('class="errorlist"') >= 3
    assert 'aria-invalid="true"' in page
    assert not Project.objects.filter(name="Safety v2").exists()


def test_new_project_form_shows_service_errors_on_the_field(admin_user, project):
    response = client_for(admin_user).post(new_url(), project_form(slug="demo-project"))
    assert response.status_code == 200
    assert "A project with slug &#x27;demo-project&#x27; already exists." in response.content.decode()
    assert Project.objects.filter(slug="demo-project").count() == 1


def test_new_project_refuses_a_slug_that_collides_with_a_page(admin_user):
    response = client_for(admin_user).post(new_url(), project_form(slug="new"))
    assert response.status_code == 200
    assert "reserved" in response.content.decode()
    assert not Project.objects.filter(slug="new").exists()


def test_new_project_over_htmx_swaps_the_form_or_redirects(admin_user):
    client = client_for(admin_user)
    invalid = client.post(new_url(), project_form(name=""), headers=HTMX)
    assert invalid.status_code == 200
    assert invalid.content.decode().lstrip().startswith('<form id="project-form"')
    assert b"<html" not in invalid.content

    created = client.post(new_url(), project_form(), headers=HTMX)
    assert created.status_code == 200
    assert created["HX-Redirect"] == detail_url("safety-v2")


# --- Import ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["admin_user", "researcher"])
def test_import_page_renders_for_data_roles(request, persona):
    response = client_for(request.getfixturevalue(persona)).get(import_url())
    assert response.status_code == 200
    page = response.content.decode()
    assert 'enctype="multipart/form-data"' in page and 'name="file"' in page
    for name in ("qa", "prompts", "beavertails", "pku-saferlhf"):
        assert f'<option value="{name}"' in page


def test_it_requires_a_data_role_for_import(worker):
    client = client_for(worker)
    forbidden = client.get(import_url())
    assert forbidden.status_code == 403
    assert "Your role in this project (annotator) does not allow this." in forbidden.content.decode()
    response = client.post(import_url(), {"format": "qa", "file": jsonl(GOOD_QA)})
    assert response.status_code == 403
    assert QAPair.objects.count() == 0


def test_uploading_a_bad_file_shows_inline_errors_and_stores_nothing(researcher, project):
    bad = (
        json.dumps({"prompt": "ok", "response": "fine"}) + "\n"
        + "{not json\n"
        + json.dumps({"prompt": "", "response": "empty prompt"}) + "\n"
        + json.dumps({"response": "no prompt"}) + "\n"
    ).encode()  # fmt: skip
    upload = SimpleUploadedFile("bad.jsonl", bad, content_type="application/jsonl")
    response = client_for(researcher).post(import_url(), {"format": "qa", "file": upload})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Import refused: nothing was stored" in page
    assert 'class="table table--compact table--errors"' in page
    assert "<td>2</td>" in page  # the invalid JSON line, in the line column
    assert Prompt.objects.filter(project=project).count() == 0
    assert QAPair.objects.filter(project=project).count() == 0
    # The refusal itself is kept in the history, with its problems one click away.
    assert 'badge--failed">Failed' in page and "bad.jsonl" in page


def test_a_good_upload_shows_counts(researcher, project):
    client = client_for(researcher)
    response = client.post(import_url(), {"format": "qa", "file": jsonl(GOOD_QA, "good.jsonl")})

    # Post/redirect/get: the result page is reachable by its own URL and a reload does not re-upload.
    assert response.status_code == 302
    record = ImportRecord.objects.get(project=project)
    assert response["Location"] == f"{import_url()}?record={record.pk}"
    page = client.get(response["Location"]).content.decode()
    assert "Imported good.jsonl" in page
    assert "<dt>QA pairs added</dt><dd>3</dd>" in page
    assert "<dt>Prompts added</dt><dd>2</dd>" in page
    assert QAPair.objects.filter(project=project).count() == 3
    assert 'id="import-history"' in page and "good.jsonl" in page


def test_reimporting_the_same_file_says_nothing_new(researcher, project):
    client = client_for(researcher)
    client.post(import_url(), {"format": "qa", "file": jsonl(GOOD_QA)})
    response = client.post(import_url(), {"format": "qa", "file": jsonl(GOOD_QA)}, follow=True)
    page = response.content.decode()
    assert "Nothing new: every row was already in this project." in page
    assert "<dt>Duplicates skipped</dt><dd>3</dd>" in page
    assert QAPair.objects.filter(project=project).count() == 3


def test_import_over_htmx_returns_the_panel_with_counts(admin_user, project):
    response = client_for(admin_user).post(
        import_url(), {"format": "qa", "file": jsonl(GOOD_QA)}, headers=HTMX
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="import-panel"')
    assert "<html" not in page
    assert "<dt>QA pairs added</dt><dd>3</dd>" in page


def test_bad_import_over_htmx_returns_the_panel_with_errors(admin_user, project):
    upload = SimpleUploadedFile("empty.jsonl", b"", content_type="application/jsonl")
    response = client_for(admin_user).post(import_url(), {"format": "qa", "file": upload}, headers=HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="import-panel"')
    assert "Import refused: nothing was stored" in page
    assert QAPair.objects.filter(project=project).count() == 0


def test_import_form_requires_a_file_and_a_known_format(admin_user, project):
    response = client_for(admin_user).post(import_url(), {"format": "xml"})
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count('class="errorlist"') == 2
    assert not ImportRecord.objects.filter(project=project, status=ImportRecord.Status.SUCCEEDED).exists()


def test_import_result_of_another_project_is_not_shown(admin_user, project):
    other = ProjectFactory(slug="other")
    record = ImportRecord.objects.create(
        project=other, filename="secret.jsonl", format="qa", status="succeeded", counts={"rows": 1}
    )
    page = client_for(admin_user).get(f"{import_url()}?record={record.pk}").content.decode()
    assert "secret.jsonl" not in page
    assert client_for(admin_user).get(f"{import_url()}?record=abc").status_code == 200
