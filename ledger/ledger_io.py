"""Ledger rows to and from CSV and JSON lines, exactly: what `export_ledger` writes, `import_ledger` reads back.

Every concrete column is written under its database column name. Values keep their full meaning: UUIDs in
canonical form, decimals with all their digits (as text, never a float), datetimes in ISO 8601 with their UTC
offset, booleans as true/false, and null apart from empty text (JSON null; in CSV an empty cell, which only
columns that cannot hold empty text may use). Reading validates each value against its field, so a restore
refuses a bad row with a message rather than failing inside the database.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import (
    BooleanField,
    CharField,
    DateTimeField,
    DecimalField,
    Field,
    FloatField,
    ForeignKey,
    IntegerField,
    UUIDField,
)
from django.db.models.fields import NOT_PROVIDED

from ledger.models import LedgerEntry
from tenants.models import ApiKey, Tenant

FORMATS = ("csv", "jsonl")
FIELDS: list[Field] = list(LedgerEntry._meta.concrete_fields)
COLUMNS: list[str] = [f.column for f in FIELDS]
# Filled by the database on insert (recorded_at): exported for the record, never imported, so that the
# rollups see restored rows as newly recorded and recompute their days.
DB_FILLED = {f.column for f in FIELDS if f.db_default is not NOT_PROVIDED}
IMPORTED: list[Field] = [f for f in FIELDS if f.column not in DB_FILLED]
IMPORT_BATCH = 2000
KEPT_REFUSALS = 1000
_BY_COLUMN = {f.column: f for f in FIELDS}
_EXPECTED = {f.column for f in IMPORTED}
_EXPECTED_WITH_DB_FILLED = set(COLUMNS)
# Non-finite floats, which PostgreSQL stores but JSON cannot write as numbers.
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class RowError(ValueError):
    """A row that cannot be imported; the message names the column and the value."""


# --- Writing -------------------------------------------------------------------------------------------------


def _float_text(value: float) -> str:
    if math.isfinite(value):
        return repr(value)  # the shortest text that reads back as the same float
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def text_converter(field: Field) -> Callable[[Any], str]:
    """How one column's non-null values are written as text. Chosen once per column, not per value: an export
    converts tens of millions of values."""
    if isinstance(field, BooleanField):
        return lambda value: "true" if value else "false"
    if isinstance(field, DecimalField):
        return lambda value: format(value, "f")  # never exponent notation ('0E-12')
    if isinstance(field, DateTimeField):
        return lambda value: value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(field, FloatField):
        return _float_text
    return str


def json_converter(field: Field) -> Callable[[Any], Any]:
    """JSON's own types where they are exact (booleans, integers, finite floats); text otherwise."""
    if isinstance(field, BooleanField | IntegerField | ForeignKey):
        return lambda value: value
    if isinstance(field, FloatField):
        return lambda value: value if math.isfinite(value) else _float_text(value)
    return text_converter(field)


_TO_TEXT = [text_converter(f) for f in FIELDS]
_TO_JSON = [json_converter(f) for f in FIELDS]


def csv_lines(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[str]]:
    """The header, then each row (values in COLUMNS order) as CSV cells; null is an empty cell."""
    yield COLUMNS
    for row in rows:
        yield ["" if value is None else convert(value) for convert, value in zip(_TO_TEXT, row, strict=True)]


def write_csv(rows: Iterable[tuple[Any, ...]], out: IO[str]) -> Iterator[None]:
    """Writes the rows as CSV, yielding after each data row (for a progress bar)."""
    writer = csv.writer(out, lineterminator="\n")
    lines = csv_lines(rows)
    writer.writerow(next(lines))
    for line in lines:
        writer.writerow(line)
        yield None


def jsonl_line(row: tuple[Any, ...]) -> str:
    record = {
        column: None if value is None else convert(value)
        for column, convert, value in zip(COLUMNS, _TO_JSON, row, strict=True)
    }
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def write_jsonl(rows: Iterable[tuple[Any, ...]], out: IO[str]) -> Iterator[None]:
    for row in rows:
        out.write(jsonl_line(row) + "\n")
        yield None


def write_rows(rows: Iterable[tuple[Any, ...]], out: IO[str], fmt: str) -> Iterator[None]:
    return write_csv(rows, out) if fmt == "csv" else write_jsonl(rows, out)


# --- Reading -------------------------------------------------------------------------------------------------


@dataclass
class ParsedRow:
    line: int
    values: dict[str, Any] | None  # by column; None when refused
    error: str = ""


def format_from_path(path: str) -> str | None:
    """csv or jsonl from a file name's extension, else None."""
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return None


def check_columns(columns: Iterable[str]) -> None:
    """The columns of a file must be the ledger's (recorded_at optional): say which are missing or unknown."""
    given = list(columns)
    given_set = set(given)
    if given_set == _EXPECTED_WITH_DB_FILLED or given_set == _EXPECTED and len(given) == len(given_set):
        return  # the common case, checked once per JSON line
    missing = [c for c in COLUMNS if c not in DB_FILLED and c not in given_set]
    unknown = [c for c in given if c not in _BY_COLUMN]
    duplicated = sorted({c for c in given if given.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing {_some(missing)}")
    if unknown:
        problems.append(f"unknown {_some([repr(c) for c in unknown])}")
    if duplicated:
        problems.append(f"repeated {', '.join(duplicated)}")
    if problems:
        raise RowError("the columns are not the ledger's: " + "; ".join(problems))


def read_csv(stream: IO[str]) -> Iterator[ParsedRow]:
    """Rows of a CSV export; the header must name the ledger's columns (RowError if not)."""
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise RowError("the file is empty: expected a header naming the ledger's columns") from None
    except csv.Error as exc:
        raise RowError(f"line 1: not CSV ({exc})") from None
    check_columns(header)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParsedRow(line, None, f"not CSV ({exc})")
            continue
        if not cells:
            continue  # a blank line
        if len(cells) != len(header):
            yield ParsedRow(line, None, f"{len(cells)} cells where the header has {len(header)}")
            continue
        yield _parsed(line, [(c, parse_text, v) for c, v in zip(header, cells, strict=True)])


def read_jsonl(stream: IO[str]) -> Iterator[ParsedRow]:
    """Rows of a JSON lines export: one object a line, keyed by the ledger's columns."""
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            # Numbers with a fraction read as decimals, so that a cost written as a number keeps its digits.
            record = json.loads(text, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            yield ParsedRow(line, None, f"not JSON ({_short(str(exc))})")
            continue
        if not isinstance(record, dict):
            yield ParsedRow(line, None, f"expected a JSON object, got {type(record).__name__}")
            continue
        try:
            check_columns(record)
        except RowError as exc:
            yield ParsedRow(line, None, str(exc))
            continue
        yield _parsed(line, [(c, parse_json, v) for c, v in record.items()])


def read_rows(stream: IO[str], fmt: str) -> Iterator[ParsedRow]:
    return read_csv(stream) if fmt == "csv" else read_jsonl(stream)


def _parsed(line: int, cells: list[tuple[str, Any, Any]]) -> ParsedRow:
    """A row from (column, parser, raw value) triples; columns the database fills are dropped unread."""
    try:
        values = {column: parse(_BY_COLUMN[column], raw) for column, parse, raw in cells if column not in DB_FILLED}
    except RowError as exc:
        return ParsedRow(line, None, str(exc))
    return ParsedRow(line, values)


def _some(names: list[str], shown: int = 6) -> str:
    """A list of names short enough for one line: the first few, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def parse_text(field: Field, text: str) -> Any:
    """A CSV cell as the field's value; an empty cell is null for a nullable non-text column."""
    if text == "" and not isinstance(field, CharField):
        if field.null:
            return None
        raise RowError(f"{field.column}: empty, but it cannot be null")
    return _checked(field, _from_text(field, text), text)


def parse_json(field: Field, value: Any) -> Any:
    if value is None:
        if field.null:
            return None
        raise RowError(f"{field.column}: null, but it cannot be null")
    if isinstance(field, BooleanField):
        if not isinstance(value, bool):
            raise RowError(f"{field.column}: {_short(repr(value))} is not true or false")
        return value
    if isinstance(field, IntegerField | ForeignKey) and not isinstance(value, str):
        if not isinstance(value, int) or isinstance(value, bool):
            raise RowError(f"{field.column}: {_short(repr(value))} is not a whole number")
        return _checked(field, value, value)
    if isinstance(field, FloatField) and isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        # A JSON number must be finite (1e999 would read as infinity); non-finite ones come as words.
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise RowError(f"{field.column}: {_short(str(value))} is not a finite number")
        return _checked(field, number, value)
    if isinstance(field, DecimalField) and isinstance(value, int | Decimal) and not isinstance(value, bool):
        if not Decimal(value).is_finite():
            raise RowError(f"{field.column}: {_short(str(value))} is not a finite number")
        return _checked(field, Decimal(value), value)
    if not isinstance(value, str):
        raise RowError(f"{field.column}: {_short(repr(value))} should be a string")
    return _checked(field, _from_text(field, value), value)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date or datetime; naive means UTC, a date means its midnight UTC."""
    text = text.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError
    return text == "true"


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError
    return value


def _float(text: str) -> float:
    if text in _FLOAT_WORDS:
        return _FLOAT_WORDS[text]
    number = float(text)
    if not math.isfinite(number):  # 'inf', 'nan', '1e999': not how an export writes them
        raise ValueError
    return number


def _integer(text: str) -> int:
    if not text.isascii() or not text.lstrip("-").isdigit():
        raise ValueError
    return int(text)


def _text(text: str) -> str:
    return text


def text_parser(field: Field) -> Callable[[str], Any]:
    """How one column's text becomes its value (ValueError if it cannot); chosen once per column."""
    if isinstance(field, BooleanField):
        return _boolean
    if isinstance(field, UUIDField):
        return uuid.UUID
    if isinstance(field, DateTimeField):
        return parse_instant
    if isinstance(field, DecimalField):
        return _decimal
    if isinstance(field, FloatField):
        return _float
    if isinstance(field, IntegerField | ForeignKey):
        return _integer
    return _text


def _validators(field: Field) -> list[Callable[[Any], None]]:
    """The field's own checks (lengths, ranges, digits, choices); a reference also gets its target's range."""
    checks = list(field.validators)
    if isinstance(field, ForeignKey):
        checks += field.target_field.validators
    if field.choices:
        allowed = {choice for choice, _ in field.flatchoices}

        def one_of(value: Any) -> None:
            if value not in allowed:
                raise ValidationError(f"not one of {', '.join(sorted(str(c) for c in allowed))}")

        checks.append(one_of)
    return checks


_PARSERS = {f.column: text_parser(f) for f in FIELDS}
_CHECKS = {f.column: _validators(f) for f in FIELDS}


def _from_text(field: Field, text: str) -> Any:
    try:
        return _PARSERS[field.column](text)
    except (ValueError, InvalidOperation, OverflowError):
        kind = type(field).__name__.removesuffix("Field").lower() or "value"
        raise RowError(f"{field.column}: {_short(repr(text))} is not a valid {kind}") from None


def _checked(field: Field, value: Any, shown: Any) -> Any:
    """The field's own validators, and what PostgreSQL cannot store in text."""
    if isinstance(value, str):
        if "\x00" in value:
            raise RowError(f"{field.column}: contains a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise RowError(f"{field.column}: not valid UTF-8 text") from None
        if value == "" and not field.blank:
            raise RowError(f"{field.column}: empty, but it is required")
    try:
        for check in _CHECKS[field.column]:
            check(value)
    except ValidationError as exc:
        text = repr(shown) if isinstance(shown, str) else str(shown)
        raise RowError(f"{field.column}: {_short(text)}: {' '.join(exc.messages)}") from None
    return value


# --- Inserting -----------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    inserted: int = 0
    present: int = 0
    refused: int = 0
    # The first refusals, (line, why): a file of garbage must not fill memory with messages.
    refusals: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def refuse(self, line: int, why: str) -> None:
        self.refused += 1
        if len(self.refusals) < KEPT_REFUSALS:
            self.refusals.append((line, why))


def _array_type(field: Field) -> str:
    # Without length or scale: an explicit cast to varchar(n) or numeric(p, s) would cut or round silently,
    # while inserting the plain value lets the column itself refuse what does not fit.
    return re.sub(r"\(.*\)", "", field.db_type(connection) or "") + "[]"


# One array parameter per column rather than one parameter per value: a statement of 30,000 placeholders
# cost more to build and parse than to run.
_INSERT = (
    f"INSERT INTO {LedgerEntry._meta.db_table} ({', '.join(f.column for f in IMPORTED)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{_array_type(f)}' for f in IMPORTED)}) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)


def import_rows(rows: Iterable[ParsedRow], report: ImportReport, batch_size: int = IMPORT_BATCH) -> Iterator[int]:
    """Inserts valid rows in batches, skipping rows already present; yields the number of rows handled."""
    batch: list[ParsedRow] = []
    for row in rows:
        if row.values is None:
            report.refuse(row.line, row.error)
            yield 1
            continue
        batch.append(row)
        if len(batch) >= batch_size:
            _insert_batch(batch, report)
            yield len(batch)
            batch = []
    if batch:
        _insert_batch(batch, report)
        yield len(batch)


def _insert_batch(batch: list[ParsedRow], report: ImportReport) -> None:
    valid = _known_references(batch, report)
    if not valid:
        return
    try:
        with transaction.atomic():
            _count(report, _insert(valid), len(valid))
    except (IntegrityError, DataError):
        # Something the checks above cannot see (a tenant deleted meanwhile): row by row, so that one bad
        # row never costs its neighbours.
        for row in valid:
            try:
                with transaction.atomic():
                    _count(report, _insert([row]), 1)
            except (IntegrityError, DataError) as exc:
                report.refuse(row.line, f"refused by the database: {str(exc).splitlines()[0]}")


def _count(report: ImportReport, inserted: int, offered: int) -> None:
    report.inserted += inserted
    report.present += offered - inserted


def _insert(rows: list[ParsedRow]) -> int:
    """One INSERT for the rows; conflicts on the id or the request id are rows already present."""
    columns = [[row.values[f.column] for row in rows if row.values is not None] for f in IMPORTED]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, columns)
        return len(cursor.fetchall())


def _known_references(batch: list[ParsedRow], report: ImportReport) -> list[ParsedRow]:
    """The rows whose tenant and key exist; the others are refused with the id they name."""
    tenant_ids = {r.values["tenant_id"] for r in batch if r.values and r.values["tenant_id"] is not None}
    key_ids = {r.values["api_key_id"] for r in batch if r.values and r.values["api_key_id"] is not None}
    tenants = set(Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", flat=True)) if tenant_ids else set()
    keys = set(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", flat=True)) if key_ids else set()
    valid = []
    for row in batch:
        assert row.values is not None
        tenant_id, key_id = row.values["tenant_id"], row.values["api_key_id"]
        if tenant_id is not None and tenant_id not in tenants:
            report.refuse(row.line, f"tenant_id: no tenant {tenant_id} in this database")
        elif key_id is not None and key_id not in keys:
            report.refuse(row.line, f"api_key_id: no API key {key_id} in this database")
        else:
            valid.append(row)
    return valid


# --- Selecting -----------------------------------------------------------------------------------------------


def rows_between(since: datetime | None, until: datetime | None, chunk_size: int = 2000) -> Iterator[tuple[Any, ...]]:
    """Rows created in [since, until), oldest first, as tuples in COLUMNS order.

    Read through a server-side cursor, chunk by chunk, so that a million rows never sit in memory at once.
    """
    rows = LedgerEntry.objects.order_by("created_at", "id")
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows.values_list(*[f.attname for f in FIELDS]).iterator(chunk_size=chunk_size)


def count_between(since: datetime | None, until: datetime | None) -> int | None:
    """How many rows an export will write: exact within a date range (an index range scan), else the planner's
    estimate of the whole table, which costs nothing (None when the table was never analysed)."""
    if since is not None or until is not None:
        rows = LedgerEntry.objects.all()
        if since is not None:
            rows = rows.filter(created_at__gte=since)
        if until is not None:
            rows = rows.filter(created_at__lt=until)
        return rows.count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [LedgerEntry._meta.db_table])
        found = cursor.fetchone()
    return int(found[0]) if found and found[0] >= 0 else None
