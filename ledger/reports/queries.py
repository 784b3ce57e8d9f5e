"""The report's figures: aggregate queries over DailyUsage (the rollups), never over the raw ledger.

Each section is one aggregate query (plus one to label its tenants or keys), whatever the number of rows; the
page and the CSV export call the same functions, so their totals are the same numbers.

Sections group by the rollups' own columns and fetch names afterwards: grouped by joined names, PostgreSQL
misjudged the number of groups and sorted every rollup row on disk (the top keys took 220 ms over the rollups
of a million ledger rows, against about 80 ms grouped by key id).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum

from ledger.models import DailyUsage, RollupWatermark
from ledger.rollups import AGGREGATES, WATERMARK
from tenants.models import ApiKey, Tenant

TOP = 10
NO_TENANT = "(no tenant)"
NO_KEY = "(no key)"

# Every summed DailyUsage column, summed again over the filter's rows. Prefixed: an annotation may not reuse a
# field's name.
_P = "sum_"
_SUMS = {_P + column: Sum(column) for column in AGGREGATES}


@dataclass(frozen=True)
class Figures:
    """The sums of some DailyUsage rows. A cost is a lower bound whenever `unpriced_requests` is not zero."""

    requests: int = 0
    errors: int = 0
    cache_hits: int = 0
    unpriced_requests: int = 0
    prompt_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    energy_joules: float = 0.0
    energy_joules_min: float = 0.0
    energy_joules_max: float = 0.0
    energy_saved_joules: float = 0.0
    co2e_grams: float = 0.0
    co2e_grams_min: float = 0.0
    co2e_grams_max: float = 0.0
    co2e_saved_grams: float = 0.0
    cost_usd: Decimal = Decimal(0)
    cost_saved_usd: Decimal = Decimal(0)

    @classmethod
    def of(cls, row: dict[str, Any]) -> Figures:
        # Sum() over no rows is NULL: an empty selection is all zeros.
        values: dict[str, Any] = {}
        for name in _FIGURE_NAMES:
            value = row.get(_P + name, row.get(name))
            if value is not None:
                values[name] = value
        return cls(**values)

    @property
    def plain(self) -> dict[str, str]:
        """Exact text of every figure, for the page's data attributes (the CSV writes the same text)."""
        return {name: plain(getattr(self, name)) for name in _FIGURE_NAMES}

    @property
    def cost_state(self) -> str:
        """'known', 'partial' (some requests had no price: the cost is a lower bound) or 'unknown'."""
        if not self.unpriced_requests:
            return "known"
        return "unknown" if self.unpriced_requests >= self.requests else "partial"


_FIGURE_NAMES = tuple(f.name for f in fields(Figures))


@dataclass(frozen=True)
class Line:
    """One row of a breakdown: what it is about, and its figures."""

    label: str
    figures: Figures
    key: Any = None  # the grouping value (a date, a tenant id, a model name) for links and charts
    detail: str = ""


@dataclass(frozen=True)
class ReportFilter:
    """Inclusive UTC days, plus optional exact tenant, provider and model."""

    since: dt.date
    until: dt.date
    tenant_id: int | None = None
    provider: str = ""
    model: str = ""

    def rows(self) -> QuerySet[DailyUsage]:
        rows = DailyUsage.objects.filter(day__gte=self.since, day__lte=self.until)
        if self.tenant_id is not None:
            rows = rows.filter(tenant_id=self.tenant_id)
        if self.provider:
            rows = rows.filter(provider=self.provider)
        if self.model:
            rows = rows.filter(model=self.model)
        # No ordering: each section orders (or sorts in Python) what it needs.
        return rows.order_by()

    def days(self) -> list[dt.date]:
        return [self.since + dt.timedelta(days=n) for n in range((self.until - self.since).days + 1)]


@dataclass(frozen=True)
class Budget:
    tenant_id: int
    tenant: str
    monthly_budget_usd: Decimal | None
    month_spend_usd: Decimal
    daily_budget_usd: Decimal | None
    today_spend_usd: Decimal
    month_unpriced_requests: int

    @property
    def monthly_share(self) -> float | None:
        return _share(self.month_spend_usd, self.monthly_budget_usd)

    @property
    def daily_share(self) -> float | None:
        return _share(self.today_spend_usd, self.daily_budget_usd)


@dataclass
class Report:
    filter: ReportFilter
    totals: Figures
    by_day: list[Line]
    by_tenant: list[Line]
    by_model: list[Line]
    by_provider: list[Line]
    top_keys: list[Line]
    budgets: list[Budget]
    rolled_up_until: dt.datetime | None
    top_tenants: list[Line] = field(default_factory=list)


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def month_bounds(month: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day of the month holding `month`."""
    first = month.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first, following - dt.timedelta(days=1)


def totals(report_filter: ReportFilter) -> Figures:
    return Figures.of(report_filter.rows().aggregate(**_SUMS))


def by_day(report_filter: ReportFilter) -> list[Line]:
    """Every day of the range, days without traffic included (as zeros), so charts keep their time axis."""
    found = {row["day"]: Figures.of(row) for row in report_filter.rows().values("day").annotate(**_SUMS)}
    return [Line(day.isoformat(), found.get(day, Figures()), key=day) for day in report_filter.days()]


def by_tenant(report_filter: ReportFilter) -> list[Line]:
    rows = list(report_filter.rows().values("tenant_id").annotate(**_SUMS))
    tenants = {t.pk: t for t in Tenant.objects.filter(pk__in=[row["tenant_id"] for row in rows]).only("slug", "name")}
    lines = []
    for row in rows:
        tenant = tenants.get(row["tenant_id"])
        label, detail = (tenant.slug, tenant.name) if tenant else (NO_TENANT, "")
        lines.append(Line(label, Figures.of(row), key=row["tenant_id"], detail=detail))
    return sorted(lines, key=_label)


def by_model(report_filter: ReportFilter) -> list[Line]:
    rows = report_filter.rows().values("model").annotate(**_SUMS)
    return sorted((Line(row["model"] or "(none)", Figures.of(row), key=row["model"]) for row in rows), key=_label)


def by_provider(report_filter: ReportFilter) -> list[Line]:
    rows = report_filter.rows().values("provider").annotate(**_SUMS)
    return sorted((Line(row["provider"] or "(none)", Figures.of(row), key=row["provider"]) for row in rows), key=_label)


def top_keys(report_filter: ReportFilter, limit: int = TOP) -> list[Line]:
    rows = list(
        report_filter.rows()
        .values("api_key_id")
        .annotate(**_SUMS)
        .order_by(f"-{_P}cost_usd", f"-{_P}energy_joules", "api_key_id")[:limit]
    )
    keys = {k.pk: k for k in ApiKey.objects.filter(pk__in=[row["api_key_id"] for row in rows]).select_related("tenant")}
    lines = []
    for row in rows:
        key = keys.get(row["api_key_id"])
        label, detail = (f"{key.prefix}… ({key.name})", key.tenant.slug) if key else (NO_KEY, "")
        lines.append(Line(label, Figures.of(row), key=row["api_key_id"], detail=detail))
    return lines


def top_spenders(lines: list[Line], limit: int = TOP) -> list[Line]:
    """The largest known costs first; energy breaks ties (all-unpriced tenants still rank by what they used)."""
    return sorted(lines, key=lambda line: (-line.figures.cost_usd, -line.figures.energy_joules, line.label))[:limit]


def budgets(tenant_id: int | None = None, today: dt.date | None = None) -> list[Budget]:
    """Each tenant's effective budgets against its spend this UTC month and today, whatever the report's range.

    Two queries: the tenants with their plans, and the month's spend grouped by tenant.
    """
    today = today or utc_today()
    first, _ = month_bounds(today)
    tenants = Tenant.objects.select_related("plan").order_by("slug")
    spend_rows = DailyUsage.objects.filter(day__gte=first, day__lte=today, tenant__isnull=False)
    if tenant_id is not None:
        tenants = tenants.filter(pk=tenant_id)
        spend_rows = spend_rows.filter(tenant_id=tenant_id)
    spend = {
        row["tenant_id"]: row
        for row in spend_rows.order_by()
        .values("tenant_id")
        .annotate(
            month=Sum("cost_usd"),
            today=Sum("cost_usd", filter=Q(day=today)),
            unpriced=Sum("unpriced_requests"),
        )
    }
    result = []
    for tenant in tenants:
        row = spend.get(tenant.pk, {})
        result.append(
            Budget(
                tenant_id=tenant.pk,
                tenant=tenant.slug,
                monthly_budget_usd=tenant.effective_monthly_budget_usd,
                month_spend_usd=row.get("month") or Decimal(0),
                daily_budget_usd=tenant.effective_daily_budget_usd,
                today_spend_usd=row.get("today") or Decimal(0),
                month_unpriced_requests=row.get("unpriced") or 0,
            )
        )
    return result


def rolled_up_until() -> dt.datetime | None:
    """How recent the rollups are: rows recorded after this are not in any report yet."""
    mark = RollupWatermark.objects.filter(name=WATERMARK).first()
    return mark.recorded_until if mark else None


def report(report_filter: ReportFilter, *, today: dt.date | None = None) -> Report:
    tenants = by_tenant(report_filter)
    return Report(
        filter=report_filter,
        totals=totals(report_filter),
        by_day=by_day(report_filter),
        by_tenant=tenants,
        by_model=by_model(report_filter),
        by_provider=by_provider(report_filter),
        top_keys=top_keys(report_filter),
        budgets=budgets(report_filter.tenant_id, today),
        rolled_up_until=rolled_up_until(),
        top_tenants=top_spenders(tenants),
    )


def detail_rows(report_filter: ReportFilter) -> Iterator[dict[str, Any]]:
    """The finest grain finance exports: day, tenant, provider and model (keys summed), streamed from the server."""
    rows = (
        report_filter.rows()
        .values("day", "tenant__slug", "tenant__name", "provider", "model")
        .annotate(**_SUMS)
        .order_by("day", "tenant__slug", "provider", "model")
    )
    # A server-side cursor: a year of rollups is never held in memory at once.
    yield from rows.iterator(chunk_size=2000)


@dataclass
class Statement:
    tenant: Tenant
    first_day: dt.date
    last_day: dt.date
    totals: Figures
    by_day: list[Line]
    by_model: list[Line]
    monthly_budget_usd: Decimal | None
    daily_budget_usd: Decimal | None
    rolled_up_until: dt.datetime | None

    @property
    def monthly_share(self) -> float | None:
        return _share(self.totals.cost_usd, self.monthly_budget_usd)

    @property
    def days_over_daily_budget(self) -> list[dt.date]:
        if self.daily_budget_usd is None:
            return []
        return [line.key for line in self.by_day if line.figures.cost_usd > self.daily_budget_usd]


def statement_filter(tenant: Tenant, month: dt.date, today: dt.date | None = None) -> ReportFilter:
    """The month holding `month`, cut at today when it is the current month (no future days on the page)."""
    first, last = month_bounds(month)
    today = today or utc_today()
    if first <= today < last:
        last = today
    return ReportFilter(since=first, until=last, tenant_id=tenant.pk)


def statement(tenant: Tenant, month: dt.date, *, today: dt.date | None = None) -> Statement:
    report_filter = statement_filter(tenant, month, today)
    return Statement(
        tenant=tenant,
        first_day=report_filter.since,
        last_day=report_filter.until,
        totals=totals(report_filter),
        by_day=by_day(report_filter),
        by_model=by_model(report_filter),
        monthly_budget_usd=tenant.effective_monthly_budget_usd,
        daily_budget_usd=tenant.effective_daily_budget_usd,
        rolled_up_until=rolled_up_until(),
    )


def chart_data(lines_by_day: list[Line], breakdown: list[Line]) -> dict[str, Any]:
    """Plain numbers for Chart.js (Decimals as floats: a chart needs no cent-exactness)."""
    total = Figures.of(
        {
            "energy_joules": sum(line.figures.energy_joules for line in breakdown),
            "co2e_grams": sum(line.figures.co2e_grams for line in breakdown),
            "cost_usd": sum((line.figures.cost_usd for line in breakdown), Decimal(0)),
        }
    )

    def share(part: float | Decimal, whole: float | Decimal) -> float:
        return round(float(part) / float(whole) * 100, 2) if whole else 0.0

    return {
        "days": [line.label for line in lines_by_day],
        "energy": [line.figures.energy_joules for line in lines_by_day],
        "energy_min": [line.figures.energy_joules_min for line in lines_by_day],
        "energy_max": [line.figures.energy_joules_max for line in lines_by_day],
        "co2e": [line.figures.co2e_grams for line in lines_by_day],
        "co2e_min": [line.figures.co2e_grams_min for line in lines_by_day],
        "co2e_max": [line.figures.co2e_grams_max for line in lines_by_day],
        "cost": [float(line.figures.cost_usd) for line in lines_by_day],
        "breakdown": {
            "labels": [line.label for line in breakdown],
            "energy": [share(line.figures.energy_joules, total.energy_joules) for line in breakdown],
            "co2e": [share(line.figures.co2e_grams, total.co2e_grams) for line in breakdown],
            "cost": [share(line.figures.cost_usd, total.cost_usd) for line in breakdown],
        },
    }


def plain(value: Any) -> str:
    """One exact text form per number, shared by the page's data attributes and the CSV, so they compare equal."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _share(spent: Decimal, budget: Decimal | None) -> float | None:
    if budget is None:
        return None
    return float(spent / budget * 100) if budget else float("inf") if spent else 0.0


def _label(line: Line) -> str:
    return line.label
