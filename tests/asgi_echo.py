"""A raw ASGI app for server tests: replies with the size of the body it got.

- ``GET /count`` reports how many other HTTP requests reached the app, so a test can
  prove that a refused request never got this far.
- ``GET /sleep?s=N`` answers after N seconds; if it is cancelled instead, it appends
  ``cancelled <path>`` to the file named by ``ECHO_EVENTS_FILE`` (the process is gone
  by the time a shutdown test looks).
- ``GET /stream?n=N&every=S`` streams N chunks, one every S seconds.
- ``GET /crash`` raises, as an app with a bug would.
- ``GET /refused`` lists what the server reported through the ``on_refused`` hook.
- ``on_shutdown`` appends ``shutdown`` to ``ECHO_EVENTS_FILE``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_handled = 0
_refused: list[dict[str, Any]] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global _handled
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/count":
        await _reply(send, {"handled": _handled})
        return
    if path == "/refused":
        await _reply(send, {"refused": _refused})
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
    query = {name: values[0] for name, values in parse_qs(scope["query_string"].decode()).items()}
    if path == "/crash":
        raise RuntimeError("the echo app crashed on purpose")
    if path == "/sleep":
        try:
            await asyncio.sleep(float(query.get("s", "1")))
        except asyncio.CancelledError:
            _record_event(f"cancelled {path}")
            raise
        await _reply(send, {"slept": float(query.get("s", "1"))})
    elif path == "/stream":
        await _stream(send, int(query.get("n", "3")), float(query.get("every", "0.5")))
    else:
        await _reply(send, {"length": length, "method": scope["method"]})


def on_refused(request_id: str, path: str, status: int, code: str, *, client_request_id: str = "") -> None:
    _refused.append(
        {"request_id": request_id, "client_request_id": client_request_id, "path": path, "status": status, "code": code}
    )


async def on_shutdown() -> None:
    _record_event("shutdown")


# The server looks for the hooks on the app object itself.
app.on_refused = on_refused  # type: ignore[attr-defined]
app.on_shutdown = on_shutdown  # type: ignore[attr-defined]


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The same app without hooks, as an app that predates them looks to the server."""
    await app(scope, receive, send)


def _record_event(line: str) -> None:
    target = os.environ.get("ECHO_EVENTS_FILE")
    if target:
        with open(target, "a") as events:
            events.write(line + "\n")


async def _stream(send: Send, chunks: int, every: float) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for index in range(chunks):
        await asyncio.sleep(every)
        await send({"type": "http.response.body", "body": b"chunk %d\n" % index, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


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
