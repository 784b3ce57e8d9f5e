from django.contrib import admin

from ledger.models import LedgerEntry, PriceOverride
from ledger.scalable_admin import (
    CostSourceFilter,
    CreatedFilter,
    LookaheadPaginator,
    ModelFilter,
    ProviderFilter,
    StatusFilter,
    page_asked,
)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """Read-only: the ledger is finance's record, written only by the gateway."""

    list_display = [
        "created_at",
        "request_id",
        "tenant",
        "model",
        "provider",
        "status_code",
        "cache_status",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "ttft_ms",
        "energy_joules",
        "co2e_grams",
        "cost_usd",
    ]
    # Every filter is served by an index or a fixed list; none lists its choices by reading the ledger.
    list_filter = [
        ("created_at", CreatedFilter),
        "tenant",
        ProviderFilter,
        ModelFilter,
        StatusFilter,
        "cache_status",
        "stream",
        CostSourceFilter,
    ]
    search_fields = ["request_id"]
    search_help_text = "An exact request id (the X-Request-ID GreenGate returned)."
    list_select_related = ["tenant"]
    # The table grows without bound: never count it, nor scan it for facets, dates or a sort by any column
    # but the indexed created_at.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    sortable_by = ["created_at"]

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        return LookaheadPaginator(queryset, per_page, page_asked(request), orphans=orphans)

    def get_search_results(self, request, queryset, search_term):
        # An exact match on the unique index; the default icontains would scan every row.
        term = search_term.strip()
        return (queryset.filter(request_id=term) if term else queryset), False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PriceOverride)
class PriceOverrideAdmin(admin.ModelAdmin):
    """Negotiated prices: the one valid at a request's start wins over genai-prices' public table."""

    list_display = [
        "model",
        "provider_kind",
        "provider",
        "input_per_million",
        "cached_input_per_million",
        "cache_write_per_million",
        "output_per_million",
        "valid_from",
        "valid_until",
    ]
    list_filter = ["provider_kind", "provider"]
    search_fields = ["model", "note"]
