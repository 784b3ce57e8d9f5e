"""Providers and deployments from the environment; admin edits apply live from then on."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from providers.models import Deployment, Provider

OPENAI_PROVIDER = "openai"
DEMO_PROVIDER = "demo"


def _priority(kind: str) -> int:
    # LLM_PROVIDER_SEQUENCE is the fallback order: earlier kinds get lower (tried first) priorities.
    return settings.LLM_PROVIDER_SEQUENCE.index(kind) * 10


@transaction.atomic
def bootstrap_providers() -> list[str]:
    """Make the env-described providers exist; returns a line per change for the start-up log."""
    changes: list[str] = []
    sequence = settings.LLM_PROVIDER_SEQUENCE

    if "openai" in sequence and settings.OPENAI_CONFIGURED:
        provider, created = Provider.objects.get_or_create(
            name=OPENAI_PROVIDER,
            defaults={"kind": "openai", "base_url": settings.OPENAI_BASE_URL, "api_key": settings.OPENAI_API_KEY},
        )
        if created:
            changes.append(f"provider {provider.name} created from OPENAI_* settings")
        elif (provider.base_url, provider.api_key) != (settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY):
            # The environment owns this provider's endpoint and credential: a rotated key applies on restart.
            provider.base_url, provider.api_key = settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY
            provider.save(update_fields=["base_url", "api_key"])
            changes.append(f"provider {provider.name} updated from OPENAI_* settings")
        for model in settings.OPENAI_MODELS:
            _, made = Deployment.objects.get_or_create(
                model_name=model, provider=provider, upstream_model=model, defaults={"priority": _priority("openai")}
            )
            if made:
                changes.append(f"model {model} routed to {provider.name}")

    if "mock" in sequence:
        demo, created = Provider.objects.get_or_create(name=DEMO_PROVIDER, defaults={"kind": "mock"})
        if created:
            changes.append("demo provider created (offline, canned answers)")
        Deployment.objects.get_or_create(
            model_name=settings.DEMO_MODEL,
            provider=demo,
            upstream_model=settings.DEMO_MODEL,
            defaults={"priority": _priority("mock")},
        )
        if settings.OPENAI_CONFIGURED:
            # With a real provider configured, real model names must never fall back to canned text.
            switched = Deployment.objects.filter(
                provider=demo, model_name__in=settings.OPENAI_MODELS, is_enabled=True
            ).update(is_enabled=False)
            if switched:
                changes.append(f"demo answers for {switched} OpenAI model name(s) switched off")
        else:
            # No provider key: the OpenAI model names answer from the demo so any client works offline.
            for model in settings.OPENAI_MODELS:
                Deployment.objects.get_or_create(
                    model_name=model, provider=demo, upstream_model=model, defaults={"priority": _priority("mock")}
                )
    return changes
