"""Every HTTP request gets a request id before anything else runs: set for its logs, returned in its response."""

from __future__ import annotations

from greengate_site.request_context import choose_request_id, header_value, request_id_var

SCOPE_KEY = "greengate.request_id"


def request_id_of(scope: dict) -> str:
    return scope[SCOPE_KEY]


class RequestIdMiddleware:
    """ASGI middleware: accepts a safe X-Request-ID or makes one, and sends it back on the response.

    At this level the id covers the whole request, Django's own log lines and the Channels consumer included.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(header_value(scope["headers"], b"x-request-id"))
        scope = {**scope, SCOPE_KEY: request_id}
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
