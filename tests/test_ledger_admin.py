"""The ledger's admin list stays cheap on a big table: no COUNT(*) over it, no scan to list filter choices or
dates, and a request-id search that is an exact, indexed match."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from greengate_site.request_context import uuid7
from ledger.models import LedgerEntry
from ledger.scalable_admin import PAGES_AHEAD, LookaheadPaginator
from tests.factories import DeploymentFactory, TenantFactory

URL = "/admin/ledger/ledgerentry/"
TABLE = LedgerEntry._meta.db_table
NOW = datetime.now(UTC)


@pytest.fixture
def rows(db) -> list[LedgerEntry]:
    tenant = TenantFactory(slug="acme")
    DeploymentFactory(model_name="gpt-4o-mini", provider__name="openai-main")
    return LedgerEntry.objects.bulk_create(
        LedgerEntry(
            id=uuid7(),
            request_id=uuid7().hex,
            created_at=NOW - timedelta(hours=i * 6),
            tenant=tenant,
            provider="openai-main",
            model="gpt-4o-mini",
            status_code=502 if i % 10 == 0 else 200,
            latency_ms=100,
        )
        for i in range(250)
    )


def ledger_queries(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in context.captured_queries if f'"{TABLE}"' in q["sql"]]


def assert_cheap(queries: list[str]) -> None:
    for sql in queries:
        if "COUNT(" in sql:
            assert re.search(r"LIMIT \d+\)", sql), f"a count over the whole ledger: {sql}"
        assert "DISTINCT" not in sql, f"a scan to list distinct values: {sql}"
        assert "LIKE" not in sql and "UPPER(" not in sql, f"a search that cannot use an index: {sql}"


def test_the_ledger_list_renders_without_counting_the_whole_table(admin_client, rows):
    with CaptureQueriesContext(connection) as context:
        response = admin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "250 ledger entries" in page
    assert 'id="changelist-filter"' in page and "Past 7 days" in page and "openai-main" in page
    assert "date_hierarchy" not in page and "xfull" not in page
    queries = ledger_queries(context)
    assert queries and any("COUNT(" in sql for sql in queries)
    assert_cheap(queries)


def test_the_date_filter_and_the_other_filters_narrow_the_list_by_indexed_ranges(admin_client, rows):
    since = (NOW - timedelta(days=2)).isoformat()
    with CaptureQueriesContext(connection) as context:
        response = admin_client.get(URL, {"created_at__gte": since, "provider": "openai-main", "status": "5xx"})
    assert response.status_code == 200
    # Rows every 6 hours for the past two days (8 or 9 of them), every tenth one failed: row 0 and maybe 10.
    expected = LedgerEntry.objects.filter(created_at__gte=NOW - timedelta(days=2), status_code__gte=500).count()
    assert len(response.context["cl"].result_list) == expected >= 1
    queries = ledger_queries(context)
    assert any('"created_at" >=' in sql for sql in queries)
    assert_cheap(queries)

    response = admin_client.get(
        URL, {"created_at__gte": "2000-01-01T00:00:00+00:00", "created_at__lt": "2000-02-01T00:00:00+00:00"}
    )
    assert response.status_code == 200 and "0 ledger entries" in response.content.decode()


def test_a_provider_no_longer_configured_still_filters_rather_than_being_ignored(admin_client):
    """A filter with no choices would be dropped, and its parameter silently ignored."""
    LedgerEntry.objects.bulk_create(
        LedgerEntry(id=uuid7(), request_id=uuid7().hex, created_at=NOW, provider=name, status_code=200, latency_ms=1)
        for name in ["retired", "retired", "other"]
    )
    response = admin_client.get(URL, {"provider": "retired"})
    assert [entry.provider for entry in response.context["cl"].result_list] == ["retired", "retired"]


def test_a_request_id_search_is_an_exact_indexed_match(admin_client, rows):
    wanted = rows[17].request_id
    with CaptureQueriesContext(connection) as context:
        response = admin_client.get(URL, {"q": f" {wanted} "})
    assert [entry.request_id for entry in response.context["cl"].result_list] == [wanted]
    queries = ledger_queries(context)
    assert any('"request_id" = ' in sql and wanted in sql for sql in queries)
    assert_cheap(queries)
    assert not admin_client.get(URL, {"q": wanted[:10]}).context["cl"].result_list  # no partial matches


def test_a_long_ledger_shows_more_than_rather_than_a_full_count(admin_client, rows):
    paginator = LookaheadPaginator(LedgerEntry.objects.order_by("-created_at"), 10, page_asked=3)
    assert paginator.count_limit == (3 + PAGES_AHEAD) * 10
    assert paginator.has_more and paginator.num_pages == 3 + PAGES_AHEAD + 1
    assert len(paginator.page(3 + PAGES_AHEAD).object_list) == 10

    response = admin_client.get(URL, {"p": 2, "o": "1"})  # sorted by created_at, the one sortable column
    assert response.status_code == 200
    assert "250 ledger entries" in response.content.decode()


def test_the_ledger_list_can_only_be_sorted_by_its_indexed_creation_time(admin_client, rows):
    response = admin_client.get(URL)
    headers = re.findall(r'<th scope="col"\s+class="([^"]*)"', response.content.decode())
    assert sum("sortable" in css for css in headers) == 1


def test_the_seed_script_adds_plausible_rows_with_new_ids_on_every_run(admin_client):
    from scripts import seed_ledger  # sets Django up on import, as a script must; here it already is

    seed_ledger.seed(300, days=3)
    seed_ledger.seed(300, days=3)
    rows = LedgerEntry.objects.all()
    assert rows.count() == 600 and rows.values("request_id").distinct().count() == 600
    assert not rows.filter(created_at__lt=NOW - timedelta(days=3, minutes=5)).exists()
    assert set(rows.values_list("tenant__slug", flat=True)) <= {f"seed-{slug}" for slug in seed_ledger.TENANTS}
    ok = rows.filter(status_code=200, cache_status="miss")
    assert ok.exists() and not ok.filter(energy_joules__lte=0).exists() and not ok.filter(completion_tokens=0).exists()
    assert (
        rows.filter(status_code__gte=400).exists()
        and rows.filter(cost_usd__isnull=True, cost_source="unknown").exists()
    )
    assert not rows.filter(cache_status="hit", energy_saved_joules__lte=0).exists()
    assert admin_client.get(URL, {"tenant__id__exact": rows[0].tenant_id}).status_code == 200
