"""Registry of provider adapters: adding a provider is one module and one entry here."""

from __future__ import annotations

from providers.adapters.base import LLMProvider
from providers.adapters.mock import MockProvider
from providers.adapters.openai import OpenAIProvider

ADAPTERS: dict[str, LLMProvider] = {
    OpenAIProvider.kind: OpenAIProvider(),
    MockProvider.kind: MockProvider(),
}

KIND_CHOICES = [
    (OpenAIProvider.kind, "OpenAI (or any OpenAI-compatible server)"),
    (MockProvider.kind, "Demo (built-in, offline)"),
]


def adapter_for(kind: str) -> LLMProvider:
    return ADAPTERS[kind]
