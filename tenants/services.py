"""Writes to tenants and keys. Every change bumps the live config version on commit, and is audited in the
same transaction by `actor` (an admin user's name, `cli:<user>`, or `system` for code nobody ran by hand)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ledger import audit
from tenants.keys import generate_secret, hash_secret, visible_prefix
from tenants.models import ApiKey, Plan, Tenant


@transaction.atomic
def plan_default(
    *, rate_limit_per_minute: int, tokens_per_minute: int | None = None, actor: str = audit.SYSTEM
) -> Plan:
    plan, created = Plan.objects.get_or_create(
        name="default",
        defaults={"rate_limit_per_minute": rate_limit_per_minute, "tokens_per_minute": tokens_per_minute},
    )
    if created:
        audit.config_created(plan, actor=actor)
    return plan


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", plan: Plan, actor: str = audit.SYSTEM) -> Tenant:
    tenant = Tenant(slug=slug, name=name or slug, plan=plan)
    tenant.full_clean()
    tenant.save()
    audit.config_created(tenant, actor=actor)
    return tenant


def api_key_issue(key: ApiKey) -> str:
    """Give an unsaved key its secret material and return the secret, which is never stored."""
    secret = generate_secret()
    key.prefix = visible_prefix(secret)
    key.key_hash = hash_secret(secret)
    return secret


@transaction.atomic
def api_key_add(*, key: ApiKey, actor: str = audit.SYSTEM) -> str:
    """Save a new, unsaved key (the admin's add form builds one) and return its secret, never stored."""
    secret = api_key_issue(key)
    key.save()
    audit.key_created(key, actor=actor)
    return secret


def api_key_create(
    *, tenant: Tenant, name: str, expires_at: datetime | None = None, actor: str = audit.SYSTEM
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which cannot be shown again."""
    key = ApiKey(tenant=tenant, name=name, expires_at=expires_at)
    return key, api_key_add(key=key, actor=actor)


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor: str = audit.SYSTEM) -> ApiKey:
    """Revoking a revoked key changes nothing and records nothing."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.key_revoked(key, actor=actor)
    return key
