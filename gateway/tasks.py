"""Celery tasks of the gateway: scheduled by CELERY_BEAT_SCHEDULE (see greengate_site.periodic)."""

from __future__ import annotations

from celery import shared_task

from gateway.admission import idempotency


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> int:
    return idempotency.purge_expired()
