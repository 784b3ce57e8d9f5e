from django.contrib import admin

from ledger.audit.admin_mixin import AuditedAdmin
from ledger.models import LedgerEntry, PriceOverride


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
    list_filter = ["status_code", "cache_status", "stream", "provider", "energy_source", "cost_source"]
    search_fields = ["request_id"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    # The table grows without bound: never count it for the changelist.
    show_full_result_count = False

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
