"""Writes to tenants and keys. Every change bumps the live config version on commit."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from tenants.keys import generate_secret, hash_secret, visible_prefix
from tenants.models import ApiKey, Plan, Tenant


def plan_default(*, rate_limit_per_minute: int, tokens_per_minute: int | None = None) -> Plan:
    plan, _ = Plan.objects.get_or_create(
        name="default",
        defaults={"rate_limit_per_minute": rate_limit_per_minute, "tokens_per_minute": tokens_per_minute},
    )
    return plan


def tenant_create(*, slug: str, name: str = "", plan: Plan) -> Tenant:
    tenant = Tenant(slug=slug, name=name or slug, plan=plan)
    tenant.full_clean()
    tenant.save()
    return tenant


def api_key_issue(key: ApiKey) -> str:
    """Give an unsaved key its secret material and return the secret, which is never stored."""
    secret = generate_secret()
    key.prefix = visible_prefix(secret)
    key.key_hash = hash_secret(secret)
    return secret


def api_key_create(*, tenant: Tenant, name: str, expires_at=None) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which cannot be shown again."""
    key = ApiKey(tenant=tenant, name=name, expires_at=expires_at)
    secret = api_key_issue(key)
    key.save()
    return key, secret


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key
