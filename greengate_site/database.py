"""Where PostgreSQL comes from: DATABASE_URL, or an embedded server under data/."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import dj_database_url

from greengate_site.env import ConfigError

EMBEDDED_DB_NAME = "greengate"


def database_from_url(url: str) -> dict[str, Any]:
    try:
        config = dj_database_url.parse(url)
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if config.get("ENGINE") != "django.db.backends.postgresql":
        raise ConfigError("DATABASE_URL must point at PostgreSQL (postgres:// or postgresql://)")
    return with_pool(dict(config))


def with_pool(config: dict[str, Any]) -> dict[str, Any]:
    """Pooled connections instead of persistent ones: under ASGI, sync code (the admin) runs on short-lived
    threads, which would each leave a persistent connection behind."""
    config["CONN_MAX_AGE"] = 0
    config.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": 8, "timeout": 10}
    return config


def _start_embedded(pgserver, pgdata: Path, wait_seconds: float = 15.0):
    # A server from the last run may still be shutting down; pgserver fails on that instead of waiting.
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            # "stop" shuts the server down when the last process using it exits, so nothing lingers.
            return pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # noqa: BLE001 - pgserver signals a busy data directory in several ways
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"the embedded PostgreSQL under {pgdata} did not start ({exc!r}); see {pgdata / 'log'}, "
                    "or set DATABASE_URL"
                ) from None
            time.sleep(0.5)


def embedded_database(data_dir: Path) -> dict[str, Any]:
    """Start (or join) the embedded PostgreSQL 16 with pgvector that the pgserver wheel ships."""
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    # pgserver narrates every pg_ctl call at INFO before Django's logging is set up.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; pgserver does not need it.
        warnings.simplefilter("ignore")
        import pgserver  # imported late: only needed when no DATABASE_URL is set

        server = _start_embedded(pgserver, pgdata)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DB_NAME};")
    socket_dir = server.get_uri().split("host=", 1)[1]
    return with_pool(
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": EMBEDDED_DB_NAME,
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": socket_dir,
            "PORT": "",
        }
    )
