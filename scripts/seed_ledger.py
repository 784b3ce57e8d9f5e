"""Fill the ledger with synthetic but plausible rows, fast, to time admin and report pages on a big table.

    python scripts/seed_ledger.py --rows 1000000 --days 90

Writes to the database the settings point at (`make run`'s embedded one unless DATABASE_URL is set), with
PostgreSQL's COPY. Rows are spread over the last D days across a few tenants (created if missing, with a key
each), providers and models: tokens, energy, carbon and cost in the ranges real traffic gives, some unpriced
models, some errors and client disconnects, some cache hits with what they spared. Every run adds new rows
with new time-ordered ids and request ids, so running it twice doubles the rows rather than failing.
`recorded_at` is left to the database (now), so the rollups see the seeded days as new.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greengate_site.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.models.fields import NOT_PROVIDED  # noqa: E402

from ledger.models import LedgerEntry  # noqa: E402
from tenants.models import ApiKey, Plan, Tenant  # noqa: E402
from tenants.services import api_key_create  # noqa: E402

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]
CHUNK = 50_000
ESTIMATE_METHOD = "ecologits-0.11.3/genai-prices-0.2.3/greengate-1"


@dataclass(frozen=True)
class Model:
    name: str
    provider: str
    upstream: str
    input_per_million: float | None  # USD; None: unpriced
    output_per_million: float
    joules_per_output_token: float
    zone: str
    grams_per_kwh: float
    share: float  # of traffic


MODELS = [
    Model("gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18", 0.15, 0.60, 0.3, "USA", 380, 0.38),
    Model("gpt-4o", "openai", "gpt-4o-2024-08-06", 2.50, 10.0, 2.5, "USA", 380, 0.14),
    Model("gpt-4.1-mini", "azure-eu", "gpt41-mini-prod", 0.40, 1.60, 0.4, "SWE", 45, 0.12),
    Model("claude-sonnet-4", "anthropic", "claude-sonnet-4-20250514", 3.0, 15.0, 3.0, "USA", 380, 0.12),
    Model("command-r", "cohere", "command-r-08-2024", 0.15, 0.60, 0.8, "USA", 380, 0.06),
    Model("llama-3.1-70b", "vllm-local", "meta-llama/Llama-3.1-70B-Instruct", None, 0.0, 2.0, "FRA", 55, 0.10),
    Model("mistral-small", "vllm-local", "mistralai/Mistral-Small-24B", None, 0.0, 0.8, "FRA", 55, 0.08),
]
# (status, error code, share): most requests succeed; the rest are the failures the gateway records.
OUTCOMES = [
    (200, "", 0.935),
    (400, "invalid_request_error", 0.015),
    (429, "rate_limit_exceeded", 0.02),
    (499, "client_disconnected", 0.01),
    (502, "upstream_error", 0.015),
    (504, "upstream_timeout", 0.005),
]
CACHE_HIT_SHARE = 0.08
# The columns given synthetic values, in the order `row()` writes them. A column added to the model later is
# written with its model default (DEFAULTED) until it is given values of its own here.
COLUMNS = [
    "id", "request_id", "client_request_id", "created_at", "tenant_id", "api_key_id", "endpoint", "provider",
    "model", "upstream_model", "stream", "status_code", "error_code", "cache_status", "attempts", "providers_tried",
    "prompt_tokens", "completion_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
    "usage_estimated", "token_encoding", "latency_ms", "ttft_ms", "energy_joules", "energy_joules_min",
    "energy_joules_max", "co2e_grams", "co2e_grams_min", "co2e_grams_max", "electricity_zone", "energy_source",
    "cost_usd", "cost_source", "estimate_method", "energy_saved_joules", "co2e_saved_grams", "cost_saved_usd",
]  # fmt: skip
DEFAULTED = [
    f
    for f in LedgerEntry._meta.concrete_fields
    if f.column not in COLUMNS and f.db_default is NOT_PROVIDED  # recorded_at is the database's own
]


def copy_text(value: object) -> str:
    """A Python value as COPY's text format (the values here hold no tab, newline or backslash)."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


DEFAULT_TEXT = "".join("\t" + copy_text(f.get_default()) for f in DEFAULTED)


def uuid7_hex(millis: int, rng: random.Random) -> str:
    """A version 7 UUID for an instant in the past, as 32 hex digits (time-ordered like the gateway's)."""
    value = (millis << 80) | rng.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"{value:032x}"


def as_uuid(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def usd(value: float) -> str:
    """USD to the ledger's 12 decimal places, as COPY text."""
    return f"{value:.12f}"


def tenants_and_keys() -> list[tuple[int, int]]:
    """(tenant id, key id) pairs: the seed tenants, made with a key each if missing."""
    plan, _ = Plan.objects.get_or_create(name="seed", defaults={"rate_limit_per_minute": 100_000})
    pairs = []
    for slug in TENANTS:
        tenant, _ = Tenant.objects.get_or_create(slug=f"seed-{slug}", defaults={"name": slug.title(), "plan": plan})
        keys = list(ApiKey.objects.filter(tenant=tenant).values_list("pk", flat=True)[:3])
        if not keys:
            key, _ = api_key_create(tenant=tenant, name="seeded traffic")
            keys = [key.pk]
        pairs.extend((tenant.pk, key_id) for key_id in keys)
    return pairs


def row(created: datetime, rng: random.Random, keys: list[tuple[int, int]], weights: list[float]) -> str:
    """One ledger row as a line of COPY text (tab-separated, \\N for null)."""
    millis = int(created.timestamp() * 1000)
    model = rng.choices(MODELS, weights)[0]
    tenant_id, key_id = rng.choice(keys)
    status, error, _ = rng.choices(OUTCOMES, [o[2] for o in OUTCOMES])[0]
    stream = rng.random() < 0.4
    prompt = int(rng.lognormvariate(6.5, 1.0)) + 8
    completion = int(rng.lognormvariate(5.3, 0.9)) + 1
    cached = int(prompt * rng.uniform(0.3, 0.9)) if prompt > 1024 and rng.random() < 0.3 else 0
    latency = int(150 + completion * rng.uniform(8, 25))
    ttft: int | None = int(rng.uniform(120, 900)) if stream else None
    hit = status == 200 and rng.random() < CACHE_HIT_SHARE
    provider, upstream, attempts, tried = model.provider, model.upstream, 1, f"{model.provider}:ok"
    if status in (400, 429):  # refused before any provider was called
        provider = upstream = tried = ""
        prompt = completion = cached = attempts = 0
        latency, ttft = int(rng.uniform(1, 15)), None
    elif status in (502, 504):
        attempts = rng.choice((1, 2, 3))
        tried = " ".join(f"{model.provider}:{error}" for _ in range(attempts))
        completion = 0 if status == 504 or not stream else completion // 3
        latency = int(rng.uniform(2_000, 30_000)) if status == 504 else latency
    elif status == 499:
        completion //= 2
        tried = f"{model.provider}:client_left"
    if hit:  # answered from the cache: no provider, no energy; what it spared is recorded
        provider = upstream = tried = ""
        attempts, latency = 0, int(rng.uniform(3, 25))
        ttft = 2 if stream else None
    called = attempts > 0 and not hit

    joules = completion * model.joules_per_output_token * rng.uniform(0.85, 1.15) + latency * 0.002
    grams = joules / 3.6e6 * model.grams_per_kwh * 1.25  # the mix, plus ecologits' embodied share
    cost: float | None = None
    if model.input_per_million is not None:
        cost = ((prompt - cached) * model.input_per_million + cached * model.input_per_million / 2) / 1e6
        cost += completion * model.output_per_million / 1e6
    energy_source = ("ecologits" if model.input_per_million is not None else "parameters") if called else "none"
    cost_source = ("genai-prices" if cost is not None else "unknown") if called else "none"
    saved = (joules, grams, cost or 0.0) if hit else (0.0, 0.0, 0.0)
    if not called:
        joules = grams = 0.0
        cost = 0.0
    cost_text = r"\N" if cost is None else usd(cost)
    values = [
        as_uuid(uuid7_hex(millis, rng)),
        uuid7_hex(millis, rng),
        f"app-{rng.getrandbits(32):08x}" if rng.random() < 0.2 else "",
        created.isoformat(),
        str(tenant_id),
        str(key_id),
        "chat.completions",
        provider,
        model.name,
        upstream,
        "t" if stream else "f",
        str(status),
        error,
        "hit" if hit else "miss",
        str(attempts),
        tried,
        str(prompt),
        str(completion),
        str(cached),
        "0",
        str(completion // 4 if model.name == "claude-sonnet-4" else 0),
        "t" if status == 499 else "f",
        "o200k_base" if status == 499 else "",
        str(latency),
        r"\N" if ttft is None else str(ttft),
        repr(joules),
        repr(joules * 0.8),
        repr(joules * 1.25),
        repr(grams),
        repr(grams * 0.8),
        repr(grams * 1.25),
        model.zone if called else "",
        energy_source,
        cost_text,
        cost_source,
        ESTIMATE_METHOD,
        repr(saved[0]),
        repr(saved[1]),
        usd(saved[2]),
    ]
    return "\t".join(values) + DEFAULT_TEXT + "\n"


def instants(count: int, days: float, rng: random.Random) -> list[datetime]:
    """Creation times over the last `days`, busier in working hours, oldest first."""
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    span = (now - start).total_seconds()
    picked = []
    while len(picked) < count:
        offset = rng.random() * span
        hour = ((start.timestamp() + offset) % 86_400) / 3600
        if rng.random() < 0.35 + 0.65 * math.sin(math.pi * max(0.0, min(1.0, (hour - 6) / 14))):
            picked.append(offset)
    picked.sort()
    return [start + timedelta(seconds=offset) for offset in picked]


def seed(rows: int, days: float) -> float:
    """Copies `rows` rows into the ledger; returns the seconds it took."""
    began = time.monotonic()
    rng = random.Random()  # seeded by the system: every run's ids are new
    keys = tenants_and_keys()
    weights = [m.share for m in MODELS]
    columns = COLUMNS + [f.column for f in DEFAULTED]
    copy_sql = f"COPY {LedgerEntry._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    times = instants(rows, days, rng)
    written = 0
    with connection.cursor() as cursor:
        for first in range(0, rows, CHUNK):
            text = "".join(row(created, rng, keys, weights) for created in times[first : first + CHUNK])
            with cursor.cursor.copy(copy_sql) as copy:
                copy.write(text.encode())
            written += min(CHUNK, rows - first)
            print(f"\r{written:,} / {rows:,} rows", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        # Fresh statistics, so the planner (and the admin's plans) see the table as it now is.
        cursor.execute(f"ANALYZE {LedgerEntry._meta.db_table}")
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="How many rows to add (default 1,000,000).")
    parser.add_argument("--days", type=float, default=90, help="Spread over the last D days (default 90).")
    args = parser.parse_args()
    if args.rows < 1 or args.days <= 0:
        parser.error("--rows must be at least 1 and --days above 0")
    if LedgerEntry._meta.db_table not in connection.introspection.table_names():
        sys.exit("The ledger table does not exist yet: run `make run` or `python manage.py migrate` first.")
    seconds = seed(args.rows, args.days)
    total = LedgerEntry.objects.count()
    print(f"seeded {args.rows:,} ledger rows over {args.days:g} days in {seconds:.1f} s ({total:,} rows in all)")


if __name__ == "__main__":
    main()
