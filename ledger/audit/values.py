"""A model row as the audit trail records it: JSON-safe values, secrets reduced to whether they are set."""

from __future__ import annotations

import datetime
import hashlib
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import models

SET = "(set)"
CHANGED = "(changed)"

# Fields whose value must never reach the trail, beside every encrypted field (providers.crypto).
SECRET_FIELDS = {("tenants", "apikey", "key_hash")}


@dataclass(frozen=True, slots=True)
class Secret:
    """Stands in for a secret while comparing before and after: a digest kept in memory, never written."""

    digest: str

    @property
    def shown(self) -> str:
        return SET if self.digest else ""


def is_secret(field: models.Field) -> bool:
    from providers.crypto import EncryptedTextField

    meta = field.model._meta
    return isinstance(field, EncryptedTextField) or (meta.app_label, meta.model_name, field.name) in SECRET_FIELDS


def json_safe(value: Any) -> Any:
    """Decimals keep their digits as text; times as ISO 8601; what JSON (or PostgreSQL's jsonb) refuses, as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)


def field_value(obj: models.Model, field: models.Field) -> Any:
    raw = getattr(obj, field.attname)
    if is_secret(field):
        return Secret(hashlib.sha256(str(raw).encode()).hexdigest() if raw else "")
    if isinstance(field, models.DecimalField) and isinstance(raw, Decimal) and raw.is_finite():
        # As stored: "2.5" typed in a form and "2.500000" read back are the same price.
        return str(raw.quantize(Decimal(1).scaleb(-field.decimal_places)))
    if field.is_relation and raw is not None:
        # The id says which row; its text says what it read as at the time, which outlives a deletion.
        return {"id": json_safe(raw), "str": str(getattr(obj, field.name))}
    return json_safe(raw)


def snapshot(obj: models.Model) -> dict[str, Any]:
    """Every stored field but the primary key (that is the event's target id)."""
    return {f.name: field_value(obj, f) for f in obj._meta.concrete_fields if not f.primary_key}


def shown(value: Any) -> Any:
    return value.shown if isinstance(value, Secret) else value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [before, after]} for the fields that changed; a changed secret reads "(set)" -> "(changed)"."""
    changes = {}
    for name, new in after.items():
        old = before.get(name)
        if old == new:
            continue
        if isinstance(old, Secret) and isinstance(new, Secret) and old.digest and new.digest:
            changes[name] = [SET, CHANGED]
        else:
            changes[name] = [shown(old), shown(new)]
    return changes


def created(after: dict[str, Any]) -> dict[str, list[Any]]:
    return {name: [None, shown(value)] for name, value in after.items()}


def deleted(before: dict[str, Any]) -> dict[str, list[Any]]:
    return {name: [shown(value), None] for name, value in before.items()}
