"""The audit trail: keys, configuration, breakers and denials, each with its actor, time and what changed."""

from __future__ import annotations

import asyncio
import getpass
import math
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import httpx
import pytest
from django.conf import settings
from django.db import connection, connections, transaction

from greengate_site.redis import RedisClients
from ledger import audit
from ledger.audit import values
from ledger.audit.denials import DenialCounter
from ledger.models import AuditAction, AuditEvent
from providers import breaker
from tenants.models import ApiKey, Plan, Tenant
from tenants.services import api_key_create, api_key_revoke
from tests.conftest import ROOT, start_gateway, stop_gateway
from tests.factories import DeploymentFactory, PlanFactory, ProviderFactory, TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)
T = TypeVar("T")


def events(action: AuditAction | None = None, **filters: object) -> list[AuditEvent]:
    queryset = AuditEvent.objects.filter(**filters)
    return list(queryset.filter(action=action) if action else queryset)


def eventually(find: Callable[[], list[AuditEvent]], count: int = 1, *, within: float = 20.0) -> list[AuditEvent]:
    """Events written off the request path appear shortly after; poll with a generous bound."""
    deadline = time.monotonic() + within
    while True:
        found = find()
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} event(s) after {within} s, wanted {count}"
        time.sleep(0.05)


async def orm(call: Callable[[], T]) -> T:
    """Sync ORM code from an async test, on a thread that closes its connection after (the test database must
    have no session left at the end of the run)."""

    def closing() -> T:
        try:
            return call()
        finally:
            connections.close_all()

    return await asyncio.to_thread(closing)


def table_holds(text: str) -> bool:
    """Whether any column of any audit event contains `text` (the whole row cast to text)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_auditevent e WHERE e::text LIKE %s", [f"%{text}%"])
        return cursor.fetchone()[0] > 0


# --- Values ---------------------------------------------------------------------------------------------------


def test_values_are_json_safe_and_a_foreign_key_keeps_its_id_and_text():
    tenant = TenantFactory(slug="acme", daily_budget_usd=Decimal("12.5"))
    tenant.refresh_from_db()
    snap = values.snapshot(tenant)
    assert snap["daily_budget_usd"] == "12.5000"
    assert snap["plan"] == {"id": tenant.plan_id, "str": tenant.plan.name}
    assert snap["created_at"] == tenant.created_at.isoformat()
    assert values.json_safe(math.nan) == "nan" and values.json_safe({1: (2, {3})}) == {"1": [2, [3]]}


def test_a_secret_reads_set_or_changed_and_never_its_value():
    provider = ProviderFactory(api_key="sk-first-secret")
    before = values.snapshot(provider)
    provider.api_key = "sk-second-secret"
    assert values.diff(before, values.snapshot(provider)) == {"api_key": ["(set)", "(changed)"]}
    provider.api_key = ""
    assert values.diff(before, values.snapshot(provider)) == {"api_key": ["(set)", ""]}
    assert values.created(before)["api_key"] == [None, "(set)"]


# --- Keys and tenants, from services and the command line -----------------------------------------------------


def test_services_record_a_key_created_and_revoked_by_their_actor_once():
    key, secret = api_key_create(tenant=TenantFactory(slug="acme"), name="ci", actor="alice")
    api_key_revoke(key=key, actor="bob")
    api_key_revoke(key=key, actor="bob")  # already revoked: nothing changes, nothing is recorded

    (created,) = events(AuditAction.KEY_CREATED, target_id=str(key.pk))
    (revoked,) = events(AuditAction.KEY_REVOKED, target_id=str(key.pk))
    assert (created.actor, created.tenant, created.target_type) == ("alice", "acme", "tenants.apikey")
    assert created.changes["prefix"] == key.prefix and created.changes["name"] == "ci"
    assert revoked.actor == "bob" and revoked.changes["revoked_at"][0] is None
    assert not table_holds(secret) and not table_holds(key.key_hash)


def test_an_event_rolls_back_with_the_change_it_records():
    tenant = TenantFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        api_key_create(tenant=tenant, name="doomed", actor="alice")
        raise RuntimeError("the surrounding transaction fails")
    assert not ApiKey.objects.exists() and not AuditEvent.objects.exists()


def test_a_rotation_is_recorded_on_the_old_key_naming_its_successor():
    tenant = TenantFactory(slug="acme")
    old, _ = api_key_create(tenant=tenant, name="billing")
    new, _ = api_key_create(tenant=tenant, name="billing")
    grace_ends = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with transaction.atomic():  # as a rotation service will call it, beside its own writes
        audit.key_rotated(old, new, actor="alice", old_valid_until=grace_ends)

    (rotated,) = events(AuditAction.KEY_ROTATED)
    assert (rotated.actor, rotated.target_id, rotated.tenant) == ("alice", str(old.pk), "acme")
    assert rotated.changes["replaced_by"] == {"id": new.pk, "prefix": new.prefix, "name": "billing"}
    assert rotated.changes["old_valid_until"] == "2030-01-02T03:04:05+00:00"


def manage(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GREENGATE_TEST_DATABASE": connection.settings_dict["NAME"]}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )


def test_the_command_line_records_a_tenant_and_a_key_as_its_os_user():
    PlanFactory(name="default")
    assert manage("create_tenant", "acme").returncode == 0
    made = manage("create_key", "acme", "--name", "deploy")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()

    actor = f"cli:{getpass.getuser()}"
    tenant = Tenant.objects.get(slug="acme")
    (tenant_created,) = events(AuditAction.CONFIG_CREATED, target_type="tenants.tenant")
    assert (tenant_created.actor, tenant_created.target_id, tenant_created.tenant) == (actor, str(tenant.pk), "acme")
    assert tenant_created.changes["slug"] == [None, "acme"]
    (key_created,) = events(AuditAction.KEY_CREATED)
    assert (key_created.actor, key_created.tenant, key_created.changes["name"]) == (actor, "acme", "deploy")
    assert not table_holds(secret)


# --- Breakers -------------------------------------------------------------------------------------------------


def chat(gateway, key: str, model: str = "gpt-test") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_breaker_opened_by_failures_and_closed_by_recovery_is_recorded_once_each_across_two_instances(
    gateway, api_key, route, upstream
):
    deployment = route("gpt-test", status=500)
    provider = deployment.provider
    provider.breaker_failures, provider.breaker_open_seconds, provider.breaker_probes = 2, 1, 1
    provider.save()
    second = start_gateway(log_name="audit-second")
    try:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                replies = await asyncio.gather(
                    *[
                        client.post(
                            f"{g.url}/v1/chat/completions",
                            json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
                            headers={"Authorization": f"Bearer {api_key}"},
                        )
                        for g in (gateway, second) * 4
                    ]
                )
            return [r.status_code for r in replies]

        # Failures through both instances at once: the breaker opens once, and one of them records it.
        assert set(asyncio.run(burst())) <= {502, 503}
        (opened,) = eventually(lambda: events(AuditAction.BREAKER_OPENED, target_id=str(deployment.pk)))
        assert opened.actor == "gateway" and opened.target_type == "providers.deployment"
        assert opened.changes["provider"] == provider.name and opened.changes["model"] == "gpt-test"
        assert opened.changes["state"] == ["closed", "open"]
        assert opened.changes["consecutive_failures"] >= 2 and opened.changes["last_error"]

        # Recovery: the provider is healthy again. A sentinel route saved after it tells when the instances see it.
        provider.base_url = upstream.base_url()
        provider.save()
        route("gpt-sentinel")
        for instance in (gateway, second):
            eventually_ok(lambda instance=instance: chat(instance, api_key, "gpt-sentinel"))
        eventually_ok(lambda: chat(gateway, api_key))  # the first call after the open time is the probe
        (closed,) = eventually(lambda: events(AuditAction.BREAKER_CLOSED, target_id=str(deployment.pk)))
        assert closed.actor == "gateway" and closed.changes["state"] == ["half-open", "closed"]
        assert closed.changes["open_for_seconds"] >= 1

        assert chat(second, api_key).status_code == 200
        for _ in range(10):  # anything written late would land now
            assert len(events(target_id=str(deployment.pk))) == 2
            time.sleep(0.05)
    finally:
        stop_gateway(second)


def eventually_ok(call: Callable[[], httpx.Response], within: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = call()
        if response.status_code == 200:
            return response
        assert response.status_code in (404, 502, 503), response.text
        assert time.monotonic() < deadline, f"still {response.status_code} after {within} s"
        time.sleep(0.1)


async def test_a_transition_is_written_off_the_request_path():
    deployment = await orm(DeploymentFactory)
    policy = breaker.policy_for(failures=1, open_seconds=60)
    outcome = await breaker.record(deployment.pk, policy, ok=False, latency_ms=5, error="upstream_timeout")
    assert outcome == "opened"  # returned at once; the event follows from a task of its own
    await audit.drain()
    opened = await orm(lambda: AuditEvent.objects.get(action=AuditAction.BREAKER_OPENED, target_id=str(deployment.pk)))
    assert opened.changes["last_error"] == "upstream_timeout" and opened.target == str(deployment)
    await asyncio.to_thread(breaker.reset, deployment.pk)


# --- Denials --------------------------------------------------------------------------------------------------


@pytest.fixture
async def shared() -> AsyncIterator[RedisClients]:
    clients = RedisClients(settings.REDIS_URL, prefix=f"{settings.REDIS_KEY_PREFIX}{secrets.token_hex(4)}:")
    yield clients
    clients.delete_prefixed_keys()
    await clients.aclose()
    clients.close()


def deny(counter: DenialCounter, times: int, *, limit: str = "requests_per_minute", key_id: int = 7) -> None:
    action = AuditAction.BUDGET_DENIED if "budget" in limit else AuditAction.RATE_LIMITED
    for n in range(times):
        counter.record(
            action=action, limit=limit, key_id=key_id, key_prefix="gg-abcdefg", tenant="acme", request_id=f"req-{n}"
        )


async def at_window_start(window: float) -> None:
    """Start just after a window begins, so that a test's denials all fall in one window."""
    await asyncio.sleep(window - time.time() % window + 0.02)


async def wait_for_denials(count: int, within: float = 20.0) -> list[AuditEvent]:
    deadline = time.monotonic() + within
    while True:
        found = await orm(lambda: list(AuditEvent.objects.filter(action__in=DENIAL_ACTIONS).order_by("id")))
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} denial event(s) after {within} s, wanted {count}"
        await asyncio.sleep(0.05)


DENIAL_ACTIONS = [AuditAction.RATE_LIMITED, AuditAction.BUDGET_DENIED]


async def test_a_flood_of_denials_on_two_instances_is_one_event_per_key_and_limit_with_the_fleet_count(shared):
    first = DenialCounter(window_seconds=1.0, grace_seconds=0.5, redis=shared)
    second = DenialCounter(window_seconds=1.0, grace_seconds=0.5, redis=shared)  # another instance's counter
    await at_window_start(1.0)
    deny(first, 300)
    deny(second, 200)
    deny(first, 5, limit="daily_budget")

    await wait_for_denials(2)
    await asyncio.sleep(0.3)  # nothing more may follow
    written = {e.action: e for e in await wait_for_denials(2)}
    quota, budget = written[AuditAction.RATE_LIMITED], written[AuditAction.BUDGET_DENIED]
    assert await orm(AuditEvent.objects.filter(action__in=DENIAL_ACTIONS).count) == 2
    assert (quota.action, quota.actor, quota.tenant) == (AuditAction.RATE_LIMITED, "gateway", "acme")
    assert (quota.target_type, quota.target_id, quota.target) == ("tenants.apikey", "7", "gg-abcdefg…")
    assert quota.changes["count"] == 500 and quota.changes["instances"] == 2
    assert quota.changes["limit"] == "requests_per_minute" and quota.changes["window_seconds"] == 1.0
    assert quota.request_id == "req-0"
    assert (budget.action, budget.changes["count"], budget.changes["limit"]) == (
        AuditAction.BUDGET_DENIED,
        5,
        "daily_budget",
    )


async def test_each_window_of_denials_gets_its_own_event(shared):
    counter = DenialCounter(window_seconds=0.5, grace_seconds=0.1, redis=shared)
    await at_window_start(0.5)
    deny(counter, 3)
    await asyncio.sleep(0.6)
    deny(counter, 4)
    first, second = sorted(await wait_for_denials(2), key=lambda e: e.changes["window_start"])
    assert (first.changes["count"], second.changes["count"]) == (3, 4)


async def test_shutdown_writes_open_denial_counts_at_once(shared):
    counter = DenialCounter(window_seconds=3600, redis=shared)
    deny(counter, 3, key_id=9)
    await counter.flush()
    await audit.drain()
    (event,) = await wait_for_denials(1)
    assert (event.target_id, event.changes["count"]) == ("9", 3)


async def test_without_redis_an_instance_still_records_its_own_count():
    dead = RedisClients("redis://127.0.0.1:1/0", prefix="greengate-test-dead:")
    counter = DenialCounter(window_seconds=0.5, grace_seconds=0.1, redis=dead)
    await at_window_start(0.5)
    deny(counter, 4)
    (event,) = await wait_for_denials(1)
    assert (event.changes["count"], event.changes["instances"]) == (4, 1)


async def test_only_quota_and_budget_denials_are_counted():
    with pytest.raises(ValueError):
        DenialCounter().record(action=AuditAction.KEY_CREATED, limit="x", key_id=1, key_prefix="gg-", tenant="t")


# --- Configuration changes --------------------------------------------------------------------


def test_a_changed_plan_records_only_the_fields_that_changed_with_exact_decimals():
    plan = PlanFactory(name="gold", daily_budget_usd=None)
    before = values.snapshot(Plan.objects.get(pk=plan.pk))
    plan.daily_budget_usd = Decimal("10.25")
    plan.save()
    event = audit.config_changed(plan, before=before, actor="alice")
    assert event is not None and event.changes == {"daily_budget_usd": [None, "10.2500"]}
    assert audit.config_changed(plan, before=values.snapshot(plan), actor="alice") is None


def test_an_event_is_timed_by_the_database():
    event = audit.record(action=AuditAction.CONFIG_CHANGED, actor="alice", target_text="x")
    event.refresh_from_db()
    assert abs(event.created_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_deleting_a_provider_in_admin_records_the_deployments_that_go_with_it(admin_client):
    deployment = DeploymentFactory(model_name="gpt-gone")
    provider = deployment.provider
    response = admin_client.post(f"/admin/providers/provider/{provider.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302

    deleted = {e.target_type: e for e in events(AuditAction.CONFIG_DELETED)}
    assert set(deleted) == {"providers.provider", "providers.deployment"}
    assert deleted["providers.provider"].target_id == str(provider.pk)
    assert deleted["providers.provider"].changes["api_key"] == ["(set)", None]
    assert deleted["providers.deployment"].changes["model_name"] == ["gpt-gone", None]
    assert {e.actor for e in deleted.values()} == {"admin"}
    assert not table_holds(provider.api_key)


def test_a_price_override_added_in_admin_is_recorded_with_exact_decimals(admin_client):
    response = admin_client.post(
        "/admin/ledger/priceoverride/add/",
        {"provider_kind": "openai", "model": "gpt-4o", "input_per_million": "2.5", "output_per_million": "10"},
    )
    assert response.status_code == 302, response.content
    (created,) = events(AuditAction.CONFIG_CREATED, target_type="ledger.priceoverride")
    assert created.changes["input_per_million"] == [None, "2.500000"]
    assert created.changes["provider"] == [None, None] and created.actor == "admin"
