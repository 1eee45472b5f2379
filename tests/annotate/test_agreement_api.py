"""GET /projects/{slug}/agreement/ and GET/POST /projects/{slug}/adjudications/, and who may call them."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from annotate import tasks
from annotate.agreement_report import agreement_report_compute
from annotate.models import Adjudication, AgreementReport, WorkItem
from tests.annotate.labelled_project import SELF_HARM, build
from tests.factories import ProjectFactory, PromptFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.django_db

AGREEMENT = "/api/v1/projects/demo-project/agreement/"
ADJUDICATIONS = "/api/v1/projects/demo-project/adjudications/"


@pytest.fixture(autouse=True)
def _fresh_debounce():
    cache.clear()  # recompute requests are debounced per project through the cache
    yield
    cache.clear()


@pytest.fixture
def queued(monkeypatch):
    """The project ids recompute_agreement was sent for (instead of a broker)."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.recompute_agreement, "delay", lambda project_id: sent.append(project_id))
    return sent


@pytest.fixture
def labelled(project):
    return build(project)


# --------------------------------------------------------------------------------------------------
# Agreement


def test_it_serves_the_stored_report(api, admin_user, project, queued):
    report = agreement_report_compute(project=project)
    response = api(admin_user).get(AGREEMENT)
    assert response.status_code == 200
    body = response.json()
    assert body["payload"] == report.payload
    assert body["stage1_labels"] == 0 and body["duration_ms"] == report.duration_ms
    assert body["computed_at"].startswith(report.computed_at.strftime("%Y-%m-%dT%H:%M"))
    assert queued == []


def test_researchers_read_it_too(api, researcher, project):
    agreement_report_compute(project=project)
    assert api(researcher).get(AGREEMENT).status_code == 200


def test_the_latest_report_is_served(api, admin_user, project):
    agreement_report_compute(project=project)
    newest = agreement_report_compute(project=project)
    assert (
        api(admin_user)
        .get(AGREEMENT)
        .json()["computed_at"]
        .startswith(newest.computed_at.strftime("%Y-%m-%dT%H:%M:%S"))
    )


def test_with_no_report_yet_it_queues_one_and_answers_202(
    api, researcher, project, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(researcher).get(AGREEMENT)
    assert response.status_code == 202
    assert response.json() == {
        "detail": "Agreement statistics are being computed",
        "queued": True,
        "latest": None,
    }
    assert queued == [project.pk]
    assert not AgreementReport.objects.exists()  # the view never computes
    with django_capture_on_commit_callbacks(execute=True):
        again = api(researcher).get(AGREEMENT)
    assert again.status_code == 202 and again.json()["queued"] is False
    assert queued == [project.pk]  # debounced


def test_refresh_queues_a_recompute_for_admins(
    api, admin_user, project, queued, django_capture_on_commit_callbacks
):
    report = agreement_report_compute(project=project)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin_user).get(AGREEMENT + "?refresh=1")
    assert response.status_code == 202
    body = response.json()
    assert body["detail"] == "Agreement statistics are being recomputed" and body["queued"] is True
    assert body["latest"]["payload"] == report.payload
    assert queued == [project.pk]


def test_refresh_is_for_admins_only(api, researcher, project, queued):
    agreement_report_compute(project=project)
    assert api(researcher).get(AGREEMENT + "?refresh=1").status_code == 403
    assert queued == []


def test_it_requires_an_admin_or_researcher(api, worker, project):
    assert api(worker).get(AGREEMENT).status_code == 403


def test_it_requires_a_member(api, outsider, project):
    assert api(outsider).get(AGREEMENT).status_code == 404


def test_it_requires_authentication(api, project):
    assert api().get(AGREEMENT).status_code == 401


def test_it_requires_an_existing_project(api, admin_user):
    assert api(admin_user).get("/api/v1/projects/nope/agreement/").status_code == 404


def test_serving_is_a_fixed_number_of_queries(api, admin_user, project, django_assert_max_num_queries):
    agreement_report_compute(project=project)
    client = api(admin_user)
    # Token, project with the role, latest report.
    with django_assert_max_num_queries(3):
        assert client.get(AGREEMENT).status_code == 200


# --------------------------------------------------------------------------------------------------
# Adjudications


def test_the_queue_lists_items_with_what_they_show_and_their_votes(api, admin_user, labelled):
    response = api(admin_user).get(ADJUDICATIONS)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    (case,) = body["results"]
    i8 = labelled.items["i8"]
    assert case["work_item"] == WorkItem.objects.get(qa_pair=i8).pk
    assert case["stage"] == 1 and case["is_gold"] is False
    assert case["prompt"] == i8.prompt.text and case["response"] == i8.response
    assert case["votes"]["is_safe"] == {"safe": 1, "unsafe": 2}
    assert api(admin_user).get(ADJUDICATIONS + "?stage=2").json() == {"count": 0, "results": []}
    assert api(admin_user).get(ADJUDICATIONS + "?stage=3").status_code == 400


def test_an_admin_decides_an_item(api, admin_user, labelled):
    item = WorkItem.objects.get(qa_pair=labelled.items["i8"])
    response = api(admin_user).post(
        ADJUDICATIONS,
        {"work_item": item.pk, "categories": [SELF_HARM], "note": "clearly self-harm"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["work_item"] == item.pk and body["decided_by"] == "admin"
    assert body["categories"] == [SELF_HARM] and body["is_safe"] is False
    assert body["better_response_id"] is None and body["note"] == "clearly self-harm"
    item.refresh_from_db()
    assert item.settled_at is not None and item.consensus_categories == 1 << 10
    assert api(admin_user).get(ADJUDICATIONS).json()["count"] == 0


def test_a_bad_decision_is_a_400_and_stores_nothing(api, admin_user, labelled):
    item = WorkItem.objects.get(qa_pair=labelled.items["i8"])
    client = api(admin_user)
    response = client.post(ADJUDICATIONS, {"work_item": item.pk, "categories": ["nope"]}, format="json")
    assert response.status_code == 400 and "nope" in str(response.json())
    response = client.post(
        ADJUDICATIONS, {"work_item": item.pk, "better_response_id": 0, "safer_response_id": 0}, format="json"
    )
    assert response.status_code == 400
    settled = WorkItem.objects.get(qa_pair=labelled.items["i1"])
    response = client.post(ADJUDICATIONS, {"work_item": settled.pk, "categories": []}, format="json")
    assert response.status_code == 400 and "already settled" in str(response.json())
    assert client.post(ADJUDICATIONS, {"categories": []}, format="json").status_code == 400
    assert not Adjudication.objects.exists()


def test_another_projects_item_is_a_404(api, admin_user, project):
    other = ProjectFactory()
    item = Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=other)))
    response = api(admin_user).post(ADJUDICATIONS, {"work_item": item.pk, "categories": []}, format="json")
    assert response.status_code == 404


@pytest.mark.parametrize("method", ["get", "post"])
def test_adjudication_requires_an_admin(api, worker, researcher, project, method):
    for user in (worker, researcher):
        response = getattr(api(user), method)(
            ADJUDICATIONS, {"work_item": 1, "categories": []}, format="json"
        )
        assert response.status_code == 403


@pytest.mark.parametrize("method", ["get", "post"])
def test_adjudication_requires_a_member(api, outsider, project, method):
    assert getattr(api(outsider), method)(ADJUDICATIONS, {}, format="json").status_code == 404


@pytest.mark.parametrize("method", ["get", "post"])
def test_adjudication_requires_authentication(api, project, method):
    assert getattr(api(), method)(ADJUDICATIONS, {}, format="json").status_code == 401


def test_the_schema_documents_both_endpoints(api, admin_user):
    schema = api(admin_user).get("/api/v1/schema/?format=json").json()
    assert "/api/v1/projects/{slug}/agreement/" in schema["paths"]
    assert "post" in schema["paths"]["/api/v1/projects/{slug}/adjudications/"]
