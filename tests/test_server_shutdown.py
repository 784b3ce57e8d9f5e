"""SIGTERM drains the server: in-flight requests finish, new connections are refused.

Each test starts its own server (it is going to stop it) and uses the echo app's
``/sleep`` endpoint as a slow upstream. Timings are only ever upper bounds with
plenty of room: the CI machine is a loaded 2-core box.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.test_server_body_limit import READ_TIMEOUT, Server, run_server

IN_FLIGHT = 10


def _wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.05)


def _send_sleeps(server: Server, seconds: float, count: int) -> tuple[list[threading.Thread], list[object]]:
    """``count`` concurrent GET /sleep requests, each on its own connection, in threads."""
    results: list[object] = [None] * count

    def one(index: int) -> None:
        try:
            response = httpx.get(f"{server.url}/sleep", params={"s": seconds}, timeout=60)
            results[index] = response.status_code
        except httpx.HTTPError as exc:
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def test_sigterm_lets_in_flight_requests_finish_and_exits(tmp_path: Path) -> None:
    events = tmp_path / "events"
    with run_server(tmp_path, ECHO_EVENTS_FILE=str(events)) as server:
        before = server.handled()
        # 2 s rather than 1: on a loaded box, starting ten clients can take a good part of a second.
        threads, results = _send_sleeps(server, 2.0, IN_FLIGHT)
        # SIGTERM only once every request has reached the app.
        _wait_until(lambda: server.handled() - before == IN_FLIGHT)
        server.proc.terminate()
        for thread in threads:
            thread.join(timeout=60)
        assert results == [200] * IN_FLIGHT
        assert server.proc.wait(timeout=30) == 0
    # Nothing was cancelled, and the app's on_shutdown ran.
    assert events.read_text().splitlines() == ["shutdown"]


def test_new_connections_are_refused_while_draining(tmp_path: Path) -> None:
    with run_server(tmp_path) as server:
        before = server.handled()
        # Long enough that the listener is seen closed while the request still runs, even on a loaded box.
        threads, results = _send_sleeps(server, 6.0, 1)
        _wait_until(lambda: server.handled() - before == 1)
        server.proc.terminate()

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT).close()
            except ConnectionRefusedError:
                return True
            return False

        # The listening socket closes promptly; the in-flight request is still running.
        _wait_until(refused)
        assert server.proc.poll() is None
        threads[0].join(timeout=60)
        assert results == [200]
        assert server.proc.wait(timeout=30) == 0


def test_idle_keep_alive_connection_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    with run_server(tmp_path, KEEPALIVE_TIMEOUT_SECONDS="300", SHUTDOWN_GRACE_SECONDS="300") as server:
        with server.connect() as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            # The connection is now idle and kept alive; shutdown closes it instead of waiting.
            server.proc.terminate()
            assert server.proc.wait(timeout=30) == 0
            assert sock.recv(65536) == b""


def test_requests_still_running_after_the_grace_are_cancelled_and_reported(tmp_path: Path) -> None:
    events = tmp_path / "events"
    with run_server(tmp_path, SHUTDOWN_GRACE_SECONDS="1", ECHO_EVENTS_FILE=str(events)) as server:
        before = server.handled()
        threads, results = _send_sleeps(server, 10.0, 1)
        _wait_until(lambda: server.handled() - before == 1)
        signalled = time.monotonic()
        server.proc.terminate()
        assert server.proc.wait(timeout=30) == 0
        # About one second of grace; far below the 10 s the request wanted (no tight bound).
        assert time.monotonic() - signalled < 8
        threads[0].join(timeout=60)
        # Told to retry rather than left with a dropped connection.
        assert results == [503]
    # The app recorded the cancellation before its on_shutdown ran.
    assert events.read_text().splitlines() == ["cancelled /sleep", "shutdown"]


def test_half_sent_request_is_dropped_after_the_grace_and_shutdown_still_completes(tmp_path: Path) -> None:
    events = tmp_path / "events"
    env = {"SHUTDOWN_GRACE_SECONDS": "1", "HEADER_TIMEOUT_SECONDS": "300", "ECHO_EVENTS_FILE": str(events)}
    with run_server(tmp_path, **env) as server, server.connect() as sock:
        # A request that has begun but will never be complete: no app is running for it.
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        server.proc.terminate()
        assert server.proc.wait(timeout=30) == 0
        assert sock.recv(65536) == b""
    assert events.read_text().splitlines() == ["shutdown"]
