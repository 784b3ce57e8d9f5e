"""Back up GreenGate's database with pg_dump (custom format) and restore it into a new database with pg_restore.

    python scripts/pg_backup.py dump [PATH]                 # default: DATA_DIR/backups/greengate-<UTC time>.dump
    python scripts/pg_backup.py restore PATH --dbname NEW   # creates NEW on the same server and restores into it
    python scripts/pg_backup.py dump --print                # only print the command line, to run it elsewhere

The database is the one the settings use: the embedded PostgreSQL under DATA_DIR, or DATABASE_URL's. The
embedded server runs only while a process uses it, so this script keeps it up for the dump. The binaries are
pgserver's (PostgreSQL 16, as the embedded server), or those in PG_BIN_DIR: pg_dump must be of the server's
major version or newer. A password is passed in PGPASSWORD, never on the command line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def bin_dir() -> Path | None:
    """PG_BIN_DIR, else the binaries the pgserver wheel ships, else None (use PATH)."""
    if os.environ.get("PG_BIN_DIR"):
        return Path(os.environ["PG_BIN_DIR"])
    try:
        import pgserver  # noqa: F401 - only its location is needed
    except ImportError:
        return None
    return Path(sys.modules["pgserver"].__file__ or "").parent / "pginstall" / "bin"


def tool(name: str) -> str:
    found = bin_dir()
    return str(found / name) if found else name


def connection_args(db: dict[str, Any]) -> list[str]:
    """libpq options for a Django database settings dict (HOST may be the embedded server's socket folder)."""
    args = []
    if db.get("HOST"):
        args += ["--host", str(db["HOST"])]
    if db.get("PORT"):
        args += ["--port", str(db["PORT"])]
    if db.get("USER"):
        args += ["--username", str(db["USER"])]
    return args


def environment(db: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return env


def dump_command(db: dict[str, Any], path: Path | str) -> list[str]:
    # Custom format: compressed, and pg_restore can pick or reorder its parts. No owners or grants, so that
    # it restores under whichever role the target server gives GreenGate.
    return [
        tool("pg_dump"),
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        *connection_args(db),
        "--file",
        str(path),
        "--dbname",
        str(db["NAME"]),
    ]


def create_command(db: dict[str, Any], new_name: str) -> list[str]:
    return [tool("createdb"), *connection_args(db), new_name]


def restore_command(db: dict[str, Any], path: Path | str, new_name: str) -> list[str]:
    return [
        tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        *connection_args(db),
        "--dbname",
        new_name,
        str(path),
    ]


def run(command: list[str], db: dict[str, Any]) -> None:
    print("+ " + shlex.join(command), file=sys.stderr)
    subprocess.run(command, env=environment(db), check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["dump", "restore"])
    parser.add_argument("path", nargs="?", help="The dump file.")
    parser.add_argument("--dbname", help="restore: the new database to create and restore into.")
    parser.add_argument("--print", action="store_true", help="Print the command lines instead of running them.")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greengate_site.settings")
    from django.conf import settings  # reading it starts the embedded server, when that is the database

    db = settings.DATABASES["default"]
    if args.action == "dump":
        default = Path(settings.DATA_DIR) / "backups" / f"greengate-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump"
        path = Path(args.path) if args.path else default
        if args.print:
            print(shlex.join(dump_command(db, path)))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        run(dump_command(db, path), db)
        print(path)
        return
    if not args.path or not args.dbname:
        parser.error("restore needs the dump file and --dbname NEW")
    commands = [create_command(db, args.dbname), restore_command(db, args.path, args.dbname)]
    if args.print:
        print("\n".join(shlex.join(c) for c in commands))
        return
    for command in commands:
        run(command, db)
    print(f"restored {args.path} into the new database {args.dbname}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(f"{Path(exc.cmd[0]).name} failed (exit {exc.returncode}); see its message above")
