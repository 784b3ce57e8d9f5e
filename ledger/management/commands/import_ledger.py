import io
import sys
from typing import IO

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ledger import ledger_io

SHOWN_REFUSALS = 50


def _open(path: str) -> IO[str]:
    # Bytes that are not UTF-8 are kept as lone surrogates, so that the row holding them is refused by line
    # rather than the whole file failing to decode; a byte-order mark is skipped.
    text = {"encoding": "utf-8-sig", "errors": "surrogateescape", "newline": ""}
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, **text)  # type: ignore[arg-type]
    try:
        return open(path, **text)  # type: ignore[call-overload]
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None


class Command(BaseCommand):
    help = (
        "Restore ledger rows from an export_ledger file (CSV or JSON lines; '-' reads stdin). Rows already "
        "present are skipped, so importing twice adds nothing. Exits non-zero if any row was refused."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="The file, or - for stdin.")
        parser.add_argument("--format", choices=ledger_io.FORMATS, help="Default: from the file's extension.")

    def handle(self, *args, path: str, format: str | None, **options) -> None:
        fmt = format or ledger_io.format_from_path(path)
        if fmt is None:
            raise CommandError(f"cannot tell the format of {path!r} from its name: pass --format csv or jsonl")
        report = ledger_io.ImportReport()
        progress = tqdm(unit=" rows", unit_scale=True, file=sys.stderr, disable=options["verbosity"] == 0)
        with _open(path) as stream, progress:
            try:
                for handled in ledger_io.import_rows(ledger_io.read_rows(stream, fmt), report):
                    progress.update(handled)
            except ledger_io.RowError as exc:
                raise CommandError(f"{path}: {exc}") from None
        for line, why in sorted(report.refusals)[:SHOWN_REFUSALS]:
            self.stderr.write(f"line {line}: {why}")
        if report.refused > SHOWN_REFUSALS:
            self.stderr.write(f"... and {report.refused - SHOWN_REFUSALS} more refused rows")
        self.stdout.write(f"inserted {report.inserted}, already present {report.present}, refused {report.refused}")
        if report.refused:
            rows = "row" if report.refused == 1 else "rows"
            raise CommandError(f"{report.refused} {rows} refused; the others were imported")
