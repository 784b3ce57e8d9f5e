"""The ASGI edge of the API: reads a pipeline request's body once, identifies the call, then picks its transport.

Also here: the Django handler the API runs on, OpenAI-shaped answers for unknown /v1 paths, and CORS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

from gateway import pipeline
from gateway.accounting import recorded
from gateway.admission.client_address import client_address
from gateway.call import CHAT, Call
from gateway.errors import GatewayError, method_not_allowed, request_too_large, unknown_url
from gateway.transport.consumers import CALL_KEY
from greengate_site.request_context import header_value
from greengate_site.request_id import client_request_id_of, request_id_of

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class APIHandler(ASGIHandler):
    """Django's ASGI handler for the API, without what only the admin needs.

    - No middleware: the stock middleware (sessions, CSRF, auth, messages) serve the admin, and under ASGI
      each runs its hooks on the shared sync thread, twice per request (it halved API throughput).
    - No per-request ThreadSensitiveContext: it starts and joins a thread for every request, for the sake of
      sync views, and the API has none.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # What Django's own load_middleware() builds when the middleware list is empty.
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        get_response = self._get_response_async if is_async else self._get_response  # type: ignore[attr-defined]
        self._middleware_chain = convert_exception_to_response(get_response)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)


async def send_error(send: Send, error: GatewayError, *, close: bool = False) -> None:
    """An OpenAI-shaped error straight from the ASGI layer."""
    body = error.encoded()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PipelineJoint:
    """POST to a pipeline endpoint (/v1/chat/completions, /v1/embeddings): body read once and bounded, key
    checked, body parsed once, then the transport (embeddings never stream, so their stream app is the JSON one).

    The request is recorded in the ledger from here on, whatever happens: `recorded` accounts it exactly once.
    Other methods go to the JSON view, which answers 405.
    """

    def __init__(self, json_app: ASGIApp, stream_app: ASGIApp, *, endpoint: str = CHAT) -> None:
        self.json_app = json_app
        self.stream_app = stream_app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            if not scope["method"].isupper():
                # Methods are case-sensitive, but Django upper-cases them: "post" must not pass for POST.
                await send_error(send, method_not_allowed(scope["method"], ["POST"]))
                return
            await self.json_app(scope, receive, send)
            return
        call = Call(
            request_id=request_id_of(scope),
            client_request_id=client_request_id_of(scope),
            endpoint=self.endpoint,
            client_address=client_address(scope),
        )
        async with recorded(call):
            body = await _read_body(receive, settings.MAX_REQUEST_BYTES)
            if body is None:
                return  # the client left before sending its body: recorded as 499
            if isinstance(body, GatewayError):
                call.error = body
                body = b""
            else:
                await pipeline.identify(call, body, scope["headers"])
            app = self.stream_app if call.stream else self.json_app
            await app({**scope, CALL_KEY: call}, _replay(body, receive), send)


async def _read_body(receive: Receive, limit: int) -> bytes | GatewayError | None:
    """The whole body; a 413 if it passes the limit (the server normally refuses it before this); None if gone.

    The server has already received the body; this check only protects the gateway under another ASGI server.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return request_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the already-read body over once, then waits for the client's disconnect."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def unknown_api_path(scope: Scope, receive: Receive, send: Send) -> None:
    """Any other path under /v1: OpenAI's 404, never an HTML page."""
    await send_error(send, unknown_url(scope["method"], scope.get("path", "")))


class AmbiguousPathGuard:
    """Paths GreenGate will not guess at: an empty segment ("//v1/chat" reaches Django as if "v1" were a host
    name, "/v1//chat" matches nothing), or a request target that is not a path at all (absolute form, "*").
    They get OpenAI's 404 (400 for a non-path target) instead of an HTML page or a routing surprise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = (scope.get("raw_path") or scope.get("path", "").encode("latin-1")).split(b"?", 1)[0]
            shown = raw.decode("latin-1")
            if not raw.startswith(b"/"):
                error = GatewayError(400, f"The request target {shown[:200]!r} is not a path.", code="invalid_request")
                await send_error(send, error)
                return
            if b"//" in raw:
                await send_error(send, unknown_url(scope["method"], shown))
                return
        await self.app(scope, receive, send)


class CORSMiddleware:
    """CORS for browser apps calling the API, for the origins in CORS_ALLOWED_ORIGINS (none by default).

    Preflights (OPTIONS with Access-Control-Request-Method) are answered here; other responses from an
    allowed origin get Access-Control-Allow-Origin and the headers a client may read.
    """

    ALLOW_METHODS = b"GET, POST, OPTIONS"
    EXPOSE = (
        b"x-request-id, x-client-request-id, retry-after, x-ratelimit-limit-requests, "
        b"x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
        b"x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, x-greengate-cache, x-greengate-energy-joules, "
        b"x-greengate-co2e-grams, x-greengate-cost-usd, x-greengate-idempotent-replay"
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def _allowed(self, origin: str | None) -> bool:
        allowed: list[str] = settings.CORS_ALLOWED_ORIGINS
        return bool(origin) and ("*" in allowed or origin in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        origin = header_value(headers, b"origin")
        if scope["method"] == "OPTIONS":
            await self._preflight(origin, header_value(headers, b"access-control-request-headers"), send)
            return
        if not self._allowed(origin):
            await self.app(scope, receive, send)
            return
        assert origin is not None
        extra = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", self.EXPOSE),
            (b"vary", b"Origin"),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: str | None, requested: str | None, send: Send) -> None:
        if origin is None:
            # Not a browser preflight: say what the API accepts.
            headers = [(b"allow", self.ALLOW_METHODS), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if not self._allowed(origin):
            error = GatewayError(403, f"Origin {origin[:200]!r} is not allowed to call this API.", code="cors_denied")
            await send_error(send, error)
            return
        # Echo the requested headers only if they are plain header names.
        allow_headers = requested if requested and _token_list(requested) else "authorization, content-type"
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", self.ALLOW_METHODS),
            (b"access-control-allow-headers", allow_headers.encode("latin-1")),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _token_list(value: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ")
    return len(value) <= 1000 and set(value) <= allowed
