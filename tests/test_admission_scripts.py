"""The admission scripts behave the same on real Redis and on the in-process stand-in `make run` uses."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import pytest
from django.conf import settings

from gateway.admission import budgets, limiter
from greengate_site.redis import RedisClients


@pytest.fixture(params=["redis", "stand-in"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RedisClients]:
    url = settings.REDIS_URL if request.param == "redis" else None
    clients = RedisClients(url, prefix=f"{settings.REDIS_KEY_PREFIX}{secrets.token_hex(4)}:")
    yield clients
    clients.delete_prefixed_keys()
    await clients.aclose()
    clients.close()


def window_keys(store: RedisClients, name: str) -> list[str]:
    return [store.key("rl", name, "t"), store.key("rl", name, "w"), store.key("rl", name, "n")]


async def admit(store: RedisClients, member: str, limits: list[tuple[str, int, int]], now_ms: int) -> list:
    keys: list[str] = []
    args: list[int | str] = [now_ms, limiter.WINDOW_MS, limiter.KEY_TTL_MS, member]
    for name, maximum, weight in limits:
        keys += window_keys(store, name)
        args += [maximum, weight]
    return await limiter._ADMIT(keys, args, client=store.async_client())


async def test_a_window_admits_up_to_its_limit_then_frees_room_as_requests_age(store: RedisClients):
    now = int(time.time() * 1000)
    results = [await admit(store, f"r{i}", [("key", 3, 1)], now + i) for i in range(4)]
    assert [int(r[0]) for r in results] == [1, 1, 1, 0]
    assert 59_000 < int(results[3][2]) <= 60_000, "room in a minute, when the first request ages out"
    later = await admit(store, "r9", [("key", 3, 1)], now + 60_001)
    assert int(later[0]) == 1


async def test_all_limits_count_a_request_or_none_does(store: RedisClients):
    now = int(time.time() * 1000)
    assert int((await admit(store, "a", [("tenant", 10, 1), ("tokens", 100, 80)], now))[0]) == 1
    refused = await admit(store, "b", [("tenant", 10, 1), ("tokens", 100, 30)], now)
    assert (int(refused[0]), int(refused[1])) == (0, 2)
    # The tenant's window did not count the refused request.
    assert int((await admit(store, "c", [("tenant", 10, 1)], now))[3]) == 2


async def test_a_settled_reservation_gives_its_unused_weight_back(store: RedisClients):
    now = int(time.time() * 1000)
    await admit(store, "a", [("tokens", 100, 90)], now)
    await limiter._SETTLE(window_keys(store, "tokens"), ["a", 10, now, limiter.KEY_TTL_MS], client=store.async_client())
    assert int((await admit(store, "b", [("tokens", 100, 90)], now))[0]) == 1


async def test_a_budget_is_seeded_reserved_refused_and_settled(store: RedisClients):
    keys = [store.key("b", "t"), store.key("b", "r"), store.key("b", "a")]
    client = store.async_client()

    async def reserve(member: str, amount: int) -> list:
        return await budgets._RESERVE(keys, [int(time.time() * 1000), 60_000, member, 100, 3600, amount], client=client)

    assert [x.decode() if isinstance(x, bytes) else x for x in await reserve("a", 10)][:1] == ["seed"]
    await budgets._SEED(keys[:1], [50, 3600], client=client)
    assert int((await reserve("a", 40))[0]) == 1
    assert int((await reserve("b", 20))[0]) == 0, "50 spent + 40 held + 20 > 100"
    await budgets._SETTLE(keys, ["a", 5, 3600], client=client)
    assert int((await reserve("b", 20))[0]) == 1, "the reservation became its 5 of cost"


async def test_the_in_process_windows_give_the_scripts_results_call_for_call():
    """The stand-in keeps rate-limit windows in memory rather than running the Lua emulated: same answers."""
    import random

    lua = RedisClients(settings.REDIS_URL, prefix=f"{settings.REDIS_KEY_PREFIX}{secrets.token_hex(4)}:")
    local = limiter.LocalWindows()
    rng = random.Random(7)
    now = int(time.time() * 1000)
    try:
        for step in range(400):
            now += rng.choice([0, 5, 50, 400, 2_000])
            member = f"m{step}"
            if rng.random() < 0.15:
                name, weight = rng.choice(["a", "b"]), rng.randint(0, 30)
                await limiter._SETTLE(
                    window_keys(lua, name), [member, weight, now, limiter.KEY_TTL_MS], client=lua.async_client()
                )
                local.settle(window_keys(lua, name)[0], member, weight, now)
                continue
            limits = [("a", 40, rng.randint(1, 12))] + ([("b", 25, rng.randint(0, 9))] if rng.random() < 0.5 else [])
            expected = [int(x) for x in await admit(lua, member, limits, now)]
            args: list[int | str] = [now, limiter.WINDOW_MS, limiter.KEY_TTL_MS, member]
            for _, maximum, weight in limits:
                args += [maximum, weight]
            assert local.admit([window_keys(lua, n)[0] for n, _, _ in limits], args) == expected, step
    finally:
        lua.delete_prefixed_keys()
        await lua.aclose()
        lua.close()
