"""The Channels consumer that serves streamed completions as server-sent events."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from gateway import pipeline
from gateway.call import Call
from gateway.transport.responders import SseResponder

CALL_KEY = "greengate.call"


class ChatStreamConsumer(AsyncHttpConsumer):
    """Runs the pipeline in its own task so that a client leaving (http.disconnect) can cancel it.

    The stock AsyncHttpConsumer awaits handle() inside its receive loop and so would not see the disconnect
    until the whole upstream stream had been read. The ASGI edge has already read the body and identified
    the call; this consumer only writes what the pipeline gives it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
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

    async def dispatch(self, message: Any) -> None:
        # Channels closes stale Django DB connections before every message, on the sync thread; this consumer
        # uses none (the ledger has its own async pool), so it skips that hop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def http_request(self, message: Any) -> None:
        if message.get("more_body"):
            return
        call: Call = self.scope[CALL_KEY]
        self._task = asyncio.create_task(pipeline.serve(call, SseResponder(self.send_headers, self.send_body)))

    async def http_disconnect(self, message: Any) -> None:
        # Sent when the client leaves, and by the server after a finished response.
        await self._stop_task()
        raise StopConsumer()
