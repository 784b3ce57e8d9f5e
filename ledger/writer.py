"""Writes ledger rows off the response path, over an async psycopg pool, exactly once per request."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
import weakref
from dataclasses import asdict, dataclass, field
from datetime import datetime

import psycopg
from django.db import connections
from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


def uuid7() -> uuid.UUID:
    """A time-ordered UUID, so ledger inserts land at the end of the primary-key index."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


@dataclass(slots=True)
class LedgerRow:
    request_id: str
    created_at: datetime
    status_code: int
    latency_ms: int
    stream: bool = False
    tenant_id: int | None = None
    api_key_id: int | None = None
    provider: str = ""
    model: str = ""
    upstream_model: str = ""
    error_code: str = ""
    cache_status: str = "none"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    ttft_ms: int | None = None
    id: uuid.UUID = field(default_factory=uuid7)


_COLUMNS = [f for f in LedgerRow.__dataclass_fields__]
_INSERT = (
    f"INSERT INTO ledger_ledgerentry ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('%(' + c + ')s' for c in _COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)


BATCH_SIZE = 500


class _LoopState:
    """A writer's queue and flusher task on one event loop, plus its connection pool."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[LedgerRow] = asyncio.Queue()
        self.flusher: asyncio.Task | None = None
        self.pool: AsyncConnectionPool | None = None


class LedgerWriter:
    """Queues rows and writes them from one flusher task, batched when requests come faster than writes.

    Writes run outside the request's task, so a client leaving cannot cancel them.
    """

    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    def record(self, row: LedgerRow) -> None:
        state = self._state()
        state.queue.put_nowait(row)
        if state.flusher is None or state.flusher.done():
            state.flusher = asyncio.get_running_loop().create_task(self._flush_forever(state))

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
                logger.exception("ledger batch failed", extra={"rows": [asdict(row) for row in batch]})
            finally:
                for _ in batch:
                    state.queue.task_done()

    async def _write_batch(self, state: _LoopState, batch: list[LedgerRow]) -> None:
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                await self._insert(state, batch)
                return
            except psycopg.errors.UniqueViolation:
                # A client reused an X-Request-ID already in the ledger: write row by row, keeping both.
                for row in batch:
                    await self._insert_keeping_both(state, row)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                if delay is None:
                    logger.error(
                        "ledger write failed for good", extra={"rows": [asdict(r) for r in batch], "error": str(exc)}
                    )
                    return
                logger.warning("ledger write failed; retrying", extra={"attempt": attempt + 1, "error": str(exc)})
                await asyncio.sleep(delay)

    async def _insert_keeping_both(self, state: _LoopState, row: LedgerRow) -> None:
        try:
            await self._insert(state, [row])
        except psycopg.errors.UniqueViolation:
            logger.warning("request id already in the ledger; storing with a suffix", extra={"request": row.request_id})
            row.request_id = f"{row.request_id[:120]}~{row.id.hex[-12:]}"
            await self._insert(state, [row])

    async def _insert(self, state: _LoopState, rows: list[LedgerRow]) -> None:
        if state.pool is None:
            params = connections["default"].get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            state.pool = AsyncConnectionPool(kwargs=params, min_size=1, max_size=4, open=False, name="ledger")
            await state.pool.open()
        async with state.pool.connection() as conn, conn.cursor() as cursor:
            # Retried batches are harmless: a row already written conflicts on its id and is skipped.
            await cursor.executemany(_INSERT, [asdict(row) for row in rows])


ledger_writer = LedgerWriter()
