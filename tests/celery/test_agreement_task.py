"""The agreement recompute runs in a real worker process, through the real broker."""

from __future__ import annotations

import pytest
from django.db import connection

from annotate.models import AgreementReport
from annotate.tasks import recompute_agreement, recompute_due_agreement
from tests.annotate.labelled_project import build
from tests.celery.conftest import wait_for
from tests.factories import ProjectFactory

pytestmark = pytest.mark.celery_worker


def test_recompute_agreement_stores_a_report(transactional_db, live_worker):
    assert live_worker.database_name == connection.settings_dict["NAME"]
    project = ProjectFactory(slug="celery-agreement")
    build(project)

    live_worker.send(recompute_agreement, project.pk)

    # Setting the gold answers while building queued recomputes of their own; this one counts every label.
    report = wait_for(
        lambda: AgreementReport.objects.filter(project=project, stage1_labels=22).first(),
        timeout=60,
        what=f"the worker to store a report; worker log:\n{live_worker.log()[-3000:]}",
    )
    assert report.stage1_labels == 22 and report.stage2_labels == 3
    assert report.payload["stage1"]["items"] == 8
    assert "annotate.recompute_agreement" in live_worker.log()


def test_the_periodic_task_queues_recomputes_for_projects_that_need_one(transactional_db, live_worker):
    project = ProjectFactory(slug="celery-due")

    live_worker.send(recompute_due_agreement)

    # The periodic task runs in the worker, queues recompute_agreement there, and the worker runs it.
    wait_for(
        lambda: AgreementReport.objects.filter(project=project).exists(),
        timeout=60,
        what=f"the queued recompute to store a report; worker log:\n{live_worker.log()[-3000:]}",
    )
    assert "annotate.recompute_due_agreement" in live_worker.log()
