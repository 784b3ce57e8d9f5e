"""Admin pages in headless Chromium: a new key is shown once and works at once; secrets stay hidden."""

from __future__ import annotations

import re

import httpx
import pytest
from django.db import connection
from playwright.sync_api import Page, expect

from providers.models import Provider
from tests.factories import TenantFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("orm_beside_playwright")]


def test_admin_creates_a_key_shows_it_once_and_it_works_at_once(admin_page: Page, gateway, route):
    route("gpt-test")
    tenant = TenantFactory(slug="acme")
    admin_page.goto(f"{gateway.url}/admin/tenants/apikey/add/")
    admin_page.select_option("#id_tenant", str(tenant.pk))
    admin_page.fill("#id_name", "mobile app")
    admin_page.click("input[name=_save]")

    secret = admin_page.input_value("#new-api-key")
    assert re.fullmatch(r"gg-[A-Za-z0-9_-]{40,}", secret)
    assert "cannot show it again" in admin_page.content()

    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 200

    admin_page.click("text=Done")
    assert secret not in admin_page.content()
    assert secret[:10] in admin_page.content()
    admin_page.goto(f"{gateway.url}/admin/tenants/apikey/")
    assert secret not in admin_page.content()


def test_admin_revokes_a_key_with_an_action(admin_page: Page, gateway, route, api_key):
    route("gpt-test")
    admin_page.goto(f"{gateway.url}/admin/tenants/apikey/")
    admin_page.check("input[name=_selected_action]")
    admin_page.select_option("select[name=action]", "revoke")
    admin_page.click("button[name=index]")
    expect(admin_page.locator("ul.messagelist")).to_contain_text("Revoked 1 key")
    expect(admin_page.locator("#result_list")).to_contain_text("revoked")


def test_a_provider_key_entered_in_admin_is_stored_encrypted_and_never_shown(admin_page: Page, gateway):
    admin_page.goto(f"{gateway.url}/admin/providers/provider/add/")
    admin_page.fill("#id_name", "openai-prod")
    admin_page.select_option("#id_kind", "openai")
    admin_page.fill("#id_base_url", "https://api.openai.com/v1")
    admin_page.fill("#id_api_key", "sk-live-very-secret-value")
    admin_page.click("input[name=_continue]")

    assert admin_page.get_attribute("#id_api_key", "type") == "password"
    assert "sk-live-very-secret-value" not in admin_page.content()
    provider = Provider.objects.get(name="openai-prod")
    assert provider.api_key == "sk-live-very-secret-value"
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM providers_provider WHERE name = %s", ["openai-prod"])
        (stored,) = cursor.fetchone()
    assert "sk-live" not in stored

    # Saving again with the field left blank keeps the stored key.
    admin_page.fill("#id_base_url", "https://api.openai.com/v2")
    admin_page.click("input[name=_continue]")
    provider.refresh_from_db()
    assert (provider.api_key, provider.base_url) == ("sk-live-very-secret-value", "https://api.openai.com/v2")


def test_the_ledger_is_read_only_in_admin(admin_page: Page, gateway, api_key, route, ledger_row):
    route("gpt-test")
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    request_id = response.headers["x-request-id"]
    ledger_row(request_id)
    admin_page.goto(f"{gateway.url}/admin/ledger/ledgerentry/")
    assert request_id in admin_page.content()
    assert admin_page.locator(".object-tools a.addlink").count() == 0
