"""The one outgoing HTTP client: a shared httpx.AsyncClient per event loop, pooled and keep-alive."""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def client() -> httpx.AsyncClient:
    # One per loop because an AsyncClient's pool is bound to the loop that first used it.
    loop = asyncio.get_running_loop()
    existing = _clients.get(loop)
    if existing is None or existing.is_closed:
        existing = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.UPSTREAM_TIMEOUT, connect=settings.UPSTREAM_CONNECT_TIMEOUT),
            limits=httpx.Limits(
                max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
                max_keepalive_connections=min(200, settings.UPSTREAM_MAX_CONNECTIONS),
                keepalive_expiry=30,
            ),
            follow_redirects=False,
        )
        _clients[loop] = existing
    return existing
