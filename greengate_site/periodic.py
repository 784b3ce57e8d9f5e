"""Celery beat inside the gateway process, so that `make run` alone keeps the rollups current.

The scheduler runs each due task right here, on beat's own thread, instead of sending it to a broker: no worker
is needed, and nothing runs on the event loop. Several gateways may each run one; the tasks themselves make
that harmless (the rollups take an advisory lock). Where dedicated `celery beat` and workers run instead, set
PERIODIC_TASKS_IN_PROCESS=false.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import beat
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class InProcessScheduler(beat.Scheduler):
    """Celery's in-memory scheduler, applying tasks locally rather than publishing them."""

    @property
    def producer(self) -> None:  # no broker connection is ever made
        return None

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        entry = self.reserve(entry) if advance else entry
        task = self.app.tasks[entry.task]
        # apply() runs the task here and keeps its exception in the result: log it, and let beat carry on.
        try:
            result = task.apply(entry.args, entry.kwargs)
        finally:
            close_old_connections()  # beat's thread must not keep a pooled connection between runs
        if result.failed():
            logger.error("periodic task %s failed: %r", entry.task, result.result)
        return result


_service: Any = None


def start() -> None:
    """Start the beat thread once per process (when PERIODIC_TASKS_IN_PROCESS is on)."""
    global _service
    if not settings.PERIODIC_TASKS_IN_PROCESS or _service is not None:
        return
    from greengate_site.celery import app

    app.loader.import_default_modules()  # registers the apps' tasks (autodiscovery is lazy)
    _service = beat.EmbeddedService(app, thread=True, scheduler_cls=InProcessScheduler)
    _service.start()
    logger.info("periodic tasks running in this process", extra={"tasks": sorted(settings.CELERY_BEAT_SCHEDULE)})


def stop() -> None:
    global _service
    if _service is not None:
        _service.stop()
        _service = None
