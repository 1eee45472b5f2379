"""A platform task runs end to end in a real worker process, through the real broker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotate.models import Assignment, AssignmentStatus, WorkItem
from annotate.tasks import release_expired_leases
from tests.celery.conftest import wait_for
from tests.factories import ProjectFactory, Stage1WorkItemFactory, UserFactory

pytestmark = pytest.mark.celery_worker


def test_release_expired_leases_runs_in_the_worker(transactional_db, live_worker):
    # The worker must be on this test's database, or nothing below could be observed.
    assert live_worker.database_name == connection.settings_dict["NAME"]
    project = ProjectFactory(overlap_stage1=1)
    item = Stage1WorkItemFactory(qa_pair__prompt__project=project, taken=1, is_open=False)
    now = timezone.now()
    lapsed = Assignment.objects.create(
        project=project,
        work_item=item,
        worker=UserFactory(),
        stage=item.stage,
        leased_at=now - timedelta(minutes=20),
        expires_at=now - timedelta(minutes=10),
    )
    live = Assignment.objects.create(
        project=project,
        work_item=Stage1WorkItemFactory(qa_pair__prompt__project=project, taken=1, is_open=False),
        worker=UserFactory(),
        stage=item.stage,
        leased_at=now,
        expires_at=now + timedelta(minutes=10),
    )

    live_worker.send(release_expired_leases)

    wait_for(
        lambda: WorkItem.objects.filter(pk=item.pk, is_open=True, taken=0).exists(),
        what=f"the worker to reopen the lapsed item; worker log:\n{live_worker.log()[-3000:]}",
    )
    lapsed.refresh_from_db()
    assert lapsed.status == AssignmentStatus.EXPIRED
    live.refresh_from_db()
    assert live.status == AssignmentStatus.LEASED
    assert WorkItem.objects.get(pk=live.work_item_id).is_open is False
    assert "annotate.release_expired_leases" in live_worker.log()
