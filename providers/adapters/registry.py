"""The only list of provider kinds. Adding a provider: one module in this folder, one line here, its tests."""

from __future__ import annotations

from functools import cache

from providers.adapters import anthropic, azure, cohere, compatible, mock, openai
from providers.adapters.base import LLMProvider, ProviderSpec

_ALL: tuple[ProviderSpec, ...] = (openai.SPEC, azure.SPEC, anthropic.SPEC, cohere.SPEC, compatible.SPEC, mock.SPEC)
SPECS: dict[str, ProviderSpec] = {spec.kind: spec for spec in _ALL}


def spec_for(kind: str) -> ProviderSpec:
    return SPECS[kind]


def kind_choices() -> list[tuple[str, str]]:
    return [(spec.kind, spec.label) for spec in SPECS.values()]


@cache
def adapter_for(kind: str) -> LLMProvider:
    adapter: LLMProvider = SPECS[kind].adapter()
    return adapter
