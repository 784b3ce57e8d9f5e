"""A raw ASGI app for server tests: replies with the size of the body it got.

``GET /count`` reports how many other HTTP requests reached the app, so a test
can prove that a refused request never got this far.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_handled = 0


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global _handled
    if scope["type"] != "http":
        return
    if scope["path"] == "/count":
        await _reply(send, {"handled": _handled})
        return
    _handled += 1
    length = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        length += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await _reply(send, {"length": length, "method": scope["method"]})


async def _reply(send: Send, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
