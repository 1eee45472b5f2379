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
    Stage1Label,
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


@pytest.fixture(params=["statements", "orm"])
def engine_path(request, settings):
    settings.WORKER_LOOP_FAST_PATH = request.param == "statements"
    return request.param


def test_a_paused_worker_cannot_label_until_resumed(api, project, admin_user, worker, items, engine_path):
    """Pausing releases the worker's lease, and every call of theirs is refused (claim, submit on the old
    lease, the label page) on both the prepared-statement and the ORM path, with a message; resuming
    lets them work again. Both are audited with the reason."""
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    member = URL + "worker/"
    refused = api(admin_user).patch(member, {"paused": True}, format="json")
    assert refused.status_code == 400 and "Say why" in str(refused.json())
    paused = api(admin_user).patch(member, {"paused": True, "reason": "gold accuracy 40%"}, format="json")
    assert paused.status_code == 200 and paused.json()["paused_reason"] == "gold accuracy 40%"
    lease.refresh_from_db()
    assert lease.status != AssignmentStatus.LEASED
    loop = api(worker)
    claim = loop.post("/api/v1/projects/demo-project/tasks/next/", {"stage": 1}, format="json")
    assert claim.status_code == 403 and "paused your labelling" in str(claim.json())
    submit = loop.post(f"/api/v1/assignments/{lease.pk}/submit/", {"categories": []}, format="json")
    assert submit.status_code in (403, 404, 400) and submit.status_code != 200
    assert not Stage1Label.objects.filter(worker=worker).exists()
    # A researcher or admin cannot be paused (only annotators label for pay and are judged on gold).
    assert (
        api(admin_user).patch(URL + "admin/", {"paused": True, "reason": "x"}, format="json").status_code
        == 400
    )
    resumed = api(admin_user).patch(member, {"paused": False}, format="json")
    assert resumed.status_code == 200 and resumed.json()["paused_at"] is None
    claim = loop.post("/api/v1/projects/demo-project/tasks/next/", {"stage": 1}, format="json")
    assert claim.status_code == 200
    actions = list(
        AuditEvent.objects.filter(target=f"user:{worker.pk}").order_by("id").values_list("action", flat=True)
    )
    assert actions == [AuditAction.MEMBERSHIP_PAUSE, AuditAction.MEMBERSHIP_RESUME]
