from django.contrib import admin

from ledger.audit.admin_mixin import AuditedAdmin
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
class PriceOverrideAdmin(AuditedAdmin):
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


# --- Audit events: read-only, like the ledger ------------------------------------------------------------------

from django.core.paginator import Paginator  # noqa: E402
from django.utils.functional import cached_property  # noqa: E402
from django.utils.html import format_html, format_html_join  # noqa: E402

from ledger.models import AuditEvent  # noqa: E402

AUDIT_COUNT_CAP = 10_000
AUDIT_FIELDS = (
    "created_at",
    "action",
    "actor",
    "target_type",
    "target_id",
    "target",
    "tenant",
    "request_id",
    "details",
)


class CappedCountPaginator(Paginator):
    """Counts at most AUDIT_COUNT_CAP rows: the events table grows without bound, and a page needs no exact total."""

    @cached_property
    def count(self) -> int:
        return self.object_list[:AUDIT_COUNT_CAP].count()  # type: ignore[attr-defined]


def _shown(value: object) -> str:
    return "—" if value is None or value == "" else str(value)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Who changed what, when: written by admin, services, commands and the gateway; never edited here."""

    list_display = ["created_at", "action", "actor", "target", "tenant", "summary"]
    list_filter = ["action", "actor", "tenant"]
    search_fields = ["target", "=target_id"]
    date_hierarchy = "created_at"
    fields = readonly_fields = AUDIT_FIELDS
    paginator = CappedCountPaginator
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="what changed")
    def summary(self, obj: AuditEvent) -> str:
        names = list(obj.changes) if isinstance(obj.changes, dict) else []
        return ", ".join(names[:6]) + (" …" if len(names) > 6 else "")

    @admin.display(description="changes")
    def details(self, obj: AuditEvent) -> str:
        """One line per field: `before → after` for changes, the value itself for details."""
        if not isinstance(obj.changes, dict) or not obj.changes:
            return "—"

        def line(value: object) -> str:
            if isinstance(value, list) and len(value) == 2:
                return f"{_shown(value[0])} → {_shown(value[1])}"
            return _shown(value)

        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((k, line(v)) for k, v in obj.changes.items()))
        return format_html('<table class="gg-audit-changes">{}</table>', rows)
