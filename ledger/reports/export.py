"""CSV exports that stream: rows are written as the database cursor yields them, then the totals row.

Text cells a spreadsheet could read as a formula (a tenant or model named "=HYPERLINK(...)") are defused.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from ledger.reports.queries import NO_TENANT, Figures, ReportFilter, Statement, detail_rows, plain, totals

# The figures' columns in CSV order; the cost state says whether the cost is complete.
FIGURE_COLUMNS = [
    "requests",
    "errors",
    "unpriced_requests",
    "cache_hits",
    "prompt_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "energy_joules",
    "energy_joules_min",
    "energy_joules_max",
    "co2e_grams",
    "co2e_grams_min",
    "co2e_grams_max",
    "cost_usd",
    "cost_state",
    "energy_saved_joules",
    "co2e_saved_grams",
    "cost_saved_usd",
]
REPORT_HEADER = ["row", "day", "tenant", "tenant_name", "provider", "model", *FIGURE_COLUMNS]
STATEMENT_HEADER = ["row", "tenant", "day", "model", *FIGURE_COLUMNS]
# What spreadsheets treat as the start of a formula (OWASP's list, tab and carriage return included).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """A leading apostrophe makes Excel, LibreOffice and Sheets show the text rather than evaluate it."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def figure_cells(figures: Figures) -> list[str]:
    cells = []
    for column in FIGURE_COLUMNS:
        if column == "cost_usd" and figures.cost_state == "unknown":
            # No price at all: blank, never a zero.
            cells.append("")
        elif column == "cost_state":
            cells.append(figures.cost_state)
        else:
            cells.append(plain(getattr(figures, column)))
    return cells


class _Echo:
    """csv.writer writes into this and we hand each line straight to the response."""

    def write(self, value: str) -> str:
        return value


def _lines(rows: Iterable[list[str]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow(row)


def report_csv(report_filter: ReportFilter) -> Iterator[str]:
    def rows() -> Iterator[list[str]]:
        yield REPORT_HEADER
        for row in detail_rows(report_filter):
            text = [
                safe_text(row["tenant__slug"] or NO_TENANT),
                safe_text(row["tenant__name"] or ""),
                safe_text(row["provider"]),
                safe_text(row["model"]),
            ]
            yield ["detail", row["day"].isoformat(), *text, *figure_cells(Figures.of(row))]
        # The same function as the page's totals: the two cannot disagree.
        yield [
            "total",
            f"{report_filter.since}..{report_filter.until}",
            "",
            "",
            "",
            "",
            *figure_cells(totals(report_filter)),
        ]

    return _lines(rows())


def statement_csv(statement: Statement) -> Iterator[str]:
    tenant = safe_text(statement.tenant.slug)

    def rows() -> Iterator[list[str]]:
        yield STATEMENT_HEADER
        for line in statement.by_day:
            yield ["day", tenant, line.label, "", *figure_cells(line.figures)]
        for line in statement.by_model:
            yield ["model", tenant, "", safe_text(line.label), *figure_cells(line.figures)]
        period = f"{statement.first_day}..{statement.last_day}"
        yield ["total", tenant, period, "", *figure_cells(statement.totals)]
        # The budgets in the cost column (blank: no budget), so a spreadsheet can set them against the total.
        for name, budget in [
            ("monthly_budget", statement.monthly_budget_usd),
            ("daily_budget", statement.daily_budget_usd),
        ]:
            cells = [""] * len(FIGURE_COLUMNS)
            cells[FIGURE_COLUMNS.index("cost_usd")] = "" if budget is None else plain(budget)
            yield [name, tenant, period, "", *cells]

    return _lines(rows())
