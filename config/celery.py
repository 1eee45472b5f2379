"""The Celery app. Queues are an enum so a typo in a route is a NameError, not a silently dead queue."""

from __future__ import annotations

import enum
import os
import tempfile
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import celeryd_init, worker_shutdown, worker_shutting_down

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class Queue(enum.StrEnum):
    DEFAULT = "default"
    GPU = "gpu"


app = Celery("beaverlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# --- Warm shutdown reaches the task, under any pool ---------------------------------------------------
# A warm shutdown (SIGTERM to the worker, as `docker compose stop` sends it) lets running tasks finish.
# A training job runs for hours, so its task must hear of the shutdown and stop its trainer with a
# checkpoint. The solo pool's task runs in the worker process itself, which sets
# celery.worker.state.should_stop; a prefork pool child is told nothing. So the worker's main process
# leaves a marker named by its pid, which a child finds through os.getppid().


def _stopping_marker(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"beaverlab-celery-{pid}.stopping"


def worker_is_stopping(pid: int) -> bool:
    """True once the worker whose main process is `pid` began shutting down."""
    return _stopping_marker(pid).exists()


@celeryd_init.connect
def _clear_stale_marker(**_: Any) -> None:
    # A marker left by an earlier process with the same pid (after a reboot, pids repeat).
    _stopping_marker(os.getpid()).unlink(missing_ok=True)


@worker_shutting_down.connect
def _mark_stopping(**_: Any) -> None:
    _stopping_marker(os.getpid()).touch()


@worker_shutdown.connect
def _clear_marker(**_: Any) -> None:
    _stopping_marker(os.getpid()).unlink(missing_ok=True)
