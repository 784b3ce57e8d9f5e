"""DailyUsage equals the raw ledger's sums, and stays so as rows arrive late; the gateway keeps it current."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import httpx
import pytest

from greengate_site.request_context import new_request_id, uuid7
from ledger import rollups
from ledger.models import DailyUsage, LedgerEntry
from tests.conftest import start_gateway, stop_gateway
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)

DAY = dt.date(2026, 10, 14)


def row(when: dt.datetime, **fields) -> LedgerEntry:
    values = {
        "id": uuid7(),
        "request_id": new_request_id(),
        "created_at": when,
        "status_code": 200,
        "latency_ms": 40,
        "provider": "openai-main",
        "model": "gpt-4o-mini",
        "prompt_tokens": 120,
        "cached_input_tokens": 20,
        "completion_tokens": 33,
        "energy_joules": 91.25,
        "energy_joules_min": 40.5,
        "energy_joules_max": 150.125,
        "co2e_grams": 0.012,
        "co2e_grams_min": 0.006,
        "co2e_grams_max": 0.02,
        "cost_usd": Decimal("0.000123456789"),
        **fields,
    }
    return LedgerEntry.objects.create(**values)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


def test_rollups_equal_the_raw_sums_per_day_tenant_key_provider_and_model():
    acme, globex = TenantFactory(), TenantFactory()
    for hour in range(0, 24, 3):
        row(at(DAY, hour), tenant=acme)
        row(at(DAY, hour, 30), tenant=globex, model="claude-3-5-haiku", provider="anthropic", reasoning_tokens=7)
    row(at(DAY, 23, 59), tenant=acme, status_code=502, cost_usd=None, error_code="upstream_error")
    row(at(DAY, 12), tenant=acme, cache_status="hit", energy_saved_joules=91.25, cost_saved_usd=Decimal("0.0001"))
    row(at(DAY + dt.timedelta(days=1), 0, 0), tenant=acme)  # midnight UTC belongs to the next day
    row(at(DAY, 5))  # no tenant: refused before authentication

    assert rollups.refresh(full=True) == 2
    assert rollups.differences(DAY, DAY + dt.timedelta(days=2)) == []
    acme_day = DailyUsage.objects.get(day=DAY, tenant=acme, model="gpt-4o-mini")
    assert (acme_day.requests, acme_day.errors, acme_day.cache_hits, acme_day.unpriced_requests) == (10, 1, 1, 1)
    assert acme_day.cost_usd == Decimal("0.000123456789") * 9
    assert acme_day.energy_saved_joules == 91.25
    assert DailyUsage.objects.get(day=DAY, tenant=None).requests == 1
    assert DailyUsage.objects.get(day=DAY + dt.timedelta(days=1)).requests == 1


def test_rows_recorded_late_for_an_old_day_are_rolled_up_on_the_next_run():
    tenant = TenantFactory()
    row(at(DAY, 9), tenant=tenant)
    rollups.refresh()
    # A spool replayed after an outage, or an import: an old created_at, recorded now.
    row(at(DAY, 10), tenant=tenant, cost_usd=Decimal("2.5"))
    assert rollups.refresh() == 1
    assert DailyUsage.objects.get(day=DAY).requests == 2
    assert rollups.differences(DAY, DAY + dt.timedelta(days=1)) == []


def test_a_day_whose_rows_are_gone_loses_its_rollups_on_a_full_refresh():
    row(at(DAY, 9))
    rollups.refresh(full=True)
    LedgerEntry.objects.all().delete()
    rollups.refresh(full=True)
    assert not DailyUsage.objects.exists()


def test_the_gateway_keeps_the_rollups_current_with_no_worker_or_extra_command(api_key, route):
    """`make run` serves with the periodic tasks in its own process: requests show up in DailyUsage."""
    route("gpt-test")
    gateway = start_gateway({"ROLLUP_INTERVAL_SECONDS": "1"}, log_name="rollups")
    try:
        headers = {"Authorization": f"Bearer {api_key}"}
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(3):
            assert httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers).status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(DailyUsage.objects.values_list("requests", flat=True)) == 3:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the rollups never counted the requests:\n{gateway.log()}")
        today = dt.datetime.now(dt.UTC).date()
        assert rollups.differences(today - dt.timedelta(days=1), today + dt.timedelta(days=1)) == []
    finally:
        stop_gateway(gateway)
