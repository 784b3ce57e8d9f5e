"""Writes to tenants and keys. Every change bumps the live config version on commit, and is audited in the
same transaction by `actor` (an admin user's name, `cli:<user>`, or `system` for code nobody ran by hand)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
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
def tenant_create(*, slug: str, name: str = "", plan: Plan, actor: str = audit.SYSTEM, **overrides: object) -> Tenant:
    """A tenant on `plan`; `overrides` are its own limits (rate_limit_per_minute, tokens_per_minute,
    daily_budget_usd, monthly_budget_usd, allowed_models), validated like the admin's form."""
    tenant = Tenant(slug=slug, name=name or slug, plan=plan, **overrides)
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
    *,
    tenant: Tenant,
    name: str,
    expires_at: datetime | None = None,
    actor: str = audit.SYSTEM,
    **limits: object,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which cannot be shown again. `limits` narrow the tenant's
    (rate_limit_per_minute, tokens_per_minute, daily_budget_usd, monthly_budget_usd, allowed_models)."""
    key = ApiKey(tenant=tenant, name=name, expires_at=expires_at, **limits)
    key.full_clean(exclude=["prefix", "key_hash"])
    return key, api_key_add(key=key, actor=actor)


# Copied from a rotated key to its successor: what the key is for and what it may do.
_CARRIED = [
    "name",
    "expires_at",
    "rate_limit_per_minute",
    "tokens_per_minute",
    "daily_budget_usd",
    "monthly_budget_usd",
    "allowed_models",
]
MAX_GRACE = timedelta(days=30)


@transaction.atomic
def api_key_rotate(*, key: ApiKey, grace: timedelta = timedelta(0), actor: str = audit.SYSTEM) -> tuple[ApiKey, str]:
    """A successor with the same name and limits; the old key keeps working for `grace`, then stops.

    Returns the new key and its secret. A revoked or expired key cannot be rotated (create a new one).
    """
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise ValidationError(f"The grace period must be between 0 and {MAX_GRACE.days} days.")
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    now = timezone.now()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise ValidationError(f"Key {key.prefix}… is revoked or expired: create a new key instead.")
    if key.rotated_to_id is not None:
        raise ValidationError(f"Key {key.prefix}… was already rotated.")
    successor = ApiKey(tenant_id=key.tenant_id, **{f: getattr(key, f) for f in _CARRIED})
    secret = api_key_issue(successor)
    successor.save()
    ends = now + grace
    if grace == timedelta(0):
        key.revoked_at = now
    elif key.expires_at is None or key.expires_at > ends:
        key.expires_at = ends
    key.rotated_to = successor
    key.save(update_fields=["revoked_at", "expires_at", "rotated_to"])
    audit.key_rotated(key, successor, actor=actor, old_valid_until=key.expires_at if grace else now)
    return successor, secret


def api_key_by_prefix(prefix: str) -> ApiKey:
    """The one key whose visible prefix starts with `prefix` (at least its first 6 characters)."""
    if len(prefix) < 6:
        raise ValidationError("Give at least the first 6 characters of the key's prefix (gg-xxx).")
    found = list(ApiKey.objects.filter(prefix__startswith=prefix).select_related("tenant")[:2])
    if not found:
        raise ValidationError(f"No key with prefix {prefix!r}.")
    if len(found) > 1:
        raise ValidationError(f"More than one key has prefix {prefix!r}; give more of it.")
    return found[0]


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor: str = audit.SYSTEM) -> ApiKey:
    """Revoking a revoked key changes nothing and records nothing."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.key_revoked(key, actor=actor)
    return key
