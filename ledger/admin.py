from django.contrib import admin

from ledger.models import LedgerEntry


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
    ]
    list_filter = ["status_code", "cache_status", "stream", "provider"]
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
