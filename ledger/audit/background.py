"""Audit writes started from the event loop: done on a worker thread by a task of their own, never awaited by a
request, so neither the loop nor the answer waits for the database. A failed write is logged, never raised."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import connections

logger = logging.getLogger(__name__)

# Strong references: the loop keeps only weak ones to tasks, and a write must not be collected half-way.
_pending: set[asyncio.Task[None]] = set()


def run_later(write: Callable[[], object], *, what: str) -> None:
    """Schedule `write` (sync ORM code) on a worker thread and return at once; call it on the running loop."""
    # An empty context: the write outlives the request that caused it and must not log as that request.
    task = asyncio.get_running_loop().create_task(run(write, what=what), context=contextvars.Context())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def run(write: Callable[[], object], *, what: str) -> None:
    """Run `write` on a worker thread from a background task; a failure is logged."""
    try:
        # Not thread-sensitive: the write needs no thread of its own and must not queue behind other sync work.
        await sync_to_async(_in_thread, thread_sensitive=False)(write)
    except Exception:
        logger.exception("audit event not recorded", extra={"audit": what})


def _in_thread(write: Callable[[], object]) -> None:
    try:
        write()
    finally:
        # Worker threads have no request cycle to close their connection; these writes are rare, so each
        # closes its own rather than leaving one open per pool thread.
        connections.close_all()


async def drain(timeout: float = 30.0) -> None:
    """Wait for the writes started on this loop (shutdown, tests)."""
    loop = asyncio.get_running_loop()
    mine = [task for task in _pending if task.get_loop() is loop]
    if mine:
        await asyncio.wait(mine, timeout=timeout)
