"""Providers and deployments from the environment, for every kind the registry knows; admin edits apply live."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from greengate_site.env import ConfigError
from providers.adapters.registry import spec_for
from providers.env_config import ProviderConfig
from providers.models import Deployment, Provider
from providers.network import check_base_url

DEMO_PROVIDER = "demo"


def _deploy(provider: Provider, model: str, config: ProviderConfig, upstream: str = "") -> bool:
    _, made = Deployment.objects.get_or_create(
        model_name=model,
        provider=provider,
        upstream_model=upstream or model,
        defaults={"priority": config.priority, "weight": config.weight},
    )
    return made


def _operator_chose_internal(config: ProviderConfig) -> bool:
    """A base URL set in the environment is the operator's own choice: an internal one (a local model server)
    is allowed for that provider. A cloud metadata address never is."""
    try:
        check_base_url(config.base_url, allow_private=False)
        return False
    except ValueError:
        pass
    try:
        check_base_url(config.base_url, allow_private=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{config.kind} base URL {config.base_url!r}: {exc}") from None
    return True


@transaction.atomic
def bootstrap_providers() -> list[str]:
    """Make the environment's providers exist; returns a line per change for the start-up output."""
    changes: list[str] = []
    configs: dict[str, ProviderConfig] = settings.PROVIDER_CONFIGS
    real = [c for c in configs.values() if c.configured and c.kind != "mock"]
    for config in real:
        _check_complete(config)

    for config in real:
        allow_private = _operator_chose_internal(config)
        provider, created = Provider.objects.get_or_create(
            name=config.kind,
            defaults={
                "kind": config.kind,
                "base_url": config.base_url,
                "api_key": config.api_key,
                "options": config.options,
                "allow_private_network": allow_private,
            },
        )
        if created:
            changes.append(f"provider {provider.name} created from the environment")
        elif (provider.base_url, provider.api_key, provider.options) != (
            config.base_url,
            config.api_key,
            config.options,
        ):
            # The environment owns this provider's endpoint and credential: a rotated key applies on restart.
            provider.base_url, provider.api_key, provider.options = config.base_url, config.api_key, config.options
            provider.allow_private_network = allow_private
            provider.save(update_fields=["base_url", "api_key", "options", "allow_private_network"])
            changes.append(f"provider {provider.name} updated from the environment")
        for model, upstream in config.models:
            if _deploy(provider, model, config, upstream):
                changes.append(f"model {model} routed to {provider.name} as {upstream}")
        if not config.models and not provider.deployments.exists():
            env = spec_for(config.kind).env
            assert env is not None  # a configured real provider is configured from its env
            changes.append(f"provider {provider.name} serves no model yet: set {env.models} or add one in admin")

    demo = configs.get("mock")
    if demo is not None:
        changes += _bootstrap_demo(demo, configs, real)
    return changes


def _check_complete(config: ProviderConfig) -> None:
    """A provider kind without a default endpoint (a cloud resource, a self-hosted server) needs one given."""
    env = spec_for(config.kind).env
    if env is not None and not config.base_url:
        raise ConfigError(
            f"{env.base_url} must be set: provider {config.kind!r} is configured ({env.api_key} is set) "
            "and has no default endpoint"
        )


def _bootstrap_demo(demo: ProviderConfig, configs: dict[str, ProviderConfig], real: list[ProviderConfig]) -> list[str]:
    changes = []
    provider, created = Provider.objects.get_or_create(name=DEMO_PROVIDER, defaults={"kind": "mock"})
    if created:
        changes.append("demo provider created (offline, canned answers and hash-based embeddings)")
    _deploy(provider, settings.DEMO_MODEL, demo)
    _deploy(provider, settings.DEMO_EMBEDDING_MODEL, demo)
    served = {model for config in real for model, _ in config.models}
    if served:
        # Model names a real provider serves must never fall back to canned text.
        switched = Deployment.objects.filter(provider=provider, model_name__in=served, is_enabled=True).update(
            is_enabled=False
        )
        if switched:
            changes.append(f"demo answers for {switched} model name(s) served by a real provider switched off")
    if not real:
        # No provider configured: the usual model names answer from the demo so any client works offline.
        for config in configs.values():
            for model, _ in config.models:
                _deploy(provider, model, demo)
    return changes
