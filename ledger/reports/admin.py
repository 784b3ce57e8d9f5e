"""The reports' place in admin: a read-only DailyUsage admin whose URLs add the report, statement and CSVs.

Registered from `LedgerConfig.ready()`, apart from `ledger/admin.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from django.urls import path

from ledger.models import DailyUsage
from ledger.reports import views

# Either is enough: the reports show the ledger's sums, nothing a ledger reader may not already see.
READ_PERMISSIONS = ("ledger.view_dailyusage", "ledger.view_ledgerentry")


def may_read_reports(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff and any(user.has_perm(p) for p in READ_PERMISSIONS))


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    """Read-only: the rollups are recomputed from the ledger, never edited."""

    list_display = ["day", "tenant", "api_key", "provider", "model", "requests", "energy_joules", "cost_usd"]
    list_filter = ["day", "provider"]
    list_select_related = ["tenant", "api_key"]
    date_hierarchy = "day"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _reading(self, view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        """Staff is not enough (admin_view checks that): the reports need a ledger view permission."""

        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not may_read_reports(request):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return guarded

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        each = self.admin_site.each_context
        return [
            path(
                "report/",
                wrap(self._reading(lambda r: views.report_page(r, each(r)))),
                name="ledger_report",
            ),
            path("report.csv", wrap(self._reading(views.report_csv)), name="ledger_report_csv"),
            path(
                "statement/",
                wrap(self._reading(lambda r: views.statement_page(r, each(r)))),
                name="ledger_statement",
            ),
            path("statement.csv", wrap(self._reading(views.statement_csv)), name="ledger_statement_csv"),
            *super().get_urls(),
        ]
