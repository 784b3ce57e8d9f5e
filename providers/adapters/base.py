"""The interface every provider adapter implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from providers.types import ChatChunk, ChatRequest, ChatResponse, Target


class LLMProvider(Protocol):
    kind: str

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse: ...

    def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[ChatChunk]: ...
