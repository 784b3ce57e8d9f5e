"""Each key's last-used time, noted in memory per request and written in one UPDATE every few seconds.

The hot path only sets a dict entry; the write runs on its own task, and never changes the config version (a
raw UPDATE fires no signal), so a busy key does not make every instance reload its snapshot.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from datetime import UTC, datetime

import psycopg

from greengate_site import async_db
from tenants.models import ApiKey

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0

_seen: dict[int, float] = {}
_flusher: asyncio.Task[None] | None = None


def note(key_id: int) -> None:
    global _flusher
    _seen[key_id] = time.time()
    if _flusher is None or _flusher.done():
        _flusher = asyncio.get_running_loop().create_task(_flush_forever(), context=contextvars.Context())


async def flush() -> None:
    """Write what was noted since the last flush (shutdown, tests)."""
    if not _seen:
        return
    batch = dict(_seen)
    _seen.clear()
    rows = [(key_id, datetime.fromtimestamp(at, UTC)) for key_id, at in batch.items()]
    try:
        async with (await async_db.pool()).connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                f"UPDATE {ApiKey._meta.db_table} SET last_used_at = %s "
                f"WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
                [(at, key_id, at) for key_id, at in rows],
            )
    except psycopg.Error as exc:
        logger.warning("keys' last-used times not written; kept for the next try", extra={"error": str(exc)})
        for key_id, at in batch.items():
            _seen.setdefault(key_id, at)


async def _flush_forever() -> None:
    while _seen:
        await asyncio.sleep(FLUSH_SECONDS)
        await flush()
