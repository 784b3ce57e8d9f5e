"""The request id of the request being served, for every log line it produces."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# A client-supplied id is echoed into logs and headers, so only a safe, bounded alphabet is taken.
_VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


def choose_request_id(supplied: str | None) -> str:
    if supplied and _VALID_ID.match(supplied):
        return supplied
    return uuid.uuid4().hex


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """One header from an ASGI scope's raw header list (names arrive lower-cased)."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
