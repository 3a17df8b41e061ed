"""HTML for every page, from the Jinja2 templates in ``templates/`` (autoescaped).

This module gathers what each template shows; the templates hold the markup.
Links are paths under the dashboard's root (``SCRIPT_NAME``), so the pages work
wherever the app is mounted. Sorting, filtering and the date range are plain
links and ``GET`` forms handled on the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from ..models import Advertiser
from .reports import age_text, format_money
from .svg import daily_chart
from .tables import ASC, DESC
from .templating import render
from .views import (
    MAX_HTML_ROWS,
    Chain,
    Overview,
    Rejections,
    Scope,
    TableView,
    TargetSummary,
    TargetView,
    shown_time,
    status,
)

__all__ = [
    "Page",
    "chain_page",
    "error_page",
    "index_page",
    "overview_page",
    "rejections_page",
    "table_page",
    "target_page",
]

_PRESETS = (7, 30, 90, 365)


def _query(params: Iterable[tuple[str, str]]) -> str:
    text = urlencode(list(params))
    return f"?{text}" if text else ""


@dataclass(frozen=True)
class Page:
    """How to link from a page: the dashboard's root and today's date."""

    root: str
    today: date

    def href(self, link: str) -> str:
        """``link`` (a path under the root, with its query) as a path from the host's root."""
        return self.root + link

    def presets(self, path: str, keep: Sequence[tuple[str, str]]) -> list[tuple[int, str]]:
        """The "last N days" links of the range form: ``(N, link)``."""
        today = self.today.isoformat()
        return [
            (
                days,
                path
                + _query(
                    [
                        ("from", (self.today - timedelta(days=days - 1)).isoformat()),
                        ("to", today),
                        *keep,
                    ]
                ),
            )
            for days in _PRESETS
        ]


def _view_params(view: TableView[Any], scope: Scope, **changes: str) -> list[tuple[str, str]]:
    """The page's query: range, own filters, sort, direction and text filter."""
    sort = changes.get("sort", view.query.sort)
    direction = changes.get("dir", DESC if view.query.descending else ASC)
    q = changes.get("q", view.query.q)
    params = [*scope.range_params(), *view.keep, ("sort", sort), ("dir", direction)]
    if q:
        params.append(("q", q))
    return params


# -- a table, ready for the template's table macro -------------------------------------


@dataclass(frozen=True, slots=True)
class Heading:
    label: str
    link: str
    numeric: bool
    aria_sort: str
    arrow: str


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    link: str | None
    kind: str


@dataclass(frozen=True)
class TableHTML:
    """What ``macros.html``'s ``table`` draws: the view, its links, headings and cells."""

    view: TableView[Any]
    interactive: bool
    rows_text: str
    keep: list[tuple[str, str]]
    clear: str
    unfiltered: str
    csv: str
    sortable: str
    headings: list[Heading]
    rows: list[list[Cell]]

    @property
    def cut(self) -> bool:
        return len(self.view.rows) > len(self.rows)


def _rows_text(view: TableView[Any]) -> str:
    noun = "row" if view.total == 1 else "rows"
    if view.query.q:
        return f"{len(view.rows)} of {view.total} {noun} match"
    return f"{view.total} {noun}"


def _heading(view: TableView[Any], scope: Scope, column: Any) -> Heading:
    if column.key == view.query.sort:
        # A click on the sorted column turns the order round.
        direction = ASC if view.query.descending else DESC
        arrow = " \u25bc" if view.query.descending else " \u25b2"
        aria = "descending" if view.query.descending else "ascending"
    else:
        # Numbers are most interesting biggest first.
        direction = DESC if column.numeric else ASC
        arrow = aria = ""
    link = view.path + _query(_view_params(view, scope, sort=column.key, dir=direction))
    return Heading(column.label, link, column.numeric, aria, arrow)


def _cell(column: Any, row: Any) -> Cell:
    kind = "n" if column.numeric else "w" if column.wide else ""
    return Cell(column.text(row), column.link(row) if column.link is not None else None, kind)


def _table(scope: Scope, view: TableView[Any], *, interactive: bool = True) -> TableHTML:
    """The table, with sort links in its headers; with a filter form when ``interactive``."""
    columns = view.table.columns
    direction = DESC if view.query.descending else ASC
    own = _query(_view_params(view, scope))
    return TableHTML(
        view=view,
        interactive=interactive,
        rows_text=_rows_text(view),
        keep=[*scope.range_params(), *view.keep, ("sort", view.query.sort), ("dir", direction)],
        clear=view.path + _query(_view_params(view, scope, q="")) if view.query.q else "",
        unfiltered=view.path + _query(scope.range_params()),
        csv=f"{view.path}.csv{own}",
        sortable=view.path + own,
        headings=[_heading(view, scope, column) for column in columns],
        rows=[[_cell(column, row) for column in columns] for row in view.rows[:MAX_HTML_ROWS]],
    )


# -- the pages -----------------------------------------------------------------------


def index_page(page: Page, advertisers: Sequence[Advertiser]) -> str:
    return render("index.html", page=page, title="Advertisers", advertisers=advertisers)


def overview_page(page: Page, overview: Overview, targets: Sequence[TargetSummary] = ()) -> str:
    """The advertiser's page: totals, chart, campaigns, publishers, and its delivery
    targets (each linking to its own page)."""
    scope = overview.scope
    return render(
        "overview.html",
        page=page,
        title=scope.advertiser.name,
        scope=scope,
        overview=overview,
        targets=targets,
        age_text=age_text,
        totals_csv=scope.path(".csv") + _query(scope.range_params()),
        chart=daily_chart(overview.days),
        campaigns=_table(scope, overview.campaigns, interactive=False),
        publishers=_table(scope, overview.publishers, interactive=False),
    )


def table_page(
    page: Page, scope: Scope, active: str, view: TableView[Any], *, chart: Markup | None = None
) -> str:
    """A section page: the range form, an optional chart, the table."""
    return render(
        "section.html",
        page=page,
        title=f"{view.title}: {scope.advertiser.name}",
        scope=scope,
        active=active,
        table=_table(scope, view),
        chart=chart,
    )


def chain_page(page: Page, scope: Scope, chain: Chain) -> str:
    conversion = chain.conversion
    current = conversion.current
    sale = (
        "-"
        if current.sale_amount is None
        else f"{format_money(current.sale_amount)} {current.sale_currency}"
    )
    facts = [
        ("Reference id", conversion.first.reference_id or "-"),
        ("Campaign", chain.campaign),
        ("Publisher", chain.publisher),
        ("Recorded (UTC)", conversion.recorded_at[:19].replace("T", " ")),
        ("Sale now", sale),
        ("Payout now", f"{format_money(current.payout)} {current.payout_currency}"),
        ("Corrections", str(conversion.corrections)),
        ("Status", status(conversion)),
    ]
    heading = f"Conversion {conversion.conversion_id}"
    return render(
        "chain.html",
        page=page,
        title=f"{heading}: {scope.advertiser.name}",
        heading=heading,
        scope=scope,
        facts=facts,
        table=_table(scope, chain.view),
    )


def target_page(page: Page, scope: Scope, view: TargetView) -> str:
    """One delivery target: status, backlog, outcomes per day, the last errors."""
    target = view.target
    heading = f"Delivery target {target.id}: {target.kind.value}"
    return render(
        "target.html",
        page=page,
        title=f"{heading}: {scope.advertiser.name}",
        heading=heading,
        scope=scope,
        view=view,
        target=target,
        health=view.summary.health,
        age=age_text(view.summary.oldest_undelivered),
        # Settings only: a target's credentials stay sealed in the store.
        settings=sorted(target.settings.items()),
        shown_time=shown_time,
    )


def rejections_page(page: Page, scope: Scope, rejections: Rejections) -> str:
    return render(
        "rejections.html",
        page=page,
        title=f"Rejections: {scope.advertiser.name}",
        scope=scope,
        reasons=_table(scope, rejections.reasons, interactive=False),
        log=_table(scope, rejections.log),
    )


def error_page(page: Page, status: str, message: str) -> str:
    return render("error.html", page=page, title=status, message=message)
