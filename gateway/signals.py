"""Any committed change to keys, tenants, plans, providers, deployments or price overrides moves the shared config
version."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from gateway.live_config import bump_config_version


def _changed(sender: type[Model], *, using: str, **kwargs: Any) -> None:
    # After commit (of the database the row was written to), so no instance reloads before the change is
    # visible to it. A bump is one INCR on the shared state (greengate_site.redis), never a database read.
    transaction.on_commit(bump_config_version, using=using)


def connect() -> None:
    from ledger.models import PriceOverride
    from providers.models import Deployment, Provider
    from tenants.models import ApiKey, Plan, Tenant

    for model in (Plan, Tenant, ApiKey, Provider, Deployment, PriceOverride):
        post_save.connect(_changed, sender=model, dispatch_uid=f"config-version-{model.__name__}-save")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"config-version-{model.__name__}-delete")
