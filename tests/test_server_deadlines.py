"""Request deadlines: a trickling client cannot hold a connection, a long response is never cut.

Twisted's own idle timeout restarts on every byte, so a client sending a byte every
few seconds used to keep a connection forever. The server here runs with 1-2 s
deadlines; the tests trickle bytes over raw sockets for far longer and assert only
what comes back (status, close), with generous upper bounds on waiting.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.test_server_body_limit import READ_TIMEOUT, Server, _parse, _read_until_closed, run_server

# Long enough that a server without deadlines is caught, and far beyond the 1-2 s configured.
TRICKLE_FOR = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(
        tmp_path_factory.mktemp("deadlines"),
        HEADER_TIMEOUT_SECONDS="1",
        BODY_TIMEOUT_SECONDS="2",
        KEEPALIVE_TIMEOUT_SECONDS="1",
    ) as running:
        yield running


def _trickle(sock: socket.socket, start: bytes, byte: bytes = b"a") -> bytes:
    """Send ``start``, then one byte every 0.2 s until the server answers or closes; return what it sent."""
    sock.sendall(start)
    deadline = time.monotonic() + TRICKLE_FOR
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            return _read_until_closed(sock)
        try:
            sock.sendall(byte)
        except OSError:  # the server closed while we were sending
            return _read_until_closed(sock)
    pytest.fail(f"the server was still reading after {TRICKLE_FOR} s of trickled bytes")


def _assert_timed_out(raw: bytes, part: str) -> dict[str, str]:
    status, headers, body = _parse(raw)
    assert status == 408, raw
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == {
        "error": {
            "message": f"The request {part} did not arrive within {1 if part == 'headers' else 2} seconds.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_timeout",
        }
    }
    return headers


def test_trickled_headers_get_408_and_close(server: Server) -> None:
    with server.connect() as sock:
        raw = _trickle(sock, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-ID: slow-head-1\r\nX-Pad: ")
    headers = _assert_timed_out(raw, "headers")
    assert headers["x-client-request-id"] == "slow-head-1"
    assert {
        "request_id": headers["x-request-id"],
        "client_request_id": "slow-head-1",
        "path": "/echo",
        "status": 408,
        "code": "request_timeout",
    } in server.refused()


def test_trickled_body_gets_408_and_close(server: Server) -> None:
    before = server.handled()
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    with server.connect() as sock:
        raw = _trickle(sock, head)
    _assert_timed_out(raw, "body")
    assert server.handled() == before


def test_trickled_chunked_body_gets_408(server: Server) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with server.connect() as sock:
        # Each byte is a one-byte chunk: well-formed, just far too slow.
        raw = _trickle(sock, head, b"1\r\na\r\n")
    _assert_timed_out(raw, "body")


def test_silent_connection_is_closed(server: Server) -> None:
    with server.connect() as sock:
        # Nothing was asked, so nothing is answered: the connection just ends.
        assert _read_until_closed(sock) == b""


def test_idle_keep_alive_connection_is_closed(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = _read_until_closed(sock)
    # One complete 200, then the server closed the idle connection (no 408 for it).
    status, headers, body = _parse(raw)
    assert status == 200
    assert json.loads(body) == {"length": 0, "method": "GET"}
    assert raw.count(b"HTTP/1.1") == 1


def test_keep_alive_connection_serves_a_second_request_in_time(server: Server) -> None:
    with httpx.Client(timeout=READ_TIMEOUT) as client:
        for _ in range(3):
            assert client.post(f"{server.url}/echo", content=b"x" * 10).json()["length"] == 10


def test_slow_app_is_not_cut_by_the_request_deadlines(server: Server) -> None:
    # The deadlines cover receiving the request; the app may take its time answering.
    response = httpx.get(f"{server.url}/sleep", params={"s": 3}, timeout=30)
    assert response.status_code == 200
    assert response.json() == {"slept": 3.0}


def test_long_streamed_response_is_not_cut(server: Server) -> None:
    with contextlib.closing(server.connect()) as sock:
        sock.sendall(b"GET /stream?n=8&every=0.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = _read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200")
    for index in range(8):
        assert b"chunk %d\n" % index in raw
    # The chunked framing ended properly: the whole stream arrived.
    assert raw.endswith(b"0\r\n\r\n")


def test_pipelined_requests_in_one_write_are_all_answered(server: Server) -> None:
    # The head screening must look at each request's head only: a body may hold bare LFs.
    body = b"a\nb\nc"
    pipelined = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
        + body
        + b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with server.connect() as sock:
        sock.sendall(pipelined)
        raw = _read_until_closed(sock)
    assert raw.count(b"HTTP/1.1 200 OK") == 3
    assert b'{"length": 5, "method": "POST"}' in raw
    assert raw.count(b'{"length": 0, "method": "GET"}') == 2
