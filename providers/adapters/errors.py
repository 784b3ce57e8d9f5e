"""Turning upstream HTTP failures into ProviderError, shared by the HTTP adapters."""

from __future__ import annotations

import json
import math
import re
import time
from email.utils import parsedate_to_datetime

import httpx

from providers.http import is_timeout
from providers.network import AddressRefused
from providers.types import ProviderError

RETRYABLE_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 529}
# An upstream's Retry-After is passed on to clients: bounded, so "inf" or a year never reaches them.
MAX_RETRY_AFTER_SECONDS = 3600.0

# What a provider's error text may quote of a credential: a bearer token, or key-shaped words.
_CREDENTIALS = re.compile(r"(?i)\bbearer\s+\S+|\b(?:sk|gg|co|ak)-[A-Za-z0-9_\-*.]{6,}")


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), bounded; None if absent or unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def redact(message: str, secret: str = "") -> str:
    """An upstream's words made safe to show the client: no provider key, whole or quoted in part."""
    if secret:
        message = message.replace(secret, "[redacted]")
        if len(secret) >= 16:
            message = message.replace(secret[:8], "[redacted]").replace(secret[-6:], "[redacted]")
    return _CREDENTIALS.sub("[redacted]", message)


def upstream_message(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
        error = parsed.get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:500]
    if isinstance(error, str):
        return error[:500]
    if error is None and isinstance(parsed.get("message"), str):
        return parsed["message"][:500]  # Cohere's shape: {"id": ..., "message": ...}
    return None


def from_status(status: int, body: bytes, headers: httpx.Headers, provider: str) -> ProviderError:
    if status in (400, 413, 422):
        # The upstream judged the request itself: the client can act on its words.
        message = upstream_message(body) or f"The upstream provider rejected the request (HTTP {status})."
        return ProviderError(400, message, retryable=False, code="upstream_rejected_request")
    if status in (401, 403):
        # Never relay the upstream's words here: they can quote part of the provider key. Not retried: a
        # refused credential is a configuration fault an operator must see, not one to paper over.
        return ProviderError(
            502, f"Provider '{provider}' refused GreenGate's credentials.", retryable=False, code="upstream_auth_failed"
        )
    if status == 404:
        return ProviderError(
            404,
            f"Provider '{provider}' does not serve the configured model.",
            retryable=False,
            code="upstream_not_found",
        )
    return ProviderError(
        502,
        f"Provider '{provider}' failed with HTTP {status}.",
        retryable=status in RETRYABLE_STATUSES,
        retry_after=retry_after_seconds(headers),
        code="upstream_rate_limited" if status == 429 else "upstream_error",
    )


def _refused_address(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, AddressRefused) or isinstance(getattr(exc, "os_error", None), AddressRefused):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def from_transport(exc: BaseException, provider: str) -> ProviderError:
    if _refused_address(exc):
        return ProviderError(
            502,
            f"Provider '{provider}' is at an address GreenGate may not call (internal or cloud metadata).",
            retryable=True,
            code="upstream_address_refused",
        )
    if is_timeout(exc):
        return ProviderError(504, f"Provider '{provider}' timed out.", retryable=True, code="upstream_timeout")
    return ProviderError(
        502,
        f"Provider '{provider}' could not be reached or closed the connection.",
        retryable=True,
        code="upstream_unavailable",
    )


def malformed(provider: str) -> ProviderError:
    return ProviderError(
        502,
        f"Provider '{provider}' sent a response GreenGate could not read.",
        retryable=True,
        code="upstream_malformed",
    )
