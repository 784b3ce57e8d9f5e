"""Finance reports: the figures are the rollups' sums (and so the ledger's), filters narrow them, budgets and
unpriced requests are shown as they are, the CSV agrees with the page, and only ledger readers get in."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Sum
from django.test import AsyncRequestFactory, Client

from ledger import rollups
from ledger.models import CacheStatus, DailyUsage, LedgerEntry
from ledger.reports import queries, views
from ledger.reports.export import safe_text
from ledger.reports.queries import ReportFilter
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create
from tests.factories import PlanFactory, TenantFactory

pytestmark = pytest.mark.django_db

REPORT = "/admin/ledger/dailyusage/report/"
REPORT_CSV = "/admin/ledger/dailyusage/report.csv"
STATEMENT = "/admin/ledger/dailyusage/statement/"
STATEMENT_CSV = "/admin/ledger/dailyusage/statement.csv"
MARCH = dt.date(2026, 3, 1)


def entry(
    day: dt.date,
    *,
    tenant: Tenant | None = None,
    key: ApiKey | None = None,
    provider: str = "openai-eu",
    model: str = "gpt-a",
    cost: str | None = "0.010000000001",
    energy: float = 10.5,
    status: int = 200,
    cache: str = CacheStatus.MISS,
    hour: int = 12,
    **fields,
) -> LedgerEntry:
    return LedgerEntry.objects.create(
        id=uuid.uuid4(),
        request_id=uuid.uuid4().hex,
        created_at=dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC),
        tenant=tenant,
        api_key=key,
        provider=provider,
        model=model,
        status_code=status,
        cache_status=cache,
        latency_ms=20,
        prompt_tokens=fields.pop("prompt_tokens", 100),
        completion_tokens=fields.pop("completion_tokens", 40),
        cached_input_tokens=fields.pop("cached_input_tokens", 20),
        reasoning_tokens=fields.pop("reasoning_tokens", 5),
        energy_joules=energy,
        energy_joules_min=energy / 2,
        energy_joules_max=energy * 2,
        co2e_grams=energy / 100,
        co2e_grams_min=energy / 200,
        co2e_grams_max=energy / 50,
        cost_usd=None if cost is None else Decimal(cost),
        **fields,
    )


@pytest.fixture
def traffic() -> dict[str, object]:
    """Two tenants, three days of March, two providers and models, an error, a cache hit and an unpriced row."""
    acme, globex = TenantFactory(slug="acme"), TenantFactory(slug="globex")
    acme_key, _ = api_key_create(tenant=acme, name="billing")
    globex_key, _ = api_key_create(tenant=globex, name="search")
    for n in range(3):
        day = MARCH + dt.timedelta(days=n)
        entry(day, tenant=acme, key=acme_key, cost="0.25", energy=100.0 + n)
        entry(day, tenant=acme, key=acme_key, model="gpt-b", provider="azure-se", cost="0.125", hour=0)
        entry(day, tenant=globex, key=globex_key, cost="1.000000000003", energy=7.25, hour=23)
    entry(MARCH, tenant=globex, key=globex_key, status=502, cost="0", energy=0.0, completion_tokens=0)
    entry(
        MARCH,
        tenant=acme,
        key=acme_key,
        cache=CacheStatus.HIT,
        cost="0",
        energy=0.0,
        energy_saved_joules=50.0,
        co2e_saved_grams=0.5,
        cost_saved_usd=Decimal("0.3"),
    )
    entry(MARCH + dt.timedelta(days=1), tenant=globex, key=globex_key, model="mystery-1", cost=None, energy=3.0)
    entry(MARCH + dt.timedelta(days=40), tenant=acme, key=acme_key, cost="9")  # outside the period asked for
    assert rollups.refresh(full=True) > 0
    return {"acme": acme, "globex": globex, "acme_key": acme_key}


def march(**kwargs) -> ReportFilter:
    return ReportFilter(since=MARCH, until=MARCH + dt.timedelta(days=2), **kwargs)


def staff(client: Client, *permissions: str) -> Client:
    user = get_user_model().objects.create_user("finance", password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


def total_values(html: str) -> dict[str, str]:
    return dict(re.findall(r'<dd data-total="([a-z0-9_]+)">([^<]*)</dd>', html))


def csv_rows(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


# --- the queries -----------------------------------------------------------------------------------------------


def test_totals_equal_the_sums_of_the_rollups_and_of_the_raw_ledger(traffic):
    totals = queries.totals(march())
    start = dt.datetime.combine(MARCH, dt.time.min, tzinfo=dt.UTC)
    raw = LedgerEntry.objects.filter(created_at__gte=start, created_at__lt=start + dt.timedelta(days=3))
    rolled = DailyUsage.objects.filter(day__gte=MARCH, day__lte=MARCH + dt.timedelta(days=2))

    assert totals.requests == raw.count() == rolled.aggregate(n=Sum("requests"))["n"] == 12
    assert totals.errors == 1 and totals.cache_hits == 1 and totals.unpriced_requests == 1
    assert totals.cost_usd == raw.aggregate(c=Sum("cost_usd"))["c"] == Decimal("4.125000000009")
    for column in ["prompt_tokens", "cached_input_tokens", "completion_tokens", "reasoning_tokens"]:
        assert getattr(totals, column) == raw.aggregate(s=Sum(column))["s"] == rolled.aggregate(s=Sum(column))["s"]
    for column in ["energy_joules", "energy_joules_min", "energy_joules_max", "co2e_grams", "energy_saved_joules"]:
        assert getattr(totals, column) == pytest.approx(raw.aggregate(s=Sum(column))["s"])
    assert totals.cost_saved_usd == Decimal("0.3")
    assert rollups.differences(MARCH, MARCH + dt.timedelta(days=41)) == []


def test_breakdowns_add_up_to_the_totals(traffic):
    report = queries.report(march())
    for lines in [report.by_day, report.by_tenant, report.by_model, report.by_provider]:
        assert sum(line.figures.requests for line in lines) == report.totals.requests
        assert sum((line.figures.cost_usd for line in lines), Decimal(0)) == report.totals.cost_usd
        assert sum(line.figures.energy_joules for line in lines) == pytest.approx(report.totals.energy_joules)
    assert [line.label for line in report.by_day] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert {line.label for line in report.by_provider} == {"openai-eu", "azure-se"}
    # globex's 3.000000000009 beats acme's 1.125.
    assert [line.label for line in report.top_tenants] == ["globex", "acme"]
    assert report.top_keys[0].detail == "globex" and report.top_keys[0].label.endswith("(search)")


def test_days_without_traffic_are_zeros_so_the_chart_keeps_its_axis(traffic):
    lines = queries.by_day(ReportFilter(since=MARCH, until=MARCH + dt.timedelta(days=9)))
    assert len(lines) == 10 and lines[-1].figures == queries.Figures()


def test_filters_narrow_by_date_tenant_provider_and_model(traffic):
    one_day = queries.totals(ReportFilter(since=MARCH, until=MARCH))
    assert one_day.requests == 5
    assert queries.totals(march(tenant_id=traffic["acme"].pk)).requests == 7
    assert queries.totals(march(provider="azure-se")).requests == 3
    assert queries.totals(march(model="gpt-b")).cost_usd == Decimal("0.375")
    assert queries.totals(march(model="gpt-b", provider="openai-eu")).requests == 0
    assert queries.totals(ReportFilter(since=MARCH, until=MARCH + dt.timedelta(days=40))).requests == 13


def test_the_report_is_a_fixed_number_of_queries_whatever_the_rows(traffic, django_assert_max_num_queries):
    for n in range(20):
        entry(MARCH, tenant=TenantFactory(), model=f"model-{n}")
    rollups.refresh(full=True)
    # totals, days, tenants (+ names), models, providers, keys (+ names), budget tenants and spend, watermark.
    with django_assert_max_num_queries(11):
        report = queries.report(march())
    assert len(report.by_tenant) == 22


def test_unpriced_requests_are_counted_and_their_cost_is_unknown_not_zero(traffic):
    mystery = queries.totals(march(model="mystery-1"))
    assert mystery.unpriced_requests == 1 and mystery.cost_state == "unknown"
    assert queries.totals(march()).cost_state == "partial"
    assert queries.totals(march(model="gpt-b")).cost_state == "known"


def test_budget_against_spend_this_month_and_today(db):
    today = dt.date(2026, 5, 20)
    plan = PlanFactory(name="metered", monthly_budget_usd=Decimal("10"), daily_budget_usd=None)
    capped = TenantFactory(slug="capped", plan=plan, daily_budget_usd=Decimal("1"))
    free = TenantFactory(slug="free", plan=PlanFactory(name="open"))
    entry(today, tenant=capped, cost="1.5")
    entry(today - dt.timedelta(days=3), tenant=capped, cost="2")
    entry(dt.date(2026, 4, 30), tenant=capped, cost="100")  # last month: not this month's spend
    entry(today, tenant=free, cost=None)
    rollups.refresh(full=True)

    budgets = {b.tenant: b for b in queries.budgets(today=today)}
    assert budgets["capped"].monthly_budget_usd == Decimal("10") and budgets["capped"].month_spend_usd == Decimal("3.5")
    assert budgets["capped"].monthly_share == pytest.approx(35.0)
    assert budgets["capped"].daily_budget_usd == Decimal("1") and budgets["capped"].today_spend_usd == Decimal("1.5")
    assert budgets["capped"].daily_share == pytest.approx(150.0)
    assert budgets["free"].monthly_budget_usd is None and budgets["free"].monthly_share is None
    assert budgets["free"].month_unpriced_requests == 1
    assert [b.tenant for b in queries.budgets(capped.pk, today=today)] == ["capped"]


def test_a_statement_is_one_tenant_month_by_day_and_model(traffic):
    statement = queries.statement(traffic["acme"], dt.date(2026, 3, 17), today=dt.date(2026, 6, 1))
    assert (statement.first_day, statement.last_day) == (MARCH, dt.date(2026, 3, 31))
    assert len(statement.by_day) == 31
    assert statement.totals.requests == 7 and statement.totals.cost_usd == Decimal("1.125")
    assert {line.label for line in statement.by_model} == {"gpt-a", "gpt-b"}
    # The current month stops at today.
    current = queries.statement(traffic["acme"], dt.date(2026, 3, 1), today=dt.date(2026, 3, 2))
    assert current.last_day == dt.date(2026, 3, 2)


def test_formula_starts_are_neutralised_and_other_text_is_left_alone():
    assert [safe_text(t) for t in ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "gpt-4o", ""]] == [
        "'=1+1",
        "'+cmd",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "gpt-4o",
        "",
    ]


# --- the pages and CSVs ---------------------------------------------------------------------------------------


def test_the_csv_totals_row_equals_the_page_totals(admin_client, traffic):
    query = {"since": "2026-03-01", "until": "2026-03-03"}
    page = admin_client.get(REPORT, query)
    assert page.status_code == 200
    shown = total_values(page.content.decode())
    rows = csv_rows(admin_client.get(REPORT_CSV, query))
    total = rows[-1]
    assert total["row"] == "total" and total["day"] == "2026-03-01..2026-03-03"
    for column in ["requests", "errors", "unpriced_requests", "cost_usd", "energy_joules", "co2e_grams_max"]:
        assert total[column] == shown[column], column
    assert shown["cost_usd"] == "4.125000000009" and total["cost_state"] == "partial"
    # The detail rows add up to the total row.
    details = [row for row in rows if row["row"] == "detail"]
    assert sum(int(row["requests"]) for row in details) == int(total["requests"])
    assert sum(Decimal(row["cost_usd"] or 0) for row in details) == Decimal(total["cost_usd"])


def test_the_page_flags_unpriced_requests_and_the_csv_leaves_their_cost_blank(admin_client, traffic):
    query = {"since": "2026-03-01", "until": "2026-03-03", "model": "mystery-1"}
    html = admin_client.get(REPORT, query).content.decode()
    assert 'data-cost-state="unknown"' in html and "had no known price" in html
    total = csv_rows(admin_client.get(REPORT_CSV, query))[-1]
    assert total["cost_usd"] == "" and total["cost_state"] == "unknown" and total["unpriced_requests"] == "1"


def test_the_page_shows_every_section(admin_client, traffic):
    html = admin_client.get(REPORT, {"since": "2026-03-01", "until": "2026-03-03"}).content.decode()
    for section in ["gg-totals", "gg-savings", "gg-budgets", "gg-top-tenants", "gg-top-keys", "gg-by-tenant"]:
        assert f'id="{section}"' in html
    assert 'id="gg-report-data"' in html and "chart.umd.min.js" in html
    assert "ecologits counts output tokens only" in html
    assert "no budget" in html  # the factories' plan has none


def test_the_default_period_is_this_month_so_far(admin_client, db):
    today = queries.utc_today()
    html = admin_client.get(REPORT).content.decode()
    assert f'<strong id="gg-since">{today.replace(day=1)}</strong>' in html
    assert f'<strong id="gg-until">{today}</strong>' in html


def test_tenant_and_model_names_cannot_become_formulas_in_the_csv(admin_client, db):
    tenant = TenantFactory(slug="-evil", name='=HYPERLINK("http://x","y")')
    entry(MARCH, tenant=tenant, model="+cmd|' /C calc'!A0", provider="@provider")
    rollups.refresh(full=True)
    rows = csv_rows(admin_client.get(REPORT_CSV, {"since": "2026-03-01", "until": "2026-03-01"}))
    detail = rows[0]
    assert detail["tenant"] == "'-evil"
    assert detail["tenant_name"].startswith("'=")
    assert detail["model"].startswith("'+") and detail["provider"] == "'@provider"
    # Numbers stay numbers.
    assert detail["requests"] == "1"


def test_under_asgi_the_csv_is_an_async_stream_read_in_batches(db):
    DailyUsage.objects.bulk_create(
        DailyUsage(day=MARCH, provider="p", model=f"m{n:04d}", requests=1, cost_usd=Decimal("0.01"))
        for n in range(views.BATCH_LINES + 10)
    )
    request = AsyncRequestFactory().get(REPORT_CSV, {"since": "2026-03-01", "until": "2026-03-01"})
    response = views.report_csv(request)
    # Django under ASGI would read a plain iterator to the end before sending a byte.
    assert response.is_async

    async def read() -> list[bytes]:
        return [chunk async for chunk in response.streaming_content]

    # From sync code, the batches run on this thread, with the test's own connection.
    chunks = async_to_sync(read)()
    assert len(chunks) == 2
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == views.BATCH_LINES + 11
    assert rows[-1]["requests"] == str(views.BATCH_LINES + 10) and Decimal(rows[-1]["cost_usd"]) == Decimal("5.1")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "yesterday"}, "Enter a valid date"),
        ({"since": "2026-02-30"}, "Enter a valid date"),
        ({"until": "2026-03-01", "since": "2026-03-05"}, "before the since date"),
        ({"since": "2020-01-01", "until": "2026-01-01"}, "longer than 366 days"),
        ({"since": "1900-01-01", "until": "1900-01-02"}, "between 2000-01-01"),
        ({"until": "9999-12-31"}, "between 2000-01-01"),
        ({"since": "2026-03-01\x00"}, "Enter a valid date"),
        ({"tenant": "abc"}, "Select a valid choice"),
        ({"tenant": "999999999"}, "Select a valid choice"),
        ({"model": "m" * 201}, "at most 200 characters"),
        ({"model": "gpt\x00"}, "Null characters are not allowed"),
        ({"provider": "a\x00b"}, "Null characters are not allowed"),
    ],
)
def test_bad_filters_are_form_errors_not_server_errors(admin_client, db, query, message):
    page = admin_client.get(REPORT, query)
    assert page.status_code == 400 and message in page.content.decode()
    exported = admin_client.get(REPORT_CSV, query)
    assert exported.status_code == 400 and message in exported.content.decode()


@pytest.mark.parametrize(
    "query", [{"tenant": "x"}, {"tenant": "1", "month": "2026-13"}, {"tenant": "1", "month": "99999-01"}]
)
def test_bad_statement_inputs_are_form_errors(admin_client, db, query):
    TenantFactory()
    assert admin_client.get(STATEMENT, query).status_code == 400
    assert admin_client.get(STATEMENT_CSV, query).status_code == 400


def test_text_that_is_not_utf_8_is_only_a_filter_that_matches_nothing(admin_client, traffic):
    page = admin_client.get(REPORT + "?since=2026-03-01&until=2026-03-03&model=%ED%A0%80%FF")
    assert page.status_code == 200 and 'data-field="requests">0<' in page.content.decode()


def test_the_statement_page_and_csv_agree(admin_client, traffic):
    acme = traffic["acme"]
    acme.monthly_budget_usd = Decimal("5")
    acme.save()
    query = {"tenant": str(acme.pk), "month": "2026-03"}
    page = admin_client.get(STATEMENT, query)
    html = page.content.decode()
    assert page.status_code == 200 and "Statement: acme, March 2026" in html
    assert "genai-prices" in html and "electricity mix" in html and "no budget" in html  # daily: none
    shown = total_values(html)
    rows = csv_rows(admin_client.get(STATEMENT_CSV, query))
    total = next(row for row in rows if row["row"] == "total")
    assert total["cost_usd"] == shown["cost_usd"] and Decimal(total["cost_usd"]) == Decimal("1.125")
    assert total["requests"] == shown["requests"] == "7"
    assert [row["day"] for row in rows if row["row"] == "day"][:2] == ["2026-03-01", "2026-03-02"]
    assert {row["model"] for row in rows if row["row"] == "model"} == {"gpt-a", "gpt-b"}
    budgets = {row["row"]: row["cost_usd"] for row in rows[-2:]}
    assert Decimal(budgets["monthly_budget"]) == Decimal("5") and budgets["daily_budget"] == ""


def test_the_statement_without_a_tenant_is_a_form_to_pick_one(admin_client, db):
    page = admin_client.get(STATEMENT)
    assert page.status_code == 200 and 'name="tenant"' in page.content.decode()


def test_the_admin_index_links_the_reports(admin_client, db):
    html = admin_client.get("/admin/").content.decode()
    assert f'href="{REPORT}"' in html and f'href="{STATEMENT}"' in html


# --- who may read them -----------------------------------------------------------------------------------------

URLS = [REPORT, REPORT_CSV, STATEMENT, STATEMENT_CSV]


@pytest.mark.parametrize("url", URLS)
def test_anonymous_visitors_are_sent_to_the_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", URLS)
def test_staff_without_a_ledger_view_permission_get_403(client, db, url):
    assert staff(client, "view_tenant").get(url).status_code == 403


def test_staff_without_the_permission_see_no_link_on_the_index(client, db):
    html = staff(client).get("/admin/").content.decode()
    assert REPORT not in html


@pytest.mark.parametrize("codename", ["view_dailyusage", "view_ledgerentry"])
def test_staff_who_may_view_the_ledger_may_read_the_reports(client, traffic, codename):
    reader = staff(client, codename)
    assert reader.get(REPORT).status_code == 200
    assert reader.get(REPORT_CSV).status_code == 200
    assert reader.get(STATEMENT, {"tenant": traffic["acme"].pk}).status_code == 200
