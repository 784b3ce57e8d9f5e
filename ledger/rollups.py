"""DailyUsage: the ledger summed per UTC day, tenant, key, provider and model, for finance's reports.

Whole days are recomputed from the raw rows rather than incremented, so a rollup always equals the sums of the
ledger it was computed from, whatever arrived late (a spool replayed after an outage, an `import_ledger`).
Which days to recompute comes from `LedgerEntry.recorded_at`: the days of rows recorded since the last run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from ledger.models import DailyUsage, LedgerEntry, RollupWatermark

logger = logging.getLogger(__name__)

WATERMARK = "daily_usage"
# A row's recorded_at is its INSERT transaction's start, which can precede the commit that makes it visible:
# rows recorded this close before the last run are looked at again (recomputing a day twice is harmless).
LATE_COMMIT_MARGIN = dt.timedelta(minutes=2)
# Two gateways' beats may fire together: one runs, the other skips.
_LOCK_KEY = 0x6772_6565_6E01

_LEDGER = LedgerEntry._meta.db_table
_DAILY = DailyUsage._meta.db_table
_GROUP = ["tenant_id", "api_key_id", "provider", "model"]
# DailyUsage column -> its aggregate over the day's ledger rows.
AGGREGATES: dict[str, str] = {
    "requests": "count(*)",
    "errors": "count(*) FILTER (WHERE status_code >= 400)",
    "cache_hits": "count(*) FILTER (WHERE cache_status = 'hit')",
    "unpriced_requests": "count(*) FILTER (WHERE cost_usd IS NULL)",
    "prompt_tokens": "coalesce(sum(prompt_tokens), 0)",
    "cached_input_tokens": "coalesce(sum(cached_input_tokens), 0)",
    "cache_write_tokens": "coalesce(sum(cache_write_tokens), 0)",
    "completion_tokens": "coalesce(sum(completion_tokens), 0)",
    "reasoning_tokens": "coalesce(sum(reasoning_tokens), 0)",
    "energy_joules": "coalesce(sum(energy_joules), 0)",
    "energy_joules_min": "coalesce(sum(energy_joules_min), 0)",
    "energy_joules_max": "coalesce(sum(energy_joules_max), 0)",
    "energy_saved_joules": "coalesce(sum(energy_saved_joules), 0)",
    "co2e_grams": "coalesce(sum(co2e_grams), 0)",
    "co2e_grams_min": "coalesce(sum(co2e_grams_min), 0)",
    "co2e_grams_max": "coalesce(sum(co2e_grams_max), 0)",
    "co2e_saved_grams": "coalesce(sum(co2e_saved_grams), 0)",
    "cost_usd": "coalesce(sum(cost_usd), 0)",
    "cost_saved_usd": "coalesce(sum(cost_saved_usd), 0)",
}

_RECOMPUTE = f"""
INSERT INTO {_DAILY} (day, {", ".join(_GROUP)}, {", ".join(AGGREGATES)})
SELECT %(day)s, {", ".join(_GROUP)}, {", ".join(AGGREGATES.values())}
FROM {_LEDGER}
WHERE created_at >= %(start)s AND created_at < %(end)s
GROUP BY {", ".join(_GROUP)}
"""


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def recompute_days(days: Iterable[dt.date]) -> int:
    """Replace the given days' rollups with the sums of their ledger rows; returns the days done."""
    done = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for day in sorted(set(days)):
            start, end = day_bounds(day)
            cursor.execute(f"DELETE FROM {_DAILY} WHERE day = %s", [day])
            cursor.execute(_RECOMPUTE, {"day": day, "start": start, "end": end})
            done += 1
    return done


def refresh(*, full: bool = False) -> int:
    """Recompute the days with rows recorded since the last run (every day with `full`); returns days done.

    Returns -1 without doing anything when another process is refreshing.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
        if not cursor.fetchone()[0]:
            return -1
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
        mark = RollupWatermark.objects.filter(name=WATERMARK).first()
        if full or mark is None:
            days = _days(cursor, "TRUE", [])
            # Days whose rows are all gone (a restore into an emptied ledger) lose their rollups too.
            stale = set(DailyUsage.objects.values_list("day", flat=True).distinct()) - set(days)
            DailyUsage.objects.filter(day__in=stale).delete()
        else:
            days = _days(cursor, "recorded_at > %s", [mark.recorded_until - LATE_COMMIT_MARGIN])
        done = recompute_days(days)
        RollupWatermark.objects.update_or_create(name=WATERMARK, defaults={"recorded_until": now})
    if done:
        logger.info("ledger rollups refreshed", extra={"days": done})
    return done


def _days(cursor: Any, condition: str, params: list[Any]) -> list[dt.date]:
    cursor.execute(
        f"SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM {_LEDGER} WHERE {condition}",
        params,
    )
    return [row[0] for row in cursor.fetchall()]


def differences(since: dt.date, until: dt.date) -> list[str]:
    """Where the rollups of [since, until) differ from the raw ledger's sums: empty when they reconcile."""
    found: list[str] = []
    day = since
    while day < until:
        start, end = day_bounds(day)
        raw = _grouped(LedgerEntry.objects.filter(created_at__gte=start, created_at__lt=end))
        rolled = {
            tuple(row[g] for g in _GROUP): row
            for row in DailyUsage.objects.filter(day=day).values(*_GROUP, *AGGREGATES)
        }
        for group in sorted(set(raw) | set(rolled), key=str):
            a, b = raw.get(group), rolled.get(group)
            if a is None or b is None:
                found.append(f"{day} {group}: {'missing from the rollups' if b is None else 'not in the ledger'}")
                continue
            for column in AGGREGATES:
                if not _equal(a[column], b[column]):
                    found.append(f"{day} {group} {column}: ledger {a[column]} != rollup {b[column]}")
        day += dt.timedelta(days=1)
    return found


def _grouped(rows: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    sums: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows.values(*_GROUP, "status_code", "cache_status", *(c for c in AGGREGATES if _is_column(c))):
        group = tuple(row[g] for g in _GROUP)
        total = sums.setdefault(group, dict.fromkeys(AGGREGATES, 0))
        total["requests"] += 1
        total["errors"] += row["status_code"] >= 400
        total["cache_hits"] += row["cache_status"] == "hit"
        total["unpriced_requests"] += row["cost_usd"] is None
        for column in AGGREGATES:
            if _is_column(column) and row[column] is not None:
                total[column] += row[column]
    return sums


def _is_column(name: str) -> bool:
    return name not in {"requests", "errors", "cache_hits", "unpriced_requests"}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return Decimal(a) == Decimal(b)
    if isinstance(a, float) or isinstance(b, float):
        # Float sums depend on their order; everything else must match exactly.
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)), abs(float(b)))
    return bool(a == b)
