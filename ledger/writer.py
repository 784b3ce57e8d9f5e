"""Writes ledger rows off the response path, over an async psycopg pool, exactly once per request, crashes
included: each row is spooled to disk first (ledger.spool).

The INSERT is derived from `LedgerEntry`'s fields, so a new column needs no second list here. A batch that
fails on one row falls back to row-by-row writes: one bad row never costs its neighbours.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import weakref
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from django.db.models import CharField
from psycopg_pool import AsyncConnectionPool

from greengate_site.request_context import uuid7
from ledger.models import LedgerEntry
from ledger.spool import Orphan, Segment, Spool, claim_orphans, encode_row, spool_directory

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_SIZE = 500
# Errors about the connection, worth retrying the same rows; anything else is about the rows themselves.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, OSError)

# Columns the database fills itself (recorded_at) are left to it.
_FIELDS = [f for f in LedgerEntry._meta.concrete_fields if not f.has_db_default()]  # type: ignore[attr-defined]
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
    """A writer's queue, spool and tasks on one event loop, plus its connection pool."""

    def __init__(self, spool: Spool | None) -> None:
        self.queue: asyncio.Queue[tuple[LedgerEntry, Segment | None]] = asyncio.Queue()
        self.spool = spool
        self.flusher: asyncio.Task[None] | None = None
        self.recovery: asyncio.Task[None] | None = None
        self.pool: AsyncConnectionPool | None = None
        self.replaying = asyncio.Lock()


class LedgerWriter:
    """Spools each row to disk, queues it, and writes it from one flusher task in batches.

    `record` returns once the row is in the spool (ledger.spool), so a request's answer never finishes
    before its row would survive the process dying. Writes to PostgreSQL run outside the request's task, so a
    client leaving cannot cancel them; while the database is away they wait, in memory up to
    LEDGER_MEMORY_ROWS rows and on disk beyond that.
    """

    def __init__(self, *, spool: bool = True) -> None:
        self._spooled = spool
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    def record(self, entry: LedgerEntry) -> None:
        if entry.id is None:
            entry.id = uuid7()
        fit_text(entry)
        state = self._state()
        segment = None
        if state.spool is not None:
            try:
                segment = state.spool.append(encode_row(entry))
            except OSError as exc:
                # A full or broken disk: the row is still written from memory, only without the crash guarantee.
                logger.error("ledger spool write failed", extra={"error": str(exc)})
        if state.spool is not None and segment is not None and state.queue.qsize() >= settings.LEDGER_MEMORY_ROWS:
            state.spool.spill()
        else:
            state.queue.put_nowait((entry, segment))
        if state.flusher is None or state.flusher.done():
            # An empty context: the flusher outlives the request that started it, and must not log as that request.
            state.flusher = asyncio.get_running_loop().create_task(
                self._flush_forever(state), context=contextvars.Context()
            )

    def start(self) -> None:
        """At start-up: replay what processes that are gone left in the spool, then keep watching for more."""
        state = self._state()
        if state.spool is not None and state.recovery is None:
            state.recovery = asyncio.get_running_loop().create_task(
                self._recover_forever(state), context=contextvars.Context()
            )

    def queued(self) -> int:
        state = self._states.get(asyncio.get_running_loop())
        return state.queue.qsize() if state else 0

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued row is written (shutdown, tests)."""
        state = self._state()
        try:
            async with asyncio.timeout(timeout):
                await state.queue.join()
                await self._replay_spilled(state)
        except TimeoutError:
            logger.error(
                "ledger rows not yet written at shutdown; the spool keeps them for the next start",
                extra={"queued": state.queue.qsize()},
            )

    async def recover(self) -> int:
        """Replay every orphaned spool segment now; returns the rows replayed (tests, start-up)."""
        state = self._state()
        return await self._replay_orphans(state)

    async def close(self) -> None:
        """Write what is queued and close this loop's connections and spool (shutdown, tests)."""
        await self.drain()
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is None:
            return
        tasks = [t for t in (state.flusher, state.recovery) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if state.spool is not None:
            state.spool.close()
        if state.pool is not None:
            await state.pool.close()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            spool = Spool(spool_directory()) if self._spooled else None
            state = self._states[loop] = _LoopState(spool)
        return state

    async def _flush_forever(self, state: _LoopState) -> None:
        while True:
            batch = [await state.queue.get()]
            while len(batch) < BATCH_SIZE and not state.queue.empty():
                batch.append(state.queue.get_nowait())
            try:
                await self._write_batch(state, [entry for entry, _ in batch])
            except Exception:
                logger.exception("ledger batch failed", extra={"rows": [describe(e) for e, _ in batch]})
            finally:
                for _, segment in batch:
                    if segment is not None and state.spool is not None and not segment.released:
                        state.spool.mark_written(segment)
                    state.queue.task_done()
            if state.queue.empty():
                try:
                    await self._replay_spilled(state)
                except Exception:
                    logger.exception("ledger spool replay failed; retrying after the next batch")

    async def _replay_spilled(self, state: _LoopState) -> None:
        """Segments with rows that never fit in memory: read back and written once memory has caught up."""
        if state.spool is None:
            return
        async with state.replaying:
            for segment in state.spool.spilled():
                if segment.released:
                    continue
                # A reader of its own: the segment's descriptor is write-only.
                orphan = Orphan(path=segment.path, fd=os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC))
                await self._replay(state, orphan)
                orphan.abandon()
                state.spool.release(segment)

    async def _recover_forever(self, state: _LoopState) -> None:
        while True:
            try:
                await self._replay_orphans(state)
            except Exception:
                logger.exception("ledger spool recovery failed; retrying")
            await asyncio.sleep(settings.LEDGER_SPOOL_SCAN_SECONDS)

    async def _replay_orphans(self, state: _LoopState) -> int:
        if state.spool is None:
            return 0
        spool = state.spool
        replayed = 0
        async with state.replaying:
            own = {s.path for s in spool.closed} | ({spool.current.path} if spool.current else set())
            orphans = await asyncio.to_thread(claim_orphans, spool.directory, own)
            for index, orphan in enumerate(orphans):
                try:
                    replayed += await self._replay(state, orphan)
                except BaseException:
                    for left in orphans[index + 1 :]:
                        left.abandon()
                    raise
                orphan.finish()
        if replayed:
            logger.warning("ledger rows replayed from the spool", extra={"rows": replayed})
        return replayed

    async def _replay(self, state: _LoopState, orphan: Orphan) -> int:
        """Write a segment's rows; rows already in the database are skipped by the INSERT's ON CONFLICT."""
        try:
            rows = await asyncio.to_thread(lambda: list(orphan.rows()))
            for start in range(0, len(rows), BATCH_SIZE):
                await self._write_batch(state, rows[start : start + BATCH_SIZE])
        except BaseException:
            orphan.abandon()
            raise
        return len(rows)

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
