"""A project's team over the API: GET|POST /api/v1/projects/{slug}/members/ and
PATCH|DELETE /api/v1/projects/{slug}/members/{username}/, for the project's admins only."""

from __future__ import annotations

import pytest

from annotate.assignment import assignment_claim, assignment_skip, label_submit_for_worker
from annotate.models import (
    Assignment,
    AssignmentStatus,
    AuditAction,
    AuditEvent,
    GoldStage1Label,
    Membership,
    Stage,
)
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/projects/demo-project/members/"


@pytest.fixture
def items(project):
    project.gold_rate = 0.0
    project.save()
    prompt = PromptFactory(project=project)
    return [Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt)) for _ in range(3)]


def test_admins_see_each_member_with_their_labels_skips_and_gold(api, project, admin_user, worker, items):
    GoldStage1Label.objects.create(qa_pair=items[0].qa_pair, categories=0, is_safe=True, source="expert")
    answers = iter([{"categories": ["privacy_violation"]}, {"categories": []}])
    for _ in range(2):
        lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
        label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload=next(answers))
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    assignment_skip(assignment=lease, reason="not my language")
    response = api(admin_user).get(URL)
    assert response.status_code == 200
    members = {m["username"]: m for m in response.json()}
    assert set(members) == {"admin", "worker"}
    mine = members["worker"]
    assert (mine["role"], mine["labels"], mine["skips"]) == ("annotator", {"stage1": 2, "stage2": 0}, 1)
    assert mine["recent_skip_reasons"] == ["not my language"]
    assert mine["gold"]["answered"] == 1 and mine["gold"]["flagged"] is False
    assert members["admin"]["gold"] is None


def test_only_the_projects_admins_manage_its_team(api, project, admin_user, worker, researcher, outsider):
    for user, expected in ((worker, 403), (researcher, 403), (outsider, 404), (None, 401)):
        assert api(user).get(URL).status_code == expected, user
        assert (
            api(user).post(URL, {"username": "x", "role": "annotator"}, format="json").status_code == expected
        )
        assert api(user).delete(URL + "worker/").status_code == expected


def test_an_admin_adds_an_existing_user_or_creates_an_account(api, project, admin_user):
    UserFactory(username="dana")
    added = api(admin_user).post(URL, {"username": "dana", "role": "annotator"}, format="json")
    assert added.status_code == 201 and added.json()["role"] == "annotator" and "password" not in added.json()
    again = api(admin_user).post(URL, {"username": "dana", "role": "researcher"}, format="json")
    assert again.status_code == 400 and "already a member" in str(again.json())
    missing = api(admin_user).post(URL, {"username": "eve", "role": "annotator"}, format="json")
    assert missing.status_code == 400 and "create_account" in str(missing.json())
    created = api(admin_user).post(
        URL,
        {"username": "eve", "role": "annotator", "create_account": True, "email": "eve@example.org"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["password"] and body["token"] and body["email"] == "eve@example.org"
    # The new account works at once with the token it was given.
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert client.get("/api/v1/projects/demo-project/").json()["role"] == "annotator"
    assert AuditEvent.objects.filter(action=AuditAction.MEMBERSHIP_SET, actor=admin_user).count() == 1


def test_a_role_change_and_a_removal_release_the_members_live_leases(api, project, admin_user, worker, items):
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    changed = api(admin_user).patch(URL + "worker/", {"role": "researcher"}, format="json")
    assert changed.status_code == 200 and changed.json()["role"] == "researcher"
    lease.refresh_from_db()
    assert lease.status != AssignmentStatus.LEASED
    api(admin_user).patch(URL + "worker/", {"role": "annotator"}, format="json")
    assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    removed = api(admin_user).delete(URL + "worker/", {"reason": "left the team"}, format="json")
    assert removed.status_code == 200 and removed.json() == {"username": "worker", "released_leases": 1}
    assert not Membership.objects.filter(project=project, user=worker).exists()
    assert not Assignment.objects.filter(worker=worker, status=AssignmentStatus.LEASED).exists()
    # From then on the removed worker is an outsider.
    assert (
        api(worker).post("/api/v1/projects/demo-project/tasks/next/", {"stage": 1}, format="json").status_code
        == 404
    )
    assert api(admin_user).delete(URL + "worker/").status_code == 404


def test_the_last_admin_can_neither_leave_nor_step_down(api, project, admin_user, researcher):
    for call in (
        lambda: api(admin_user).patch(URL + "admin/", {"role": "annotator"}, format="json"),
        lambda: api(admin_user).delete(URL + "admin/"),
    ):
        refused = call()
        assert refused.status_code == 400 and "only admin" in str(refused.json())
    assert Membership.objects.get(project=project, user=admin_user).role == "admin"
    # With a second admin, the first may step down.
    api(admin_user).patch(URL + "researcher/", {"role": "admin"}, format="json")
    assert api(admin_user).patch(URL + "admin/", {"role": "annotator"}, format="json").status_code == 200
