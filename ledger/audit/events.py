"""Writing audit events from sync code (admin, services, commands), inside the caller's transaction."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import models

from ledger.audit import values
from ledger.models import AuditAction, AuditEvent

if TYPE_CHECKING:
    from tenants.models import ApiKey

GATEWAY = "gateway"  # the actor of what the gateway does by itself (breakers, denials)
SYSTEM = "system"  # the actor of code with nobody behind it (bootstrap, scripts)


def cli_actor() -> str:
    """`cli:<OS user>`; a process with no user name (a container's numeric uid) still gets one."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - getpass raises OSError or KeyError depending on the platform
        user = "unknown"
    return f"cli:{user or 'unknown'}"


# Text columns' lengths, so that an over-long name is cut rather than refused by the database.
_LIMITS = {f.name: f.max_length for f in AuditEvent._meta.concrete_fields if f.max_length}


def _fit(text: Any, field: str) -> str:
    return str(text).replace("\x00", "\ufffd")[: _LIMITS[field]]


def event(
    *,
    action: AuditAction,
    actor: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: Any = "",
    target_text: str = "",
    tenant: str = "",
    changes: dict[str, Any] | None = None,
    request_id: str = "",
) -> AuditEvent:
    """An unsaved event; the target's type, id and text come from the row when one is given."""
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
        target_text = target_text or str(target)
    return AuditEvent(
        action=action,
        actor=_fit(actor or SYSTEM, "actor"),
        target_type=_fit(target_type, "target_type"),
        target_id=_fit("" if target_id is None else target_id, "target_id"),
        target=_fit(target_text, "target"),
        tenant=_fit(tenant, "tenant"),
        changes=values.json_safe(changes or {}),
        request_id=_fit(request_id, "request_id"),
    )


def record(**fields: Any) -> AuditEvent:
    """Write one event now, in whatever transaction the caller holds, so it commits or rolls back with the change."""
    audit_event = event(**fields)
    audit_event.save(force_insert=True)
    return audit_event


def tenant_of(obj: models.Model) -> str:
    """The tenant's slug for tenants, keys and anything else with a `tenant`; blank otherwise."""
    from tenants.models import Tenant

    if isinstance(obj, Tenant):
        return obj.slug
    tenant = getattr(obj, "tenant", None)
    return tenant.slug if isinstance(tenant, Tenant) else ""


# --- Configuration ------------------------------------------------------------------------------------------


def config_created(obj: models.Model, *, actor: str) -> AuditEvent:
    return record(
        action=AuditAction.CONFIG_CREATED,
        actor=actor,
        target=obj,
        tenant=tenant_of(obj),
        changes=values.created(values.snapshot(obj)),
    )


def config_changed(obj: models.Model, *, before: dict[str, Any], actor: str) -> AuditEvent | None:
    """Nothing is recorded when nothing changed (a form saved as it was)."""
    changes = values.diff(before, values.snapshot(obj))
    if not changes:
        return None
    return record(action=AuditAction.CONFIG_CHANGED, actor=actor, target=obj, tenant=tenant_of(obj), changes=changes)


def config_deleted(
    *, model: type[models.Model], pk: Any, text: str, before: dict[str, Any], tenant: str, actor: str
) -> AuditEvent:
    return record(
        action=AuditAction.CONFIG_DELETED,
        actor=actor,
        target_type=model._meta.label_lower,
        target_id=pk,
        target_text=text,
        tenant=tenant,
        changes=values.deleted(before),
    )


# --- Keys -----------------------------------------------------------------------------------------------------


def _key_details(key: ApiKey) -> dict[str, Any]:
    # The prefix identifies a key to its owner; the hash, like the secret, never enters the trail.
    return {
        "prefix": key.prefix,
        "name": key.name,
        "expires_at": key.expires_at,
    }


def key_created(key: ApiKey, *, actor: str) -> AuditEvent:
    return record(
        action=AuditAction.KEY_CREATED, actor=actor, target=key, tenant=key.tenant.slug, changes=_key_details(key)
    )


def key_revoked(key: ApiKey, *, actor: str) -> AuditEvent:
    return record(
        action=AuditAction.KEY_REVOKED,
        actor=actor,
        target=key,
        tenant=key.tenant.slug,
        changes={**_key_details(key), "revoked_at": [None, key.revoked_at]},
    )


def key_rotated(old: ApiKey, new: ApiKey, *, actor: str, old_valid_until: datetime | None = None) -> AuditEvent:
    """One event on the old key naming its successor, for a rotation service to call in its transaction.

    `old_valid_until`: when the old key stops working (its grace period), if it keeps working for a while.
    """
    return record(
        action=AuditAction.KEY_ROTATED,
        actor=actor,
        target=old,
        tenant=old.tenant.slug,
        changes={
            **_key_details(old),
            "replaced_by": {"id": new.pk, "prefix": new.prefix, "name": new.name},
            "old_valid_until": old_valid_until,
        },
    )
