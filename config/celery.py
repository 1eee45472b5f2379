"""The Celery app. Queues are an enum so a typo in a route is a NameError, not a silently dead queue."""

from __future__ import annotations

import enum
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class Queue(enum.StrEnum):
    DEFAULT = "default"
    GPU = "gpu"


app = Celery("beaverlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
