"""Every request, failed ones included, leaves exactly one ledger row keyed by its request id."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from greengate_site.request_context import uuid7
from ledger.models import LedgerEntry
from ledger.writer import LedgerWriter

pytestmark = pytest.mark.django_db(transaction=True)


def chat(gateway, key: str | None, **body) -> httpx.Response:
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], **body}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=payload, headers=headers, timeout=30)


def test_failed_requests_are_recorded_with_their_status(gateway, api_key, route, ledger_row):
    route("gpt-test")
    route("gpt-broken", status=500)
    cases = {
        "unauthenticated": (chat(gateway, None), 401, "invalid_api_key"),
        "invalid": (chat(gateway, api_key, messages=[]), 400, "empty_array"),
        "unknown model": (chat(gateway, api_key, model="nope"), 404, "model_not_found"),
        "upstream failure": (chat(gateway, api_key, model="gpt-broken"), 502, "upstream_error"),
    }
    for name, (response, status, code) in cases.items():
        entry = ledger_row(response.headers["x-request-id"])
        assert (entry.status_code, entry.error_code) == (status, code), name
    unauthenticated = ledger_row(cases["unauthenticated"][0].headers["x-request-id"])
    assert unauthenticated.tenant_id is None
    upstream_failure = ledger_row(cases["upstream failure"][0].headers["x-request-id"])
    assert upstream_failure.tenant_id is not None and upstream_failure.provider


def test_concurrent_requests_each_get_exactly_one_row(gateway, api_key, route):
    route("gpt-test")

    async def burst() -> list[str]:
        async with httpx.AsyncClient(timeout=30) as client:
            responses = await asyncio.gather(
                *[
                    client.post(
                        f"{gateway.url}/v1/chat/completions",
                        json={
                            "model": "gpt-test",
                            "stream": i % 2 == 0,
                            "messages": [{"role": "user", "content": "x"}],
                        },
                        headers={"Authorization": f"Bearer {api_key}"},
                    )
                    for i in range(40)
                ]
            )
        return [r.headers["x-request-id"] for r in responses]

    request_ids = asyncio.run(burst())
    from tests.conftest import wait_for_quiet_ledger

    wait_for_quiet_ledger()
    assert LedgerEntry.objects.filter(request_id__in=request_ids).count() == 40
    assert LedgerEntry.objects.count() == 40


def test_a_reused_client_request_id_keeps_both_requests_under_their_own_ids(gateway, api_key, route, ledger_row):
    route("gpt-test")
    server_ids = []
    for _ in range(2):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": f"Bearer {api_key}", "X-Request-ID": "reused-id"},
        )
        assert response.status_code == 200
        assert response.headers["x-client-request-id"] == "reused-id"
        server_ids.append(response.headers["x-request-id"])
    assert len(set(server_ids)) == 2 and "reused-id" not in server_ids
    rows = [ledger_row(request_id) for request_id in server_ids]
    assert [row.client_request_id for row in rows] == ["reused-id", "reused-id"]


def test_a_retried_write_of_the_same_row_is_not_duplicated():
    row = LedgerEntry(
        request_id=f"retry-{uuid.uuid4().hex}", created_at=datetime.now(UTC), status_code=200, latency_ms=5
    )

    async def write_twice() -> None:
        writer = LedgerWriter()
        writer.record(row)
        await writer.drain()
        writer.record(row)  # as after a lost acknowledgement
        await writer.close()

    asyncio.run(write_twice())
    assert LedgerEntry.objects.filter(request_id=row.request_id).count() == 1


def test_ledger_ids_are_time_ordered_uuids():
    first, second = uuid7(), uuid7()
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first.int >> 80 <= second.int >> 80


def test_every_log_line_of_a_request_carries_its_request_id(gateway, api_key, route, ledger_row):
    route("gpt-test", status=503)  # a failure logs more than one line
    response = chat(gateway, api_key, **{"model": "gpt-test"})
    request_id = response.headers["x-request-id"]
    ledger_row(request_id)
    expected = {"deployment failed", "chat completion", "Bad Gateway: /v1/chat/completions"}
    deadline = time.monotonic() + 5
    while True:  # log lines are written by a thread of their own: give it a moment
        lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
        mine = {line["message"] for line in lines if line.get("request_id") == request_id}
        if mine >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert mine >= expected
    assert all(line.get("request_id") for line in lines if line["logger"] in {"greengate.requests", "gateway.pipeline"})
    assert api_key not in gateway.log() and "sk-upstream-test" not in gateway.log()


def test_a_stream_longer_than_the_shutdown_grace_is_told_why_and_still_recorded(api_key, route, upstream, ledger_row):
    """SIGTERM lets requests finish for SHUTDOWN_GRACE_SECONDS; a stream still open then ends with an error
    event saying why (no [DONE]), and is recorded."""
    from tests.conftest import start_gateway, stop_gateway

    route("gpt-test", chunk_delay=0.2, words=100)  # 20 s of words
    gateway = start_gateway({"SHUTDOWN_GRACE_SECONDS": "1"}, log_name="shutdown")
    try:
        with httpx.Client(timeout=30) as client:
            with client.stream(
                "POST",
                f"{gateway.url}/v1/chat/completions",
                json={"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                headers={"Authorization": f"Bearer {api_key}"},
            ) as response:
                request_id = response.headers["x-request-id"]
                stream = response.iter_lines()
                next(stream)
                gateway.process.terminate()
                lines = list(stream)
        assert gateway.process.wait(timeout=15) == 0
    finally:
        stop_gateway(gateway)
    assert "data: [DONE]" not in lines
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert events[-1]["error"]["code"] == "server_shutting_down"
    entry = ledger_row(request_id, timeout=5)
    assert (entry.status_code, entry.error_code) == (503, "server_shutting_down")
    assert entry.stream and entry.completion_tokens > 0


def test_a_json_request_past_the_grace_gets_a_503_with_its_own_request_id(api_key, route, upstream, ledger_row):
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import start_gateway, stop_gateway

    route("gpt-test", latency=20)
    gateway = start_gateway({"SHUTDOWN_GRACE_SECONDS": "1"}, log_name="shutdown-json")
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post,
                f"{gateway.url}/v1/chat/completions",
                json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]},
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=30,
            )
            upstream.wait_for("request", timeout=10)
            gateway.process.terminate()
            response = pending.result()
        assert gateway.process.wait(timeout=15) == 0
    finally:
        stop_gateway(gateway)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "server_shutting_down"
    entry = ledger_row(response.headers["x-request-id"], timeout=5)
    assert (entry.status_code, entry.error_code) == (503, "server_shutting_down")


def test_requests_in_flight_at_sigterm_are_answered_and_recorded(api_key, route, upstream, ledger_row):
    """The defect this guards: 10 of 10 requests to a 1 s upstream used to get no response and no row."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import start_gateway, stop_gateway

    route("gpt-test", latency=1)
    gateway = start_gateway(log_name="drain")
    try:

        def ask(i: int) -> httpx.Response:
            return httpx.post(
                f"{gateway.url}/v1/chat/completions",
                json={"model": "gpt-test", "stream": i % 2 == 0, "messages": [{"role": "user", "content": "x"}]},
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=30,
            )

        with ThreadPoolExecutor(10) as pool:
            futures = [pool.submit(ask, i) for i in range(10)]
            for _ in range(10):
                upstream.wait_for("request", timeout=10)
            deadline = time.monotonic() + 10
            while sum(e["kind"] == "request" for e in upstream.events) < 10 and time.monotonic() < deadline:
                time.sleep(0.02)
            gateway.process.terminate()
            responses = [f.result() for f in futures]
        assert gateway.process.wait(timeout=20) == 0
    finally:
        stop_gateway(gateway)
    assert [r.status_code for r in responses] == [200] * 10
    assert all("[DONE]" in r.text for r in responses[::2])
    for response in responses:
        assert ledger_row(response.headers["x-request-id"], timeout=5).status_code == 200


def test_admin_pages_carry_a_request_id_too(gateway):
    response = httpx.get(f"{gateway.url}/admin/login/", headers={"X-Request-ID": "admin-trace-1"})
    assert response.status_code == 200
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-client-request-id"] == "admin-trace-1"


def _entry(**fields) -> LedgerEntry:
    return LedgerEntry(
        request_id=fields.pop("request_id", uuid.uuid4().hex),
        created_at=datetime.now(UTC),
        status_code=200,
        latency_ms=5,
        **fields,
    )


def test_one_refused_row_never_costs_its_batch_neighbours():
    """The database refuses one row (a tenant that does not exist); the 49 others of its batch are written."""
    good = [_entry() for _ in range(49)]
    bad = _entry(tenant_id=987_654_321)

    async def write() -> None:
        writer = LedgerWriter()
        for entry in [*good[:20], bad, *good[20:]]:
            writer.record(entry)
        await writer.close()

    asyncio.run(write())
    assert LedgerEntry.objects.filter(request_id__in=[e.request_id for e in good]).count() == 49
    assert not LedgerEntry.objects.filter(request_id=bad.request_id).exists()


def test_text_the_database_cannot_store_is_made_storable_not_dropped():
    entry = _entry(model="gpt\x00x\ud800" + "m" * 500, error_code="e\x00")

    async def write() -> None:
        writer = LedgerWriter()
        writer.record(entry)
        await writer.close()

    asyncio.run(write())
    stored = LedgerEntry.objects.get(request_id=entry.request_id)
    assert stored.model.startswith("gpt\ufffdx") and len(stored.model) == 200
    assert "\x00" not in stored.error_code


def test_the_ledger_writers_log_lines_never_carry_a_requests_id():
    """Its flusher task outlives the request that started it, so it must not log as that request."""
    import logging

    from greengate_site.request_context import request_id_var

    seen: list[str | None] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(request_id_var.get())

    handler = Capture()
    logging.getLogger("ledger.writer").addHandler(handler)
    try:

        async def write() -> None:
            writer = LedgerWriter()
            token = request_id_var.set("first-request-ever")
            writer.record(_entry(tenant_id=987_654_321))  # refused: the writer logs it
            request_id_var.reset(token)
            await writer.close()

        asyncio.run(write())
    finally:
        logging.getLogger("ledger.writer").removeHandler(handler)
    assert seen and all(request_id is None for request_id in seen)
