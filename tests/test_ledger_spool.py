"""The spool: rows are on disk before the answer ends, exactly as written, and replayed once by a survivor."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from greengate_site.request_context import new_request_id, uuid7
from ledger.models import LedgerEntry
from ledger.spool import Spool, claim_orphans, decode_row, encode_row
from ledger.writer import _FIELDS, LedgerWriter

pytestmark = pytest.mark.django_db(transaction=True)


def entry(**fields) -> LedgerEntry:
    return LedgerEntry(
        **{
            "id": uuid7(),
            "request_id": new_request_id(),
            "created_at": datetime.now(UTC),
            "status_code": 200,
            "latency_ms": 12,
            "cost_usd": Decimal("0.000000123456789012"),
            "energy_joules": 0.1 + 0.2,
            "model": "gpt-4o-mini ☃",
            **fields,
        }
    )


def test_a_spooled_row_reads_back_exactly_as_it_was_written():
    original = entry(cost_usd=None, ttft_ms=None, tenant_id=None, client_request_id="their-id")
    copy = decode_row(encode_row(original))
    assert [getattr(copy, f.attname) for f in _FIELDS] == [getattr(original, f.attname) for f in _FIELDS]
    priced = entry()
    assert decode_row(encode_row(priced)).cost_usd == Decimal("0.000000123456789012")


def test_a_live_process_segments_are_never_claimed_and_a_dead_ones_are(tmp_path):
    spool = Spool(tmp_path)
    spool.append(encode_row(entry()))
    assert claim_orphans(tmp_path, set()) == [], "its owner holds the lock"
    spool.close()  # as the process exiting (or killed): the lock goes, the unwritten row stays
    orphans = claim_orphans(tmp_path, set())
    assert len(orphans) == 1 and len(list(orphans[0].rows())) == 1
    assert claim_orphans(tmp_path, set()) == [], "one claimant at a time"
    orphans[0].finish()
    assert list(tmp_path.iterdir()) == []


def test_a_segment_empties_once_its_rows_are_written(tmp_path):
    spool = Spool(tmp_path)
    segment = spool.append(encode_row(entry()))
    assert segment.path.stat().st_size > 0
    spool.mark_written(segment)
    assert segment.path.stat().st_size == 0


def test_a_torn_last_line_is_skipped_and_the_rest_replayed(tmp_path):
    spool = Spool(tmp_path)
    first = entry()
    segment = spool.append(encode_row(first))
    with open(segment.path, "ab") as file:
        file.write(encode_row(entry())[:40])  # as a disk that filled up mid-line
    spool.close()
    (orphan,) = claim_orphans(tmp_path, set())
    assert [row.request_id for row in orphan.rows()] == [first.request_id]
    orphan.finish()


def test_rows_beyond_the_memory_limit_wait_on_disk_and_are_all_written(settings, tmp_path):
    settings.LEDGER_SPOOL_DIR = tmp_path
    settings.LEDGER_MEMORY_ROWS = 5
    rows = [entry() for _ in range(60)]

    async def write() -> None:
        writer = LedgerWriter()
        for row in rows:
            writer.record(row)  # no await between them: the flusher cannot keep up
        await writer.close()

    asyncio.run(write())
    assert LedgerEntry.objects.filter(request_id__in=[r.request_id for r in rows]).count() == 60
    assert all(p.stat().st_size == 0 for p in tmp_path.rglob("*") if p.is_file())


def test_a_survivor_replays_what_a_dead_writer_left_without_duplicating_what_was_written(settings, tmp_path):
    settings.LEDGER_SPOOL_DIR = tmp_path
    written, unwritten = entry(), entry(request_id=f"lost-{uuid.uuid4().hex}")

    async def die_after_spooling() -> None:
        writer = LedgerWriter()
        writer.record(written)
        await writer.drain()
        state = writer._state()
        # The process dies with a written row still in its segment (killed between the INSERT and the file's
        # emptying) and one only spooled: its lock goes, its file stays.
        state.spool.append(encode_row(written))
        state.spool.append(encode_row(unwritten))
        state.flusher.cancel()
        state.spool.close()

    async def survive() -> int:
        writer = LedgerWriter()
        replayed = await writer.recover()
        await writer.close()
        return replayed

    asyncio.run(die_after_spooling())
    assert asyncio.run(survive()) == 2
    assert LedgerEntry.objects.filter(request_id__in=[written.request_id, unwritten.request_id]).count() == 2
    assert not [p for p in tmp_path.rglob("*.seg")]
