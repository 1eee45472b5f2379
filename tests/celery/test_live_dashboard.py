"""The dashboard follows the labels live: with a real worker and its beat running, a label submitted
over the API is in the agreement report the dashboard shows within a minute, with nobody asking."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from annotate.models import AgreementReport, Role
from tests.celery.conftest import make_worker, running, wait_for
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, annotator

pytestmark = pytest.mark.celery_worker


@pytest.fixture(scope="module")
def worker_with_beat(django_db_setup, tmp_path_factory):
    from config.celery import Queue

    schedule = tmp_path_factory.mktemp("beat") / "schedule"
    # The embedded beat (-B) runs the production schedule (config/settings.py CELERY_BEAT_SCHEDULE):
    # recompute_due_agreement every 30 s.
    queues = ",".join(q.value for q in Queue)
    beat = ("-B", "--schedule", str(schedule))
    yield from running(
        make_worker(tmp_path_factory, pool_args=("-Q", queues, "-P", "solo", "-c", "1", *beat))
    )


def test_a_label_reaches_the_dashboard_within_a_minute(transactional_db, worker_with_beat, api, project):
    project.gold_rate = 0.0
    project.save()
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    labeller = annotator(project, "live-worker")
    admin = annotator(project, "live-admin", role=Role.ADMIN)
    # The project's first report (none yet: the beat computes one), then a label after it.
    first = wait_for(
        lambda: AgreementReport.objects.filter(project=project).first(),
        timeout=60,
        what=f"the beat's first report; worker log:\n{worker_with_beat.log()[-3000:]}",
    )
    assert first.stage1_labels == 0
    client = api(labeller)
    task = client.post(f"/api/v1/projects/{project.slug}/tasks/next/", {"stage": 1}, format="json").json()
    submitted = client.post(
        f"/api/v1/assignments/{task['id']}/submit/", {"categories": ["privacy_violation"]}, format="json"
    )
    assert submitted.status_code == 200, submitted.json()
    submitted_at = time.monotonic()

    report = wait_for(
        lambda: AgreementReport.objects.filter(project=project, stage1_labels=1).first(),
        timeout=60,
        what=f"a report with the new label; worker log:\n{worker_with_beat.log()[-3000:]}",
    )
    assert time.monotonic() - submitted_at < 60
    browser = Client()
    browser.force_login(admin)
    page = browser.get(f"/projects/{project.slug}/dashboard/").content.decode()
    assert (
        f'datetime="{report.computed_at.isoformat()}"' in page or report.computed_at.strftime("%H:%M") in page
    )
    assert "annotate.recompute_due_agreement" in worker_with_beat.log()
