"""Daily and monthly budgets: reserved before the call, settled to the ledger's cost, exact under concurrency."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import pytest

from gateway.admission.budgets import Budget, periods
from greengate_site import redis as shared
from ledger.models import LedgerEntry, PriceOverride
from tenants.services import api_key_create
from tests.conftest import start_gateway, stop_gateway
from tests.factories import TenantFactory

# A price that makes the arithmetic plain: a tenth of a cent per token, in and out.
PER_TOKEN = Decimal("0.001")


def priced_route(route, model: str = "gpt-budget", **knobs) -> None:
    route(model, **knobs)
    PriceOverride.objects.create(
        provider_kind="openai", model=model, input_per_million=Decimal(1000), output_per_million=Decimal(1000)
    )
    time.sleep(0.3)  # the config version moved on commit; let the gateway's next check see it


def tenant_key(**budgets) -> tuple[object, str]:
    tenant = TenantFactory(**budgets)
    return tenant, api_key_create(tenant=tenant, name="budget")[1]


def ask(max_tokens: int = 10, model: str = "gpt-budget") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}


async def burst(url: str, key: str, body: dict, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        return await asyncio.gather(*(client.post(f"{url}/v1/chat/completions", json=body) for _ in range(count)))


def spent(tenant) -> Decimal:
    rows = LedgerEntry.objects.filter(tenant=tenant)
    return sum((r.cost_usd or Decimal(0) for r in rows), Decimal(0))


def wait_for_rows(tenant, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while LedgerEntry.objects.filter(tenant=tenant).count() < count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_burst_whose_reservations_fit_is_never_refused(gateway, route):
    priced_route(route, words=3)
    # Each reserves its prompt (GreenGate counts about 8 tokens) plus 10 of output: about $0.018.
    tenant, key = tenant_key(daily_budget_usd=Decimal("0.20"))
    responses = asyncio.run(burst(gateway.url, key, ask(10), 10))
    assert [r.status_code for r in responses] == [200] * 10


def test_concurrent_requests_on_a_nearly_spent_budget_never_pass_it(gateway, route):
    priced_route(route, words=5)
    tenant, key = tenant_key(daily_budget_usd=Decimal("0.10"))
    responses = asyncio.run(burst(gateway.url, key, ask(10), 16))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 403}
    wait_for_rows(tenant, len(statuses))
    # max_tokens caps each answer, so the bound here is 0: spend stays within the budget.
    assert spent(tenant) <= Decimal("0.10")
    refused = next(r for r in responses if r.status_code == 403).json()["error"]
    assert refused["code"] == "budget_exceeded" and refused["type"] == "insufficient_quota"
    assert "daily budget of tenant" in refused["message"] and "resets at" in refused["message"]
    # What the burst's settlements gave back is used until no reservation fits; never beyond the budget.
    headers = {"Authorization": f"Bearer {key}"}
    sent = len(statuses)
    for _ in range(20):
        sent += 1
        if httpx.post(f"{gateway.url}/v1/chat/completions", json=ask(10), headers=headers).status_code == 403:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the budget never ran out")
    wait_for_rows(tenant, sent)
    assert Decimal("0.10") - Decimal("0.02") < spent(tenant) <= Decimal("0.10")


def test_settling_gives_back_what_a_request_did_not_use(gateway, route):
    priced_route(route, words=2)
    # Each reserves ~$0.058 and costs ~$0.012 once settled: four in a row fit in $0.10 (four reservations would not).
    tenant, key = tenant_key(monthly_budget_usd=Decimal("0.10"))
    headers = {"Authorization": f"Bearer {key}"}
    statuses = []
    for _ in range(4):
        statuses.append(httpx.post(f"{gateway.url}/v1/chat/completions", json=ask(50), headers=headers).status_code)
        time.sleep(0.3)  # let the settlement land
    assert statuses == [200, 200, 200, 200]


def test_a_request_of_unknown_price_counts_the_documented_amount_never_zero(gateway, route, settings):
    route("model-nobody-prices", words=2)
    # BUDGET_UNPRICED_REQUEST_USD is $0.01: two fit in $0.025, the third does not.
    tenant, key = tenant_key(daily_budget_usd=Decimal("0.025"))
    headers = {"Authorization": f"Bearer {key}"}
    statuses = []
    for _ in range(3):
        body = ask(5, model="model-nobody-prices")
        statuses.append(httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers).status_code)
        time.sleep(0.3)
    assert statuses == [200, 200, 403]


def test_a_keys_own_budget_applies_within_its_tenants(gateway, route):
    priced_route(route, words=2)
    tenant = TenantFactory(daily_budget_usd=Decimal("100"))
    key, secret = api_key_create(tenant=tenant, name="small")
    key.daily_budget_usd = Decimal("0.015")  # one reservation (~$0.013) fits; after one ~$0.006 request, not
    key.save()
    time.sleep(0.3)
    headers = {"Authorization": f"Bearer {secret}"}
    first = httpx.post(f"{gateway.url}/v1/chat/completions", json=ask(5), headers=headers)
    time.sleep(0.3)
    second = httpx.post(f"{gateway.url}/v1/chat/completions", json=ask(5), headers=headers)
    costs = [(r.prompt_tokens, r.completion_tokens, r.cost_usd) for r in LedgerEntry.objects.filter(tenant=tenant)]
    assert first.status_code == 200 and second.status_code == 403, costs
    assert "key gg-" in second.json()["error"]["message"]


def test_spend_survives_losing_the_counters_it_is_reseeded_from_the_ledger(gateway, route):
    priced_route(route, words=2)
    tenant, key = tenant_key(daily_budget_usd=Decimal("0.05"))
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(2):
        assert httpx.post(f"{gateway.url}/v1/chat/completions", json=ask(5), headers=headers).status_code == 200
    wait_for_rows(tenant, 2)
    before = spent(tenant)
    # As after a Redis restart: the budget's counters are gone.
    starts, resets = periods(LedgerEntry.objects.filter(tenant=tenant).first().created_at)["daily"]
    budget = Budget("tenant", tenant.pk, tenant.slug, "daily", starts, resets, Decimal("0.05"))
    shared.sync_client().delete(*budget.keys())
    statuses = []
    for _ in range(6):
        statuses.append(httpx.post(f"{gateway.url}/v1/chat/completions", json=ask(5), headers=headers).status_code)
        time.sleep(0.3)
    # Seeded with what was spent, the budget refuses as soon as the rest is used, not 0.05 later.
    admitted_after = statuses.count(200)
    assert 403 in statuses
    per_request = before / 2
    assert admitted_after <= int((Decimal("0.05") - before) / per_request) + 1


@pytest.fixture
def gateway_without_redis(transactional_db):
    gateway = start_gateway({"REDIS_URL": "redis://127.0.0.1:9/0"}, log_name="no-redis")
    yield gateway
    stop_gateway(gateway)


def test_without_redis_rate_limits_fail_open_and_budgets_fail_closed(gateway_without_redis, route):
    priced_route(route, words=2)
    _, limited = tenant_key(rate_limit_per_minute=1)
    _, budgeted = tenant_key(daily_budget_usd=Decimal("5"))
    url = f"{gateway_without_redis.url}/v1/chat/completions"

    def post(key: str) -> httpx.Response:
        # The gateway reads its keys from the database at start-up only while Redis is away: retry until it has.
        deadline = time.monotonic() + 40
        while True:
            response = httpx.post(url, json=ask(5), headers={"Authorization": f"Bearer {key}"}, timeout=30)
            if response.status_code != 401 or time.monotonic() > deadline:
                return response
            time.sleep(0.5)

    assert [post(limited).status_code for _ in range(3)] == [200, 200, 200]
    refused = post(budgeted)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "budget_unavailable"
