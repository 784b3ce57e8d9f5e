"""An async psycopg pool per event loop, for the few queries the request path cannot avoid (idempotency keys,
a budget's reseed). Django's ORM stays off the event loop."""

from __future__ import annotations

import asyncio
import weakref

from django.db import connections
from psycopg_pool import AsyncConnectionPool

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = weakref.WeakKeyDictionary()
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def connection_kwargs() -> dict:
    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return params


async def pool() -> AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is not None:
        return found
    lock = _opening.setdefault(loop, asyncio.Lock())
    async with lock:
        found = _pools.get(loop)
        if found is None:
            found = AsyncConnectionPool(
                kwargs={**connection_kwargs(), "autocommit": True},
                min_size=1,
                max_size=8,
                open=False,
                name="requests",
                timeout=5,
            )
            await found.open()
            _pools[loop] = found
    return found


async def close() -> None:
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()
