"""GreenGate's own typed forms of OpenAI's chat shapes; adapters translate at their edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat completion request (OpenAI's shape, minus transport concerns)."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    # Every other OpenAI parameter the client sent (temperature, tools, ...), passed through as given.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # True when the upstream gave no usage and GreenGate counted the tokens itself.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class ChatResponse:
    """A whole completion in OpenAI's JSON shape plus its parsed usage."""

    body: dict[str, Any]
    usage: Usage


@dataclass(slots=True)
class ChatChunk:
    """One streamed chunk in OpenAI's shape; `usage` is set on the usage-only chunk."""

    body: dict[str, Any]
    usage: Usage | None = None

    @property
    def content(self) -> str:
        parts = []
        for choice in self.body.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str):
                parts.append(text)
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment as the hot path sees it: a plain copy of the Provider and Deployment rows."""

    deployment_id: int
    provider_id: int
    provider_name: str
    kind: str
    base_url: str
    api_key: str = field(repr=False)
    upstream_model: str
    weight: int
    priority: int
    timeout: float


class ProviderError(Exception):
    """The one error type adapters raise; the routing loop alone decides what happens next."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        code: str = "upstream_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.code = code
