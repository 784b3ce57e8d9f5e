"""The daphne body-size guard in greengate_site.server, tested over real sockets.

The server runs in a subprocess (Twisted's reactor cannot be restarted, and a
subprocess is what production runs), serving tests.asgi_echo with a 1000-byte
limit. Raw sockets are used where the test must control exactly which bytes are
sent, e.g. to show a 413 arrives when only the headers have been sent.

``run_server`` and the socket helpers here are shared by the other
``test_server_*`` modules."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1000
# Generous: the CI machine is a loaded 2-core box. Nothing here asserts how fast a reply is.
READ_TIMEOUT = 10.0
# The server's own settings, cleared so the machine's environment cannot change what is tested.
SERVER_VARIABLES = (
    "HOST",
    "PORT",
    "MAX_REQUEST_BYTES",
    "HEADER_TIMEOUT_SECONDS",
    "BODY_TIMEOUT_SECONDS",
    "KEEPALIVE_TIMEOUT_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
    "ECHO_EVENTS_FILE",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in SERVER_VARIABLES}
    return {**env, **extra}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "greengate_site.server", *args]


class Server:
    def __init__(self, port: int, log: Path, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.log = log
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=READ_TIMEOUT)
        sock.settimeout(READ_TIMEOUT)
        return sock

    def handled(self) -> int:
        """How many requests the echo app has served (excluding /count)."""
        return int(httpx.get(f"{self.url}/count", timeout=READ_TIMEOUT).json()["handled"])

    def refused(self) -> list[dict[str, Any]]:
        """What the server reported to the echo app's on_refused hook."""
        return list(httpx.get(f"{self.url}/refused", timeout=READ_TIMEOUT).json()["refused"])


@contextlib.contextmanager
def run_server(log_dir: Path, *args: str, app: str = "tests.asgi_echo:app", **env: str) -> Iterator[Server]:
    """The server in a subprocess (Twisted's reactor cannot be restarted), stopped afterwards."""
    port = _free_port()
    log = log_dir / f"server-{port}.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            _command("--app", app, "--port", str(port), *args),
            cwd=ROOT,
            env=_server_env(**env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited early ({proc.returncode}):\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"server did not listen on {port}:\n{log.read_text()}")
                time.sleep(0.1)
        yield Server(port, log, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("server"), "--max-body-bytes", str(LIMIT)) as running:
        yield running


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _request_head(*extra: str) -> bytes:
    lines = ["POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _assert_too_large(raw: bytes) -> None:
    status, headers, body = _parse(raw)
    assert status == 413, raw
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    error: dict[str, Any] = json.loads(body)
    assert error == {
        "error": {
            "message": f"Request body is larger than the limit of {LIMIT} bytes.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    }


def test_startup_is_logged(server: Server) -> None:
    assert f"GreenGate listening on http://127.0.0.1:{server.port}" in server.log.read_text()


def test_small_post_reaches_app(server: Server) -> None:
    response = httpx.post(f"{server.url}/echo", content=b'{"hello": "world"}', timeout=READ_TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"length": 18, "method": "POST"}


def test_keep_alive_still_works_within_limit(server: Server) -> None:
    with httpx.Client(timeout=READ_TIMEOUT) as client:
        for size in (10, LIMIT, 0):
            response = client.post(f"{server.url}/echo", content=b"a" * size)
            assert response.status_code == 200
            assert response.json()["length"] == size


def test_body_exactly_at_limit_passes(server: Server) -> None:
    response = httpx.post(f"{server.url}/echo", content=b"x" * LIMIT, timeout=READ_TIMEOUT)
    assert response.status_code == 200
    assert response.json()["length"] == LIMIT


def test_chunked_body_exactly_at_limit_passes(server: Server) -> None:
    pieces = iter([b"x" * (LIMIT // 2), b"y" * (LIMIT - LIMIT // 2)])
    response = httpx.post(f"{server.url}/echo", content=pieces, timeout=READ_TIMEOUT)
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 200
    assert response.json()["length"] == LIMIT


def test_huge_content_length_refused_after_headers_only(server: Server) -> None:
    before = server.handled()
    with server.connect() as sock:
        # Only the headers: a 413 arriving now proves the body is not awaited.
        sock.sendall(_request_head("Content-Type: application/json", "Content-Length: 10000000"))
        _assert_too_large(_read_until_closed(sock))
    assert server.handled() == before


@pytest.mark.parametrize("digits", [19, 5000])
def test_content_length_too_long_to_parse_gets_413(server: Server, digits: int) -> None:
    # Python's int() refuses over 4,300 digits; that used to drop the connection unanswered.
    with server.connect() as sock:
        sock.sendall(_request_head("Content-Length: " + "9" * digits))
        _assert_too_large(_read_until_closed(sock))


def test_content_length_with_leading_zeros_is_just_a_length(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(_request_head("Content-Length: " + "0" * 5000 + "2", "Connection: close") + b"ok")
        status, _, body = _parse(_read_until_closed(sock))
    assert status == 200
    assert json.loads(body) == {"length": 2, "method": "POST"}


def test_expect_continue_gets_413_not_100(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(_request_head("Content-Length: 10000000", "Expect: 100-continue"))
        raw = _read_until_closed(sock)
    assert b"100 Continue" not in raw
    _assert_too_large(raw)


def test_one_byte_over_limit_sent_in_full_is_refused(server: Server) -> None:
    before = server.handled()
    with server.connect() as sock:
        sock.sendall(_request_head(f"Content-Length: {LIMIT + 1}") + b"z" * (LIMIT + 1))
        _assert_too_large(_read_until_closed(sock))
    assert server.handled() == before


def test_chunked_body_cut_off_when_it_passes_limit(server: Server) -> None:
    before = server.handled()
    with server.connect() as sock:
        sock.sendall(_request_head("Transfer-Encoding: chunked") + _chunk(b"a" * 400) + _chunk(b"b" * 400))
        # 800 bytes so far: within the limit, so the server is still waiting.
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(READ_TIMEOUT)
        # The next chunk passes the limit; no terminating chunk is ever sent.
        sock.sendall(_chunk(b"c" * 400))
        _assert_too_large(_read_until_closed(sock))
    assert server.handled() == before
    # The server is still healthy.
    response = httpx.post(f"{server.url}/echo", content=b"ok", timeout=READ_TIMEOUT)
    assert response.status_code == 200
    assert response.json()["length"] == 2


def test_complete_oversized_chunked_body_in_one_write_is_refused(
    server: Server,
) -> None:
    # The decoder reaches the final chunk within the same read as the refusal;
    # the request must still not be dispatched.
    before = server.handled()
    body = b"".join(_chunk(b"d" * 300) for _ in range(4)) + b"0\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(
            _request_head(
                "Transfer-Encoding: chunked",
                "Content-Type: multipart/form-data; boundary=x",
            )
            + body
        )
        _assert_too_large(_read_until_closed(sock))
    assert server.handled() == before
    assert httpx.get(f"{server.url}/echo", timeout=READ_TIMEOUT).status_code == 200


def test_refused_request_is_reported_to_the_app_with_its_id(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(_request_head("Content-Length: 10000000", "X-Request-ID: big-one-1"))
        raw = _read_until_closed(sock)
    _assert_too_large(raw)
    headers = _parse(raw)[1]
    assert headers["x-client-request-id"] == "big-one-1"
    assert {
        "request_id": headers["x-request-id"],
        "client_request_id": "big-one-1",
        "path": "/v1/chat/completions",
        "status": 413,
        "code": "request_too_large",
    } in server.refused()


def test_app_without_hooks_is_served_and_refused_alike(tmp_path: Path) -> None:
    # An app that predates on_refused/on_shutdown (GreenGate's, until it grows them).
    with run_server(tmp_path, "--max-body-bytes", str(LIMIT), app="tests.asgi_echo:bare_app") as bare:
        assert httpx.post(f"{bare.url}/echo", content=b"hi", timeout=READ_TIMEOUT).json()["length"] == 2
        with bare.connect() as sock:
            sock.sendall(_request_head("Content-Length: 10000000"))
            _assert_too_large(_read_until_closed(sock))
        bare.proc.terminate()
        assert bare.proc.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--port", "abc"], {}, "--port / PORT must be a whole number, got 'abc'"),
        (["--port", "70000"], {}, "--port / PORT must be at most 65535"),
        (
            ["--max-body-bytes", "0"],
            {},
            "--max-body-bytes / MAX_REQUEST_BYTES must be at least 1",
        ),
        (
            ["--app", "tests.no_such_module:app"],
            {},
            "cannot import module 'tests.no_such_module'",
        ),
        (
            ["--app", "tests.asgi_echo"],
            {},
            "--app must look like module.path:attribute",
        ),
        ([], {"SHUTDOWN_GRACE_SECONDS": "soon"}, "SHUTDOWN_GRACE_SECONDS must be a number, got 'soon'"),
        # A NaN deadline would never fire.
        ([], {"HEADER_TIMEOUT_SECONDS": "nan"}, "HEADER_TIMEOUT_SECONDS must be a finite number"),
        ([], {"BODY_TIMEOUT_SECONDS": "0"}, "BODY_TIMEOUT_SECONDS must be at least 0.1"),
        ([], {"KEEPALIVE_TIMEOUT_SECONDS": "inf"}, "KEEPALIVE_TIMEOUT_SECONDS must be a finite number"),
    ],
)
def test_bad_configuration_exits_with_one_line(args: list[str], env: dict[str, str], fragment: str) -> None:
    result = subprocess.run(
        _command("--app", "tests.asgi_echo:app", *args),
        check=False,
        cwd=ROOT,
        env={**_server_env(), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
