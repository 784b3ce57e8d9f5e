"""Server-sent events framing for OpenAI-style streams."""

from __future__ import annotations

DONE = b"data: [DONE]\n\n"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tell reverse proxies not to buffer the stream
]


def frame(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"
