import os
import sys
from datetime import datetime
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from tqdm import tqdm

from ledger import ledger_io


class _Text:
    """The command's stdout as a plain text stream (its wrapper would add a newline to every write)."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self._wrapper = wrapper

    def write(self, text: str) -> int:
        self._wrapper.write(text, ending="")
        return len(text)


def _instant(text: str, option: str) -> datetime:
    try:
        return ledger_io.parse_instant(text)
    except ValueError:
        raise CommandError(f"{option} {text!r} is not an ISO 8601 date or datetime (e.g. 2026-11-01)") from None


class Command(BaseCommand):
    help = (
        "Export ledger rows created in [--since, --until) as CSV or JSON lines, oldest first, every column, "
        "exactly (import_ledger reads them back). Naive dates and times are UTC. A progress bar goes to stderr."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", help="First instant included: 2026-11-01 or 2026-11-01T12:00:00+01:00.")
        parser.add_argument("--until", help="First instant excluded.")
        parser.add_argument("--format", choices=ledger_io.FORMATS, default="csv")
        parser.add_argument("--output", "-o", help="File to write (default: stdout).")

    def handle(self, *args, since: str | None, until: str | None, format: str, output: str | None, **options) -> None:
        start = _instant(since, "--since") if since else None
        end = _instant(until, "--until") if until else None
        if start and end and start >= end:
            raise CommandError("--since must be before --until")
        if output is None or output == "-":
            try:
                written = self._export(start, end, format, _Text(self.stdout), options["verbosity"])
            except BrokenPipeError:
                # The reader left early (`| head`): one clear line, and no second error when Python flushes stdout.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise CommandError("stdout was closed before the export finished") from None
        elif os.path.exists(output) and not os.path.isfile(output):
            # A device or a pipe (/dev/null, a FIFO) is written to as it is: renaming a file onto it would
            # replace it.
            try:
                with open(output, "w", encoding="utf-8", newline="") as out:
                    written = self._export(start, end, format, out, options["verbosity"])
            except OSError as exc:
                raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
        else:
            # Written beside the target and renamed at the end: a failed export never looks like a finished one.
            partial = f"{output}.partial"
            try:
                with open(partial, "w", encoding="utf-8", newline="") as out:
                    written = self._export(start, end, format, out, options["verbosity"])
                os.replace(partial, output)
            except OSError as exc:
                raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
            finally:
                if os.path.exists(partial):
                    os.unlink(partial)
        if options["verbosity"] > 0:
            self.stderr.write(f"exported {written} ledger rows to {output or 'stdout'}")

    def _export(
        self, since: datetime | None, until: datetime | None, fmt: str, out: IO[str] | Any, verbosity: int
    ) -> int:
        total = ledger_io.count_between(since, until)
        rows = ledger_io.rows_between(since, until)
        progress = tqdm(total=total, unit=" rows", unit_scale=True, file=sys.stderr, disable=verbosity == 0)
        written = 0
        with progress:
            for _ in ledger_io.write_rows(rows, out, fmt):
                written += 1
                progress.update()
        return written
