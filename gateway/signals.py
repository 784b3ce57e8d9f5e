"""Any committed change to keys, tenants, plans, providers or deployments moves the shared config version."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from gateway.live_config import bump_config_version


def _changed(sender, **kwargs) -> None:
    # After commit, so no instance reloads before the change is visible to it.
    transaction.on_commit(bump_config_version)


def connect() -> None:
    from providers.models import Deployment, Provider
    from tenants.models import ApiKey, Plan, Tenant

    for model in (Plan, Tenant, ApiKey, Provider, Deployment):
        post_save.connect(_changed, sender=model, dispatch_uid=f"config-version-{model.__name__}-save")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"config-version-{model.__name__}-delete")
