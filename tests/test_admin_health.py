"""The provider health page in headless Chromium: it renders, shows an open breaker, updates itself, resets."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

from providers import breaker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("orm_beside_playwright")]


def record(*args, **kwargs) -> None:
    """Outside Playwright's event loop, which the sync API keeps on this thread."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, breaker.record(*args, **kwargs)).result()


def test_the_health_page_shows_breakers_updates_by_itself_and_resets(admin_page: Page, gateway, route):
    healthy = route("gpt-test")
    broken = route("gpt-broken")
    policy = breaker.policy_for(failures=2, open_seconds=120)
    for _ in range(2):
        record(broken.pk, policy, ok=False, latency_ms=40, error="upstream_timeout")

    admin_page.goto(f"{gateway.url}/admin/providers/provider/")
    admin_page.click("text=Health")
    row = admin_page.locator(f'tr[data-deployment="{broken.pk}"]')
    expect(row.locator('[data-field="state"]')).to_have_text("open")
    expect(row.locator('[data-field="last_error"]')).to_have_text("upstream_timeout")
    expect(admin_page.locator(f'tr[data-deployment="{healthy.pk}"] [data-field="state"]')).to_have_text("closed")

    # A call recorded behind the page's back shows up without a reload.
    url_before = admin_page.url
    record(healthy.pk, policy, ok=True, latency_ms=25)
    expect(admin_page.locator(f'tr[data-deployment="{healthy.pk}"] [data-field="calls"]')).to_have_text(
        "1", timeout=15_000
    )
    expect(admin_page.locator("#gg-events")).to_contain_text("opened", timeout=15_000)
    assert admin_page.url == url_before

    row.locator("input[type=submit]").click()
    expect(admin_page.locator(".messagelist")).to_contain_text("reset")
    expect(admin_page.locator(f'tr[data-deployment="{broken.pk}"] [data-field="state"]')).to_have_text("closed")
    assert breaker.health(broken.pk).state == "closed"


def test_the_health_page_is_for_staff_only(gateway):
    import httpx

    response = httpx.get(f"{gateway.url}/admin/providers/provider/health/data/", follow_redirects=False)
    assert response.status_code == 302 and "/admin/login/" in response.headers["location"]
    response = httpx.post(f"{gateway.url}/admin/providers/provider/health/1/reset/", follow_redirects=False)
    assert response.status_code in (302, 403)
