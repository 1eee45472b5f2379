"""Project settings change through one service that keeps the queue and the audit log right."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotate.assignment import assignment_claim, assignment_skip, label_submit_for_worker
from annotate.models import AuditAction, AuditEvent, Project, ResponsePair, Stage
from annotate.services import project_settings_update
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, annotator

pytestmark = pytest.mark.django_db

SAFE: dict[str, list[str]] = {"categories": []}
UNSAFE = {"categories": ["privacy_violation"]}


@pytest.fixture(params=["statements", "orm"], autouse=True)
def engine_path(request, settings):
    settings.WORKER_LOOP_FAST_PATH = request.param == "statements"
    return request.param


@pytest.fixture
def queued(monkeypatch):
    """The follow-up pass queued after commit, as (project_id, stage, countdown)."""
    sent: list[tuple[int, int, int]] = []

    def apply_async(*, args, countdown):
        sent.append((*args, countdown))

    monkeypatch.setattr("annotate.tasks.reconcile_queue.apply_async", apply_async)
    return sent


def _answer(project, worker, payload, *, item=None):
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    assert lease is not None and (item is None or lease.work_item_id == item.pk)
    label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload=payload)
    return lease


def _item(project, prompt=None):
    return Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt or PromptFactory(project=project)))


def test_lowering_the_overlap_settles_what_already_reaches_it(
    project, queued, admin_user, django_capture_on_commit_callbacks
):
    project.gold_rate = 0.0
    project.save()
    prompt = PromptFactory(project=project)
    two_agree, also_two = _item(project, prompt), _item(project, prompt)
    split, one_and_a_lease, untouched = _item(project), _item(project), _item(project)
    ann, bob, cat = (annotator(project, name) for name in ("ann", "bob", "cat"))
    # The queue serves the fullest item first, then the oldest: the answers follow that order.
    for item, payload in ((two_agree, SAFE), (also_two, SAFE), (split, SAFE), (one_and_a_lease, UNSAFE)):
        _answer(project, ann, payload, item=item)
    for item, payload in ((two_agree, SAFE), (also_two, SAFE), (split, UNSAFE)):
        _answer(project, bob, payload, item=item)
    for item in (two_agree, also_two, split):  # cat passes these by, and takes the next one
        lease = assignment_claim(project=project, worker=cat, stage=Stage.CLASSIFY)
        assert lease.work_item_id == item.pk
        assignment_skip(assignment=lease, reason="not my language")
    lease = assignment_claim(project=project, worker=cat, stage=Stage.CLASSIFY)
    assert lease.work_item_id == one_and_a_lease.pk

    with django_capture_on_commit_callbacks(execute=True):
        project_settings_update(project=project, changes={"overlap_stage1": 2}, actor=admin_user)

    def state(item):
        item.refresh_from_db()
        return item.is_open, item.settled_at is not None, item.needs_adjudication

    assert state(two_agree) == (False, True, False) and two_agree.consensus_safe is True
    assert state(also_two) == (False, True, False)
    assert state(split) == (False, False, True)  # a 1:1 tie goes to adjudication
    assert state(one_and_a_lease) == (False, False, False)  # full: one label and a live lease
    assert state(untouched) == (True, False, False)
    # Both settled responses of the prompt were paired for stage 2, as a settling label would.
    assert ResponsePair.objects.filter(prompt=prompt).count() == 1
    # The live lease's answer completes its item under the new k.
    label_submit_for_worker(worker=cat, assignment_id=lease.pk, payload=UNSAFE)
    assert state(one_and_a_lease) == (False, True, False)
    assert queued == [(project.pk, Stage.CLASSIFY, 5)]
    event = AuditEvent.objects.get(action=AuditAction.PROJECT_SETTINGS)
    assert (event.actor, event.old, event.new) == (admin_user, {"overlap_stage1": 3}, {"overlap_stage1": 2})


def test_raising_the_overlap_reopens_items_that_now_need_more_labels(project, queued):
    project.overlap_stage1, project.gold_rate = 2, 0.0
    project.save()
    settled, tied, half = _item(project), _item(project), _item(project)
    ann, bob, cat = (annotator(project, name) for name in ("ann", "bob", "cat"))
    for item in (settled, tied, half):
        _answer(project, ann, SAFE, item=item)
    _answer(project, bob, SAFE, item=settled)
    _answer(project, bob, UNSAFE, item=tied)
    lease = assignment_claim(project=project, worker=bob, stage=Stage.CLASSIFY)
    assert lease.work_item_id == half.pk
    tied.refresh_from_db()
    assert tied.needs_adjudication and not tied.is_open

    project_settings_update(project=project, changes={"overlap_stage1": 3})

    for item in (settled, tied, half):
        item.refresh_from_db()
    assert settled.settled_at is not None and not settled.is_open  # a settled consensus is final
    assert (tied.is_open, tied.needs_adjudication) == (True, False)  # a third label may break the tie
    assert half.is_open  # one label and one lease: room for a third
    _answer(project, cat, UNSAFE, item=tied)  # the item in progress first (fullest first)
    tied.refresh_from_db()
    assert tied.settled_at is not None and tied.consensus_safe is False


def test_a_refused_change_changes_nothing(project, queued):
    with pytest.raises(ValidationError):
        project_settings_update(project=project, changes={"overlap_stage1": 0})
    with pytest.raises(ValidationError, match="taken"):
        project_settings_update(project=project, changes={"taken": 1})
    assert Project.objects.get(pk=project.pk).overlap_stage1 == 3
    assert not AuditEvent.objects.exists() and queued == []


def test_a_threshold_the_report_uses_queues_a_recompute(
    project, monkeypatch, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    sent = []
    monkeypatch.setattr("annotate.tasks.recompute_agreement.delay", sent.append)
    cache.clear()
    with django_capture_on_commit_callbacks(execute=True):
        project_settings_update(project=project, changes={"lease_seconds": 900})
    assert sent == []  # the report does not depend on the lease
    with django_capture_on_commit_callbacks(execute=True):
        project_settings_update(project=project, changes={"agreement_alert_threshold": 0.6})
    assert sent == [project.pk]


def test_new_guidelines_are_a_new_version(project, admin_user):
    version = project.guideline_version
    project_settings_update(project=project, changes={"guidelines": "Label the harm."}, actor=admin_user)
    project.refresh_from_db()
    assert project.guideline_version == version + 1
    event = AuditEvent.objects.get()
    assert event.new == {"guidelines": "Label the harm.", "guideline_version": version + 1}


def test_the_django_admin_changes_overlap_through_the_service(client, project, queued):
    from django.contrib.auth.models import User

    staff = User.objects.create_superuser("root", "root@example.org", "Root-pass-123")
    project.overlap_stage1, project.gold_rate = 2, 0.0
    project.save()
    item = _item(project)
    ann = annotator(project, "ann")
    _answer(project, ann, SAFE, item=item)
    bob_lease = assignment_claim(project=project, worker=annotator(project, "bob"), stage=Stage.CLASSIFY)
    assert bob_lease.work_item_id == item.pk
    item.refresh_from_db()
    assert not item.is_open
    client.force_login(staff)
    url = reverse("admin:annotate_project_change", args=[project.pk])
    form = client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update({"overlap_stage1": 3, "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0})
    data.pop("created_by", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    item.refresh_from_db()
    assert item.is_open  # recomputed by the service, not left closed under k = 2
    assert AuditEvent.objects.get(action=AuditAction.PROJECT_SETTINGS).actor == staff


def test_the_queue_counters_are_read_only_in_the_admin(client, project):
    from django.contrib.auth.models import User

    staff = User.objects.create_superuser("root", "root@example.org", "Root-pass-123")
    item = _item(project)
    client.force_login(staff)
    url = reverse("admin:annotate_workitem_change", args=[item.pk])
    assert client.get(url).status_code == 200  # shown for inspection
    assert client.post(url, {"taken": 3, "is_open": False}).status_code == 403
    item.refresh_from_db()
    assert (item.taken, item.is_open) == (0, True)


def test_patch_on_the_api_changes_settings_through_the_service(
    api, project, admin_user, worker, researcher, queued
):
    """PATCH /api/v1/projects/{slug}/: admins only; the overlap recomputes the queue (one label of 3 needed
    becomes settled at k = 1), the guidelines get a new version, each change is audited."""
    project.gold_rate = 0.0
    project.save()
    item = _item(project)
    _answer(project, annotator(project, "ann"), SAFE, item=item)
    url = f"/api/v1/projects/{project.slug}/"
    for user, status in ((worker, 403), (researcher, 403)):
        assert api(user).patch(url, {"overlap_stage1": 1}, format="json").status_code == status
    response = api(admin_user).patch(url, {"overlap_stage1": 1, "guidelines": "Be careful."}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["overlap_stage1"], body["guidelines"], body["guideline_version"]) == (1, "Be careful.", 2)
    item.refresh_from_db()
    assert item.settled_at is not None and item.consensus_safe is True
    assert AuditEvent.objects.filter(action=AuditAction.PROJECT_SETTINGS, actor=admin_user).exists()
    # Bad values and read-only fields are refused, naming the field, and change nothing.
    refused = api(admin_user).patch(url, {"overlap_stage1": 0, "guideline_version": 9}, format="json")
    assert refused.status_code == 400
    assert "overlap_stage1" in refused.json() or "overlap_stage1" in str(refused.json())
    refused = api(admin_user).patch(url, {"guideline_version": 9}, format="json")
    assert refused.status_code == 400 and "guideline_version" in str(refused.json())
    project.refresh_from_db()
    assert (project.overlap_stage1, project.guideline_version) == (1, 2)
