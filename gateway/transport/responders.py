"""The two ways the pipeline's answer leaves: a whole JSON response, or server-sent events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.http import HttpResponse

from gateway.errors import GatewayError
from gateway.transport import sse

Headers = list[tuple[bytes, bytes]]
JSON_TYPE = (b"content-type", b"application/json")


def error_headers(error: GatewayError) -> Headers:
    return [JSON_TYPE, *((k.lower().encode(), v.encode()) for k, v in error.headers.items())]


class JsonResponder:
    """For the DRF view: keeps the one response the pipeline gives, for the view to return."""

    def __init__(self) -> None:
        self.response: HttpResponse | None = None
        self.started = False

    async def json(self, status: int, body: bytes, headers: Headers) -> None:
        response = HttpResponse(body, status=status, content_type="application/json")
        for name, value in headers:
            response[name.decode()] = value.decode()
        self.response = response

    async def start_stream(self, headers: Headers) -> None:
        raise RuntimeError("a JSON request cannot be answered with a stream")

    async def event(self, data: bytes) -> None:
        raise RuntimeError("a JSON request cannot be answered with a stream")

    async def end_stream(self, *, done: bool) -> None:
        raise RuntimeError("a JSON request cannot be answered with a stream")

    async def error(self, error: GatewayError) -> None:
        await self.json(error.status, error.encoded(), error_headers(error)[1:])


SendHeaders = Callable[..., Awaitable[None]]
SendBody = Callable[..., Awaitable[None]]


class SseResponder:
    """For the Channels consumer: writes each event as it comes; an error after the start becomes an event."""

    def __init__(self, send_headers: SendHeaders, send_body: SendBody) -> None:
        self._send_headers = send_headers
        self._send_body = send_body
        self.started = False
        self.finished = False

    async def json(self, status: int, body: bytes, headers: Headers) -> None:
        await self._send_headers(status=status, headers=[JSON_TYPE, *headers])
        await self._send_body(body)
        self.finished = True

    async def start_stream(self, headers: Headers) -> None:
        self.started = True
        await self._send_headers(status=200, headers=[*sse.HEADERS, *headers])

    async def event(self, data: bytes) -> None:
        await self._send_body(sse.frame(data), more_body=True)

    async def end_stream(self, *, done: bool) -> None:
        # A stream that failed ends without [DONE], so that no client mistakes it for a complete answer.
        self.finished = True
        await self._send_body(sse.DONE if done else b"")

    async def error(self, error: GatewayError) -> None:
        if self.finished:
            return
        if not self.started:
            await self.json(error.status, error.encoded(), error_headers(error)[1:])
            return
        await self.event(error.encoded())
        await self.end_stream(done=False)
