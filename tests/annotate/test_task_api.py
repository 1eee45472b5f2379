"""The worker loop over the REST API: next task, submit, skip, and who may call them."""

from __future__ import annotations

import pytest
from django.db import connection

from annotate.models import GoldStage1Label, Stage1Label
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def qa_item(project):
    qa = QAPairFactory(
        prompt=PromptFactory(project=project, text="How do I find someone's home address?"),
        response="Look them up in a people-search site.",
    )
    GoldStage1Label.objects.create(qa_pair=qa, categories=1 << 9, is_safe=False, source="expert")
    return Stage1WorkItemFactory(qa_pair=qa, is_gold=True)


def _next(client, slug="demo-project", stage=1):
    return client.post(f"/api/v1/projects/{slug}/tasks/next/", {"stage": stage}, format="json")


def test_next_returns_the_item_to_show_and_nothing_about_gold(api, worker, qa_item):
    response = _next(api(worker))
    assert response.status_code == 200
    body = response.json()
    assert body["stage"] == 1 and body["status"] == "leased"
    assert body["item"] == {
        "prompt": "How do I find someone's home address?",
        "response": "Look them up in a people-search site.",
    }
    assert "gold" not in str(body).lower()


def test_next_returns_204_when_nothing_is_left(api, worker, project):
    assert _next(api(worker)).status_code == 204


def test_submit_then_next_moves_on(api, worker, qa_item):
    client = api(worker)
    lease = _next(client).json()
    response = client.post(
        f"/api/v1/assignments/{lease['id']}/submit/", {"categories": ["privacy_violation"]}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "submitted"
    assert Stage1Label.objects.get(worker=worker).categories == 1 << 9
    assert _next(client).status_code == 204


def test_submit_with_an_unknown_category_is_a_400_and_stores_nothing(api, worker, qa_item):
    client = api(worker)
    lease = _next(client).json()
    response = client.post(
        f"/api/v1/assignments/{lease['id']}/submit/", {"categories": ["nope"]}, format="json"
    )
    assert response.status_code == 400
    assert "nope" in str(response.json())
    assert not Stage1Label.objects.exists()


def test_skip_needs_a_reason(api, worker, qa_item):
    client = api(worker)
    lease = _next(client).json()
    assert client.post(f"/api/v1/assignments/{lease['id']}/skip/", {}, format="json").status_code == 400
    response = client.post(
        f"/api/v1/assignments/{lease['id']}/skip/", {"reason": "not my language"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "skipped"


def test_another_workers_assignment_is_a_404(api, worker, second_worker, qa_item):
    lease = _next(api(worker)).json()
    intruder = api(second_worker)
    assert (
        intruder.post(
            f"/api/v1/assignments/{lease['id']}/submit/", {"categories": []}, format="json"
        ).status_code
        == 404
    )
    assert (
        intruder.post(f"/api/v1/assignments/{lease['id']}/skip/", {"reason": "x"}, format="json").status_code
        == 404
    )
    assert not Stage1Label.objects.exists()


def test_it_requires_authentication(api, qa_item):
    assert _next(api()).status_code == 401
    assert api().post("/api/v1/assignments/1/submit/", {}, format="json").status_code == 401


def test_it_requires_membership(api, outsider, qa_item):
    assert _next(api(outsider)).status_code == 404


def test_it_requires_annotator_or_admin_role(api, researcher, admin_user, qa_item):
    assert _next(api(researcher)).status_code == 403
    assert _next(api(admin_user)).status_code == 200


def test_bad_stage_is_a_400(api, worker, qa_item):
    assert _next(api(worker), stage=3).status_code == 400


@pytest.mark.parametrize("fast_path", [True, False], ids=["statements", "orm"])
def test_the_worker_loop_reads_and_writes_a_fixed_number_of_queries(
    api, worker, project, django_assert_num_queries, settings, fast_path
):
    """Next and submit run all day for every worker: a fixed number of queries each, whatever the size of
    the project. Two of each count are the savepoint that stands for a transaction inside the test's own.

    PostgreSQL (annotate/fastpath.py): next is the token, the project with the caller's role and one claim
    statement; submit is the token and one statement. The ORM services (every database): next is the
    token, the membership with its project, live lease, queue (with the item shown), slot and lease;
    submit is the token, the assignment with the item shown, lock, label, status and count."""
    settings.WORKER_LOOP_FAST_PATH = fast_path
    statements = fast_path and connection.vendor == "postgresql"
    project.gold_rate = 0.0
    project.save()
    for n in range(5):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project, text=f"q{n}")))
    client = api(worker)
    with django_assert_num_queries(5 if statements else 8):
        lease = _next(client).json()
    with django_assert_num_queries(5 if statements else 7):  # asking again returns the live lease
        assert _next(client).json()["id"] == lease["id"]
    with django_assert_num_queries(4 if statements else 8):
        response = client.post(
            f"/api/v1/assignments/{lease['id']}/submit/", {"categories": []}, format="json"
        )
    assert response.status_code == 200 and response.json()["status"] == "submitted"


def test_a_removed_worker_can_neither_submit_nor_skip_nor_revise(api, worker, admin_user, project, qa_item):
    from annotate.services import membership_remove

    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    client = api(worker)
    first = _next(client).json()
    done = client.post(f"/api/v1/assignments/{first['id']}/submit/", {"categories": []}, format="json")
    assert done.status_code == 200
    live = _next(client).json()
    membership_remove(project=project, user=worker, actor=admin_user)
    for path, payload in (
        (f"/api/v1/assignments/{live['id']}/submit/", {"categories": []}),
        (f"/api/v1/assignments/{live['id']}/skip/", {"reason": "leaving"}),
        (f"/api/v1/assignments/{first['id']}/submit/", {"categories": ["privacy_violation"]}),  # a revision
    ):
        assert client.post(path, payload, format="json").status_code == 404, path
    assert _next(client).status_code == 404
    assert list(Stage1Label.objects.values_list("categories", flat=True)) == [0]


def test_a_worker_moved_to_researcher_gets_403_on_their_old_lease(api, worker, project, qa_item):
    from annotate.models import Role
    from annotate.services import membership_set

    client = api(worker)
    lease = _next(client).json()
    membership_set(project=project, user=worker, role=Role.RESEARCHER)
    response = client.post(f"/api/v1/assignments/{lease['id']}/submit/", {"categories": []}, format="json")
    assert response.status_code == 403 and "researcher" in response.json()["detail"]
    assert not Stage1Label.objects.exists()
