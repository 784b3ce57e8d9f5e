"""The request id of the request being served, for every log line it produces."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# A client-supplied id is echoed into logs and headers, so only a safe, bounded alphabet is taken.
_VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}\Z")


def uuid7() -> uuid.UUID:
    """A time-ordered UUID: ledger rows keyed by it land at the end of their index."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def new_request_id() -> str:
    """GreenGate's own request id: unique by construction, whatever the client sends."""
    return uuid7().hex


def client_request_id(supplied: str | None) -> str:
    """The client's own id for its request, if it is safe to store and echo; else nothing."""
    return supplied if supplied and _VALID_ID.match(supplied) else ""


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
