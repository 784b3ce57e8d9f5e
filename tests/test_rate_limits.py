"""Requests and tokens per minute, per key and per tenant, exact across instances, over real HTTP and Redis."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.admission.rate_limits import estimated_tokens
from gateway.call import Call
from gateway.validation import parse_chat_request
from tenants.services import api_key_create
from tests.conftest import RunningGateway, start_gateway, stop_gateway
from tests.factories import TenantFactory

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
_addresses = itertools.count(1)


def key_for(**limits) -> str:
    key_limits = {k.removeprefix("key_"): v for k, v in limits.items() if k.startswith("key_")}
    tenant = TenantFactory(**{k: v for k, v in limits.items() if not k.startswith("key_")})
    key, secret = api_key_create(tenant=tenant, name="limits")
    if key_limits:
        for name, value in key_limits.items():
            setattr(key, name, value)
        key.save()
    return secret


def post(gateway: RunningGateway, key: str, body: dict | None = None, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=body or BODY,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def test_every_answer_carries_openais_rate_limit_headers(gateway, route):
    route("gpt-test")
    key = key_for(rate_limit_per_minute=50, tokens_per_minute=100_000)
    first = post(gateway, key)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "50"
    assert first.headers["x-ratelimit-remaining-requests"] == "49"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 100_000
    second = post(gateway, key)
    assert second.headers["x-ratelimit-remaining-requests"] == "48"


def test_over_the_tenants_limit_a_caller_gets_a_429_saying_which_limit_and_when_to_retry(gateway, route):
    route("gpt-test")
    key = key_for(rate_limit_per_minute=3)
    assert [post(gateway, key).status_code for _ in range(3)] == [200, 200, 200]
    refused = post(gateway, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "tenant" in error["message"] and "Limit 3" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_keys_own_limit_narrows_its_tenants(gateway, route):
    route("gpt-test")
    key = key_for(rate_limit_per_minute=100, key_rate_limit_per_minute=2)
    assert [post(gateway, key).status_code for _ in range(3)] == [200, 200, 429]
    refused = post(gateway, key).json()["error"]
    assert "key gg-" in refused["message"]


def test_the_sdk_sees_a_rate_limit_error_it_understands(gateway, route):
    import openai

    route("gpt-test")
    key = key_for(rate_limit_per_minute=1)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(**BODY)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**BODY)
    assert caught.value.status_code == 429


def test_a_token_limit_refuses_what_would_go_over_it_and_frees_what_a_request_did_not_use(gateway, route):
    route("gpt-test", words=3)
    key = key_for(tokens_per_minute=250)
    ask = {**BODY, "max_tokens": 100}
    # Each reserves its prompt plus 100; it then uses a handful, and the rest is given back.
    assert [post(gateway, key, ask).status_code for _ in range(5)] == [200] * 5
    big = post(gateway, key, {**BODY, "max_tokens": 240})
    assert big.status_code == 429
    assert big.json()["error"]["type"] == "tokens"


def test_a_request_larger_than_the_token_limit_is_told_it_can_never_fit(gateway, route):
    route("gpt-test")
    key = key_for(tokens_per_minute=50)
    refused = post(gateway, key, {**BODY, "max_tokens": 500})
    assert refused.status_code == 429
    assert "Request too large" in refused.json()["error"]["message"]
    assert "retry-after" not in refused.headers


def test_tokens_of_a_stream_and_of_a_client_that_left_are_settled_to_what_was_used(gateway, route, ledger_row):
    route("gpt-test", words=40, chunk_delay=0.05)
    key = key_for(tokens_per_minute=20_000)
    headers = {"Authorization": f"Bearer {key}"}
    ask = {**BODY, "stream": True, "max_tokens": 4000}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=ask, headers=headers) as streamed:
        streamed.read()
        finished = streamed.headers["x-request-id"]
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=ask, headers=headers) as left:
        left_id = left.headers["x-request-id"]
        for _ in itertools.islice(left.iter_lines(), 4):
            pass  # leave after a few chunks
    rows = [ledger_row(finished), ledger_row(left_id)]
    assert rows[1].status_code == 499
    used = sum(r.prompt_tokens + r.completion_tokens for r in rows)
    # A probe reserves what GreenGate estimates for it (its prompt, by GreenGate's count, plus max_tokens).
    probe_body = {**BODY, "max_tokens": 1}
    reservation = estimated_tokens(Call(request_id="probe", chat=parse_chat_request(json.dumps(probe_body).encode())))
    # Settling happens just after accounting: poll until the limiter has it (earlier probes count too).
    deadline = time.monotonic() + 20
    while True:
        probe = post(gateway, key, probe_body)
        remaining = int(probe.headers["x-ratelimit-remaining-tokens"])
        probe_row = ledger_row(probe.headers["x-request-id"])
        expected = 20_000 - used - reservation
        if remaining == expected or time.monotonic() > deadline:
            break
        used += probe_row.prompt_tokens + probe_row.completion_tokens
        time.sleep(0.2)
    assert remaining == expected


def test_a_caller_may_only_use_and_list_its_allowed_models(gateway, route):
    route("gpt-test")
    route("gpt-other")
    key = key_for(allowed_models="gpt-test")
    headers = {"Authorization": f"Bearer {key}"}
    listed = httpx.get(f"{gateway.url}/v1/models", headers=headers).json()
    assert [m["id"] for m in listed["data"]] == ["gpt-test"]
    assert httpx.get(f"{gateway.url}/v1/models/gpt-other", headers=headers).status_code == 404
    refused = post(gateway, key, {**BODY, "model": "gpt-other"})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"


# --- Two instances, and callers without a key -----------------------------------------------------------------


@pytest.fixture(scope="module")
def second_gateway(gateway_server) -> Iterator[RunningGateway]:
    second = start_gateway(log_name="limits-second")
    yield second
    stop_gateway(second)


def test_sixteen_clients_over_two_instances_get_exactly_the_keys_sixty_a_minute(
    gateway, second_gateway, route, transactional_db
):
    route("gpt-test")
    key = key_for(rate_limit_per_minute=1000, key_rate_limit_per_minute=60)
    outcomes: list[int] = []

    async def client(url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            stop = time.monotonic() + 4
            while time.monotonic() < stop:
                r = await http.post(f"{url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"})
                outcomes.append(r.status_code)

    async def everyone() -> None:
        await asyncio.gather(*(client(g.url) for g in [gateway, second_gateway] for _ in range(8)))

    asyncio.run(everyone())
    assert set(outcomes) <= {200, 429}
    # Within a minute nothing ages out of the window: exactly the limit, not one more, not fewer.
    assert outcomes.count(200) == 60


@pytest.fixture(scope="module")
def proxied_gateway(gateway_server) -> Iterator[RunningGateway]:
    """Behind a trusted proxy (127.0.0.1), so each test can speak for addresses of its own."""
    proxied = start_gateway({"TRUSTED_PROXIES": "127.0.0.1", "RATE_LIMIT_PER_MINUTE": "5"}, log_name="proxied")
    yield proxied
    stop_gateway(proxied)


def forwarded_for() -> str:
    return f"203.0.113.{next(_addresses)}"


def test_guessing_keys_is_limited_per_address_and_costs_no_tenant_anything(proxied_gateway, route):
    route("gpt-test")
    key = key_for(rate_limit_per_minute=3)
    address = forwarded_for()
    bad = [post(proxied_gateway, "gg-not-a-key", **{"X-Forwarded-For": address}).status_code for _ in range(7)]
    assert bad == [401] * 5 + [429] * 2
    # The tenant's own three requests are all still there.
    assert [post(proxied_gateway, key, **{"X-Forwarded-For": address}).status_code for _ in range(3)] == [200] * 3
    # Another address is not affected.
    assert post(proxied_gateway, "gg-not-a-key", **{"X-Forwarded-For": forwarded_for()}).status_code == 401


def test_addresses_a_client_prepends_to_x_forwarded_for_do_not_dodge_the_limit(proxied_gateway):
    address = forwarded_for()
    statuses = [
        post(proxied_gateway, "gg-not-a-key", **{"X-Forwarded-For": f"{forwarded_for()}, {address}"}).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]


def test_the_client_address_is_the_connections_unless_it_is_a_trusted_proxy(settings):
    import ipaddress

    from gateway.admission.client_address import client_address

    def scope(peer: str, forwarded: str) -> dict:
        return {"client": (peer, 5000), "headers": [(b"x-forwarded-for", forwarded.encode())]}

    settings.TRUSTED_PROXY_NETWORKS = ()
    assert client_address(scope("198.51.100.1", "203.0.113.5")) == "198.51.100.1"
    settings.TRUSTED_PROXY_NETWORKS = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_address(scope("198.51.100.1", "203.0.113.5")) == "198.51.100.1", "not from a trusted proxy"
    assert client_address(scope("10.0.0.2", "203.0.113.5")) == "203.0.113.5"
    assert client_address(scope("10.0.0.2", "1.2.3.4, 203.0.113.5, 10.0.0.9")) == "203.0.113.5"
    assert client_address(scope("10.0.0.2", "not-an-address")) == "10.0.0.2"


def test_refusals_are_audited_once_per_key_and_limit_not_once_per_request(route, transactional_db):
    from ledger.models import AuditAction, AuditEvent

    route("gpt-test")
    key = key_for(rate_limit_per_minute=2)
    own = start_gateway(log_name="limits-audit")
    try:
        statuses = [post(own, key).status_code for _ in range(6)]
    finally:
        stop_gateway(own)  # its shutdown writes the minute's open denial counts
    assert statuses == [200, 200, 429, 429, 429, 429]
    events = AuditEvent.objects.filter(action=AuditAction.RATE_LIMITED)
    assert events.count() == 1
    assert "4" in str(events.get().changes)
