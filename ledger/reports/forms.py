"""The reports' filters, validated into a ReportFilter: bad input is a form error on the page, never a 500."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms

from ledger.reports.queries import ReportFilter, month_bounds, utc_today
from tenants.models import Tenant

# A daily chart and table stay readable, and the queries stay cheap, up to about a year.
MAX_RANGE_DAYS = 366
# Dates outside these are typos (year 0202, 20255), not periods anyone has data for.
EARLIEST = dt.date(2000, 1, 1)
LATEST = dt.date(2100, 12, 31)


class _DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%d")


def _in_bounds(value: dt.date | None, name: str) -> dt.date | None:
    if value is not None and not EARLIEST <= value <= LATEST:
        raise forms.ValidationError(f"The {name} date must be between {EARLIEST} and {LATEST}.")
    return value


class ReportForm(forms.Form):
    since = forms.DateField(
        required=False, widget=_DateInput(), input_formats=["%Y-%m-%d"], help_text="First UTC day (YYYY-MM-DD)."
    )
    until = forms.DateField(
        required=False, widget=_DateInput(), input_formats=["%Y-%m-%d"], help_text="Last UTC day, included."
    )
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("slug"), required=False, empty_label="All")
    # Exact names; the page offers the ones in its period as suggestions.
    provider = forms.CharField(required=False, max_length=64, widget=forms.TextInput(attrs={"list": "gg-providers"}))
    model = forms.CharField(required=False, max_length=200, widget=forms.TextInput(attrs={"list": "gg-models"}))

    def __init__(self, data: Any = None, *, today: dt.date | None = None) -> None:
        super().__init__(data)
        self.today = today or utc_today()

    def clean_since(self) -> dt.date | None:
        return _in_bounds(self.cleaned_data.get("since"), "since")

    def clean_until(self) -> dt.date | None:
        return _in_bounds(self.cleaned_data.get("until"), "until")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        # Defaults: the current UTC month so far.
        until = cleaned.get("until") or self.today
        since = cleaned.get("since") or month_bounds(until)[0]
        if until < since:
            raise forms.ValidationError("The until date is before the since date.")
        if (until - since).days + 1 > MAX_RANGE_DAYS:
            raise forms.ValidationError(f"The range is longer than {MAX_RANGE_DAYS} days; choose a shorter one.")
        cleaned["since"], cleaned["until"] = since, until
        return cleaned

    def report_filter(self) -> ReportFilter:
        data = self.cleaned_data
        tenant = data.get("tenant")
        return ReportFilter(
            since=data["since"],
            until=data["until"],
            tenant_id=tenant.pk if tenant else None,
            provider=data.get("provider", "").strip(),
            model=data.get("model", "").strip(),
        )


class StatementForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("slug"))
    month = forms.DateField(
        required=False,
        input_formats=["%Y-%m"],
        widget=forms.DateInput(format="%Y-%m", attrs={"type": "month"}),
        help_text="YYYY-MM; blank: this month.",
    )

    def __init__(self, data: Any = None, *, today: dt.date | None = None) -> None:
        super().__init__(data)
        self.today = today or utc_today()

    def clean_month(self) -> dt.date:
        month = self.cleaned_data.get("month") or self.today.replace(day=1)
        return _in_bounds(month, "month") or month
