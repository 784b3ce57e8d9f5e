"""The joint between transports: POST /v1/chat/completions goes to the SSE consumer or the DRF view."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

from gateway.errors import request_too_large
from gateway.validation import wants_stream


class APIHandler(ASGIHandler):
    """Django's ASGI handler for the API, without what only the admin needs.

    - No middleware: the stock middleware (sessions, CSRF, auth, messages) serve the admin, and under ASGI
      each runs its hooks on the shared sync thread, twice per request (it halved API throughput).
    - No per-request ThreadSensitiveContext: it starts and joins a thread for every request, for the sake of
      sync views, and the API has none.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # What Django's own load_middleware() builds when the middleware list is empty.
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async if is_async else self._get_response
        )

    async def __call__(self, scope, receive, send) -> None:
        await self.handle(scope, receive, send)


_TOO_LARGE_HEADERS = [(b"content-type", b"application/json"), (b"connection", b"close")]


class ChatCompletionsRouter:
    """Reads the body once, then hands the request to the streaming or the JSON transport.

    The server has already received the body (and refused oversized ones, see greengate_site.server);
    the size check here only protects the gateway when it runs under another ASGI server.
    """

    def __init__(self, json_app, stream_app) -> None:
        self.json_app = json_app
        self.stream_app = stream_app

    async def __call__(self, scope, receive, send) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > settings.MAX_REQUEST_BYTES:
                await _too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        app = self.stream_app if scope["method"] == "POST" and wants_stream(body) else self.json_app
        await app(scope, replay, send)


async def _too_large(send) -> None:
    body = json.dumps(request_too_large(settings.MAX_REQUEST_BYTES).body()).encode()
    await send({"type": "http.response.start", "status": 413, "headers": _TOO_LARGE_HEADERS})
    await send({"type": "http.response.body", "body": body})
