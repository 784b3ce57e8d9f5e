"""Writes ledger rows off the response path, over an async psycopg pool, exactly once per request.

The INSERT is derived from `LedgerEntry`'s fields, so a new column needs no second list here. A batch that
fails on one row falls back to row-by-row writes: one bad row never costs its neighbours.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from typing import Any

import psycopg
from django.db import connections
from django.db.models import CharField
from psycopg_pool import AsyncConnectionPool

from greengate_site.request_context import uuid7
from ledger.models import LedgerEntry

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_SIZE = 500
# Errors about the connection, worth retrying the same rows; anything else is about the rows themselves.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, OSError)

# Columns the database fills itself (recorded_at) are left to it.
_FIELDS = [f for f in LedgerEntry._meta.concrete_fields if not f.has_db_default()]
_COLUMNS = [f.column for f in _FIELDS]
_INSERT = (
    f"INSERT INTO {LedgerEntry._meta.db_table} ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) ON CONFLICT DO NOTHING"
)
_TEXT_LIMITS = {f.attname: f.max_length for f in _FIELDS if isinstance(f, CharField) and f.max_length}


def fit_text(entry: LedgerEntry) -> LedgerEntry:
    """Text columns cut to their length, NUL and lone surrogates replaced: PostgreSQL refuses both."""
    for attname, limit in _TEXT_LIMITS.items():
        value = getattr(entry, attname)
        if isinstance(value, str):
            cleaned = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")[:limit]
            if cleaned != value:
                setattr(entry, attname, cleaned)
    return entry


def _values(entry: LedgerEntry) -> tuple[Any, ...]:
    return tuple(getattr(entry, f.attname) for f in _FIELDS)


def describe(entry: LedgerEntry) -> dict[str, Any]:
    """A row as a log record carries it (the ledger holds no secrets and no prompt text)."""
    return {f.attname: str(getattr(entry, f.attname)) for f in _FIELDS}


class _LoopState:
    """A writer's queue and flusher task on one event loop, plus its connection pool."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[LedgerEntry] = asyncio.Queue()
        self.flusher: asyncio.Task[None] | None = None
        self.pool: AsyncConnectionPool | None = None


class LedgerWriter:
    """Queues rows and writes them from one flusher task, batched when requests come faster than writes.

    Writes run outside the request's task, so a client leaving cannot cancel them.
    """

    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    def record(self, entry: LedgerEntry) -> None:
        if entry.id is None:
            entry.id = uuid7()
        state = self._state()
        state.queue.put_nowait(fit_text(entry))
        if state.flusher is None or state.flusher.done():
            # An empty context: the flusher outlives the request that started it, and must not log as that request.
            state.flusher = asyncio.get_running_loop().create_task(
                self._flush_forever(state), context=contextvars.Context()
            )

    def queued(self) -> int:
        state = self._states.get(asyncio.get_running_loop())
        return state.queue.qsize() if state else 0

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued row is written (shutdown, tests)."""
        state = self._state()
        try:
            await asyncio.wait_for(state.queue.join(), timeout)
        except TimeoutError:
            logger.error("ledger rows still queued at shutdown", extra={"queued": state.queue.qsize()})

    async def close(self) -> None:
        """Write what is queued and close this loop's connections (shutdown, tests)."""
        await self.drain()
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is None:
            return
        if state.flusher is not None:
            state.flusher.cancel()
            await asyncio.gather(state.flusher, return_exceptions=True)
        if state.pool is not None:
            await state.pool.close()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState()
        return state

    async def _flush_forever(self, state: _LoopState) -> None:
        while True:
            batch = [await state.queue.get()]
            while len(batch) < BATCH_SIZE and not state.queue.empty():
                batch.append(state.queue.get_nowait())
            try:
                await self._write_batch(state, batch)
            except Exception:
                logger.exception("ledger batch failed", extra={"rows": [describe(e) for e in batch]})
            finally:
                for _ in batch:
                    state.queue.task_done()

    async def _write_batch(self, state: _LoopState, batch: list[LedgerEntry]) -> None:
        """Retry while the database is unreachable; once it answers, a refused batch goes row by row."""
        attempt = 0
        while True:
            try:
                await self._insert(state, batch)
                return
            except TRANSIENT as exc:
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                attempt += 1
                logger.warning("ledger write failed; retrying", extra={"attempt": attempt, "error": str(exc)})
                await asyncio.sleep(delay)
            except psycopg.Error:
                if len(batch) == 1:
                    raise
                for entry in batch:
                    await self._write_one(state, entry)
                return

    async def _write_one(self, state: _LoopState, entry: LedgerEntry) -> None:
        try:
            await self._write_batch(state, [entry])
        except psycopg.Error as exc:
            logger.error("ledger row refused by the database", extra={"row": describe(entry), "error": str(exc)})

    async def _insert(self, state: _LoopState, rows: list[LedgerEntry]) -> None:
        if state.pool is None:
            params = connections["default"].get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            state.pool = AsyncConnectionPool(kwargs=params, min_size=1, max_size=4, open=False, name="ledger")
            await state.pool.open()
        async with state.pool.connection() as conn, conn.cursor() as cursor:
            # Retried batches are harmless: a row already written conflicts on its ids and is skipped.
            await cursor.executemany(_INSERT, [_values(row) for row in rows])


ledger_writer = LedgerWriter()
