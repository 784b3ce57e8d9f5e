"""The audit trail (the runbook's `events` table): who did what to which configuration, key or breaker, when.

- `events`: sync writes inside the caller's transaction (admin, services, commands); key and config helpers.
- `admin_mixin`: records every add, change and delete made in admin, inlines included.
- `breakers`, `denials`: what the gateway records from the event loop, written off the request path.
- `values`: rows as JSON-safe values; secrets only ever as "(set)" / "(changed)".
"""

from __future__ import annotations

from ledger.audit import background
from ledger.audit.denials import denial, denials
from ledger.audit.events import (
    GATEWAY,
    SYSTEM,
    cli_actor,
    config_changed,
    config_created,
    config_deleted,
    key_created,
    key_revoked,
    key_rotated,
    record,
)

__all__ = [
    "GATEWAY",
    "SYSTEM",
    "cli_actor",
    "config_changed",
    "config_created",
    "config_deleted",
    "denial",
    "drain",
    "key_created",
    "key_revoked",
    "key_rotated",
    "record",
]


async def drain() -> None:
    """Settle the open denial counts and finish the writes in flight (shutdown, tests)."""
    await denials.flush()
    await background.drain()
