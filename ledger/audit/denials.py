"""Quota and budget denials, counted so that a flood of refusals writes at most one event per key, limit and
minute, across every instance.

Each instance counts its denials in memory: a denial costs a dict update, no I/O. When the minute ends, every
instance that saw denials adds its count to one Redis hash for that key, limit and minute; the first to arrive
writes the event, after a short grace for the others' counts, with the fleet's total. A count arriving after the
grace is lost from the total (the event still exists). Without Redis, each instance writes its own count.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from greengate_site import redis as shared
from greengate_site.redis import RedisClients
from ledger.audit import background, events
from ledger.models import AuditAction

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
GRACE_SECONDS = 2.0
DENIALS = (AuditAction.RATE_LIMITED, AuditAction.BUDGET_DENIED)

_ADD = shared.register_script(
    """
local total = redis.call('HINCRBY', KEYS[1], 'count', ARGV[1])
local arrivals = redis.call('HINCRBY', KEYS[1], 'instances', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {total, arrivals}
"""
)

Ident = tuple[str, str, int, int]  # action, limit, key id, window number


@dataclass(slots=True)
class _Bucket:
    action: AuditAction
    limit: str
    key_id: int
    key_prefix: str
    tenant: str
    window: int
    first_request_id: str
    loop: asyncio.AbstractEventLoop
    count: int = 1
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class DenialCounter:
    def __init__(
        self,
        *,
        window_seconds: float = WINDOW_SECONDS,
        grace_seconds: float = GRACE_SECONDS,
        redis: RedisClients | None = None,
    ) -> None:
        self.window_seconds = window_seconds
        self.grace_seconds = grace_seconds
        self._redis = redis
        self._open: dict[Ident, _Bucket] = {}

    def record(
        self,
        *,
        action: AuditAction,
        limit: str,
        key_id: int,
        key_prefix: str,
        tenant: str,
        request_id: str = "",
    ) -> None:
        """Count one denial; call it on the running loop, without awaiting: it never waits for anything."""
        if action not in DENIALS:
            raise ValueError(f"not a denial: {action!r}")
        loop = asyncio.get_running_loop()
        window = math.floor(time.time() / self.window_seconds)
        ident = (str(action), limit, key_id, window)
        bucket = self._open.get(ident)
        if bucket is not None and bucket.loop is loop:
            bucket.count += 1
            return
        bucket = _Bucket(action, limit, key_id, key_prefix, tenant, window, request_id, loop)
        self._open[ident] = bucket
        # An empty context: the count outlives the request that started it.
        bucket.task = loop.create_task(self._at_window_end(ident, bucket), context=contextvars.Context())

    async def flush(self) -> None:
        """Settle this loop's open windows now, without the grace (shutdown, tests)."""
        loop = asyncio.get_running_loop()
        mine = [(ident, b) for ident, b in self._open.items() if b.loop is loop]
        for _, bucket in mine:
            if bucket.task is not None:
                bucket.task.cancel()
        await asyncio.gather(*(self._settle(ident, bucket, grace=0.0) for ident, bucket in mine))

    async def _at_window_end(self, ident: Ident, bucket: _Bucket) -> None:
        await asyncio.sleep(max(0.0, (bucket.window + 1) * self.window_seconds - time.time()))
        await self._settle(ident, bucket, grace=self.grace_seconds)

    async def _settle(self, ident: Ident, bucket: _Bucket, *, grace: float) -> None:
        if self._open.get(ident) is bucket:
            del self._open[ident]  # later denials start the next window's count
        redis = self._redis or shared.clients()
        name = redis.key("audit", "denied", *ident)
        total, instances = bucket.count, 1
        try:
            ttl_ms = int((self.window_seconds + grace) * 3000)
            total, instances = (int(n) for n in await _ADD([name], [bucket.count, ttl_ms], client=redis.async_client()))
            if instances != 1:
                return  # another instance arrived first and writes the event with this count in it
            if grace:
                await asyncio.sleep(grace)
                fleet = await redis.async_client().hgetall(name)
                total, instances = int(fleet.get("count", total)), int(fleet.get("instances", instances))
        except Exception:  # noqa: BLE001 - without Redis, this instance's own count is still worth an event
            logger.warning("denials could not be counted across instances", exc_info=True)
        await background.run(functools.partial(self._write, bucket, total, instances), what=str(bucket.action))

    def _write(self, bucket: _Bucket, total: int, instances: int) -> None:
        events.record(
            action=bucket.action,
            actor=events.GATEWAY,
            target_type="tenants.apikey",
            target_id=bucket.key_id,
            target_text=f"{bucket.key_prefix}…",
            tenant=bucket.tenant,
            request_id=bucket.first_request_id,
            changes={
                "limit": bucket.limit,
                "count": total,
                "window_start": datetime.fromtimestamp(bucket.window * self.window_seconds, UTC),
                "window_seconds": self.window_seconds,
                "instances": instances,
            },
        )


denials = DenialCounter()


def denial(*, action: AuditAction, limit: str, key_id: int, key_prefix: str, tenant: str, request_id: str = "") -> None:
    """What the admission stage calls on each refusal (quota or budget); returns at once, writes later."""
    denials.record(
        action=action, limit=limit, key_id=key_id, key_prefix=key_prefix, tenant=tenant, request_id=request_id
    )
