"""The HTTP/1.1 connection and request daphne uses, guarded: deadlines, early refusals, JSON errors."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from daphne.http_protocol import WebRequest
from twisted.web import http

from greengate_site.request_context import client_request_id, new_request_id

if TYPE_CHECKING:
    from greengate_site.server.drain import GuardedHTTPFactory

logger = logging.getLogger("greengate_site.server")

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
        # The id the app was given for this request, if it got that far.
        request_id = getattr(self, "greengate_request_id", None) or new_request_id()
        client_id = client_request_id(supplied.decode("latin-1"))
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
