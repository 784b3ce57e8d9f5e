"""The Channels consumer that serves streamed completions as server-sent events."""

from __future__ import annotations

import asyncio
import json

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from gateway import pipeline, sse
from gateway.accounting import Call
from gateway.errors import GatewayError
from greengate_site.request_context import header_value
from greengate_site.request_id import request_id_of


class ChatStreamConsumer(AsyncHttpConsumer):
    """Runs the pipeline in its own task so that a client leaving (http.disconnect) can cancel it.

    The stock AsyncHttpConsumer awaits handle() inside its receive loop and so would not see the disconnect
    until the whole upstream stream had been read.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._task: asyncio.Task | None = None

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # The server cancels this consumer on shutdown; the response task must end (and be accounted) too.
            await self._stop_task()

    async def _stop_task(self) -> None:
        if self._task is not None:
            if not self._task.done():
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def dispatch(self, message) -> None:
        # Channels closes stale Django DB connections before every message, on the sync thread; this consumer
        # uses none (the ledger has its own async pool), so it skips that hop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def http_request(self, message) -> None:
        self.body.append(message.get("body", b""))
        if message.get("more_body"):
            return
        authorization = header_value(self.scope["headers"], b"authorization")
        self._task = asyncio.create_task(self._respond(request_id_of(self.scope), b"".join(self.body), authorization))

    async def http_disconnect(self, message) -> None:
        # Sent when the client leaves, and by the server after a finished response.
        await self._stop_task()
        raise StopConsumer()

    async def _respond(self, request_id: str, body: bytes, authorization: str | None) -> None:
        call = Call(request_id=request_id, stream=True)
        try:
            try:
                chunks = await pipeline.open_stream(call, body, authorization)
            except GatewayError as exc:
                headers = [(b"content-type", b"application/json")]
                headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
                await self.send_response(exc.status, json.dumps(exc.body()).encode(), headers=headers)
                return
            await self.send_headers(status=200, headers=sse.HEADERS)
            failed = False
            try:
                async for item in chunks:
                    failed = "error" in item
                    await self.send_body(sse.event(item), more_body=True)
            finally:
                await chunks.aclose()
            await self.send_body(b"" if failed else sse.DONE)
        finally:
            pipeline.finish(call)
