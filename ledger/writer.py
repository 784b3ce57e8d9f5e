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


class LedgerWriter:
    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
            weakref.WeakKeyDictionary()
        )
        self._pending: set[asyncio.Task] = set()

    def record(self, row: LedgerRow) -> None:
        """Queue the write; it runs in its own task, so a client leaving cannot cancel it."""
        task = asyncio.get_running_loop().create_task(self._write(row))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for queued writes, including any queued meanwhile (shutdown, tests)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await asyncio.sleep(0)  # let just-cancelled requests reach their accounting first
            pending = [t for t in self._pending if t.get_loop() is asyncio.get_running_loop()]
            remaining = deadline - asyncio.get_running_loop().time()
            if not pending or remaining <= 0:
                return
            await asyncio.wait(pending, timeout=remaining)

    async def close(self) -> None:
        """Finish queued writes and close this loop's connections (shutdown, tests)."""
        await self.drain()
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    async def _pool(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            params = connections["default"].get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            pool = AsyncConnectionPool(kwargs=params, min_size=1, max_size=10, open=False, name="ledger")
            self._pools[loop] = pool
            await pool.open()
        return pool

    async def _write(self, row: LedgerRow) -> None:
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                await self._insert(row)
                return
            except psycopg.errors.UniqueViolation:
                # Another request already used this request id (a client reused X-Request-ID):
                # keep both rows by giving this one a distinct id rather than dropping it.
                logger.warning(
                    "request id already in the ledger; storing with a suffix", extra={"request": row.request_id}
                )
                row.request_id = f"{row.request_id[:120]}~{row.id.hex[-12:]}"
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                if delay is None:
                    logger.error("ledger write failed for good", extra={"row": asdict(row), "error": str(exc)})
                    return
                logger.warning("ledger write failed; retrying", extra={"attempt": attempt + 1, "error": str(exc)})
                await asyncio.sleep(delay)
            except Exception:
                logger.exception("ledger write failed", extra={"row": asdict(row)})
                return

    async def _insert(self, row: LedgerRow) -> None:
        pool = await self._pool()
        async with pool.connection() as conn:
            await conn.execute(_INSERT, asdict(row))


ledger_writer = LedgerWriter()
