"""The ledger's spool: every row reaches a local file before its request's answer is finished.

A row is one JSON line appended with a single `write()` to a segment file this process holds an exclusive
`flock` on. Once `write()` returns the bytes belong to the kernel, so a `kill -9` of the gateway a moment
later loses nothing; the writer removes a segment once all its rows are in PostgreSQL. A segment whose lock can
be taken belongs to a process that is gone: any GreenGate process sharing the spool directory replays it into
the database (`INSERT ... ON CONFLICT DO NOTHING`, so a row written twice is still one row), then deletes it.

What this does not cover: a crash of the machine itself before the kernel writes its page cache out. Syncing
every row to the disk would cost each request a disk flush; the stated faults are process deaths and
database outages.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from django.conf import settings
from django.db import connections

from greengate_site.request_context import uuid7
from ledger.models import LedgerEntry

logger = logging.getLogger(__name__)

SUFFIX = ".seg"
# A segment is created under a name no scanner looks at, locked, then renamed: a scanner can never take the
# lock of a segment its owner has not locked yet.
CREATING_SUFFIX = ".new"

_FIELDS = [f for f in LedgerEntry._meta.concrete_fields if not f.has_db_default()]  # type: ignore[attr-defined]
_encoder = msgspec.json.Encoder(decimal_format="string", uuid_format="canonical")
_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_row(entry: LedgerEntry) -> bytes:
    """One line holding every column the writer inserts (UUIDs, datetimes and decimals as exact strings)."""
    return _encoder.encode({f.attname: getattr(entry, f.attname) for f in _FIELDS}) + b"\n"


def decode_row(line: bytes) -> LedgerEntry:
    raw = _decoder.decode(line)
    return LedgerEntry(**{f.attname: f.to_python(raw.get(f.attname)) for f in _FIELDS})


def spool_directory() -> Path:
    """One directory per database: a spooled row is only ever replayed into the database it was meant for."""
    db = connections["default"].settings_dict
    where = f"{db.get('HOST') or ''}:{db.get('PORT') or ''}/{db.get('NAME') or ''}"
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", str(db.get("NAME") or "db"))[:40]
    directory = Path(settings.LEDGER_SPOOL_DIR) / f"{readable}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


@dataclass(eq=False)
class Segment:
    path: Path
    fd: int
    rows: int = 0
    written: int = 0  # rows known to be in the database
    # Rows appended while the writer's memory was full exist only on disk: the file must be replayed.
    spilled: bool = False
    released: bool = False
    opened_at: float = field(default_factory=time.monotonic)

    @property
    def settled(self) -> bool:
        return not self.spilled and self.written >= self.rows


class Spool:
    """This process's segments in one directory: the current one it appends to, and older ones not yet written."""

    def __init__(self, directory: Path, rows_per_segment: int = 5000) -> None:
        self.directory = directory
        self.rows_per_segment = rows_per_segment
        self.current: Segment | None = None
        self.closed: list[Segment] = []

    def append(self, line: bytes) -> Segment:
        """Write one row through to the kernel. A few microseconds: no disk flush, no thread hop."""
        segment = self.current
        if segment is None or segment.rows >= self.rows_per_segment:
            segment = self._rotate()
        written = os.write(segment.fd, line)
        if written != len(line):
            # Only a full disk shortens a write to a regular file; what was written is a torn line, skipped on
            # replay, and the row stays in memory.
            raise OSError(f"short write to the ledger spool ({written} of {len(line)} bytes)")
        segment.rows += 1
        return segment

    def mark_written(self, segment: Segment, rows: int = 1) -> None:
        segment.written += rows
        if segment.settled:
            self._settle(segment)

    def spill(self) -> Segment | None:
        """The writer's memory is full: the current segment's later rows will only be on disk."""
        if self.current is not None:
            self.current.spilled = True
        return self.current

    def spilled(self) -> list[Segment]:
        """Spilled segments ready to replay from disk; the current one is closed first, so it stops growing."""
        if self.current is not None and self.current.spilled:
            self.closed.append(self.current)
            self.current = None
        return [s for s in self.closed if s.spilled and not s.released]

    def release(self, segment: Segment) -> None:
        """Its rows are all in the database: delete it."""
        if segment.released:
            return
        segment.released = True
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)
            if segment is self.current:
                self.current = None
            elif segment in self.closed:
                self.closed.remove(segment)

    def close(self) -> None:
        """Shutdown: delete what is settled; leave the rest, unlocked, for the next process to replay."""
        for segment in [*self.closed, *([self.current] if self.current else [])]:
            if segment.settled:
                self.release(segment)
            else:
                segment.released = True
                os.close(segment.fd)
        self.current, self.closed = None, []

    def _settle(self, segment: Segment) -> None:
        if segment is self.current:
            # Emptied in place rather than replaced: under a steady trickle of requests the file is reused.
            os.ftruncate(segment.fd, 0)
            segment.rows = segment.written = 0
        else:
            self.release(segment)

    def _rotate(self) -> Segment:
        if self.current is not None:
            self.closed.append(self.current)
            if self.current.settled:
                self.release(self.current)
        name = f"{os.getpid()}-{uuid7().hex}"
        creating = self.directory / (name + CREATING_SUFFIX)
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.directory / (name + SUFFIX)
        os.rename(creating, path)
        self.current = Segment(path=path, fd=fd)
        return self.current


@dataclass
class Orphan:
    """A segment left by a process that is gone, locked by this one while it is replayed."""

    path: Path
    fd: int

    def rows(self) -> Iterator[LedgerEntry]:
        with os.fdopen(os.dup(self.fd), "rb") as file:
            file.seek(0)
            for number, line in enumerate(file, 1):
                if not line.endswith(b"\n"):
                    logger.error("torn line at the end of a ledger spool segment", extra={"segment": str(self.path)})
                    break
                try:
                    yield decode_row(line)
                except Exception as exc:  # noqa: BLE001 - one unreadable line must not block the rest
                    logger.error(
                        "unreadable ledger spool line",
                        extra={"segment": str(self.path), "line": number, "error": str(exc)},
                    )

    def finish(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)

    def abandon(self) -> None:
        os.close(self.fd)


def claim_orphans(directory: Path, own: set[Path]) -> list[Orphan]:
    """Segments (and half-created ones) whose owner has exited, now locked by this process, oldest first."""
    orphans: list[Orphan] = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return orphans
    for name in names:
        path = directory / name
        if path in own or not (name.endswith(SUFFIX) or name.endswith(CREATING_SUFFIX)):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # replayed by another process meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its owner is alive
            continue
        if name.endswith(CREATING_SUFFIX):
            # Its creator died before writing to it: nothing to replay.
            path.unlink(missing_ok=True)
            os.close(fd)
            continue
        orphans.append(Orphan(path=path, fd=fd))
    return orphans
