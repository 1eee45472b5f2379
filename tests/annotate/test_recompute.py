"""Recompute requests are coalesced across processes (web, beat, workers), never per process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from annotate.recompute import agreement_recompute_request, agreement_recompute_started

BASE_DIR = Path(__file__).resolve().parents[2]


def _another_process_asks(project_id: int) -> bool:
    """What a second process (a web worker, beat) gets when it asks for a recompute of the project."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings")
    if connection.vendor == "postgresql":  # the test database, where the database cache's table is
        db = connection.settings_dict
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    code = (
        "import django; django.setup(); from django.core.cache import cache; "
        f"from annotate.recompute import _pending_key; print(cache.add(_pending_key({project_id}), 1, 60))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip() == "True"


@pytest.mark.django_db(transaction=True)
def test_a_pending_recompute_holds_across_processes(project, monkeypatch):
    if "DatabaseCache" in settings.CACHES["default"]["BACKEND"] and connection.vendor != "postgresql":
        pytest.skip("the SQLite test database lives in this process's memory")
    sent = []
    monkeypatch.setattr("annotate.tasks.recompute_agreement.delay", sent.append)
    agreement_recompute_started(project.pk)
    assert agreement_recompute_request(project=project) is True
    assert sent == [project.pk]
    assert _another_process_asks(project.pk) is False  # folded into the pending one
    # The task started: a change from now on must queue the next recompute, wherever it is asked.
    agreement_recompute_started(project.pk)
    assert _another_process_asks(project.pk) is True
    assert agreement_recompute_request(project=project) is False  # the other process's request is pending
    agreement_recompute_started(project.pk)
