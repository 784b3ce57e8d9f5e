"""What every provider adapter is and declares."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Protocol

from gateway.schemas import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResult
from providers.types import Target


class LLMProvider(Protocol):
    kind: str

    async def complete(self, request: ChatRequest, target: Target) -> ChatResponse: ...

    def stream(self, request: ChatRequest, target: Target) -> AsyncGenerator[ChatChunk, None]: ...

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResult:
        """One float vector per input, in order. Only called on kinds whose Supports.embeddings is true."""
        ...


@dataclass(frozen=True, slots=True)
class Supports:
    """What a provider can do; the pipeline refuses with a clear 400 what it cannot."""

    streaming: bool = True
    tools: bool = True
    images: bool = True
    json_schema: bool = True
    n_above_one: bool = True
    # Serves POST /v1/embeddings; a model whose deployments all lack it is refused with a 400.
    embeddings: bool = True


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """How a provider bootstraps from the environment: the variables it reads, with their defaults.

    The provider is set up when its key variable (or its base-URL variable, for servers that need no key) is set.
    """

    api_key: str
    base_url: str
    default_base_url: str
    models: str
    default_models: tuple[str, ...]
    # Further variables the adapter reads into Target.options, with defaults.
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    kind: str
    label: str
    adapter: type
    env: EnvConfig | None = None
    supports: Supports = Supports()
    # Built in and offline: set up whenever it is in LLM_PROVIDER_SEQUENCE.
    builtin: bool = False
    # The provider's name in ecologits' model data (energy); None: ecologits does not model it.
    ecologits_provider: str | None = None
    # The provider's id in genai-prices' tables (cost); None: found by the provider's base URL, if at all.
    price_provider: str | None = None
