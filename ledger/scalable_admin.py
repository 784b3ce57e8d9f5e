"""What keeps the ledger's admin list fast on millions of rows: a paginator that never counts the whole table,
and filters whose choices come from small tables or fixed lists and whose lookups an index serves.

Django's defaults each scan the table: the paginator's COUNT(*), date_hierarchy's distinct dates, and a plain
`list_filter` on a text column (SELECT DISTINCT over the column to list its values).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils import timezone

from providers.models import Deployment, Provider

PAGES_AHEAD = 10


class LookaheadPaginator(Paginator):
    """Counts only as far as a few pages past the page asked for: `SELECT COUNT(*) FROM (... LIMIT n)`.

    The admin shows "more than n" when there are more; the pages past n are reached from the last page shown.
    """

    def __init__(self, object_list: Any, per_page: int, page_asked: int = 1, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, **kwargs)
        self.count_limit = (max(page_asked, 1) + PAGES_AHEAD) * int(per_page)

    @cached_property
    def count(self) -> int:
        rows = self.object_list[: self.count_limit + 1]
        return rows.count() if isinstance(rows, QuerySet) else len(rows)

    @property
    def has_more(self) -> bool:
        return self.count > self.count_limit


class CreatedFilter(admin.DateFieldListFilter):
    """A created_at range (since inclusive, until exclusive), served by the created_at index.

    Any range works from the URL too: `?created_at__gte=2026-10-01&created_at__lt=2026-11-01`.
    """

    def __init__(self, field: Any, request: Any, params: Any, model: Any, model_admin: Any, field_path: str) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        today = timezone.localtime(timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)
        tomorrow = today + timedelta(days=1)
        month = today.replace(day=1)
        last_month = (month - timedelta(days=1)).replace(day=1)

        def span(since: Any, until: Any) -> dict[str, Any]:
            return {self.lookup_kwarg_since: since, self.lookup_kwarg_until: until}

        self.links = (
            ("Any date", {}),
            ("Today", span(today, tomorrow)),
            ("Yesterday", span(today - timedelta(days=1), today)),
            ("Past 7 days", span(today - timedelta(days=7), tomorrow)),
            ("Past 30 days", span(today - timedelta(days=30), tomorrow)),
            ("This month", span(month, tomorrow)),
            ("Last month", span(last_month, month)),
        )


class _ValuesFilter(admin.SimpleListFilter):
    """Exact matches on one column, its choices listed without reading the ledger."""

    column = ""

    def values(self) -> Sequence[str]:
        raise NotImplementedError

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        values = list(self.values())
        # A value from the URL that is no longer configured (a retired provider) still filters: a filter with no
        # choices would be dropped, and its parameter silently ignored.
        if self.value() and self.value() not in values:
            values.append(self.value() or "")
        return [(value, value) for value in values]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.column: value}) if value is not None else queryset


class ProviderFilter(_ValuesFilter):
    """The providers configured now (a small table); the ledger's (provider, created_at) index serves it."""

    title = "provider"
    parameter_name = column = "provider"

    def values(self) -> Sequence[str]:
        return list(Provider.objects.order_by("name").values_list("name", flat=True))


class ModelFilter(_ValuesFilter):
    """The public model names routed now; the ledger's (model, created_at) index serves it."""

    title = "model"
    parameter_name = column = "model"

    def values(self) -> Sequence[str]:
        return list(Deployment.objects.order_by("model_name").values_list("model_name", flat=True).distinct())


class CostSourceFilter(_ValuesFilter):
    """Where a row's price came from; `unknown` finds the unpriced requests."""

    title = "cost source"
    parameter_name = column = "cost_source"

    def values(self) -> Sequence[str]:
        return ["genai-prices", "override", "unknown", "none", "failed"]


class StatusFilter(admin.SimpleListFilter):
    """Status classes rather than every status seen (which would need a scan to list)."""

    title = "status"
    parameter_name = "status"
    RANGES = {
        "2xx": ("success (2xx)", 200, 300),
        "4xx": ("refused (4xx)", 400, 500),
        "499": ("client left (499)", 499, 500),
        "5xx": ("failed (5xx)", 500, 600),
    }

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _, _) in self.RANGES.items()]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        if self.value() not in self.RANGES:
            return queryset
        _, low, high = self.RANGES[self.value() or ""]
        return queryset.filter(status_code__gte=low, status_code__lt=high)


def page_asked(request: Any) -> int:
    try:
        return int(request.GET.get("p", 1))
    except ValueError:
        return 1
