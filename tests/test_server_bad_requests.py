"""Every request the server refuses gets an OpenAI-shaped JSON error, never an empty or HTML page.

Twisted answers malformed requests with an empty ``400 Bad Request`` and daphne with an
HTML page; bytes that cannot be HTTP/1.x at all used to sit until a timeout. Each case
is sent over a raw socket, exactly as written, to a server whose header deadline (60 s)
is far beyond the socket's read timeout, so an answer or close that arrives at all
arrived promptly and not because a deadline fired.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_server_body_limit import Server, _parse, _read_until_closed, run_server

TOO_LARGE = "request_header_fields_too_large"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("bad"), HEADER_TIMEOUT_SECONDS="60") as running:
        yield running


def _head(*lines: str | bytes, request_line: bytes = b"GET /echo HTTP/1.1") -> bytes:
    encoded = [line if isinstance(line, bytes) else line.encode() for line in lines]
    return b"\r\n".join([request_line, b"Host: x", *encoded]) + b"\r\n\r\n"


def _send(server: Server, data: bytes) -> bytes:
    with server.connect() as sock:
        sock.sendall(data)
        # Raises TimeoutError if the server neither answers nor closes within the read timeout.
        return _read_until_closed(sock)


def _assert_error(raw: bytes, status: int, code: str, *, kind: str = "invalid_request_error") -> dict[str, str]:
    got, headers, body = _parse(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert headers["x-request-id"]
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == (kind, None, code)
    assert error["message"]
    return headers


# (what is sent, status, code, path reported to the app's on_refused hook, or None where the
# refusal came before a request line was parsed)
MALFORMED = {
    "501 headers": (_head(*[f"X-H{i}: v" for i in range(501)]), 431, TOO_LARGE, "/echo"),
    "header section over 16 KiB": (_head(*[f"X-Big{i}: {'b' * 6000}" for i in range(3)]), 431, TOO_LARGE, "/echo"),
    "one header line over 16 KiB": (_head(f"X-Huge: {'h' * 20000}"), 431, TOO_LARGE, "/echo"),
    "request line over 16 KiB": (_head(request_line=b"GET /" + b"p" * 20000 + b" HTTP/1.1"), 431, TOO_LARGE, None),
    "NUL in a header value": (_head(b"X-Nul: a\x00b"), 400, "invalid_request", "/echo"),
    "space in a header name": (_head(b"Bad Name: v"), 400, "invalid_request", "/echo"),
    "\\x85 in a header value (daphne's check)": (_head(b"X-Odd: a\x85b"), 400, "invalid_request", "/echo"),
    "\\x85 in the path (daphne's check)": (
        _head(request_line=b"GET /ech\x85o HTTP/1.1"),
        400,
        "invalid_request",
        "/ech\ufffdo",
    ),
    "request line with two parts": (_head(request_line=b"GET /echo"), 400, "invalid_request", None),
    "unknown HTTP version": (_head(request_line=b"GET /echo HTTP/1.2"), 400, "invalid_request", None),
    "non-numeric Content-Length": (_head("Content-Length: ten"), 400, "invalid_request", "/echo"),
    "two Content-Lengths": (_head("Content-Length: 1", "Content-Length: 2") + b"ab", 400, "invalid_request", "/echo"),
    "malformed chunk": (_head("Transfer-Encoding: chunked") + b"zz\r\nabc\r\n", 400, "invalid_request", "/echo"),
    "bare LF line endings": (b"GET /echo HTTP/1.1\nHost: x\n\n", 400, "invalid_request", None),
    "bare LF after a CRLF request line": (b"GET /echo HTTP/1.1\r\nHost: x\n\n", 400, "invalid_request", None),
    "dot-dot path to static files": (
        _head(request_line=b"GET /static/../../etc/passwd HTTP/1.1"),
        400,
        "invalid_request",
        "/static/../../etc/passwd",
    ),
    "percent-encoded dot-dot path": (
        _head(request_line=b"GET /static/%2e%2e/%2E%2E/etc/passwd HTTP/1.1"),
        400,
        "invalid_request",
        "/static/%2e%2e/%2E%2E/etc/passwd",
    ),
}


@pytest.mark.parametrize(("data", "status", "code", "reported"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_json_error_and_close(
    server: Server, data: bytes, status: int, code: str, reported: str | None
) -> None:
    before = server.handled()
    supplied = f"bad-{os.urandom(6).hex()}"
    # Where a request id header fits before the fault, the refusal must carry it.
    data = (
        data.replace(b"Host: x", f"Host: x\r\nX-Request-ID: {supplied}".encode(), 1)
        if b"\r\nHost: x\r\n" in data
        else data
    )
    headers = _assert_error(_send(server, data), status, code)
    assert server.handled() == before
    refused = [entry for entry in server.refused() if entry["request_id"] == headers["x-request-id"]]
    client_id = headers.get("x-client-request-id", "")
    if b"X-Request-ID" in data and reported is not None:
        assert client_id == supplied and headers["x-request-id"] != supplied
    if reported is None:
        assert refused == []
    else:
        assert refused == [
            {
                "request_id": headers["x-request-id"],
                "client_request_id": client_id,
                "path": reported,
                "status": status,
                "code": code,
            }
        ]


def test_dot_dot_path_is_refused_even_via_a_path_the_app_would_route(server: Server) -> None:
    # The check is on segments, so an ordinary name containing dots still works.
    raw = _send(server, _head("Connection: close", request_line=b"GET /echo..v1 HTTP/1.1"))
    assert _parse(raw)[0] == 200


# A TLS 1.2 ClientHello's first bytes, as a client speaking HTTPS to the plain port sends them.
TLS_CLIENT_HELLO = bytes.fromhex("1603010200010001fc0303") + os.urandom(32) + b"\x00" * 64
NOT_HTTP = {
    "TLS ClientHello": TLS_CLIENT_HELLO,
    "binary garbage": bytes(range(256)),
    "HTTP/2 prior-knowledge preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "SSH banner": b"SSH-2.0-OpenSSH_9.6\r\n",
}


@pytest.mark.parametrize("data", NOT_HTTP.values(), ids=NOT_HTTP.keys())
def test_bytes_that_cannot_be_http_are_refused_at_once(server: Server, data: bytes) -> None:
    # The client sends no more and does not close: only the server's own judgement ends this.
    raw = _send(server, data)
    _assert_error(raw, 400, "invalid_request")


def test_app_crash_gets_json_500(server: Server) -> None:
    raw = _send(server, _head("X-Request-ID: crash-1", request_line=b"GET /crash HTTP/1.1"))
    headers = _assert_error(raw, 500, "internal_error", kind="server_error")
    assert headers["x-client-request-id"] == "crash-1"
    # A crash is not a refusal: the app records its own failures.
    assert not [entry for entry in server.refused() if entry["client_request_id"] == "crash-1"]


def test_server_keeps_serving_after_bad_requests(server: Server) -> None:
    for data in (*(case[0] for case in MALFORMED.values()), *NOT_HTTP.values()):
        _send(server, data)
    raw = _send(server, _head("Connection: close"))
    assert _parse(raw)[0] == 200
