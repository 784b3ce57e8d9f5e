"""Typed readers for environment variables that fail at start-up with a clear message."""

from __future__ import annotations

import math
import os
from urllib.parse import urlparse


class ConfigError(Exception):
    """A setting is missing or malformed; raised while settings load."""


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    return parse_int(name, value, minimum=minimum, maximum=maximum)


def parse_int(name: str, value: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a whole number within bounds; ``name`` says where it came from (e.g. a flag)."""
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def env_seconds(name: str, default: float, *, minimum: float, maximum: float = 86_400.0) -> float:
    """A duration, bounded above; env_float already refuses "nan" and "inf" (a NaN deadline never fires)."""
    seconds = env_float(name, default, minimum=minimum)
    if not math.isfinite(seconds) or seconds > maximum:
        raise ConfigError(f"{name} must be a number of seconds between {minimum:g} and {maximum:g}, got {seconds}")
    return seconds


# Serving deadlines. settings.py and greengate_site.server both read them through these, so
# each default lives once and a non-Django app run by the server (the tests) gets the same checks.
def header_timeout_seconds() -> float:
    return env_seconds("HEADER_TIMEOUT_SECONDS", 10.0, minimum=0.1)


def body_timeout_seconds() -> float:
    return env_seconds("BODY_TIMEOUT_SECONDS", 30.0, minimum=0.1)


def keepalive_timeout_seconds() -> float:
    # Longer than a load balancer's idle timeout (60 s by default on AWS ALB), so the balancer,
    # not GreenGate, closes an idle pooled connection and never reuses one GreenGate just closed.
    return env_seconds("KEEPALIVE_TIMEOUT_SECONDS", 75.0, minimum=0.1)


def shutdown_grace_seconds() -> float:
    return env_seconds("SHUTDOWN_GRACE_SECONDS", 30.0, minimum=0.0)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{name} must list at least one comma-separated value")
    return items


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = env_str(name, default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(sorted(choices))}, got {value!r}")
    return value


def env_url(name: str, default: str = "", *, schemes: set[str]) -> str:
    value = env_str(name, default)
    if not value:
        return value
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
        raise ConfigError(
            f"{name} must be a URL starting with {' or '.join(sorted(s + '://' for s in schemes))}, got {value!r}"
        )
    return value
