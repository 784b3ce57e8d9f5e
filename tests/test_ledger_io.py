"""export_ledger and import_ledger: a restore gives back the ledger exactly, twice adds nothing, bad input is
refused by line with a clear message."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from greengate_site.request_context import uuid7
from ledger import ledger_io
from ledger.models import LedgerEntry
from tenants.services import api_key_create
from tests.factories import TenantFactory

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [f.attname for f in LedgerEntry._meta.concrete_fields if f.column != "recorded_at"]
START = datetime(2026, 10, 1, tzinfo=UTC)


def make_rows(count: int = 6) -> list[LedgerEntry]:
    """Rows that exercise every kind of value: nulls, empty text, awkward text, full-precision decimals."""
    tenant = TenantFactory()
    key, _ = api_key_create(tenant=tenant, name="io")
    rows = []
    for i in range(count):
        rows.append(
            LedgerEntry(
                id=uuid7(),
                request_id=f"req-{uuid7().hex}",
                client_request_id="" if i % 2 else f'client "{i}", with, commas',
                created_at=START + timedelta(hours=i, microseconds=i * 7),
                tenant=tenant if i != 1 else None,
                api_key=key if i not in (1, 2) else None,
                provider="openai" if i % 3 else "",
                model="gpt-4o-mini",
                upstream_model="gpt-4o-mini-2024-07-18\nsecond line" if i == 3 else "gpt-4o-mini",
                stream=bool(i % 2),
                status_code=200 if i != 4 else 502,
                error_code="upstream_error" if i == 4 else "",
                cache_status="hit" if i == 5 else "miss",
                attempts=1 + (i == 4),
                providers_tried="openai:ok",
                prompt_tokens=1200 + i,
                completion_tokens=345,
                cached_input_tokens=1024 if i == 0 else 0,
                reasoning_tokens=i,
                usage_estimated=i == 2,
                token_encoding="o200k_base" if i == 2 else "",
                latency_ms=812 + i,
                ttft_ms=None if i % 2 == 0 else 120,
                energy_joules=11.587123456789012 + i,
                energy_joules_min=10.1,
                energy_joules_max=0.1 + 0.2,
                co2e_grams=1.6400000000000001e-3,
                electricity_zone="WOR",
                energy_source="ecologits",
                cost_usd=None if i == 4 else Decimal("0.000025800001") * (i + 1),
                cost_source="unknown" if i == 4 else "genai-prices",
                estimate_method="ecologits-0.11.3/genai-prices-0.2.3/greengate-1",
                energy_saved_joules=3.25 if i == 5 else 0.0,
                cost_saved_usd=Decimal("12345678.123456789012") if i == 5 else Decimal(0),
            )
        )
    return LedgerEntry.objects.bulk_create(rows)


def stored() -> list[tuple]:
    return list(LedgerEntry.objects.order_by("created_at", "id").values_list(*COLUMNS))


def export(path: Path, *args: str) -> None:
    call_command("export_ledger", "--output", str(path), *args, verbosity=0)


def import_(path: Path | str, *args: str) -> str:
    out = StringIO()
    call_command("import_ledger", str(path), *args, stdout=out, stderr=StringIO(), verbosity=0)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_imported_into_an_empty_ledger_gives_back_every_column_exactly(tmp_path, fmt):
    make_rows()
    before = stored()
    path = tmp_path / f"ledger.{fmt}"
    export(path, "--format", fmt)
    LedgerEntry.objects.all().delete()

    assert import_(path).strip() == f"inserted {len(before)}, already present 0, refused 0"
    after = stored()
    assert len(after) == len(before)
    for original, restored in zip(before, after, strict=True):
        for column, a, b in zip(COLUMNS, original, restored, strict=True):
            assert (type(a), a) == (type(b), b), column
    # Decimals keep their digits, not just their value.
    assert [str(row[COLUMNS.index("cost_usd")]) for row in after] == [
        str(row[COLUMNS.index("cost_usd")]) for row in before
    ]


@pytest.mark.django_db
def test_importing_the_same_file_twice_adds_nothing_the_second_time(tmp_path):
    make_rows(4)
    path = tmp_path / "ledger.jsonl"
    export(path, "--format", "jsonl")
    assert import_(path).strip() == "inserted 0, already present 4, refused 0"
    LedgerEntry.objects.filter(status_code=200).order_by("created_at").first().delete()
    assert import_(path).strip() == "inserted 1, already present 3, refused 0"
    assert import_(path).strip() == "inserted 0, already present 4, refused 0"
    assert LedgerEntry.objects.count() == 4


@pytest.mark.django_db
def test_since_is_included_until_is_excluded_and_naive_times_are_utc(tmp_path):
    make_rows(6)  # created hourly from 2026-10-01T00:00Z (plus a few microseconds)
    path = tmp_path / "window.csv"

    def exported_hours(*args: str) -> list[int]:
        export(path, *args)
        with path.open(newline="") as exported:
            created = [ledger_io.parse_instant(row["created_at"]) for row in csv.DictReader(exported)]
        return [int((c - START).total_seconds() // 3600) for c in created]

    assert exported_hours() == [0, 1, 2, 3, 4, 5]
    assert exported_hours("--since", "2026-10-01T01:00:00.000007", "--until", "2026-10-01T04:00:00.000028") == [
        1,
        2,
        3,
    ]
    assert exported_hours("--since", "2026-10-01T03:00:00+01:00") == [2, 3, 4, 5]
    assert exported_hours("--until", "2026-10-01") == []
    assert exported_hours("--since", "2026-10-02") == []
    with pytest.raises(CommandError, match="not an ISO 8601"):
        export(path, "--since", "yesterday")
    with pytest.raises(CommandError, match="before --until"):
        export(path, "--since", "2026-10-02", "--until", "2026-10-01")


@pytest.mark.django_db
def test_a_csv_with_the_wrong_columns_is_refused_before_anything_is_imported(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("id,request_id,colour\n1,2,3\n")
    with pytest.raises(CommandError) as refused:
        import_(path)
    message = str(refused.value)
    assert "the columns are not the ledger's: missing client_request_id, created_at, tenant_id," in message
    assert re.search(r"and \d+ more; unknown 'colour'$", message)
    assert LedgerEntry.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_bad_rows_are_refused_by_line_and_the_good_ones_still_imported(tmp_path, fmt):
    make_rows(2)
    good = tmp_path / f"good.{fmt}"
    export(good, "--format", fmt)
    LedgerEntry.objects.all().delete()
    lines = good.read_text().splitlines()
    first = 1 if fmt == "csv" else 0  # the header

    def broken(column: str, value: object) -> str:
        fresh = {"id": str(uuid7()), "request_id": f"req-{uuid7().hex}"}
        if fmt == "jsonl":
            record = {**json.loads(lines[first]), **fresh, column: value}
            return json.dumps(record)
        header = lines[0].split(",")
        record = dict(zip(header, next(csv.reader([lines[first]])), strict=True))
        record |= fresh | {column: "" if value is None else str(value)}
        out = StringIO()
        csv.writer(out, lineterminator="").writerow(record.values())
        return out.getvalue()

    bad_rows = [
        broken("cost_usd", "a lot"),
        broken("created_at", "2026-13-45"),
        broken("tenant_id", 987654321),
        broken("status_code", -1),
        broken("cache_status", "maybe"),
        broken("prompt_tokens", "9" * 5000),
        broken("model", "x" * 201),
        broken("request_id", ""),
        broken("latency_ms", None),
    ]
    garbage = "{not json" if fmt == "jsonl" else '"unterminated,quote\n'
    path = tmp_path / f"mixed.{fmt}"
    path.write_text("\n".join([*lines[: first + 1], *bad_rows, lines[first + 1], garbage]) + "\n")

    err = StringIO()
    with pytest.raises(CommandError, match="10 rows refused"):
        call_command("import_ledger", str(path), stdout=StringIO(), stderr=err, verbosity=0)
    assert LedgerEntry.objects.count() == 2
    refusals = err.getvalue().splitlines()
    expected = [
        "cost_usd: 'a lot' is not a valid decimal",
        "created_at: '2026-13-45' is not a valid datetime",
        "tenant_id: no tenant 987654321 in this database",
        "status_code: ",
        "cache_status: 'maybe': ",
        "prompt_tokens: ",
        "model: ",
        "request_id: empty, but it is required",
        "latency_ms: ",
    ]
    for line_no, (refusal, why) in enumerate(zip(refusals, expected, strict=False), start=first + 2):
        assert refusal.startswith(f"line {line_no}: {why}"), refusal
    assert refusals[len(expected)].startswith(f"line {first + len(expected) + 3}: not ")
    assert all(len(line) < 300 for line in refusals)


@pytest.mark.django_db
def test_a_file_whose_format_cannot_be_told_or_read_gets_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="pass --format csv or jsonl"):
        import_(tmp_path / "ledger.txt")
    with pytest.raises(CommandError, match="cannot read .*No such file"):
        import_(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CommandError, match="the file is empty"):
        import_(empty)


def test_an_empty_csv_cell_is_unambiguous_because_no_nullable_column_holds_text():
    """CSV has no null: an empty cell is null for the columns that can be null, empty text for the others."""
    nullable_text = [
        f.column for f in ledger_io.FIELDS if f.null and f.get_internal_type() in ("CharField", "TextField")
    ]
    assert nullable_text == []


def test_non_finite_floats_and_bytes_that_are_not_utf8_are_handled(tmp_path):
    energy = next(f for f in ledger_io.FIELDS if f.column == "energy_joules")
    assert math.isnan(ledger_io.parse_text(energy, ledger_io.text_converter(energy)(math.nan)))
    assert ledger_io.parse_json(energy, ledger_io.json_converter(energy)(-math.inf)) == -math.inf
    with pytest.raises(ledger_io.RowError, match="not a finite number"):
        ledger_io.parse_json(energy, Decimal("1e999"))
    cost = next(f for f in ledger_io.FIELDS if f.column == "cost_usd")
    # A cost written as a JSON number by hand keeps its digits (numbers are read as decimals).
    assert ledger_io.parse_json(cost, json.loads("0.000025800001", parse_float=Decimal)) == Decimal("0.000025800001")
    with pytest.raises(
        ledger_io.RowError, match="cost_usd: 1E-13: Ensure that there are no more than 12 decimal places"
    ):
        ledger_io.parse_json(cost, Decimal("0.0000000000001"))
    model = next(f for f in ledger_io.FIELDS if f.column == "model")
    with pytest.raises(ledger_io.RowError, match="not valid UTF-8"):
        ledger_io.parse_json(model, b"gpt-\xff".decode("utf-8", "surrogateescape"))
    with pytest.raises(ledger_io.RowError, match="NUL"):
        ledger_io.parse_text(model, "gpt\x00")


@pytest.mark.django_db(transaction=True)
def test_the_commands_pipe_through_stdin_and_stdout_and_exit_non_zero_without_a_traceback(tmp_path):
    make_rows(3)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "GREENGATE_TEST_DATABASE": connection.settings_dict["NAME"],
    }

    def manage(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, timeout=60
        )

    exported = manage("export_ledger", "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    assert len(exported.stdout.splitlines()) == 3
    assert b"rows" in exported.stderr  # the progress bar and the summary

    # Each start costs seconds (settings, the embedded server), so one import shows both the restore and refusals.
    restored = manage("import_ledger", "-", "--format", "jsonl", stdin=exported.stdout + b'{"id": 1}\n\xff\xfe\n')
    assert restored.stdout.strip() == b"inserted 0, already present 3, refused 2"
    assert restored.returncode == 1
    assert b"Traceback" not in restored.stderr
    assert b"line 4: the columns are not the ledger's: missing" in restored.stderr
    assert b"line 5: not JSON" in restored.stderr
    assert b"2 rows refused" in restored.stderr


@pytest.mark.django_db
def test_an_export_to_a_device_writes_to_it_and_leaves_it_a_device(tmp_path):
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    call_command("export_ledger", "--format", "jsonl", "--output", str(fifo), verbosity=0)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the pipe must still be a pipe"
    assert received == [b""]
