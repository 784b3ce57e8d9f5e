"""The finance report in headless Chromium: it renders with data, a date filter changes it, Chart.js draws the
charts from the vendored file, the CSV export agrees with the page, and a statement prints without the admin."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from ledger import rollups
from ledger.models import LedgerEntry
from tenants.models import Tenant
from tests.factories import TenantFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("orm_beside_playwright")]

REPORT = "/admin/ledger/dailyusage/report/"
# Set to a folder to keep screenshots of the pages for a look by eye.
SCREENSHOTS = os.environ.get("GREENGATE_SCREENSHOTS", "")
DAYS = [dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)]


def seed() -> None:
    """Per day d (0, 1, 2): acme makes d+1 gpt-a requests of 10 J and 0.5 USD; globex one llama request of 4 J."""
    acme, globex = TenantFactory(slug="acme"), TenantFactory(slug="globex")
    rows = []
    for n, day in enumerate(DAYS):
        at = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
        for tenant, model, joules, cost, count in [
            (acme, "gpt-a", 10.0, "0.5", n + 1),
            (globex, "llama", 4.0, "0.25", 1),
        ]:
            rows += [
                LedgerEntry(
                    id=uuid.uuid4(),
                    request_id=uuid.uuid4().hex,
                    created_at=at,
                    tenant=tenant,
                    provider="openai-eu",
                    model=model,
                    status_code=200,
                    latency_ms=10,
                    prompt_tokens=50,
                    completion_tokens=20,
                    energy_joules=joules,
                    energy_joules_min=joules / 2,
                    energy_joules_max=joules * 2,
                    co2e_grams=joules / 10,
                    co2e_grams_min=joules / 20,
                    co2e_grams_max=joules / 5,
                    cost_usd=Decimal(cost),
                )
                for _ in range(count)
            ]
    LedgerEntry.objects.bulk_create(rows)
    rollups.refresh(full=True)


def total(page: Page, name: str) -> str:
    return page.locator(f'#gg-total-values [data-total="{name}"]').text_content() or ""


def test_the_report_renders_filters_and_draws_its_charts(admin_page: Page, gateway):
    seed()
    admin_page.goto(f"{gateway.url}/admin/")
    admin_page.click("text=Finance report")
    admin_page.fill("#id_since", "2026-03-01")
    admin_page.fill("#id_until", "2026-03-03")
    admin_page.click("#gg-apply")

    expect(admin_page.locator("#gg-totals [data-field=requests]")).to_have_text("9")
    assert total(admin_page, "energy_joules") == "72.0"
    expect(admin_page.locator('#gg-by-tenant tr[data-key="acme"] [data-field=requests]')).to_have_text("6")

    # Chart.js, from GreenGate's own static files, made a chart per canvas with the page's figures.
    admin_page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('gg-chart-breakdown'))")
    energy = admin_page.evaluate(
        """() => {
            const chart = Chart.getChart(document.getElementById('gg-chart-energy'));
            return {labels: chart.data.labels, values: chart.data.datasets.at(-1).data,
                    high: chart.data.datasets[0].data, drawn: chart.canvas.width > 0};
        }"""
    )
    assert energy == {
        "labels": ["2026-03-01", "2026-03-02", "2026-03-03"],
        "values": [14.0, 24.0, 34.0],
        "high": [28.0, 48.0, 68.0],
        "drawn": True,
    }
    for canvas in ["gg-chart-co2e", "gg-chart-cost"]:
        assert admin_page.evaluate(f"() => Chart.getChart(document.getElementById('{canvas}')).data.labels.length") == 3
    breakdown = admin_page.evaluate(
        "() => { const c = Chart.getChart(document.getElementById('gg-chart-breakdown'));"
        " return [c.data.labels, c.data.datasets.map((d) => d.data)]; }"
    )
    # gpt-a: 60 of 72 J, 3 of 3.75 USD.
    assert breakdown[0] == ["gpt-a", "llama"]
    assert breakdown[1][0] == [pytest.approx(83.33), pytest.approx(16.67)]
    assert breakdown[1][2] == [80.0, 20.0]

    if SCREENSHOTS:
        admin_page.screenshot(path=f"{SCREENSHOTS}/report.png", full_page=True)

    # One day only: the figures change.
    admin_page.fill("#id_since", "2026-03-02")
    admin_page.fill("#id_until", "2026-03-02")
    admin_page.click("#gg-apply")
    expect(admin_page.locator("#gg-totals [data-field=requests]")).to_have_text("3")
    assert total(admin_page, "cost_usd").startswith("1.25")
    admin_page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('gg-chart-energy'))")
    assert admin_page.evaluate("() => Chart.getChart(document.getElementById('gg-chart-energy')).data.labels") == [
        "2026-03-02"
    ]


def test_the_csv_downloaded_from_the_page_has_the_page_totals(admin_page: Page, gateway, tmp_path: Path):
    seed()
    admin_page.goto(f"{gateway.url}{REPORT}?since=2026-03-01&until=2026-03-03")
    shown = {name: total(admin_page, name) for name in ["requests", "energy_joules", "co2e_grams", "cost_usd"]}
    with admin_page.expect_download() as download:
        admin_page.click("#gg-export")
    path = tmp_path / "report.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows[-1]["row"] == "total"
    assert {name: rows[-1][name] for name in shown} == shown
    assert Decimal(shown["cost_usd"]) == Decimal("3.75")


def test_a_bad_date_is_a_form_error_on_the_page(admin_page: Page, gateway):
    admin_page.goto(f"{gateway.url}{REPORT}?since=2026-03-09&until=2026-03-01")
    expect(admin_page.locator("#gg-form-errors")).to_contain_text("before the since date")


def test_the_statement_prints_without_the_admin_around_it(admin_page: Page, gateway):
    seed()
    tenant = Tenant.objects.get(slug="acme")
    admin_page.goto(f"{gateway.url}/admin/ledger/dailyusage/statement/?tenant={tenant.pk}&month=2026-03")
    expect(admin_page.locator("#gg-statement-summary [data-field=requests]")).to_contain_text("6")
    expect(admin_page.locator("#header")).to_be_visible()
    admin_page.emulate_media(media="print")
    expect(admin_page.locator("#header")).to_be_hidden()
    expect(admin_page.locator("#gg-statement-filters")).to_be_hidden()
    expect(admin_page.locator("#gg-by-day")).to_be_visible()
    if SCREENSHOTS:
        admin_page.screenshot(path=f"{SCREENSHOTS}/statement-print.png", full_page=True)


def test_the_vendored_chart_js_is_served_by_the_gateway(gateway):
    response = httpx.get(f"{gateway.url}/static/ledger/vendor/chartjs/chart.umd.min.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert response.text.startswith("/*!\n * Chart.js v4.")
