"""Circuit breakers: the state machine on real Redis and on the stand-in, and over real HTTP across instances."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from django.conf import settings

from greengate_site.redis import RedisClients
from providers import breaker
from providers.breaker import Verdict
from providers.types import BreakerPolicy
from tests.conftest import start_gateway, stop_gateway

POLICY = BreakerPolicy(failures=3, failure_rate=0.5, min_requests=10, window_seconds=60, open_seconds=0.5, probes=2)


@pytest.fixture(params=["redis", "stand-in"])
async def shared(request: pytest.FixtureRequest) -> AsyncIterator[RedisClients]:
    url = settings.REDIS_URL if request.param == "redis" else None
    clients = RedisClients(url, prefix=f"{settings.REDIS_KEY_PREFIX}{secrets.token_hex(4)}:")
    yield clients
    clients.delete_prefixed_keys()
    await clients.aclose()
    clients.close()


async def fail(shared: RedisClients, times: int, policy: BreakerPolicy = POLICY, deployment: int = 1) -> list[str]:
    return [
        await breaker.record(deployment, policy, ok=False, latency_ms=5, error="upstream_error", redis=shared)
        for _ in range(times)
    ]


async def test_consecutive_failures_open_it_and_it_fails_fast(shared):
    assert await breaker.check(1, POLICY, redis=shared) is Verdict.CLOSED
    assert await fail(shared, 3) == ["same", "same", "opened"]
    assert await breaker.check(1, POLICY, redis=shared) is Verdict.OPEN
    assert 0 < await breaker.retry_after(1, redis=shared) <= POLICY.open_seconds


async def test_a_success_between_failures_keeps_it_closed(shared):
    await fail(shared, 2)
    await breaker.record(1, POLICY, ok=True, latency_ms=5, redis=shared)
    assert await fail(shared, 2) == ["same", "same"]
    assert await breaker.check(1, POLICY, redis=shared) is Verdict.CLOSED


async def test_a_failure_rate_over_the_window_opens_it(shared):
    policy = BreakerPolicy(failures=100, failure_rate=0.5, min_requests=10, window_seconds=60, open_seconds=5)
    outcomes = []
    for i in range(10):
        outcomes.append(
            await breaker.record(1, policy, ok=i % 2 == 0, latency_ms=5, error="upstream_error", redis=shared)
        )
    assert outcomes[-1] == "opened"  # 5 of 10 failed, never 2 in a row


async def test_half_open_grants_a_bounded_number_of_probes_to_concurrent_callers(shared):
    await fail(shared, 3)
    await asyncio.sleep(POLICY.open_seconds + 0.1)
    verdicts = await asyncio.gather(*[breaker.check(1, POLICY, redis=shared) for _ in range(50)])
    assert verdicts.count(Verdict.PROBE) == POLICY.probes
    assert verdicts.count(Verdict.OPEN) == 50 - POLICY.probes


async def test_a_successful_probe_closes_it_and_a_failed_one_opens_it_again(shared):
    await fail(shared, 3)
    await asyncio.sleep(POLICY.open_seconds + 0.1)
    assert await breaker.check(1, POLICY, redis=shared) is Verdict.PROBE
    assert await fail(shared, 1) == ["opened"]
    assert await breaker.check(1, POLICY, redis=shared) is Verdict.OPEN
    await asyncio.sleep(POLICY.open_seconds + 0.1)
    assert await breaker.check(1, POLICY, redis=shared) is Verdict.PROBE
    assert await breaker.record(1, POLICY, ok=True, latency_ms=5, redis=shared) == "closed"
    assert await breaker.check(1, POLICY, redis=shared) is Verdict.CLOSED
    assert breaker.health(1, redis=shared).state == "closed"


async def test_deleting_its_key_resets_it_as_the_runbook_says(shared):
    await fail(shared, 3)
    assert breaker.health(1, redis=shared).state == "open"
    await shared.async_client().delete(shared.key("cb", 1))
    assert await breaker.check(1, POLICY, redis=shared) is Verdict.CLOSED


async def test_health_reports_error_rate_latency_and_last_error(shared):
    for latency in (10, 20, 30, 40):
        await breaker.record(7, POLICY, ok=True, latency_ms=latency, redis=shared)
    await breaker.record(7, POLICY, ok=False, latency_ms=50, error="upstream_timeout", redis=shared)
    health = breaker.health(7, redis=shared)
    assert (health.state, health.calls, health.error_rate) == ("closed", 5, 0.2)
    assert health.latency_p50_ms == 30 and health.latency_p95_ms == 50
    assert health.last_error == "upstream_timeout"


async def test_without_redis_every_deployment_is_tried():
    dead = RedisClients("redis://127.0.0.1:1/0", prefix="greengate-test-dead:")
    assert await breaker.check(1, POLICY, redis=dead) is Verdict.CLOSED
    assert await breaker.record(1, POLICY, ok=False, latency_ms=1, redis=dead) == "same"


# --- Over real HTTP -------------------------------------------------------------------------------------------


def chat(gateway, key: str, model: str = "gpt-test") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


@pytest.mark.django_db(transaction=True)
def test_a_breaker_opened_through_one_instance_is_honoured_by_another(gateway, api_key, route, upstream):
    """Failures through the first instance open the breaker; the second fails fast without calling upstream."""
    deployment = route("gpt-test", status=500)
    deployment.provider.breaker_failures = 2
    deployment.provider.breaker_open_seconds = 60
    deployment.provider.save()
    second = start_gateway(log_name="breaker-second")
    try:
        first_answer = chat(gateway, api_key)
        assert first_answer.status_code == 502  # 2 failed calls (1 + UPSTREAM_RETRIES rounds): now open
        calls_before = len(upstream.requests)
        refused = chat(second, api_key)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["code"] == "model_unavailable" and "gpt-test" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert len(upstream.requests) == calls_before  # failed fast: the upstream saw nothing
    finally:
        stop_gateway(second)


@pytest.mark.django_db(transaction=True)
def test_an_open_breaker_is_skipped_and_the_next_deployment_answers(gateway, api_key, route, upstream):
    broken = route("gpt-test", status=503)
    route("gpt-test", priority=1)
    broken.provider.breaker_failures = 1
    broken.provider.save()
    assert chat(gateway, api_key).status_code == 200  # tried the broken one (it opened), fell through
    upstream.reset()
    assert chat(gateway, api_key).status_code == 200
    assert [r["path"] for r in upstream.requests] == ["/v1/chat/completions"]  # the broken one was skipped


@pytest.mark.django_db(transaction=True)
def test_half_open_probes_stay_within_the_bound_across_two_instances(gateway, api_key, route, upstream):
    slow_and_broken = route("gpt-test", status=500)
    provider = slow_and_broken.provider
    provider.breaker_failures, provider.breaker_open_seconds, provider.breaker_probes = 1, 1, 1
    provider.save()
    second = start_gateway(log_name="breaker-probes")
    try:
        assert chat(gateway, api_key).status_code == 502  # opened
        import time

        time.sleep(1.2)  # half-open now
        upstream.reset()

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                replies = await asyncio.gather(
                    *[
                        client.post(
                            f"{g.url}/v1/chat/completions",
                            json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
                            headers={"Authorization": f"Bearer {api_key}"},
                        )
                        for g in (gateway, second) * 10
                    ]
                )
            return [r.status_code for r in replies]

        statuses = asyncio.run(burst())
        # One probe across both instances reached the upstream; the rest failed fast.
        assert len(upstream.requests) == 1, [r["path"] for r in upstream.requests]
        assert statuses.count(503) == 19 and statuses.count(502) == 1
    finally:
        stop_gateway(second)
