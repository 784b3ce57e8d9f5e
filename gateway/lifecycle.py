"""Whether this process is draining for a shutdown: requests cut off then are recorded as 503, not 499."""

from __future__ import annotations

draining = False


def start_draining() -> None:
    """Called by the server when SIGTERM starts the drain (the ASGI app's `on_draining` hook)."""
    global draining
    draining = True
