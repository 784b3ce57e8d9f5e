"""What the ledger's crash guarantee costs a request: encoding its row and appending it to the spool.

Run by `make bench` (scripts/bench.py), which prints the result beside the throughput figures; alone:
`.venv/bin/python scripts/spool_bench.py`. Prints one JSON object, microseconds per row.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greengate_site.settings")
# The models are all this needs: no database is opened.
os.environ.setdefault("DATABASE_URL", "postgresql://bench@127.0.0.1:1/unused")

import django  # noqa: E402

django.setup()

from datetime import UTC, datetime  # noqa: E402

from greengate_site.request_context import new_request_id, uuid7  # noqa: E402
from ledger.models import LedgerEntry  # noqa: E402
from ledger.spool import Spool, encode_row  # noqa: E402

ROWS = 20_000


def typical_row() -> LedgerEntry:
    return LedgerEntry(
        id=uuid7(),
        request_id=new_request_id(),
        created_at=datetime.now(UTC),
        tenant_id=1,
        api_key_id=1,
        provider="openai-main",
        model="gpt-4o-mini",
        upstream_model="gpt-4o-mini-2024-07-18",
        status_code=200,
        attempts=1,
        providers_tried="openai-main:ok",
        prompt_tokens=812,
        completion_tokens=164,
        latency_ms=840,
        ttft_ms=210,
        energy_joules=1234.5,
        energy_joules_min=600.25,
        energy_joules_max=2100.75,
        co2e_grams=0.171,
        co2e_grams_min=0.08,
        co2e_grams_max=0.29,
        electricity_zone="WOR",
        energy_source="ecologits",
        cost_usd=Decimal("0.000220200000"),
        cost_source="genai-prices",
        estimate_method="ecologits 0.11.3; genai-prices 0.2.3",
    )


def best_of(runs: int, work) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best / ROWS * 1e6


def main() -> None:
    rows = [typical_row() for _ in range(ROWS)]
    with tempfile.TemporaryDirectory() as directory:
        spool = Spool(Path(directory), rows_per_segment=ROWS * 10)
        encode_us = best_of(3, lambda: [encode_row(r) for r in rows])
        lines = [encode_row(r) for r in rows]
        append_us = best_of(3, lambda: [spool.append(line) for line in lines])
        spool.close()
    print(json.dumps({"row_bytes": len(lines[0]), "encode_us": encode_us, "append_us": append_us}))


if __name__ == "__main__":
    main()
