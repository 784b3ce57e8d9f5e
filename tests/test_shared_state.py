"""Shared state behaves the same on real Redis and on the in-process stand-in, fails fast when Redis is gone,
and never reaches beyond its key prefix."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from django.conf import settings
from redis.exceptions import RedisError

from gateway.live_config import VERSION_KEY, LiveConfig, bump_config_version
from greengate_site import redis as shared_redis
from greengate_site.redis import RedisClients, register_script
from tests.conftest import ROOT, TEST_KEY_PREFIX_START

# Generous: the clients give up after 0.5 s (connect) / 1 s (command); redis-py's defaults would take ~50 s.
FAIL_FAST_SECONDS = 3.0

# A fixed window: INCR, start the window on the first hit, refuse past the limit. Returns {allowed, count}.
FIXED_WINDOW = register_script(
    """
    local count = redis.call('INCR', KEYS[1])
    if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
    if count > tonumber(ARGV[2]) then return {0, count} end
    return {1, count}
    """
)
# Compare-and-set: only the caller that saw the current value replaces it.
COMPARE_AND_SET = register_script(
    """
    if redis.call('GET', KEYS[1]) == ARGV[1] then
        redis.call('SET', KEYS[1], ARGV[2])
        return 1
    end
    return 0
    """
)


@pytest.fixture(params=["redis", "stand-in"])
async def shared(request: pytest.FixtureRequest) -> AsyncIterator[RedisClients]:
    """Fresh clients under a prefix of their own, inside this run's prefix; real Redis or the stand-in."""
    if request.param == "redis" and not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    url = settings.REDIS_URL if request.param == "redis" else None
    clients = RedisClients(url, prefix=f"{settings.REDIS_KEY_PREFIX}{secrets.token_hex(4)}:")
    yield clients
    clients.delete_prefixed_keys()
    await clients.aclose()
    clients.close()


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A URL whose server accepts connections (the kernel's backlog does) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


async def test_concurrent_increments_from_tasks_and_threads_are_never_lost(shared: RedisClients) -> None:
    counter = shared.key("counter")
    client = shared.async_client()

    async def task_increments() -> list[int]:
        return [await client.incr(counter) for _ in range(10)]

    def thread_increments() -> list[int]:
        return [shared.sync_client().incr(counter) for _ in range(100)]

    results = await asyncio.gather(
        *(task_increments() for _ in range(100)), *(asyncio.to_thread(thread_increments) for _ in range(4))
    )
    seen = [value for values in results for value in values]
    # Every INCR got its own value: none was lost or applied twice.
    assert sorted(seen) == list(range(1, 1401))
    assert int(await client.get(counter)) == 1400


async def test_a_lua_script_counts_a_fixed_window_the_same_on_both_backends(shared: RedisClients) -> None:
    window = shared.key("rl", "tenant-1", "minute")
    client = shared.async_client()
    answers = [await FIXED_WINDOW([window], [60_000, 3], client=client) for _ in range(5)]
    assert answers == [[1, 1], [1, 2], [1, 3], [0, 4], [0, 5]]
    assert FIXED_WINDOW.run_sync([window], [60_000, 3], client=shared.sync_client()) == [0, 6]
    assert 0 < await client.pttl(window) <= 60_000


async def test_a_lua_script_lets_exactly_one_of_many_concurrent_writers_win(shared: RedisClients) -> None:
    state = shared.key("cb", "deployment-7")
    client = shared.async_client()
    await client.set(state, "closed")
    wins = await asyncio.gather(
        *(COMPARE_AND_SET([state], ["closed", f"open-by-{n}"], client=client) for n in range(50))
    )
    assert sorted(wins) == [0] * 49 + [1]
    assert await client.get(state) == f"open-by-{wins.index(1)}"


async def test_a_script_the_server_does_not_know_yet_is_loaded_on_first_use(shared: RedisClients) -> None:
    # A source of its own, so its SHA1 is new to the server, as after a Redis restart.
    script = register_script(f"-- {secrets.token_hex(8)}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    client = shared.async_client()
    assert await client.script_exists(script.sha) == [False]
    assert await script([shared.key("n")], [5], client=client) == 5
    assert await client.script_exists(script.sha) == [True]
    assert script.run_sync([shared.key("n")], [2], client=shared.sync_client()) == 7


async def test_every_key_carries_the_prefix(shared: RedisClients) -> None:
    assert shared.key("cb", "gpt-4o") == shared.prefix + "cb:gpt-4o"
    assert shared.key("rl", 42, "minute") == shared.prefix + "rl:42:minute"
    with pytest.raises(ValueError):
        shared.key()
    client = shared.async_client()
    await client.set(shared.key("probe"), "1")
    assert [name async for name in client.scan_iter(match=shared.prefix + "*")] == [shared.prefix + "probe"]


def test_the_process_clients_use_this_runs_prefix_which_servers_it_starts_inherit() -> None:
    assert settings.REDIS_KEY_PREFIX.startswith(TEST_KEY_PREFIX_START)
    assert os.environ["REDIS_KEY_PREFIX"] == settings.REDIS_KEY_PREFIX
    assert shared_redis.key(*VERSION_KEY) == settings.REDIS_KEY_PREFIX + "config:version"


async def test_a_key_with_a_ttl_expires(shared: RedisClients) -> None:
    client = shared.async_client()
    await client.set(shared.key("lock", "req-1"), "held", px=150)
    assert await client.get(shared.key("lock", "req-1")) == "held"
    await asyncio.sleep(0.4)
    assert await client.get(shared.key("lock", "req-1")) is None


@pytest.mark.django_db(transaction=True)
async def test_a_bump_is_seen_by_every_live_config_on_the_same_state(shared: RedisClients) -> None:
    instances = [LiveConfig(redis=shared), LiveConfig(redis=shared)]
    assert [(await live.current()).version for live in instances] == [0, 0]

    # Sync, as admin saves and the CLI call it after their commit.
    assert await asyncio.to_thread(bump_config_version, shared) == 1
    assert await shared.async_client().get(shared.prefix + "config:version") == "1"

    await asyncio.sleep(settings.CONFIG_REFRESH_SECONDS + 0.05)
    assert [(await live.current()).version for live in instances] == [1, 1]


@pytest.mark.django_db(transaction=True)
async def test_an_unknown_key_forces_a_reload_only_with_the_stand_in_and_at_most_once_a_second(
    shared: RedisClients,
) -> None:
    live = LiveConfig(redis=shared)
    await live.current()
    if shared.in_process:
        # Another process (the CLI) may have made the key, and the stand-in cannot tell: look again, once.
        assert await live.reload_after_miss() is not None
        assert await live.reload_after_miss() is None
    else:
        # Real Redis says the version has not moved: nothing new to load.
        assert await live.reload_after_miss() is None


@pytest.mark.parametrize("dead", ["refusing", "silent"])
@pytest.mark.django_db(transaction=True)
async def test_a_dead_redis_fails_fast_and_live_config_keeps_serving_its_snapshot(dead: str, silent_redis: str) -> None:
    url = "redis://127.0.0.1:1/0" if dead == "refusing" else silent_redis
    gone = RedisClients(url, prefix=f"{settings.REDIS_KEY_PREFIX}gone:")
    try:
        started = time.monotonic()
        with pytest.raises(RedisError):
            await gone.async_client().get(gone.key("anything"))
        with pytest.raises(RedisError):
            await asyncio.to_thread(gone.sync_client().incr, gone.key("anything"))
        assert time.monotonic() - started < 2 * FAIL_FAST_SECONDS

        live = LiveConfig(redis=gone)
        first = await live.current()  # loaded from the database although the version cannot be read
        await asyncio.sleep(settings.CONFIG_REFRESH_SECONDS + 0.05)
        started = time.monotonic()
        assert await live.current() is first
        assert await live.reload_after_miss() is None
        assert time.monotonic() - started < 2 * FAIL_FAST_SECONDS

        # A bump that cannot reach Redis is logged, not raised: the admin's change is already committed.
        started = time.monotonic()
        assert await asyncio.to_thread(bump_config_version, gone) is None
        assert time.monotonic() - started < FAIL_FAST_SECONDS
    finally:
        await gone.aclose()
        gone.close()


async def test_cleanup_deletes_only_the_keys_under_its_prefix(shared: RedisClients) -> None:
    client = shared.async_client()
    inside = [shared.key("bulk", n) for n in range(1200)]  # more than one SCAN page and one UNLINK batch
    await client.mset(dict.fromkeys(inside, "x"))
    # Keys another process may own: one sharing the prefix's text up to its last ':', one foreign.
    sibling = shared.prefix[:-1] + "-sibling:kept"
    foreign = f"someone-else-{secrets.token_hex(4)}:kept"
    try:
        await client.set(sibling, "mine")
        await client.set(foreign, "mine")

        assert await asyncio.to_thread(shared.delete_prefixed_keys) == 1200

        assert await client.exists(*inside) == 0
        assert await client.get(sibling) == "mine"
        assert await client.get(foreign) == "mine"
    finally:
        await client.delete(sibling, foreign)


@pytest.mark.parametrize("prefix", ["greengate", "green gate:", "gg*:", "x" * 70 + ":"])
def test_a_bad_key_prefix_stops_start_up_with_a_clear_message(prefix: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "greengate_site.settings", "REDIS_KEY_PREFIX": prefix},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("GreenGate configuration error: REDIS_KEY_PREFIX")
    assert "Traceback" not in result.stderr


def test_the_default_key_prefix_is_greengate() -> None:
    env = {name: value for name, value in os.environ.items() if name != "REDIS_KEY_PREFIX"}
    result = subprocess.run(
        [sys.executable, "-c", "from greengate_site import settings; print(settings.REDIS_KEY_PREFIX)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "greengate:"
