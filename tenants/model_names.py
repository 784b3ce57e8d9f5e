"""Lists of public model names, as admins type them for plans, tenants and keys."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

MAX_MODELS = 500
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")


def parse_models(text: str) -> frozenset[str]:
    """Model names from one per line or comma-separated text; refuses what cannot be a model name."""
    names = [n.strip() for n in re.split(r"[,\n]", text or "") if n.strip()]
    bad = [n for n in names if not MODEL_NAME.match(n)]
    if bad:
        raise ValidationError(f"Not a model name: {bad[0][:80]!r}.")
    if len(names) > MAX_MODELS:
        raise ValidationError(f"At most {MAX_MODELS} models.")
    return frozenset(names)


def validate_models(text: str) -> None:
    parse_models(text)
