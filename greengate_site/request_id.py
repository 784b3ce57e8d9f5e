"""Every HTTP request gets GreenGate's own request id before anything else runs: set for its logs, returned.

The client's own id (X-Client-Request-ID, or X-Request-ID) is kept beside it, stored in the ledger and echoed
as X-Client-Request-ID; it never replaces GreenGate's, so two clients reusing one id cannot collide.
"""

from __future__ import annotations

from typing import Any

from greengate_site.request_context import client_request_id, header_value, new_request_id, request_id_var

SCOPE_KEY = "greengate.request_id"
CLIENT_SCOPE_KEY = "greengate.client_request_id"


def request_id_of(scope: dict[str, Any]) -> str:
    return scope[SCOPE_KEY]


def client_request_id_of(scope: dict[str, Any]) -> str:
    return scope.get(CLIENT_SCOPE_KEY, "")


class RequestIdMiddleware:
    """ASGI middleware: makes the request id, and sends it (and the client's, if any) back on the response.

    At this level the id covers the whole request, Django's own log lines and the Channels consumer included.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        # GreenGate's server makes the id when it hands the request over, so that an answer it must give itself
        # later (a 503 at the end of a shutdown's grace) carries the same id as the ledger row.
        request_id = scope.get(SCOPE_KEY) or new_request_id()
        client_id = client_request_id(
            header_value(headers, b"x-client-request-id") or header_value(headers, b"x-request-id")
        )
        scope = {**scope, SCOPE_KEY: request_id, CLIENT_SCOPE_KEY: client_id}
        ours = [(b"x-request-id", request_id.encode())]
        if client_id:
            ours.append((b"x-client-request-id", client_id.encode()))
        names = {name for name, _ in ours}

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message = {**message, "headers": [*headers, *ours]}
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
