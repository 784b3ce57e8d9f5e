"""Celery tasks of the ledger: scheduled by CELERY_BEAT_SCHEDULE (see greengate_site.periodic)."""

from __future__ import annotations

from celery import shared_task

from ledger import rollups


@shared_task(ignore_result=True)
def refresh_rollups() -> int:
    return rollups.refresh()
