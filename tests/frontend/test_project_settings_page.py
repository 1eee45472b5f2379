"""The Settings page: an admin edits guidelines, overlap and the rest from the browser, through the service
that keeps the queue, the guideline version and the audit log right; nobody else may."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate.assignment import assignment_claim, label_submit_for_worker
from annotate.models import AuditAction, AuditEvent, Stage
from frontend.project_settings import SETTINGS_FIELDS
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.django_db


def url(project):
    return reverse("frontend:project-settings", args=[project.slug])


def posted(project, **changes):
    """What the form posts when the admin changes only `changes`."""
    data = {}
    for name in SETTINGS_FIELDS:
        value = changes.get(name, getattr(project, name))
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = str(value)
    return data


def test_only_admins_open_the_settings(client, project, admin_user, worker, researcher, outsider):
    client.force_login(admin_user)
    page = client.get(url(project)).content.decode()
    assert 'data-testid="settings-form"' in page and "(version 1)" in page
    for user, status in ((worker, 403), (researcher, 403), (outsider, 404)):
        client.force_login(user)
        assert client.get(url(project)).status_code == status
        assert client.post(url(project), posted(project, overlap_stage1=1)).status_code == status
    project.refresh_from_db()
    assert project.overlap_stage1 == 3


def test_new_guidelines_and_a_lower_overlap_take_effect_through_the_service(
    client, project, admin_user, worker, django_capture_on_commit_callbacks
):
    project.gold_rate = 0.0
    project.save()
    item = Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload={"categories": []})
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url(project), posted(project, guidelines="Judge the answer.", overlap_stage1=1)
        )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.guidelines, project.guideline_version, project.overlap_stage1) == (
        "Judge the answer.",
        2,
        1,
    )
    item.refresh_from_db()
    assert item.settled_at is not None  # one label now reaches k = 1
    events = AuditEvent.objects.filter(action=AuditAction.PROJECT_SETTINGS, actor=admin_user)
    assert events.exists()
    page = client.get(url(project)).content.decode()
    assert "Saved. Changed:" in page and "Workers per QA pair (stage 1)" in page and "(version 2)" in page


def test_bad_values_are_shown_on_their_fields_and_change_nothing(client, project, admin_user):
    client.force_login(admin_user)
    response = client.post(url(project), posted(project, overlap_stage1=0, gold_rate=2))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Please correct the fields marked below." in page
    assert "Ensure this value is greater than or equal to 1." in page  # on the overlap field
    assert "Ensure this value is less than or equal to 1." in page  # on the gold rate
    project.refresh_from_db()
    assert (project.overlap_stage1, project.gold_rate) == (3, 0.1)
