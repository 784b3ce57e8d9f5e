"""Argument types the tenant and key commands share: clear errors for absurd values, before anything is saved."""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount of US dollars (e.g. 25 or 12.50)") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive amount of US dollars")
    return value


def seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def refused(exc: ValidationError) -> CommandError:
    """A model's validation errors as one line a shell user can read."""
    if hasattr(exc, "message_dict"):
        return CommandError("; ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items()))
    return CommandError(" ".join(exc.messages))
