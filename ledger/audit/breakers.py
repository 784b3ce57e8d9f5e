"""Breaker transitions and resets as audit events, targeting the deployment (and naming its provider)."""

from __future__ import annotations

import functools
from typing import Any

from ledger.audit import background, events
from ledger.models import AuditAction

_ACTIONS = {"opened": AuditAction.BREAKER_OPENED, "closed": AuditAction.BREAKER_CLOSED}


def transition(deployment_id: int, change: str, details: dict[str, Any]) -> None:
    """Called on the event loop by the instance whose breaker script made the change; returns at once."""
    write = functools.partial(_record, deployment_id, _ACTIONS[change], events.GATEWAY, details)
    background.run_later(write, what=f"breaker {change}")


def reset(deployment_id: int, *, actor: str, state_before: str) -> None:
    """The admin's reset button (sync, in the admin's request)."""
    _record(
        deployment_id,
        AuditAction.BREAKER_CLOSED,
        actor,
        {"state": [state_before, "closed"], "reason": "reset in admin"},
    )


def _record(deployment_id: int, action: AuditAction, actor: str, details: dict[str, Any]) -> None:
    from providers.models import Deployment

    # Read here, off the request path: the hot path knows the deployment only by its id.
    deployment = Deployment.objects.select_related("provider").filter(pk=deployment_id).first()
    named = {"provider": deployment.provider.name, "model": deployment.model_name} if deployment else {}
    events.record(
        action=action,
        actor=actor,
        target_type="providers.deployment",
        target_id=deployment_id,
        target_text=str(deployment) if deployment else f"deployment {deployment_id}",
        changes={**named, **details},
    )
