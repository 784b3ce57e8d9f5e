"""An upstream that misbehaves on purpose (a real HTTP server) and the fixes each misbehaviour needed."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from providers.models import Provider
from tests.factories import DeploymentFactory, ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)

PROVIDER_KEY = "sk-hostile-provider-secret-0123456789"


def _chunk(text: str) -> str:
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return f"data: {json.dumps(body)}\n\n"


async def _behave(request: web.Request) -> web.StreamResponse:
    mode = request.match_info["mode"]
    body = await request.json()
    if mode == "bad-usage":
        usage = {"prompt_tokens": -7, "completion_tokens": 2**70, "total_tokens": 3}
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(_chunk("hello there").encode())
            usage_chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [],
                "usage": usage,
            }
            await response.write(f"data: {json.dumps(usage_chunk)}\n\ndata: [DONE]\n\n".encode())
            return response
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}
                ],
                "usage": usage,
            }
        )
    if mode == "quote-key":
        quoted = request.headers.get("Authorization", "")
        return web.json_response({"error": {"message": f"Invalid key {quoted} for this model"}}, status=400)
    if mode == "retry-inf":
        return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "inf"})
    if mode == "error-first":
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"error": {"message": "overloaded"}}\n\n')
        return response
    if mode == "cut-first":
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": keepalive\n\n")
        return response
    raise web.HTTPNotFound()


class HostileUpstream:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.port = self.runner.addresses[0][1]

    async def _start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/{mode}/v1/chat/completions", _behave)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    server = HostileUpstream()
    yield server
    server.stop()


def deploy(model: str, base_url: str, priority: int = 0):
    provider = ProviderFactory(base_url=base_url, api_key=PROVIDER_KEY)
    return DeploymentFactory(model_name=model, provider=provider, priority=priority)


def ask(gateway, api_key: str, model: str, **extra) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_usage_an_upstream_cannot_have_is_not_believed_and_the_row_is_kept(
    gateway, api_key, hostile, ledger_row, stream
):
    deploy("liar", hostile.url("bad-usage"))
    extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    response = ask(gateway, api_key, "liar", **extra)
    assert response.status_code == 200
    if stream:
        usage = json.loads(response.text.split("data: ")[-2])["usage"]
    else:
        usage = response.json()["usage"]
    assert 0 < usage["prompt_tokens"] < 100 and 0 < usage["completion_tokens"] < 100
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.usage_estimated and entry.completion_tokens == usage["completion_tokens"]


def test_an_upstreams_words_never_quote_the_provider_key(gateway, api_key, hostile):
    deploy("quoter", hostile.url("quote-key"))
    response = ask(gateway, api_key, "quoter")
    assert response.status_code == 400
    assert PROVIDER_KEY not in response.text and "sk-hostile" not in response.text
    assert "[redacted]" in response.json()["error"]["message"]


def test_an_unbounded_retry_after_is_not_a_500(gateway, api_key, hostile):
    deploy("impatient", hostile.url("retry-inf"))
    response = ask(gateway, api_key, "impatient")
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 3600


@pytest.mark.parametrize("mode", ["error-first", "cut-first"])
def test_a_stream_failing_before_its_first_chunk_falls_through(gateway, api_key, hostile, route, mode):
    deploy("flaky", hostile.url(mode))
    route("flaky", priority=1)
    response = ask(gateway, api_key, "flaky", stream=True)
    assert response.status_code == 200
    assert response.text.rstrip().endswith("data: [DONE]")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert text.startswith("Mock reply to")


def test_stream_options_null_is_accepted(gateway, api_key, route):
    route("gpt-test")
    response = ask(gateway, api_key, "gpt-test", stream=True, stream_options=None)
    assert response.status_code == 200 and "[DONE]" in response.text


def test_a_lower_case_method_is_a_405_not_a_crash(gateway, api_key):
    import socket

    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"post /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 405"), reply[:200]
    assert b'"code":"method_not_allowed"' in reply.replace(b" ", b"")


@pytest.mark.parametrize(
    ("target", "status"),
    [("/v1//chat/completions", 404), ("http://evil.example/v1/models", 400), ("*", 400)],
)
def test_odd_request_targets_get_json_not_html(gateway, api_key, target, status):
    import socket

    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), head
    assert b"application/json" in head and json.loads(body)["error"]["message"]


def test_refused_or_skipped_calls_cost_nothing(gateway, api_key, route, ledger_row):
    deployment = route("gpt-down", status=500)
    deployment.provider.breaker_failures = 1
    deployment.provider.save()
    first = ask(gateway, api_key, "gpt-down")
    assert first.status_code == 502
    assert ledger_row(first.headers["x-request-id"]).prompt_tokens == 0
    skipped = ask(gateway, api_key, "gpt-down")
    assert skipped.status_code == 503
    entry = ledger_row(skipped.headers["x-request-id"])
    assert (entry.prompt_tokens, entry.attempts) == (0, 0)


def test_the_health_page_needs_provider_permissions_not_just_staff(gateway):
    user = get_user_model().objects.create_user("staffer", password="pw-staffer-123", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get("/admin/providers/provider/health/data/").status_code == 403
    assert client.post("/admin/providers/provider/health/1/reset/").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_provider"))
    assert client.get("/admin/providers/provider/health/data/").status_code == 200
    assert client.post("/admin/providers/provider/health/1/reset/").status_code == 403


def test_a_local_server_with_a_single_label_host_can_be_saved():
    provider = Provider(name="ollama", kind="compatible", base_url="http://ollama:11434/v1", allow_private_network=True)
    provider.full_clean()
    provider.save()
