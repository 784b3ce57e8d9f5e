"""The built-in demo provider: answers offline, deterministically, with real token counts and chunks."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

from providers.tokens import count_prompt_tokens, message_text, tokenize_spaced
from providers.types import ChatChunk, ChatRequest, ChatResponse, Target, Usage


def _reply_tokens(request: ChatRequest) -> list[str]:
    last_user = next((m for m in reversed(request.messages) if m.get("role") == "user"), None)
    asked = message_text(last_user.get("content")) if last_user else ""
    excerpt = " ".join(asked.split())[:80]
    text = (
        f'This is GreenGate\'s demo provider, answering offline. You said: "{excerpt}". '
        "Add a provider key to get real completions."
    )
    tokens = tokenize_spaced(text)
    if request.max_tokens is not None:
        tokens = tokens[: request.max_tokens]
    return tokens


def _completion_id(request: ChatRequest) -> str:
    digest = hashlib.sha256(repr(request.messages).encode()).hexdigest()[:24]
    return f"chatcmpl-demo-{digest}"


class MockProvider:
    kind = "mock"

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse:
        tokens = _reply_tokens(request)
        usage = Usage(prompt_tokens=count_prompt_tokens(request.messages), completion_tokens=len(tokens))
        finish = "length" if request.max_tokens is not None and len(tokens) >= request.max_tokens else "stop"
        body = {
            "id": _completion_id(request),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.upstream_model,
            "system_fingerprint": "greengate-demo",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(tokens), "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage.as_openai(),
        }
        return ChatResponse(body=body, usage=usage)

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[ChatChunk]:
        tokens = _reply_tokens(request)
        usage = Usage(prompt_tokens=count_prompt_tokens(request.messages), completion_tokens=len(tokens))
        finish = "length" if request.max_tokens is not None and len(tokens) >= request.max_tokens else "stop"
        base = {
            "id": _completion_id(request),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": target.upstream_model,
            "system_fingerprint": "greengate-demo",
        }

        def chunk(delta: dict, finish_reason: str | None = None) -> ChatChunk:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return ChatChunk(body={**base, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        for token in tokens:
            await asyncio.sleep(0)  # yield to the loop between chunks, like a network stream would
            yield chunk({"content": token})
        yield chunk({}, finish)
        yield ChatChunk(body={**base, "choices": [], "usage": usage.as_openai()}, usage=usage)
