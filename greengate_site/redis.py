"""The process's Redis clients: one factory for everything that shares state between instances.

Rate limits, breakers, idempotency locks and the config version all go through here, so they have one
implementation against one client API (redis-py's). With ``REDIS_URL`` unset an in-process Redis-compatible
server stands in (fakeredis, Lua through lupa): same commands, same scripts, but seen by this process only.

Every key is built with ``key(*parts)``, which applies ``REDIS_KEY_PREFIX``, so several deployments (or test
runs) can share one Redis database without touching each other's keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import fakeredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.retry import Retry

# A dead or stuck Redis must cost a request well under a second or two, never hang it: redis-py's defaults
# (5 s timeouts, 10 retries with backoff) could hold a request for most of a minute.
CONNECT_TIMEOUT_SECONDS = 0.5
COMMAND_TIMEOUT_SECONDS = 1.0
# An idle pooled connection is PINGed before reuse after this long, so one a firewall or a Redis restart
# dropped is replaced instead of failing the command.
HEALTH_CHECK_SECONDS = 15
# Per event loop. Beyond it, commands wait (up to COMMAND_TIMEOUT_SECONDS) for a free connection rather than
# opening thousands of sockets under a burst.
MAX_CONNECTIONS = 200

KeyPart = str | int
ScriptArg = str | int | float


def _retry_once_on_connection_error(retry_class: type[Retry] | type[AsyncRetry]) -> Retry | AsyncRetry:
    # One immediate retry replaces a connection that died while pooled. Timeouts are not retried: a Redis that
    # did not answer within the timeout will not answer faster the second time, and the first command (an INCR,
    # a script) may already have run.
    return retry_class(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


class RedisClients:
    """Clients for one Redis (or one in-process stand-in) and one key prefix.

    redis.asyncio pools belong to the event loop that made them, so there is one async client per loop; the
    sync client serves threads (admin saves, management commands, Celery). With no URL, both talk to one
    ``fakeredis.FakeServer`` held here, so a bump made by a sync admin thread is seen by the event loop.
    """

    def __init__(self, url: str | None, *, prefix: str) -> None:
        self.url = url or None
        self.prefix = prefix
        self._server: fakeredis.FakeServer | None = None if self.url else fakeredis.FakeServer(version=(7, 4))
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
        self._sync: redis.Redis | None = None
        self._lock = threading.Lock()

    @property
    def in_process(self) -> bool:
        """True for the stand-in: other processes (a CLI, another instance) cannot see this state."""
        return self._server is not None

    def key(self, *parts: KeyPart) -> str:
        """``key("cb", "gpt-4o")`` -> ``"greengate:cb:gpt-4o"`` under the default prefix."""
        if not parts:
            raise ValueError("a Redis key needs at least one part")
        return self.prefix + ":".join(str(part) for part in parts)

    def async_client(self) -> aioredis.Redis:
        """The client for the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            with self._lock:  # threads with loops of their own (async_to_sync) may arrive together
                client = self._async.get(loop)
                if client is None:
                    client = self._make_async()
                    self._async[loop] = client
        return client

    def sync_client(self) -> redis.Redis:
        """The client for sync code; redis-py's pool makes it safe to share between threads."""
        with self._lock:
            if self._sync is None:
                self._sync = self._make_sync()
            return self._sync

    def _make_async(self) -> aioredis.Redis:
        if self._server is not None:
            # Blocking pool, as for real Redis: a burst waits for a free (in-process) connection instead of
            # failing with "Too many connections".
            return fakeredis.FakeAsyncRedis(
                server=self._server,
                decode_responses=True,
                connection_pool_class=aioredis.BlockingConnectionPool,
                max_connections=MAX_CONNECTIONS,
                timeout=COMMAND_TIMEOUT_SECONDS,
            )
        assert self.url is not None
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=COMMAND_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            health_check_interval=HEALTH_CHECK_SECONDS,
            retry=_retry_once_on_connection_error(AsyncRetry),
            decode_responses=True,
        )
        return aioredis.Redis.from_pool(pool)

    def _make_sync(self) -> redis.Redis:
        if self._server is not None:
            return fakeredis.FakeRedis(server=self._server, decode_responses=True)
        assert self.url is not None
        return redis.Redis.from_url(
            self.url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            health_check_interval=HEALTH_CHECK_SECONDS,
            retry=_retry_once_on_connection_error(Retry),
            decode_responses=True,
        )

    async def aclose(self) -> None:
        """Close the running loop's client (on shutdown, or at the end of a test's loop)."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Close the sync client. Async clients of other loops cannot be awaited from here: they are only
        forgotten, and close with their loop. The stand-in's data survives; clients reopen on next use."""
        with self._lock:
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
        self._async.clear()

    def delete_prefixed_keys(self) -> int:
        """Delete every key under this prefix, and nothing else (SCAN, not KEYS or FLUSHDB: the database may
        be shared). Returns how many were deleted."""
        client = self.sync_client()
        deleted = 0
        batch: list[str] = []
        for name in client.scan_iter(match=_glob_escape(self.prefix) + "*", count=1000):
            batch.append(name)
            if len(batch) >= 500:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
        return deleted


def _glob_escape(text: str) -> str:
    # SCAN MATCH takes a glob; settings forbid these characters in the prefix, but a key never hurts escaped.
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class Script:
    """A Lua script run by its SHA1 on either client kind, loaded onto the server whenever it is missing there
    (first use, a Redis restart, another instance's SCRIPT FLUSH). Scripts run atomically on both backends."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(
        self,
        keys: Sequence[str] = (),
        args: Sequence[ScriptArg] = (),
        *,
        client: aioredis.Redis | None = None,
    ) -> Any:
        client = client if client is not None else async_client()
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def run_sync(
        self,
        keys: Sequence[str] = (),
        args: Sequence[ScriptArg] = (),
        *,
        client: redis.Redis | None = None,
    ) -> Any:
        client = client if client is not None else sync_client()
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


def register_script(source: str) -> Script:
    """Define a Lua script once, at import time; run it with ``await script(keys, args)`` (or ``run_sync``).
    Nothing touches Redis until the first run."""
    return Script(source)


_process_clients: RedisClients | None = None
_process_clients_lock = threading.Lock()


def clients() -> RedisClients:
    """The process's clients, from settings (REDIS_URL, REDIS_KEY_PREFIX)."""
    global _process_clients
    if _process_clients is not None:
        return _process_clients
    # Locked, not lru_cache: an admin thread and the event loop racing to the first use must not end up with
    # two stand-in servers, one of which would swallow the other's writes.
    with _process_clients_lock:
        if _process_clients is None:
            from django.conf import settings

            _process_clients = RedisClients(settings.REDIS_URL, prefix=settings.REDIS_KEY_PREFIX)
        return _process_clients


def key(*parts: KeyPart) -> str:
    return clients().key(*parts)


def async_client() -> aioredis.Redis:
    return clients().async_client()


def sync_client() -> redis.Redis:
    return clients().sync_client()


async def aclose() -> None:
    """For shutdown: close this loop's client and the sync one."""
    await clients().aclose()
    clients().close()
