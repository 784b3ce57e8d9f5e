"""Shared state for all instances: Redis when REDIS_URL is set, else an in-process stand-in (one process only)."""

from __future__ import annotations

import asyncio
import threading
import weakref
from functools import lru_cache

import redis
import redis.asyncio as aioredis
from django.conf import settings

KEY_PREFIX = "greengate:"


class MemoryStore:
    """Process-local stand-in for Redis, safe from both the event loop and sync (admin) threads."""

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()

    async def get_int(self, key: str) -> int:
        return self._values.get(key, 0)

    def incr_sync(self, key: str) -> int:
        with self._lock:
            self._values[key] = self._values.get(key, 0) + 1
            return self._values[key]


class RedisStore:
    def __init__(self, url: str) -> None:
        self._url = url
        self._sync = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()

    def _client(self) -> aioredis.Redis:
        # redis.asyncio pools are bound to the loop that made them.
        loop = asyncio.get_running_loop()
        existing = self._async.get(loop)
        if existing is None:
            existing = aioredis.Redis.from_url(self._url, socket_timeout=2, socket_connect_timeout=2)
            self._async[loop] = existing
        return existing

    async def get_int(self, key: str) -> int:
        value = await self._client().get(key)
        return int(value) if value is not None else 0

    def incr_sync(self, key: str) -> int:
        return int(self._sync.incr(key))


@lru_cache(maxsize=1)
def shared_store() -> MemoryStore | RedisStore:
    return RedisStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryStore()
