"""The export task builds a snapshot in a real worker process, through the real broker."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.db import connection

from annotate.exporting import snapshot_create
from annotate.models import Snapshot, SnapshotStatus
from annotate.tasks import export_snapshot
from tests.annotate.test_export_support import settled_pair, settled_qa
from tests.celery.conftest import wait_for
from tests.factories import ProjectFactory, PromptFactory

pytestmark = pytest.mark.celery_worker


def _worker_media_root(live_worker) -> Path:
    """Where the worker's default storage keeps files (settings.py: MEDIA_ROOT, else VAR_DIR/media)."""
    if live_worker.env.get("MEDIA_ROOT"):
        return Path(live_worker.env["MEDIA_ROOT"])
    return Path(live_worker.env["BEAVERLAB_VAR_DIR"]) / "media"


def test_the_export_task_builds_the_snapshot_in_the_worker(transactional_db, live_worker):
    assert live_worker.database_name == connection.settings_dict["NAME"]
    project = ProjectFactory()
    prompt = PromptFactory(project=project)
    safe = settled_qa(project, [], prompt=prompt)
    unsafe = settled_qa(project, ["self_harm"], prompt=prompt)
    settled_pair(project, safe, unsafe, better=0, safer=0)
    snapshot = snapshot_create(project=project, user=None, format="pku-saferlhf", test_ratio=0, enqueue=False)

    live_worker.send(export_snapshot, snapshot.pk)

    done = wait_for(
        lambda: Snapshot.objects.filter(pk=snapshot.pk, status__in=["succeeded", "failed"]).first(),
        timeout=60,
        what=f"the worker to build the snapshot; worker log:\n{live_worker.log()[-3000:]}",
    )
    assert done.status == SnapshotStatus.SUCCEEDED, done.error
    assert done.row_counts["total"] == 1 and done.progress == 1.0
    media = _worker_media_root(live_worker)
    for entry in done.files:
        content = (media / entry["path"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
    assert "annotate.export_snapshot" in live_worker.log()

    # A redelivered message leaves the built snapshot as it is.
    live_worker.send(export_snapshot, snapshot.pk)
    wait_for(
        lambda: live_worker.log().count("annotate.export_snapshot") >= 4,  # received + succeeded, twice
        timeout=30,
        what="the worker to take the second message",
    )
    again = Snapshot.objects.get(pk=snapshot.pk)
    assert (again.status, again.files, again.finished_at) == (done.status, done.files, done.finished_at)
