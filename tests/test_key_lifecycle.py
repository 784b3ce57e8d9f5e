"""Keys and tenants from the command line and in admin: create with limits, rotate with a grace period, revoke;
every change honoured on every instance within a second."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import Page, expect

from ledger.models import AuditAction, AuditEvent
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create
from tests.conftest import ROOT, RunningGateway, start_gateway, stop_gateway
from tests.factories import TenantFactory

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "GREENGATE_TEST_DATABASE": connection.settings_dict["NAME"],
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def status(gateway: RunningGateway, secret: str) -> int:
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=BODY, headers=headers, timeout=30).status_code


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.django_db(transaction=True)
def test_create_tenant_takes_its_limits_from_the_command_line():
    done = manage(
        "create_tenant",
        "acme",
        "--rpm",
        "120",
        "--tpm",
        "50000",
        "--daily-budget",
        "5",
        "--monthly-budget",
        "100.50",
        "--models",
        "gpt-4o-mini,claude-3-5-haiku",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "acme"
    tenant = Tenant.objects.get(slug="acme")
    assert (tenant.rate_limit_per_minute, tenant.tokens_per_minute) == (120, 50000)
    assert (tenant.daily_budget_usd, tenant.monthly_budget_usd) == (Decimal("5"), Decimal("100.50"))
    assert tenant.allowed_models == "gpt-4o-mini,claude-3-5-haiku"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "args",
    [
        ["--rpm", "0"],
        ["--rpm", "lots"],
        ["--tpm", "99999999999999"],
        ["--daily-budget", "abc"],
        ["--monthly-budget", "-3"],
        ["--daily-budget", "NaN"],
        ["--models", "gpt-4o, rm -rf /"],
    ],
)
def test_absurd_limits_are_refused_with_a_clear_message_and_nothing_is_created(args):
    done = manage("create_tenant", "absurd", *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and done.stderr.strip()
    assert not Tenant.objects.filter(slug="absurd").exists()


def test_create_key_prints_only_the_secret_and_honours_its_rpm_and_expiry(gateway, route):
    route("gpt-test")
    tenant = TenantFactory()
    done = manage("create_key", tenant.slug, "--name", "batch", "--rpm", "2", "--expires-in", "4")
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert secret.startswith("gg-") and "\n" not in secret
    key = ApiKey.objects.get(tenant=tenant)
    assert key.rate_limit_per_minute == 2 and key.expires_at is not None
    assert [status(gateway, secret) for _ in range(3)] == [200, 200, 429]
    assert eventually(lambda: status(gateway, secret) == 401), "the key outlived its expiry"


def test_a_rotated_key_works_during_its_grace_period_and_fails_after(gateway, route):
    route("gpt-test")
    key, old_secret = api_key_create(tenant=TenantFactory(), name="billing", rate_limit_per_minute=500)
    done = manage("rotate_key", key.prefix, "--grace", "3")
    assert done.returncode == 0, done.stderr
    new_secret = done.stdout.strip()
    assert new_secret.startswith("gg-") and new_secret != old_secret
    new = ApiKey.objects.get(rotated_to__isnull=True, tenant=key.tenant)
    assert (new.name, new.rate_limit_per_minute) == ("billing", 500)
    assert status(gateway, new_secret) == 200
    assert status(gateway, old_secret) == 200, "the old key works during its grace period"
    assert eventually(lambda: status(gateway, old_secret) == 401), "the old key outlived its grace period"
    assert status(gateway, new_secret) == 200
    event = AuditEvent.objects.get(action=AuditAction.KEY_ROTATED)
    assert event.actor.startswith("cli:")


def test_a_rotation_without_grace_stops_the_old_key_at_once_and_a_key_rotates_only_once(gateway, route):
    route("gpt-test")
    key, old_secret = api_key_create(tenant=TenantFactory(), name="ci")
    assert manage("rotate_key", key.prefix).returncode == 0
    assert eventually(lambda: status(gateway, old_secret) == 401, timeout=5)
    again = manage("rotate_key", key.prefix)
    assert again.returncode != 0 and "revoked" in again.stderr


def test_revoke_key_stops_it_within_a_second_and_unknown_or_short_prefixes_are_refused(gateway, route):
    route("gpt-test")
    key, secret = api_key_create(tenant=TenantFactory(), name="leaked")
    assert status(gateway, secret) == 200
    done = manage("revoke_key", key.prefix)
    assert done.returncode == 0, done.stderr
    revoked_at = time.monotonic()
    assert eventually(lambda: status(gateway, secret) == 401, timeout=5)
    assert time.monotonic() - revoked_at < 5
    assert "No key" in manage("revoke_key", "gg-zzzzzzz").stderr
    assert "at least" in manage("revoke_key", "gg").stderr


@pytest.fixture
def second_gateway(gateway_server) -> Iterator[RunningGateway]:
    second = start_gateway(log_name="lifecycle-second")
    yield second
    stop_gateway(second)


def test_a_change_saved_as_admin_saves_it_is_honoured_by_a_second_instance_within_a_second(
    gateway, second_gateway, route
):
    route("gpt-test")
    tenant = TenantFactory(rate_limit_per_minute=100)
    _, secret = api_key_create(tenant=tenant, name="shared")
    assert status(second_gateway, secret) == 200
    tenant.rate_limit_per_minute = 1
    tenant.save()  # what the admin's change form does; the config version moves on commit
    changed = time.monotonic()
    assert eventually(lambda: status(second_gateway, secret) == 429, timeout=10)
    assert time.monotonic() - changed < 2.0


# --- In admin, in Chromium ---------------------------------------------------------------------------------


@pytest.fixture
def own_gateway(transactional_db) -> Iterator[RunningGateway]:
    """A fresh process per test: admin saves log content types by ids the flush between tests renumbers."""
    fresh = start_gateway(log_name="lifecycle-admin")
    yield fresh
    stop_gateway(fresh)


@pytest.fixture
def admin_in(browser, own_gateway, orm_beside_playwright) -> Iterator[Page]:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "root@example.com", "correct-horse-battery")
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{own_gateway.url}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "correct-horse-battery")
    page.click("input[type=submit]")
    page.wait_for_url(f"{own_gateway.url}/admin/")
    yield page
    context.close()


@pytest.mark.django_db(transaction=True)
def test_keys_are_created_rotated_with_grace_and_revoked_in_admin(admin_in: Page, own_gateway, route):
    route("gpt-test")
    tenant = TenantFactory(slug="acme")
    page = admin_in
    page.goto(f"{own_gateway.url}/admin/tenants/apikey/add/")
    page.select_option("#id_tenant", str(tenant.pk))
    page.fill("#id_name", "mobile app")
    page.fill("#id_rate_limit_per_minute", "30")
    page.click("input[name=_save]")
    first_secret = page.input_value("#new-api-key")
    assert status(own_gateway, first_secret) == 200
    key = ApiKey.objects.get(tenant=tenant)
    assert key.rate_limit_per_minute == 30

    # Rotate with a grace period: the new secret is shown once; both keys work meanwhile.
    page.goto(f"{own_gateway.url}/admin/tenants/apikey/{key.pk}/change/")
    page.click("#rotate-key")
    page.fill("#id_grace_minutes", "5")
    page.click("#confirm-rotate")
    expect(page.locator("#rotation-note")).to_contain_text("keeps working until")
    second_secret = page.input_value("#new-api-key")
    assert second_secret != first_secret
    assert status(own_gateway, second_secret) == 200
    assert status(own_gateway, first_secret) == 200
    successor = ApiKey.objects.get(tenant=tenant, rotated_to__isnull=True)
    assert successor.rate_limit_per_minute == 30

    # Revoke the old one: it stops at once; the new one goes on.
    page.goto(f"{own_gateway.url}/admin/tenants/apikey/")
    page.check(f"input[name=_selected_action][value='{key.pk}']")
    page.select_option("select[name=action]", "revoke")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_contain_text("Revoked 1 key")
    assert eventually(lambda: status(own_gateway, first_secret) == 401, timeout=5)
    assert status(own_gateway, second_secret) == 200
    actions = set(AuditEvent.objects.filter(actor="root").values_list("action", flat=True))
    assert {AuditAction.KEY_CREATED, AuditAction.KEY_ROTATED, AuditAction.KEY_REVOKED} <= actions
