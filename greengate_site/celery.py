"""The Celery app for background work (rollups, retention); workers: `celery -A greengate_site worker`."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greengate_site.settings")

app = Celery("greengate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
