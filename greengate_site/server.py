"""Run an ASGI app under daphne, adding only what daphne lacks in front of the internet.

What this adds to stock daphne, and why:

- **Body limit.** daphne hands a request to the app only once Twisted has buffered the
  whole body, so a size check in the app comes too late for memory and disk. Bodies
  over ``--max-body-bytes`` get a 413 as soon as the declared or received size passes it.
- **Deadlines.** Twisted's idle timeout restarts on every byte, so a client sending one
  byte a minute holds a connection forever. The request head and the whole body must
  arrive within fixed deadlines counted from the request's start (408 otherwise), and an
  idle keep-alive connection is closed. Responses have no deadline: streams may run long.
- **JSON refusals.** Twisted answers bad requests with an empty 400 and daphne with an
  HTML page; every refusal made here is an OpenAI-shaped JSON error with an X-Request-ID.
  Bytes that cannot be HTTP/1.x (TLS on the plain port, bare-LF lines) are refused at once,
  and so are paths with ``.``/``..`` segments (Django's static handler answers those with a 500).
- **Graceful drain.** On SIGTERM daphne cancels every request at once. Here the server
  stops listening, closes idle connections, lets in-flight requests finish within
  ``SHUTDOWN_GRACE_SECONDS``, and only then cancels the rest.
- **Listen backlog** of 4096 instead of Twisted's 50.

The app may expose two optional hooks, both looked up as attributes of the ASGI app:
``on_refused(request_id, path, status, code, client_request_id=...)`` is called for each request the server
refuses itself once its request line was read (so it can be recorded), and
``async on_shutdown()`` is awaited after the drain (to flush what the app buffers).

Usage::

    python -m greengate_site.server [--host H] [--port P] [--app module:attr] [--max-body-bytes N]
"""

from __future__ import annotations

# daphne.server installs Twisted's asyncio reactor on import; it must come before
# anything else imports twisted.internet.reactor.
import daphne.server  # isort: skip

import argparse
import asyncio
import inspect
import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from daphne.endpoints import build_endpoint_description_strings
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.utils import import_by_path
from twisted.internet import defer
from twisted.web import http

from greengate_site.env import (
    ConfigError,
    body_timeout_seconds,
    env_int,
    env_str,
    header_timeout_seconds,
    keepalive_timeout_seconds,
    parse_int,
    shutdown_grace_seconds,
)
from greengate_site.request_context import client_request_id, new_request_id, request_id_var

# Named explicitly: under `python -m` __name__ would be "__main__".
logger = logging.getLogger("greengate_site.server")

DEFAULT_APP = "greengate_site.asgi:application"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
LISTEN_BACKLOG = 4096
# How long cancelled requests get to unwind (and be recorded) once the grace period is over.
CANCEL_WAIT_SECONDS = 5.0

RefusedHook = Callable[..., None]  # (request_id, path, status, code, *, client_request_id)
ShutdownHook = Callable[[], Awaitable[None]]

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}

# What the start of a request line may look like before it is complete: a method token,
# a printable target, and a prefix of HTTP/1.0 or HTTP/1.1. Anything else (a TLS
# ClientHello, binary, HTTP/2's preface) cannot become a request, so it is refused at once.
_REQUEST_LINE_PREFIX = re.compile(
    rb"(?:\r\n)?[!#$%&'*+\-.^_`|~0-9A-Za-z]*(?: [\x21-\xff]*(?: (?:H(?:T(?:T(?:P(?:/(?:1(?:\.[01]?)?)?)?)?)?)?)?)?)?\r?"
)
_BARE_LF = re.compile(rb"(?<!\r)\n")
_X_REQUEST_ID = re.compile(rb"\r\nx-request-id:[ \t]*([^\r\n]*?)[ \t]*\r\n", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float


def error_body(code: str, message: str, kind: str = "invalid_request_error") -> bytes:
    """OpenAI's error shape."""
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def error_response(status: int, code: str, message: str, request_id: str, client_id: str = "") -> bytes:
    """A complete HTTP/1.1 response carrying an OpenAI-shaped error, for a connection about to close."""
    body = error_body(code, message)
    echoed = f"X-Client-Request-ID: {client_id}\r\n" if client_id else ""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"X-Request-ID: {request_id}\r\n{echoed}\r\n"
    )
    return head.encode("ascii") + body


def _peer(channel: http.HTTPChannel) -> str:
    peer = channel.transport.getPeer() if channel.transport is not None else None  # type: ignore[misc]
    return str(getattr(peer, "host", peer))


class GuardedChannel(http.HTTPChannel):
    """Twisted's HTTP/1.1 connection with request deadlines, early refusals and JSON errors.

    ``phase`` is where the connection is: ``"head"`` (waiting for or reading a request
    line and headers), ``"body"``, ``"busy"`` (the app has the request) or ``"idle"``
    (kept alive between requests). One timer at a time enforces the phase's deadline.
    """

    factory: GuardedHTTPFactory

    def __init__(self) -> None:
        super().__init__()
        self.phase = "head"
        self.refused = False
        self._deadline: Any = None
        self._started = 0.0
        self._head = b""  # the current request's head bytes so far, screened as they come
        self._line_done = False

    # -- deadlines --------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.channels.add(self)
        # A new connection's first request counts from the accept, so a silent client
        # is let go after the header deadline rather than held.
        self._start_request()

    def connectionLost(self, reason: Any) -> None:  # type: ignore[override]
        self._set_deadline(None)
        self.factory.channels.discard(self)
        super().connectionLost(reason)

    def _start_request(self) -> None:
        self.phase = "head"
        self._head = b""
        self._line_done = False
        self._started = self.factory.reactor.seconds()
        self._set_deadline(self.factory.limits.header_timeout)

    def _set_deadline(self, seconds_from_start: float | None, *, from_now: bool = False) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if seconds_from_start is not None:
            now = self.factory.reactor.seconds()
            delay = seconds_from_start if from_now else max(self._started + seconds_from_start - now, 0.0)
            self._deadline = self.callLater(delay, self._deadline_passed)

    @property
    def between_requests(self) -> bool:
        """Kept alive after a request, or new and silent: nothing is owed to anyone."""
        return self.phase == "idle" or (self.phase == "head" and not self._head)

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.between_requests:
            # Nothing of a request has arrived: there is no one to answer, just let go.
            self.close()
        elif self.phase in ("head", "body"):
            limit = self.factory.limits.header_timeout if self.phase == "head" else self.factory.limits.body_timeout
            part = "headers" if self.phase == "head" else "body"
            self.refuse(408, "request_timeout", f"The request {part} did not arrive within {limit:g} seconds.")

    # -- reading ----------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.refused or not data:
            return
        if self.phase == "idle" or (self.phase == "head" and not self._head):
            # A request starts at its first byte; both deadlines count from here.
            self._start_request()
        if self.phase == "head" and not self._screen_head(data):
            return
        super().dataReceived(data)

    def _screen_head(self, data: bytes) -> bool:
        """Refuse at once (and return False) when the head so far cannot be HTTP/1.x."""
        seen = len(self._head)
        self._head += data
        end = self._head.find(b"\r\n\r\n", max(seen - 3, 0))
        if end >= 0:
            # The rest is body or the next request; Twisted parses the head within this call.
            self._head = self._head[: end + 4]
        # Twisted splits lines on CRLF only: a bare-LF request would sit until the deadline.
        if _BARE_LF.search(self._head, seen):
            self.refuse(400, "invalid_request", "Request lines must end with CRLF.")
            return False
        if not self._line_done:
            line_end = self._head.find(b"\r\n", 2 if self._head.startswith(b"\r\n") else 0)
            self._line_done = line_end >= 0
            line = self._head[:line_end] if line_end >= 0 else self._head
            if not _REQUEST_LINE_PREFIX.fullmatch(line):
                self.refuse(400, "invalid_request", "This is not an HTTP/1.1 request.")
                return False
        return True

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        if not self.refused:
            self.phase = "body"
            self._set_deadline(self.factory.limits.body_timeout)

    def allContentReceived(self) -> None:
        self.phase = "busy"
        self._set_deadline(None)
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        if self.factory.draining:
            # Shutting down: answer the request in hand, then close rather than wait for another.
            self.persistent = False
        if self.persistent:
            # Set before super(), which replays pipelined bytes into dataReceived (a new request).
            self.phase = "idle"
            self._started = self.factory.reactor.seconds()
            self._set_deadline(self.factory.limits.keepalive_timeout, from_now=True)
        super().requestDone(request)

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        # int() refuses over 4,300 digits, leading zeros included, with a ValueError Twisted
        # does not catch (the connection just dropped). Without its zeros, a length of more
        # than 18 digits is over any body limit.
        if header == b"Content-Length" and data.isdigit():
            significant = data.lstrip(b"0") or b"0"
            if len(significant) > 18:
                self.requests[-1].refuse_too_large()
                return False
            data = significant
        return bool(super()._maybeChooseTransferDecoder(header, data))

    # -- refusing ---------------------------------------------------------------------

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's one exit for every malformed request it detects, sent as an empty 400.
        if self._receivedHeaderCount > self.maxHeaders:
            self.refuse(
                431, "request_header_fields_too_large", f"A request may have at most {self.maxHeaders} headers."
            )
        elif self._receivedHeaderSize > self.totalHeadersSize:
            self.refuse(431, "request_header_fields_too_large", self._head_too_large())
        else:
            self.refuse(400, "invalid_request", "The request is not well-formed HTTP/1.1.")

    def lineLengthExceeded(self, line: bytes) -> None:
        # LineReceiver's default just drops the connection.
        self.refuse(431, "request_header_fields_too_large", self._head_too_large())

    def _head_too_large(self) -> str:
        return f"The request line and headers must not exceed {self.totalHeadersSize} bytes."

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answer with an OpenAI-shaped error, tell the app, and close without reading on."""
        if self.refused:
            return
        self.refused = True
        self._set_deadline(None)
        # GreenGate's own id, as for every request; the client's, if safe, is echoed beside it.
        request_id, client_id = new_request_id(), client_request_id(self._supplied_request_id())
        # Set by Twisted once the request line parsed, until the request is complete.
        raw_path: bytes | None = getattr(self, "_path", None)
        path = raw_path.decode("ascii", "replace").split("?", 1)[0] if raw_path is not None else None
        self.factory.report_refused(request_id, client_id, path, status, code, message, _peer(self))
        self.transport.write(error_response(status, code, message, request_id, client_id))  # type: ignore[union-attr, call-arg, misc]
        self.close()

    def _supplied_request_id(self) -> str:
        request = self.requests[-1] if self.requests else None
        if request is not None and request.requestHeaders.hasHeader(b"x-request-id"):
            return request.requestHeaders.getRawHeaders(b"x-request-id")[0].decode("latin-1")
        # Twisted parses a header line only once the next one starts: look at the raw head.
        found = _X_REQUEST_ID.search(self._head)
        return found.group(1).decode("latin-1") if found else ""

    def close(self) -> None:
        self.persistent = False
        self.refused = True
        self._set_deadline(None)
        # loseConnection waits for our bytes to drain; a client that never reads is cut off.
        if self._abortingCall is None and self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


class GuardedRequest(WebRequest):
    """daphne's request, refusing an oversized body unread and its own errors as JSON."""

    channel: GuardedChannel

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        # Twisted's table lacks newer statuses (429 went out as "Unknown Status").
        if message is None:
            try:
                message = HTTPStatus(code).phrase.encode("ascii")
            except ValueError:
                message = None
        super().setResponseCode(code, message)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_body_bytes = self.channel.factory.limits.max_body_bytes
        self.body_bytes_received = 0

    def gotLength(self, length: int | None) -> None:
        # Called from allHeadersReceived() with the declared Content-Length (None when
        # chunked), before a single body byte is consumed.
        if length is not None and length > self.max_body_bytes:
            # Expect: 100-continue is looked at right after this returns; the client
            # must get the 413 instead of an invitation to upload.
            self.requestHeaders.removeHeader(b"Expect")
            self.refuse_too_large()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel.refused:
            # Bytes that were already in the read buffer when we refused.
            return
        self.body_bytes_received += len(data)
        if self.body_bytes_received > self.max_body_bytes:
            self.refuse_too_large()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # The body decoder can still reach its end inside the read that triggered a
        # refusal; never start the app for that request.
        if self.channel.refused:
            return
        super().requestReceived(command, path, version)

    def refuse_too_large(self) -> None:
        self.channel.refuse(
            413, "request_too_large", f"Request body is larger than the limit of {self.max_body_bytes} bytes."
        )

    def process(self) -> Any:
        # A dot segment can only be an attempt to climb out of a directory (clients remove
        # them, RFC 3986 5.2.4); Django's static handler would answer it with a 500.
        segments = unquote(self.path.decode("latin-1")).split("/")
        if ".." in segments or "." in segments:
            self.basic_error(400, b"Bad Request", "The request path must not contain '.' or '..' segments.")
            return None
        return super().process()

    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.start" and self.channel is not None and self.channel.factory.draining:
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"connection" for name, _ in headers):
                # Tell the client this connection ends with the response: we are shutting down.
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        super().handle_reply(message)

    def basic_error(self, status: int, status_text: bytes, body: str) -> None:
        """daphne's own error responses (bad header bytes, bad path, app crash), as JSON."""
        if self.finished or self.channel is None:
            return
        if self._response_started:
            # Part of a response is out: only a cut connection tells the client it is incomplete.
            self.channel.loseConnection()
            return
        message = body if body.endswith(".") else body + "."
        if status >= 500:
            self.answer_error(status, "internal_error", message, kind="server_error")
        else:
            self.answer_error(status, "invalid_request", message, report=True)

    def answer_error(
        self, status: int, code: str, message: str, *, kind: str = "invalid_request_error", report: bool = False
    ) -> None:
        """Answer with an OpenAI-shaped error and close the connection after it."""
        if self.finished or self.channel is None or self._response_started:
            return
        supplied = self.requestHeaders.getRawHeaders(b"x-request-id", [b""])[0]
        request_id, client_id = new_request_id(), client_request_id(supplied.decode("latin-1"))
        if report:
            # The URI, not self.path: daphne resets the path to "/" before refusing a bad one.
            path = self.uri.decode("ascii", "replace").split("?", 1)[0]
            self.channel.factory.report_refused(request_id, client_id, path, status, code, message, _peer(self.channel))
        payload = error_body(code, message, kind)
        self.channel.persistent = False
        self.handle_reply(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                    (b"x-request-id", request_id.encode()),
                    *([(b"x-client-request-id", client_id.encode())] if client_id else []),
                ],
            }
        )
        self.handle_reply({"type": "http.response.body", "body": payload})


class GuardedHTTPFactory(HTTPFactory):
    """daphne's factory, building ``GuardedChannel`` connections and tracking them for the drain."""

    def __init__(self, server: GuardedServer) -> None:
        super().__init__(server)
        self.limits = server.limits
        self.on_refused = server.on_refused
        # The channels' own deadlines replace Twisted's per-byte idle timeout.
        self.timeOut = None
        self.channels: set[GuardedChannel] = set()
        self.draining = False

    def protocol(self) -> Any:
        return http._GenericHTTPChannelProtocol(GuardedChannel())

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = GuardedRequest
        return protocol

    def report_refused(
        self, request_id: str, client_id: str, path: str | None, status: int, code: str, message: str, peer: str
    ) -> None:
        """Log a refusal and, once a request line was read (``path``), tell the app through its hook."""
        # The request id on the log line and on whatever the hook logs, as for any request.
        token = request_id_var.set(request_id)
        try:
            logger.warning("Refused %s from %s with %d %s: %s", path or "a request", peer, status, code, message)
            if path is not None and self.on_refused is not None:
                try:
                    self.on_refused(request_id, path, status, code, client_request_id=client_id)
                except Exception:  # noqa: BLE001 - the refusal must go out whatever the hook does
                    logger.exception("the app's on_refused hook failed")
        finally:
            request_id_var.reset(token)


class GuardedServer(daphne.server.Server):
    """daphne's server with ``GuardedHTTPFactory`` and a graceful drain instead of its kill-all."""

    def __init__(self, application: Any, *, limits: Limits, shutdown_grace: float, **kwargs: Any) -> None:
        self.limits = limits
        self.shutdown_grace = shutdown_grace
        self.on_refused: RefusedHook | None = getattr(application, "on_refused", None)
        self.on_shutdown: ShutdownHook | None = getattr(application, "on_shutdown", None)
        self.ports: list[Any] = []
        super().__init__(application, **kwargs)

    # Server.run() builds its factory inline as ``self.http_factory = HTTPFactory(self)``;
    # swapping it on assignment avoids copying run().
    @property
    def http_factory(self) -> GuardedHTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = factory if isinstance(factory, GuardedHTTPFactory) else GuardedHTTPFactory(self)

    def listen_success(self, port: Any) -> None:
        super().listen_success(port)
        self.ports.append(port)

    def kill_all_applications(self) -> defer.Deferred:
        # daphne runs this before the reactor shuts down; the reactor waits for the Deferred.
        return defer.Deferred.fromFuture(asyncio.ensure_future(self.drain()))

    async def drain(self) -> None:
        """Stop taking requests, finish those in flight (within the grace), then close down."""
        factory = self.http_factory
        factory.draining = True
        for port in self.ports:
            port.stopListening()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace
        while True:
            for channel in list(factory.channels):
                if channel.between_requests:
                    channel.close()
            running = self._running_applications()
            receiving = [c for c in factory.channels if c.phase in ("head", "body")]
            if not running and not receiving:
                break
            if loop.time() >= deadline:
                logger.warning("Shutdown grace of %gs over: cancelling %d requests", self.shutdown_grace, len(running))
                self._cancel_applications()
                if running:
                    await asyncio.wait(running, timeout=CANCEL_WAIT_SECONDS)
                break
            await asyncio.sleep(0.05)
        # Closing lets Twisted flush each connection's last response before the reactor stops
        # (it drops whatever is still unwritten when it does).
        for channel in list(factory.channels):
            channel.close()
        flush_deadline = loop.time() + CANCEL_WAIT_SECONDS
        while factory.channels and loop.time() < flush_deadline:
            await asyncio.sleep(0.05)
        if self.on_shutdown is not None:
            try:
                await self.on_shutdown()
            except Exception:  # noqa: BLE001 - the process is exiting either way
                logger.exception("the app's on_shutdown hook failed")

    def _cancel_applications(self) -> None:
        for request, details in list(self.connections.items()):
            instance = details.get("application_instance")
            if instance is None or instance.done():
                continue
            instance.cancel()
            if isinstance(request, GuardedRequest):
                # Clients (the OpenAI SDK among them) retry a 503, e.g. on another instance.
                request.answer_error(
                    503, "server_shutting_down", "The server is shutting down; retry the request.", kind="server_error"
                )

    def _running_applications(self) -> list[asyncio.Future[Any]]:
        instances = (details.get("application_instance") for details in list(self.connections.values()))
        return [i for i in instances if i is not None and not i.done()]


def serve(app: Any, host: str, port: int, limits: Limits, shutdown_grace: float) -> None:
    """Serve ``app`` on host:port until SIGTERM or Ctrl-C, then drain and return."""

    def announce() -> None:
        shown = f"[{host}]" if ":" in host else host
        for _, bound_port in server.listening_addresses:
            logger.info("GreenGate listening on http://%s:%s", shown, bound_port)

    server = GuardedServer(
        app,
        limits=limits,
        shutdown_grace=shutdown_grace,
        # Twisted listens with a backlog of 50; a burst of new connections beyond it waits out SYN retries.
        endpoints=[f"{e}:backlog={LISTEN_BACKLOG}" for e in build_endpoint_description_strings(host=host, port=port)],
        signal_handlers=True,
        # No action_logger and verbosity 1: no per-request access log lines and Twisted's own log is discarded.
        action_logger=None,
        verbosity=1,
        # None: long-running streamed completions must not be cut off.
        http_timeout=None,
        ready_callable=announce,
    )
    server.run()


def load_app(path: str) -> Any:
    """Import ``module:attribute`` like daphne's CLI does."""
    module_path, _, attr_path = path.partition(":")
    if not module_path or not attr_path:
        raise ConfigError(f"--app must look like module.path:attribute, got {path!r}")
    try:
        __import__(module_path)
    except ModuleNotFoundError as exc:
        # Only a missing target is a config error; a broken import inside the app keeps its traceback.
        missing = exc.name or ""
        if module_path != missing and not module_path.startswith(missing + "."):
            raise
        raise ConfigError(f"--app: cannot import module {module_path!r}") from None
    try:
        return import_by_path(path)
    except AttributeError:
        raise ConfigError(f"--app: {module_path!r} has no {attr_path!r}") from None


def _check_hooks(app: Any) -> None:
    refused = getattr(app, "on_refused", None)
    if refused is not None and not callable(refused):
        raise ConfigError("the app's on_refused must be callable")
    shutdown = getattr(app, "on_shutdown", None)
    if shutdown is not None and not inspect.iscoroutinefunction(shutdown):
        raise ConfigError("the app's on_shutdown must be an async function")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m greengate_site.server",
        description="Serve an ASGI app with daphne, request limits and deadlines, and a graceful drain.",
    )
    # Command-line values override the environment variables of the same meaning.
    parser.add_argument("--host", help="bind address (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="TCP port (env PORT, default 8000)")
    parser.add_argument("--app", default=DEFAULT_APP, help=f"ASGI app (default {DEFAULT_APP})")
    parser.add_argument(
        "--max-body-bytes",
        help=f"largest accepted request body in bytes (env MAX_REQUEST_BYTES, default {DEFAULT_MAX_BODY_BYTES})",
    )
    return parser.parse_args(argv)


def _served_setting(name: str, read: Callable[[], Any]) -> Any:
    """GreenGate's validated setting when its settings are loaded, else the same variable read here."""
    from django.conf import settings

    return getattr(settings, name) if settings.configured and hasattr(settings, name) else read()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # Importing GreenGate's app loads and validates its settings first.
        app = load_app(args.app)
        _check_hooks(app)
        host = args.host if args.host is not None else _served_setting("HOST", lambda: env_str("HOST", "127.0.0.1"))
        if not host.strip():
            raise ConfigError("--host / HOST must not be empty")
        if args.port is not None:
            port = parse_int("--port / PORT", args.port, minimum=1, maximum=65535)
        else:
            port = _served_setting("PORT", lambda: env_int("PORT", 8000, minimum=1, maximum=65535))
        if args.max_body_bytes is not None:
            max_body_bytes = parse_int("--max-body-bytes / MAX_REQUEST_BYTES", args.max_body_bytes, minimum=1)
        else:
            max_body_bytes = _served_setting(
                "MAX_REQUEST_BYTES", lambda: env_int("MAX_REQUEST_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1)
            )
        limits = Limits(
            max_body_bytes=max_body_bytes,
            header_timeout=header_timeout_seconds(),
            body_timeout=body_timeout_seconds(),
            keepalive_timeout=keepalive_timeout_seconds(),
        )
        shutdown_grace = shutdown_grace_seconds()
    except ConfigError as exc:
        sys.exit(f"GreenGate configuration error: {exc}")
    serve(app, host.strip(), port, limits, shutdown_grace)


if __name__ == "__main__":
    main()
