"""The audit trail as admins make it and read it, in headless Chromium: every change by its admin user, no secret."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

from ledger.models import AuditAction, AuditEvent
from providers import breaker
from providers.models import Deployment, Provider
from tenants.models import ApiKey
from tests.conftest import RunningGateway, start_gateway, stop_gateway
from tests.factories import DeploymentFactory, PlanFactory, TenantFactory
from tests.test_audit import eventually, table_holds

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("orm_beside_playwright")]


@pytest.fixture
def gateway(transactional_db) -> Iterator[RunningGateway]:
    """A GreenGate process of this test's own (admin_page uses it). Admin saves write django_admin_log rows naming
    content types by ids a process caches, and the database flush between tests recreates content types under new
    ids: a process shared across tests would write ids that no longer exist."""
    fresh = start_gateway(log_name="admin-audit")
    yield fresh
    stop_gateway(fresh)


def only(action: AuditAction, **filters: object) -> AuditEvent:
    (event,) = AuditEvent.objects.filter(action=action, **filters)
    return event


def test_a_key_created_and_revoked_in_admin_is_recorded_by_the_admin_user(admin_page: Page, gateway):
    tenant = TenantFactory(slug="acme")
    admin_page.goto(f"{gateway.url}/admin/tenants/apikey/add/")
    admin_page.select_option("#id_tenant", str(tenant.pk))
    admin_page.fill("#id_name", "mobile app")
    admin_page.click("input[name=_save]")
    secret = admin_page.input_value("#new-api-key")
    key = ApiKey.objects.get(tenant=tenant)

    created = only(AuditAction.KEY_CREATED, target_id=str(key.pk))
    assert (created.actor, created.tenant, created.changes["name"]) == ("root", "acme", "mobile app")
    assert not AuditEvent.objects.filter(action=AuditAction.CONFIG_CREATED).exists()  # one event, not two

    admin_page.goto(f"{gateway.url}/admin/tenants/apikey/")
    admin_page.check(f"input[name=_selected_action][value='{key.pk}']")
    admin_page.select_option("select[name=action]", "revoke")
    admin_page.click("button[name=index]")
    expect(admin_page.locator("ul.messagelist")).to_contain_text("Revoked 1 key")
    revoked = only(AuditAction.KEY_REVOKED, target_id=str(key.pk))
    assert (revoked.actor, revoked.tenant) == ("root", "acme")
    assert not table_holds(secret) and not table_holds(key.key_hash)


def test_a_provider_credential_set_and_changed_in_admin_is_recorded_without_the_secret(admin_page: Page, gateway):
    admin_page.goto(f"{gateway.url}/admin/providers/provider/add/")
    admin_page.fill("#id_name", "openai-prod")
    admin_page.select_option("#id_kind", "openai")
    admin_page.fill("#id_base_url", "https://api.openai.com/v1")
    admin_page.fill("#id_api_key", "sk-live-first-secret-value")
    admin_page.click("input[name=_continue]")
    expect(admin_page.locator("ul.messagelist")).to_contain_text("added successfully")
    provider = Provider.objects.get(name="openai-prod")

    admin_page.fill("#id_api_key", "sk-live-second-secret-value")
    admin_page.fill("#id_base_url", "https://api.openai.com/v2")
    admin_page.click("input[name=_continue]")
    expect(admin_page.locator("ul.messagelist")).to_contain_text("changed successfully")

    created = only(AuditAction.CONFIG_CREATED, target_type="providers.provider", target_id=str(provider.pk))
    assert created.actor == "root" and created.changes["api_key"] == [None, "(set)"]
    changed = only(AuditAction.CONFIG_CHANGED, target_type="providers.provider", target_id=str(provider.pk))
    assert changed.actor == "root"
    assert changed.changes == {
        "api_key": ["(set)", "(changed)"],
        "base_url": ["https://api.openai.com/v1", "https://api.openai.com/v2"],
    }
    for secret in ("sk-live-first-secret-value", "sk-live-second-secret-value", "sk-live"):
        assert not table_holds(secret)


def test_an_inline_deployment_edited_then_deleted_under_its_provider_is_recorded(admin_page: Page, gateway):
    deployment = DeploymentFactory(model_name="gpt-inline", priority=0)
    provider_url = f"{gateway.url}/admin/providers/provider/{deployment.provider_id}/change/"
    admin_page.goto(provider_url)
    admin_page.fill("#id_deployments-0-priority", "7")
    admin_page.click("input[name=_continue]")
    expect(admin_page.locator("ul.messagelist")).to_contain_text("changed successfully")

    changed = only(AuditAction.CONFIG_CHANGED, target_type="providers.deployment")
    assert (changed.actor, changed.target_id, changed.changes) == ("root", str(deployment.pk), {"priority": [0, 7]})
    assert not AuditEvent.objects.filter(target_type="providers.provider").exists()  # the provider itself as it was

    admin_page.check("#id_deployments-0-DELETE")
    admin_page.click("input[name=_continue]")
    expect(admin_page.locator("ul.messagelist")).to_contain_text("changed successfully")
    assert not Deployment.objects.exists()
    deleted = only(AuditAction.CONFIG_DELETED, target_type="providers.deployment")
    assert (deleted.target_id, deleted.target) == (str(deployment.pk), str(deployment))
    assert deleted.changes["priority"] == [7, None] and deleted.changes["model_name"] == ["gpt-inline", None]


def test_a_bulk_delete_in_admin_records_each_row(admin_page: Page, gateway):
    spare = [PlanFactory(name="spare-a"), PlanFactory(name="spare-b")]
    admin_page.goto(f"{gateway.url}/admin/tenants/plan/")
    for plan in spare:
        admin_page.check(f"input[name=_selected_action][value='{plan.pk}']")
    admin_page.select_option("select[name=action]", "delete_selected")
    admin_page.click("button[name=index]")
    admin_page.click("input[type=submit]")  # "Yes, I'm sure"
    expect(admin_page.locator("ul.messagelist")).to_contain_text("Successfully deleted 2")

    deleted = AuditEvent.objects.filter(action=AuditAction.CONFIG_DELETED, target_type="tenants.plan")
    assert sorted(deleted.values_list("target", "actor")) == [("spare-a", "root"), ("spare-b", "root")]


def record(*args, **kwargs) -> None:
    """Outside Playwright's event loop, which the sync API keeps on this thread."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, breaker.record(*args, **kwargs)).result()


def test_a_breaker_reset_in_admin_is_recorded_by_the_admin_user(admin_page: Page, gateway):
    deployment = DeploymentFactory(model_name="gpt-broken")
    record(deployment.pk, breaker.policy_for(failures=1, open_seconds=120), ok=False, latency_ms=5, error="boom")
    eventually(lambda: list(AuditEvent.objects.filter(action=AuditAction.BREAKER_OPENED, actor="gateway")))

    admin_page.goto(f"{gateway.url}/admin/providers/provider/health/")
    admin_page.locator(f'tr[data-deployment="{deployment.pk}"] input[type=submit]').click()
    expect(admin_page.locator(".messagelist")).to_contain_text("reset")
    reset = only(AuditAction.BREAKER_CLOSED, actor="root")
    assert reset.target_id == str(deployment.pk) and reset.target_type == "providers.deployment"
    assert reset.changes["state"] == ["open", "closed"] and reset.changes["reason"] == "reset in admin"


def test_the_audit_trail_is_read_only_in_admin_and_shows_changes_readably(admin_page: Page, gateway):
    DeploymentFactory(model_name="gpt-shown")
    deployment = Deployment.objects.get()
    admin_page.goto(f"{gateway.url}/admin/providers/deployment/{deployment.pk}/change/")
    admin_page.fill("#id_weight", "3")
    admin_page.click("input[name=_save]")
    event = only(AuditAction.CONFIG_CHANGED, target_id=str(deployment.pk))

    admin_page.goto(f"{gateway.url}/admin/ledger/auditevent/")
    expect(admin_page.locator("#result_list")).to_contain_text("gpt-shown")
    expect(admin_page.locator("#changelist-filter")).to_contain_text("By action")
    assert admin_page.locator(".object-tools a.addlink").count() == 0
    assert admin_page.locator("select[name=action]").count() == 0  # no bulk delete

    admin_page.goto(f"{gateway.url}/admin/ledger/auditevent/?q={deployment.pk}")
    expect(admin_page.locator("#result_list")).to_contain_text("gpt-shown")

    admin_page.goto(f"{gateway.url}/admin/ledger/auditevent/{event.pk}/change/")
    expect(admin_page.locator("table.gg-audit-changes")).to_contain_text("weight")
    expect(admin_page.locator("table.gg-audit-changes")).to_contain_text("1 → 3")
    assert admin_page.locator("input[name=_save]").count() == 0
    assert admin_page.goto(f"{gateway.url}/admin/ledger/auditevent/{event.pk}/delete/").status == 403
    assert admin_page.goto(f"{gateway.url}/admin/ledger/auditevent/add/").status == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
