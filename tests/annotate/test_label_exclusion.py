"""Excluding a flagged worker's labels from consensus (annotate.exclusion): the labels stop counting
everywhere, the items they held settle again or go back to the queue, and the decision is recorded."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from annotate.access import PAUSED_ROLE, with_effective_role
from annotate.assignment import assignment_claim, label_submit_for_worker
from annotate.consensus import adjudication_decide
from annotate.exclusion import labels_exclude
from annotate.gold import gold_scores
from annotate.models import (
    Adjudication,
    Assignment,
    AssignmentStatus,
    AuditAction,
    AuditEvent,
    GoldStage1Label,
    LabelExclusion,
    Membership,
    Stage,
    Stage1Label,
)
from annotate.selectors import project_members
from annotate.services import membership_resume
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, annotator

pytestmark = pytest.mark.django_db
URL = "/api/v1/projects/demo-project/members/"


@pytest.fixture
def setup(project, admin_user):
    project.gold_rate = 0.0
    project.overlap_stage1 = 3
    project.save()
    workers = {name: annotator(project, name) for name in ("spammer", "ana", "ben", "cai")}
    return project, workers


def _item(project, gold=False):
    qa = QAPairFactory(prompt=PromptFactory(project=project))
    return Stage1WorkItemFactory(qa_pair=qa, is_gold=gold)


def _label(project, worker, categories):
    lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
    assert lease is not None, worker
    label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload={"categories": categories})
    return lease.work_item_id


def test_a_consensus_that_rested_on_the_excluded_worker_reopens_and_settles_without_them(setup, admin_user):
    project, w = setup
    item = _item(project)
    _label(project, w["spammer"], ["privacy_violation"])
    _label(project, w["ana"], ["privacy_violation"])
    _label(project, w["ben"], [])
    item.refresh_from_db()
    assert item.settled_at is not None and item.consensus_safe is False  # the spammer's vote decided it

    exclusion = labels_exclude(project=project, user=w["spammer"], actor=admin_user, reason="random answers")

    item.refresh_from_db()
    assert (item.settled_at, item.consensus_safe, item.consensus_categories) == (None, None, None)
    assert (item.taken, item.labels_count, item.is_open) == (2, 2, True)
    assert not Stage1Label.objects.filter(worker=w["spammer"]).exists()
    assert Assignment.objects.get(worker=w["spammer"]).status == AssignmentStatus.EXCLUDED
    assert (exclusion.stage1_labels, exclusion.stage2_labels, exclusion.items_reopened) == (1, 0, 1)
    assert exclusion.labels[0]["work_item"] == item.pk
    assert exclusion.labels[0]["answer"] == {"categories": ["privacy_violation"]}

    # The slot goes to another worker, whose label settles the item from the remaining votes.
    assert _label(project, w["cai"], []) == item.pk
    item.refresh_from_db()
    assert item.settled_at is not None and item.consensus_safe is True


def test_an_unsettled_item_gives_back_the_slot_and_an_adjudicated_one_keeps_the_decision(setup, admin_user):
    project, w = setup
    project.overlap_stage1 = 2
    project.save()
    decided, unsettled = _item(project), _item(project)
    assert _label(project, w["spammer"], ["privacy_violation"]) == decided.pk
    assert _label(project, w["ana"], []) == decided.pk  # fullest first
    decided.refresh_from_db()
    assert decided.needs_adjudication  # a tie
    adjudication_decide(item=decided, admin=admin_user, categories=[])
    assert _label(project, w["spammer"], ["self_harm"]) == unsettled.pk

    labels_exclude(project=project, user=w["spammer"], actor=admin_user, reason="spam")

    decided.refresh_from_db()
    assert decided.settled_at is not None and decided.consensus_safe is True and not decided.is_open
    assert Adjudication.objects.filter(work_item=decided).exists()
    assert (decided.taken, decided.labels_count) == (1, 1)
    unsettled.refresh_from_db()
    assert (unsettled.taken, unsettled.labels_count, unsettled.is_open) == (0, 0, True)


def test_the_worker_is_paused_audited_and_their_gold_score_kept_in_the_record(setup, admin_user):
    project, w = setup
    gold = _item(project, gold=True)
    GoldStage1Label.objects.create(qa_pair=gold.qa_pair, categories=0, is_safe=True, source="expert")
    project.gold_rate = 1.0
    project.save()
    assert _label(project, w["spammer"], ["self_harm"]) == gold.pk
    assert [s.username for s in gold_scores(project)] == ["spammer"]

    exclusion = labels_exclude(project=project, user=w["spammer"], actor=admin_user, reason="  fails gold  ")

    assert exclusion.reason == "fails gold" and exclusion.gold == {"answered": 1, "correct": 0}
    membership = with_effective_role(Membership.objects.filter(user=w["spammer"])).get()
    assert membership.effective_role == PAUSED_ROLE and "fails gold" in membership.paused_reason
    assert gold_scores(project) == []  # their gold answers no longer count either
    shown = next(m for m in project_members(project) if m["username"] == "spammer")
    assert shown["gold"] is None and shown["exclusions"][0]["gold"] == {"answered": 1, "correct": 0}
    event = AuditEvent.objects.get(action=AuditAction.LABELS_EXCLUDE)
    assert event.actor == admin_user and event.reason == "fails gold" and event.new["excluded"] == 1
    # Resumed, they label again and those labels count.
    membership_resume(project=project, user=w["spammer"], actor=admin_user)
    fresh = _item(project)
    project.gold_rate = 0.0
    project.save()
    assert _label(project, w["spammer"], []) == fresh.pk
    assert Stage1Label.objects.filter(worker=w["spammer"]).count() == 1


def test_a_reason_is_required_and_nothing_changes_without_one(setup, admin_user):
    project, w = setup
    _item(project)
    _label(project, w["spammer"], [])
    with pytest.raises(ValidationError, match="Say why"):
        labels_exclude(project=project, user=w["spammer"], actor=admin_user, reason="  ")
    assert Stage1Label.objects.filter(worker=w["spammer"]).count() == 1
    assert not LabelExclusion.objects.exists()


def test_only_the_projects_admins_exclude_over_the_api(api, setup, admin_user, researcher, outsider):
    project, w = setup
    _item(project)
    _label(project, w["spammer"], ["self_harm"])
    url = URL + "spammer/exclude-labels/"
    for user, expected in ((w["ana"], 403), (researcher, 403), (outsider, 404), (None, 401)):
        assert api(user).post(url, {"reason": "x"}, format="json").status_code == expected, user
    assert api(admin_user).post(url, {}, format="json").status_code == 400
    assert (
        api(admin_user).post(URL + "nobody/exclude-labels/", {"reason": "x"}, format="json").status_code
        == 404
    )
    response = api(admin_user).post(url, {"reason": "copy-paste answers"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["labels"] == {"stage1": 0, "stage2": 0} and body["paused_at"]
    assert body["exclusions"][0]["reason"] == "copy-paste answers" and body["exclusions"][0]["labels"] == 1
    listed = {m["username"]: m for m in api(admin_user).get(URL).json()}
    assert listed["spammer"]["exclusions"][0]["items_reopened"] == 0
    assert listed["ana"]["exclusions"] == []


def test_the_team_page_asks_for_a_confirmation_then_excludes(client, setup, admin_user):
    project, w = setup
    _item(project)
    _label(project, w["spammer"], ["self_harm"])
    client.force_login(admin_user)
    page = client.get("/projects/demo-project/team/").content.decode()
    assert "Exclude labels…" in page and "/team/spammer/exclude/" in page
    unconfirmed = client.post("/projects/demo-project/team/spammer/exclude/", {"reason": "spam"}, follow=True)
    assert "Tick the confirmation" in unconfirmed.content.decode()
    assert Stage1Label.objects.filter(worker=w["spammer"]).exists()
    done = client.post(
        "/projects/demo-project/team/spammer/exclude/", {"reason": "spam", "confirm": "yes"}, follow=True
    ).content.decode()
    assert "1 label of spammer no longer count" in done and 'data-testid="excluded-spammer"' in done
    assert "open to other workers again" in done
    assert not Stage1Label.objects.filter(worker=w["spammer"]).exists()
    client.force_login(w["ana"])
    assert (
        client.post("/projects/demo-project/team/ana/exclude/", {"reason": "x", "confirm": "yes"}).status_code
        == 403
    )
