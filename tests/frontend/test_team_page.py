"""The Team page: an admin manages the project's members from the browser, through the same services as
the API (leases released, audit recorded); nobody else sees it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotate.assignment import assignment_claim
from annotate.models import Assignment, AssignmentStatus, AuditAction, AuditEvent, Membership, Stage
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory

pytestmark = pytest.mark.django_db


def url(project, name="team", *args):
    return reverse(f"frontend:{name}", args=[project.slug, *args])


def test_only_admins_see_the_team_page_and_its_tab(client, project, admin_user, worker, researcher, outsider):
    client.force_login(admin_user)
    page = client.get(url(project)).content.decode()
    assert 'data-testid="team"' in page and 'data-member="worker"' in page
    assert ">Team</a>" in client.get(reverse("frontend:project-detail", args=[project.slug])).content.decode()
    for user, status in ((worker, 403), (researcher, 403), (outsider, 404)):
        client.force_login(user)
        assert client.get(url(project)).status_code == status
        assert client.post(url(project, "team-remove", "worker")).status_code == status
    client.force_login(researcher)
    assert (
        ">Team</a>"
        not in client.get(reverse("frontend:project-detail", args=[project.slug])).content.decode()
    )


def test_an_admin_creates_an_account_and_sees_its_secrets_once(client, project, admin_user):
    client.force_login(admin_user)
    page = client.post(
        url(project), {"username": "fay", "role": "annotator", "create_account": "on"}
    ).content.decode()
    assert 'data-testid="created-account"' in page
    password = re.search(r"<dt>Password</dt><dd class=\"mono\">([^<]+)</dd>", page).group(1)
    assert client.login(username="fay", password=password)
    client.force_login(admin_user)
    again = client.get(url(project)).content.decode()
    assert password not in again and 'data-member="fay"' in again


def test_an_admin_adds_changes_and_removes_members(client, project, admin_user, worker):
    UserFactory(username="gus")
    client.force_login(admin_user)
    assert client.post(url(project), {"username": "gus", "role": "researcher"}).status_code == 302
    assert Membership.objects.get(project=project, user__username="gus").role == "researcher"
    refused = client.post(url(project), {"username": "nobody", "role": "annotator"}).content.decode()
    assert "No user &#x27;nobody&#x27;" in refused
    # A worker holding a task: moving them to researcher gives it back to the pool.
    project.gold_rate = 0.0
    project.save()
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    client.post(url(project, "team-role", "worker"), {"role": "researcher"})
    lease.refresh_from_db()
    assert lease.status != AssignmentStatus.LEASED
    page = client.get(url(project)).content.decode()
    assert "worker is now researcher" in page
    client.post(url(project, "team-remove", "gus"), {"reason": "project ended"})
    assert not Membership.objects.filter(project=project, user__username="gus").exists()
    event = AuditEvent.objects.filter(action=AuditAction.MEMBERSHIP_REMOVE).get()
    assert event.actor == admin_user
    assert not Assignment.objects.filter(worker=worker, status=AssignmentStatus.LEASED).exists()


def test_the_last_admin_is_told_why_they_cannot_leave(client, project, admin_user):
    client.force_login(admin_user)
    client.post(url(project, "team-remove", "admin"), {"reason": ""})
    page = client.get(url(project)).content.decode()
    assert "the only admin of demo-project" in page
    assert Membership.objects.get(project=project, user=admin_user).role == "admin"


def test_an_admin_pauses_a_flagged_worker_from_the_team_page(client, project, admin_user, worker):
    project.gold_rate, project.gold_min_items, project.gold_accuracy_threshold = 0.0, 1, 0.9
    project.save()
    qa = QAPairFactory(prompt=PromptFactory(project=project))
    Stage1WorkItemFactory(qa_pair=qa)
    from annotate.assignment import label_submit_for_worker
    from annotate.models import GoldStage1Label

    GoldStage1Label.objects.create(qa_pair=qa, categories=0, is_safe=True, source="expert")
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload={"categories": ["self_harm"]})
    client.force_login(admin_user)
    page = client.get(url(project)).content.decode()
    # The flagged worker's pause form is open and suggests the reason.
    assert "Flagged" in page and "<details open>" in page
    client.post(
        url(project, "team-pause", "worker"), {"reason": "Gold accuracy below the project's threshold"}
    )
    assert Membership.objects.get(project=project, user=worker).paused_at is not None
    client.force_login(worker)
    refused = client.get(reverse("frontend:label", args=[project.slug, 1]))
    assert refused.status_code == 403 and "paused your labelling" in refused.content.decode()
    client.force_login(admin_user)
    client.post(url(project, "team-pause", "worker"), {"action": "resume"})
    client.force_login(worker)
    assert client.get(reverse("frontend:label", args=[project.slug, 1])).status_code == 200
