"""Provider settings from the environment, as each adapter's registry entry declares them.

Read while settings load, so a bad value stops GreenGate at start-up with a message naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from greengate_site.env import ConfigError, env_list, env_str, env_url
from providers.adapters.registry import SPECS

DEFAULT_SEQUENCE = ("openai", "azure", "anthropic", "cohere", "compatible", "mock")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    kind: str
    # Set up from the environment: its key (or base URL) is set, or it is built in.
    configured: bool
    api_key: str = field(default="", repr=False)
    base_url: str = ""
    # (public model name, the provider's own name for it); "name" or "name=upstream" in the environment.
    models: tuple[tuple[str, str], ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    weight: int = 1


def _weights(raw: list[str] | None, sequence: list[str]) -> dict[str, int]:
    weights: dict[str, int] = {}
    for item in raw or ():
        kind, _, number = item.partition("=")
        kind = kind.strip()
        if kind not in sequence:
            raise ConfigError(f"LLM_PROVIDER_WEIGHTS names {kind!r}, which is not in LLM_PROVIDER_SEQUENCE")
        try:
            weights[kind] = int(number)
        except ValueError:
            raise ConfigError(f"LLM_PROVIDER_WEIGHTS must look like openai=3,azure=1, got {item!r}") from None
        if not 1 <= weights[kind] <= 1000:
            raise ConfigError(f"LLM_PROVIDER_WEIGHTS: weight of {kind} must be between 1 and 1000")
    return weights


def _model_pairs(name: str, items: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        public, _, upstream = item.partition("=")
        public, upstream = public.strip(), (upstream.strip() or public.strip())
        if not public or not upstream:
            raise ConfigError(f"{name}: {item!r} must be a model name or public=upstream")
        pairs.append((public, upstream))
    return tuple(pairs)


def provider_configs() -> tuple[list[str], dict[str, ProviderConfig]]:
    """LLM_PROVIDER_SEQUENCE and each kind's configuration, in fallback order."""
    # Every kind by default: each is set up only when its variables are set (the demo always).
    sequence = env_list("LLM_PROVIDER_SEQUENCE", list(DEFAULT_SEQUENCE))
    unknown = [kind for kind in sequence if kind not in SPECS]
    if unknown:
        raise ConfigError(
            f"LLM_PROVIDER_SEQUENCE names unknown provider kinds {unknown}; known: {', '.join(sorted(SPECS))}"
        )
    if len(set(sequence)) != len(sequence):
        raise ConfigError("LLM_PROVIDER_SEQUENCE names a provider kind twice")
    weights = _weights(env_list("LLM_PROVIDER_WEIGHTS", []) or None, sequence)
    configs: dict[str, ProviderConfig] = {}
    for index, kind in enumerate(sequence):
        spec = SPECS[kind]
        # Earlier kinds in the sequence get lower (tried first) priorities.
        priority, weight = index * 10, weights.get(kind, 1)
        if spec.env is None:
            configs[kind] = ProviderConfig(kind=kind, configured=spec.builtin, priority=priority, weight=weight)
            continue
        env = spec.env
        api_key = env_str(env.api_key)
        # An explicit base URL alone also configures a provider: local compatible servers often need no key.
        configured = bool(api_key or env_str(env.base_url))
        configs[kind] = ProviderConfig(
            kind=kind,
            configured=configured,
            api_key=api_key,
            base_url=env_url(env.base_url, env.default_base_url, schemes={"http", "https"}),
            models=_model_pairs(env.models, env_list(env.models, list(env.default_models))),
            options={name: env_str(name, default) for name, default in env.options.items()},
            priority=priority,
            weight=weight,
        )
    return sequence, configs
