"""Thin views: validate the filters, call the queries, render or stream. Wired into admin by `ledger.reports.admin`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.template.response import TemplateResponse

from ledger.reports import export, queries
from ledger.reports.forms import ReportForm, StatementForm

METHODOLOGY = [
    "Energy is ecologits' estimate per request; ecologits counts output tokens only, so prompt-heavy requests "
    "are underestimated. The range (min-max) is its uncertainty.",
    "Carbon (gCO2e) is that energy times the electricity mix of the provider's zone set in admin, plus the "
    "hardware's embodied share.",
    "Cost is from genai-prices' public price table, or from the admin's price overrides where one applies. "
    "Requests with no known price are counted as unpriced: their cost is unknown, not zero, and any total that "
    "includes them is a lower bound.",
    "Cache savings are the estimates of the answers that cache hits replayed instead of calling a provider.",
]


def report_page(request: HttpRequest, context: dict[str, Any]) -> TemplateResponse:
    form = ReportForm(request.GET)
    page: dict[str, Any] = {**context, "title": "Finance report", "form": form, "methodology": METHODOLOGY}
    if not form.is_valid():
        return TemplateResponse(request, "admin/ledger/reports/report.html", page, status=400)
    report = queries.report(form.report_filter())
    page.update(
        report=report,
        chart=queries.chart_data(report.by_day, report.by_model),
        csv_query=request.GET.urlencode(),
        statement_month=report.filter.until.strftime("%Y-%m"),
    )
    return TemplateResponse(request, "admin/ledger/reports/report.html", page)


def report_csv(request: HttpRequest) -> HttpResponseBase:
    form = ReportForm(request.GET)
    if not form.is_valid():
        return HttpResponse(form.errors.as_text(), status=400, content_type="text/plain; charset=utf-8")
    report_filter = form.report_filter()
    name = f"greengate-report-{report_filter.since}-{report_filter.until}.csv"
    return _csv(request, export.report_csv(report_filter), name)


def statement_page(request: HttpRequest, context: dict[str, Any]) -> TemplateResponse:
    # Without a tenant yet, the page is only the form to pick one.
    form = StatementForm(request.GET if request.GET else None)
    page: dict[str, Any] = {**context, "title": "Monthly statement", "form": form, "methodology": METHODOLOGY}
    if not form.is_bound:
        return TemplateResponse(request, "admin/ledger/reports/statement.html", page)
    if not form.is_valid():
        return TemplateResponse(request, "admin/ledger/reports/statement.html", page, status=400)
    statement = queries.statement(form.cleaned_data["tenant"], form.cleaned_data["month"])
    page.update(
        statement=statement,
        title=f"Statement: {statement.tenant.slug}, {statement.first_day:%B %Y}",
        csv_query=request.GET.urlencode(),
    )
    return TemplateResponse(request, "admin/ledger/reports/statement.html", page)


def statement_csv(request: HttpRequest) -> HttpResponseBase:
    form = StatementForm(request.GET)
    if not form.is_valid():
        return HttpResponse(form.errors.as_text(), status=400, content_type="text/plain; charset=utf-8")
    statement = queries.statement(form.cleaned_data["tenant"], form.cleaned_data["month"])
    name = f"greengate-statement-{statement.tenant.pk}-{statement.first_day:%Y-%m}.csv"
    return _csv(request, export.statement_csv(statement), name)


# Lines per chunk handed to the server: big enough that the thread hops cost nothing, small enough to stream.
BATCH_LINES = 500


def _csv(request: HttpRequest, lines: Iterator[str], filename: str) -> StreamingHttpResponse:
    # Under ASGI (daphne) Django would read a plain iterator to the end before sending a byte; an async one
    # streams. The lines still come from the sync generator and its server-side cursor, a batch at a time.
    content = _batches(lines) if isinstance(request, ASGIRequest) else lines
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


async def _batches(lines: Iterator[str]) -> AsyncIterator[str]:
    # thread_sensitive: every batch runs on the request's own sync thread, where its cursor and connection live.
    take = sync_to_async(lambda: "".join(islice(lines, BATCH_LINES)), thread_sensitive=True)
    while batch := await take():
        yield batch
