"""Idempotency keys: a repeat replays the stored answer (JSON or SSE) without a second upstream call or charge."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import openai
import pytest

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "charge me once"}]}


def post(gateway, api_key: str, body: dict | None = None, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=body or BODY,
        headers={"Authorization": f"Bearer {api_key}", **headers},
        timeout=30,
    )


def new_key() -> str:
    return f"order-{uuid.uuid4()}"


def test_a_repeat_gets_the_stored_answer_without_a_second_upstream_call(gateway, api_key, route, upstream, ledger_row):
    route("gpt-test", words=6)
    key = new_key()
    first = post(gateway, api_key, **{"Idempotency-Key": key})
    again = post(gateway, api_key, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(upstream.requests) == 1
    # The repeat is in the ledger as a replay of the first, and costs nothing.
    replay = ledger_row(again.headers["x-request-id"])
    assert replay.replay_of == first.headers["x-request-id"]
    assert replay.cost_usd == 0 and replay.prompt_tokens == 0 and replay.completion_tokens == 0


def test_the_runbooks_header_and_the_standard_one_name_the_same_key(gateway, api_key, route, upstream):
    route("gpt-test")
    key = new_key()
    assert post(gateway, api_key, **{"x-idempotency-key": key}).status_code == 200
    assert post(gateway, api_key, **{"Idempotency-Key": f'"{key}"'}).headers["idempotent-replayed"] == "true"
    assert len(upstream.requests) == 1


def test_a_streamed_answer_is_replayed_as_the_same_events(gateway, api_key, route, upstream):
    route("gpt-test", words=8)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0)
    key = new_key()

    def streamed() -> list:
        chunks = client.chat.completions.create(
            **BODY, stream=True, stream_options={"include_usage": True}, extra_headers={"Idempotency-Key": key}
        )
        return [c.model_dump() for c in chunks]

    first, again = streamed(), streamed()
    assert again == first
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in first if c["choices"])
    assert len(upstream.requests) == 1


def test_the_same_key_with_another_body_gets_a_422(gateway, api_key, route, upstream):
    route("gpt-test")
    key = new_key()
    assert post(gateway, api_key, **{"Idempotency-Key": key}).status_code == 200
    other = {**BODY, "messages": [{"role": "user", "content": "something else"}]}
    refused = post(gateway, api_key, other, **{"Idempotency-Key": key})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "idempotency_key_reused"
    # Spacing and key order are not a different body.
    same = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=json.dumps({"messages": BODY["messages"], "model": "gpt-test"}, indent=2),
        headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert same.headers.get("idempotent-replayed") == "true"


def test_two_concurrent_requests_with_one_key_reach_the_upstream_once(gateway, api_key, route, upstream):
    route("gpt-test", latency=0.5)
    key = new_key()

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {api_key}"}) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{gateway.url}/v1/chat/completions", json=BODY, headers={"Idempotency-Key": key})
                    for _ in range(2)
                )
            )

    responses = asyncio.run(both())
    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([200, 409], [200, 200])
    conflict = next((r for r in responses if r.status_code == 409), None)
    if conflict is not None:
        assert conflict.json()["error"]["code"] == "idempotency_key_in_use"
    assert len(upstream.requests) == 1


def test_keys_are_scoped_per_tenant(gateway, route, upstream):
    from tenants.services import api_key_create
    from tests.factories import TenantFactory

    route("gpt-test")
    key = new_key()
    first = api_key_create(tenant=TenantFactory(), name="a")[1]
    second = api_key_create(tenant=TenantFactory(), name="b")[1]
    assert "idempotent-replayed" not in post(gateway, first, **{"Idempotency-Key": key}).headers
    assert "idempotent-replayed" not in post(gateway, second, **{"Idempotency-Key": key}).headers
    assert len(upstream.requests) == 2


def test_a_request_that_failed_validation_stores_nothing(gateway, api_key, route, upstream):
    route("gpt-test")
    key = new_key()
    bad = post(gateway, api_key, {"model": "gpt-test", "messages": "not a list"}, **{"Idempotency-Key": key})
    assert bad.status_code == 400
    good = post(gateway, api_key, **{"Idempotency-Key": key})
    assert good.status_code == 200 and "idempotent-replayed" not in good.headers


def test_a_transient_upstream_failure_frees_the_key_for_the_retry(gateway, api_key, route, upstream):
    route("gpt-test", status=503)
    key = new_key()
    assert post(gateway, api_key, **{"Idempotency-Key": key}).status_code >= 500
    retried = post(gateway, api_key, **{"Idempotency-Key": key})
    assert retried.status_code >= 500 and "idempotent-replayed" not in retried.headers
    assert len(upstream.requests) >= 2


def test_an_upstream_refusal_of_the_request_itself_is_stored_and_replayed(gateway, api_key, route, upstream):
    route("gpt-test", status=400)
    key = new_key()
    first = post(gateway, api_key, **{"Idempotency-Key": key})
    again = post(gateway, api_key, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 400
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    "value",
    ["x" * 256, "caf\u00e9", "tab\there", '""'],
    ids=["too long", "not ascii", "control character", "empty"],
)
def test_a_malformed_key_gets_a_400(gateway, api_key, route, value):
    route("gpt-test")
    refused = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=BODY,
        headers=[(b"Authorization", f"Bearer {api_key}".encode()), (b"Idempotency-Key", value.encode())],
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_idempotency_key"


def test_two_different_keys_in_the_two_headers_get_a_400(gateway, api_key, route):
    route("gpt-test")
    refused = post(gateway, api_key, **{"Idempotency-Key": "a", "X-Idempotency-Key": "b"})
    assert refused.status_code == 400


def test_expired_answers_are_purged(transactional_db):
    import datetime as dt

    from gateway.admission.idempotency import purge_expired
    from gateway.models import IdempotencyRecord
    from tests.factories import TenantFactory

    now = dt.datetime.now(dt.UTC)
    tenant = TenantFactory()
    for key, expires in (("old", now - dt.timedelta(seconds=1)), ("new", now + dt.timedelta(hours=1))):
        IdempotencyRecord.objects.create(
            tenant=tenant, key=key, fingerprint="f", request_id=key, created_at=now, expires_at=expires
        )
    assert purge_expired() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
