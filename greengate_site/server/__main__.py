"""`python -m greengate_site.server`: serve GreenGate (or any ASGI app) with daphne and the guards here.

The package's __init__ has installed Twisted's asyncio reactor by the time this runs.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from daphne.utils import import_by_path

from greengate_site.env import (
    ConfigError,
    body_timeout_seconds,
    env_int,
    env_str,
    header_timeout_seconds,
    keepalive_timeout_seconds,
    parse_int,
    shutdown_grace_seconds,
)
from greengate_site.server.drain import serve
from greengate_site.server.protocol import Limits

DEFAULT_APP = "greengate_site.asgi:application"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


def load_app(path: str) -> Any:
    """Import ``module:attribute`` like daphne's CLI does."""
    module_path, _, attr_path = path.partition(":")
    if not module_path or not attr_path:
        raise ConfigError(f"--app must look like module.path:attribute, got {path!r}")
    try:
        __import__(module_path)
    except ModuleNotFoundError as exc:
        # Only a missing target is a config error; a broken import inside the app keeps its traceback.
        missing = exc.name or ""
        if module_path != missing and not module_path.startswith(missing + "."):
            raise
        raise ConfigError(f"--app: cannot import module {module_path!r}") from None
    try:
        return import_by_path(path)
    except AttributeError:
        raise ConfigError(f"--app: {module_path!r} has no {attr_path!r}") from None


def _check_hooks(app: Any) -> None:
    refused = getattr(app, "on_refused", None)
    if refused is not None and not callable(refused):
        raise ConfigError("the app's on_refused must be callable")
    for hook in ("on_startup", "on_shutdown"):
        function = getattr(app, hook, None)
        if function is not None and not inspect.iscoroutinefunction(function):
            raise ConfigError(f"the app's {hook} must be an async function")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m greengate_site.server",
        description="Serve an ASGI app with daphne, request limits and deadlines, and a graceful drain.",
    )
    # Command-line values override the environment variables of the same meaning.
    parser.add_argument("--host", help="bind address (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="TCP port (env PORT, default 8000)")
    parser.add_argument("--app", default=DEFAULT_APP, help=f"ASGI app (default {DEFAULT_APP})")
    parser.add_argument(
        "--max-body-bytes",
        help=f"largest accepted request body in bytes (env MAX_REQUEST_BYTES, default {DEFAULT_MAX_BODY_BYTES})",
    )
    return parser.parse_args(argv)


def _served_setting(name: str, read: Callable[[], Any]) -> Any:
    """GreenGate's validated setting when its settings are loaded, else the same variable read here."""
    from django.conf import settings

    return getattr(settings, name) if settings.configured and hasattr(settings, name) else read()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # Importing GreenGate's app loads and validates its settings first.
        app = load_app(args.app)
        _check_hooks(app)
        host = args.host if args.host is not None else _served_setting("HOST", lambda: env_str("HOST", "127.0.0.1"))
        if not host.strip():
            raise ConfigError("--host / HOST must not be empty")
        if args.port is not None:
            port = parse_int("--port / PORT", args.port, minimum=1, maximum=65535)
        else:
            port = _served_setting("PORT", lambda: env_int("PORT", 8000, minimum=1, maximum=65535))
        if args.max_body_bytes is not None:
            max_body_bytes = parse_int("--max-body-bytes / MAX_REQUEST_BYTES", args.max_body_bytes, minimum=1)
        else:
            max_body_bytes = _served_setting(
                "MAX_REQUEST_BYTES", lambda: env_int("MAX_REQUEST_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1)
            )
        limits = Limits(
            max_body_bytes=max_body_bytes,
            header_timeout=header_timeout_seconds(),
            body_timeout=body_timeout_seconds(),
            keepalive_timeout=keepalive_timeout_seconds(),
        )
        shutdown_grace = shutdown_grace_seconds()
    except ConfigError as exc:
        sys.exit(f"GreenGate configuration error: {exc}")
    serve(app, host.strip(), port, limits, shutdown_grace)


if __name__ == "__main__":
    main()
