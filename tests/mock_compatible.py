"""A self-hosted OpenAI-compatible server's quirks on the mock upstream.

POST {prefix}/compatible/v1/chat/completions answers as ``openai_chat`` does, then as vLLM, llama.cpp or Ollama
builds sometimes do: no ``created``, ``model`` or ``object``, finish reason ``"eos"`` for ``"stop"``, usage on the
last content chunk rather than a chunk of its own, and no ``[DONE]`` at the end of a stream.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.mock_azure import knob_route
from tests.mock_upstream import Exchange, Frame, openai_chat, openai_error, sse

JSON = dict[str, Any]


def _quirky(payload: JSON) -> JSON:
    payload = {k: v for k, v in payload.items() if k not in ("created", "model", "object")}
    for choice in payload.get("choices", ()):
        if choice.get("finish_reason") == "stop":
            choice["finish_reason"] = "eos"
    return payload


class CompatibleExchange(Exchange):
    async def reply(self, payload: JSON) -> web.StreamResponse:
        return await super().reply(_quirky(payload))

    async def stream(self, frames: list[Frame]) -> web.StreamResponse:
        chunks = [json.loads(data.decode()[len("data: ") :]) for data, _ in frames[:-1]]  # the last is [DONE]
        contents = [content for _, content in frames[:-1]]
        if chunks and not chunks[-1]["choices"]:  # usage rides on the finishing chunk instead
            usage = chunks.pop()["usage"]
            contents.pop()
            chunks[-1]["usage"] = usage
        for chunk in chunks:
            if chunk.get("usage") is None:
                chunk.pop("usage", None)  # no null usage on every chunk either
        return await super().stream([(sse(_quirky(c)), content) for c, content in zip(chunks, contents, strict=True)])


def add_compatible_routes(app: web.Application, prefix: str) -> None:
    route = knob_route(openai_chat, openai_error, exchange=CompatibleExchange)
    app.router.add_post(f"{prefix}/compatible/v1/chat/completions", route)
