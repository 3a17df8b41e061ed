"""HTML for every page: one small inline stylesheet, no script, every value escaped.

Links are paths under the dashboard's root (``SCRIPT_NAME``), so the pages work
wherever the app is mounted. Sorting, filtering and the date range are plain
links and ``GET`` forms handled on the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode

from ..models import Advertiser
from .reports import Tally, format_money
from .svg import daily_chart
from .tables import ASC, DESC
from .views import (
    MAX_HTML_ROWS,
    Chain,
    Overview,
    Rejections,
    Scope,
    TableView,
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
]

_STYLE = """
:root { color-scheme: light dark; --fg: #1f2933; --muted: #5f6b7a; --line: #d9dee5;
  --accent: #1d4ed8; --bg: #fff; --head: #f3f5f8; }
@media (prefers-color-scheme: dark) { :root { --fg: #e5e9f0; --muted: #9aa5b1;
  --line: #3a4350; --accent: #8ab4ff; --bg: #14181d; --head: #1d232a; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header, main { max-width: 100rem; margin: 0 auto; padding: 0 1rem; }
header { padding-top: .75rem; }
main { padding-bottom: 2rem; }
h1 { font-size: 1.4rem; margin: .25rem 0 .5rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
a { color: var(--accent); }
.crumbs { font-size: .9rem; color: var(--muted); }
nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; padding: .4rem 0;
  border-bottom: 1px solid var(--line); }
nav a[aria-current] { color: var(--fg); font-weight: 600; text-decoration: none; }
form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin: .75rem 0; }
label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
input, button { font: inherit; padding: .3rem .5rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr));
  gap: .75rem; margin: .75rem 0; }
.card { border: 1px solid var(--line); border-radius: .5rem; padding: .5rem .75rem; }
.card span { color: var(--muted); font-size: .85rem; }
.card b { display: block; font-size: 1.3rem; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: .5rem; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { padding: .35rem .6rem; text-align: left; border-bottom: 1px solid var(--line);
  white-space: nowrap; vertical-align: top; }
th { background: var(--head); }
th a { color: inherit; }
.n { text-align: right; font-variant-numeric: tabular-nums; }
.w { white-space: normal; min-width: 14rem; overflow-wrap: anywhere; }
.muted { color: var(--muted); font-size: .9rem; }
.bar { margin: .5rem 0; }
svg.chart { width: 100%; max-width: 48rem; height: auto; }
@media (max-width: 40rem) { body { font-size: 14px; } th, td { padding: .3rem .45rem; } }
"""

_PRESETS = (7, 30, 90, 365)
_DOT = " \u00b7 "


@dataclass(frozen=True)
class Page:
    """How to link from a page: the dashboard's root and today's date."""

    root: str
    today: date

    def href(self, link: str) -> str:
        """``link`` (a path under the root, with its query) as an escaped attribute value."""
        return escape(self.root + link, quote=True)


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _query(params: Iterable[tuple[str, str]]) -> str:
    text = urlencode(list(params))
    return f"?{text}" if text else ""


def _layout(page: Page, title: str, body: str, *, crumbs: str = "") -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{_e(title)} \u00b7 pixel-wsgi</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<header><div class="crumbs"><a href="{page.href("/")}">pixel-wsgi dashboard</a>'
        f"{crumbs}</div></header>\n"
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


# -- the parts of an advertiser page --------------------------------------------------

_SECTIONS = (
    ("", "Overview"),
    ("/campaigns", "Campaigns"),
    ("/publishers", "Publishers"),
    ("/days", "Days"),
    ("/conversions", "Conversions"),
    ("/rejections", "Rejections"),
)


def _advertiser_header(page: Page, scope: Scope, active: str, title: str) -> str:
    links = []
    for below, label in _SECTIONS:
        current = ' aria-current="page"' if below == active else ""
        links.append(f'<a href="{page.href(scope.link(below))}"{current}>{label}</a>')
    return f'<h1>{_e(title)}</h1>\n<nav aria-label="Sections">{"".join(links)}</nav>\n'


def _range_form(page: Page, scope: Scope, path: str, keep: Sequence[tuple[str, str]] = ()) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">' for name, value in keep
    )
    presets = []
    for days in _PRESETS:
        start = page.today - timedelta(days=days - 1)
        params = [("from", start.isoformat()), ("to", page.today.isoformat()), *keep]
        presets.append(f'<a href="{page.href(path + _query(params))}">{days} days</a>')
    return (
        f'<form method="get" action="{page.href(path)}" aria-label="Date range">'
        f'<label>From (UTC)<input type="date" name="from" value="{scope.days.start}"'
        " required></label>"
        f'<label>To (UTC)<input type="date" name="to" value="{scope.days.end}" required></label>'
        f'{hidden}<button type="submit">Show</button>'
        f'<span class="muted">Last: {_DOT.join(presets)}</span></form>\n'
    )


def _view_params(view: TableView[Any], scope: Scope, **changes: str) -> list[tuple[str, str]]:
    """The page's query: range, own filters, sort, direction and text filter."""
    sort = changes.get("sort", view.query.sort)
    direction = changes.get("dir", DESC if view.query.descending else ASC)
    q = changes.get("q", view.query.q)
    params = [*scope.range_params(), *view.keep, ("sort", sort), ("dir", direction)]
    if q:
        params.append(("q", q))
    return params


def _rows_text(view: TableView[Any]) -> str:
    noun = "row" if view.total == 1 else "rows"
    if view.query.q:
        return f"{len(view.rows)} of {view.total} {noun} match"
    return f"{view.total} {noun}"


def _table(page: Page, scope: Scope, view: TableView[Any], *, interactive: bool = True) -> str:
    """The table, with sort links in its headers; with a filter form when ``interactive``."""
    parts: list[str] = []
    table = view.table
    if interactive:
        keep = [*scope.range_params(), *view.keep, ("sort", view.query.sort)]
        keep.append(("dir", DESC if view.query.descending else ASC))
        hidden = "".join(
            f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">' for name, value in keep
        )
        clear = ""
        if view.query.q:
            unfiltered = view.path + _query(_view_params(view, scope, q=""))
            clear = f' <a href="{page.href(unfiltered)}">clear</a>'
        parts.append(
            f'<form method="get" action="{page.href(view.path)}" role="search"'
            f' aria-label="Filter {_e(view.title)}">{hidden}'
            f'<label>Filter rows<input type="search" name="q" value="{_e(view.query.q)}"'
            ' maxlength="200" placeholder="text in any column"></label>'
            f'<button type="submit">Filter</button>{clear}</form>\n'
        )
    facts = [_rows_text(view)]
    for text in view.filters:
        facts.append(_e(text))
    if view.filters:
        plain = [*scope.range_params()]
        facts.append(f'<a href="{page.href(view.path + _query(plain))}">all rows</a>')
    csv_link = page.href(f"{view.path}.csv{_query(_view_params(view, scope))}")
    facts.append(f'<a href="{csv_link}" download>Download CSV</a>')
    if not interactive:
        facts.append(
            f'<a href="{page.href(view.path + _query(_view_params(view, scope)))}">'
            "sort and filter</a>"
        )
    parts.append(f'<p class="bar muted">{_DOT.join(facts)}</p>\n')

    head: list[str] = []
    for column in table.columns:
        is_sorted = column.key == view.query.sort
        if is_sorted:
            direction = ASC if view.query.descending else DESC
            arrow = " \u25bc" if view.query.descending else " \u25b2"
            aria = f' aria-sort="{"descending" if view.query.descending else "ascending"}"'
        else:
            direction = DESC if column.numeric else ASC
            arrow = aria = ""
        link = page.href(
            view.path + _query(_view_params(view, scope, sort=column.key, dir=direction))
        )
        klass = ' class="n"' if column.numeric else ""
        head.append(
            f'<th scope="col"{klass}{aria}><a href="{link}">{_e(column.label)}</a>{arrow}</th>'
        )
    body: list[str] = []
    for row in view.rows[:MAX_HTML_ROWS]:
        cells = []
        for column in table.columns:
            text = _e(column.text(row))
            target = column.link(row) if column.link is not None else None
            if target is not None:
                text = f'<a href="{page.href(target)}">{text}</a>'
            klass = ' class="n"' if column.numeric else ' class="w"' if column.wide else ""
            cells.append(f"<td{klass}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not view.rows:
        body.append(f'<tr><td colspan="{len(table.columns)}" class="muted">No rows.</td></tr>')
    parts.append(
        f'<div class="scroll"><table>\n<thead><tr>{"".join(head)}</tr></thead>\n'
        f"<tbody>\n{chr(10).join(body)}\n</tbody>\n</table></div>\n"
    )
    if len(view.rows) > MAX_HTML_ROWS:
        parts.append(
            f'<p class="muted">Showing the first {MAX_HTML_ROWS} of {len(view.rows)} rows;'
            " narrow the range or the filter, or download the CSV for all of them.</p>\n"
        )
    return "".join(parts)


def _money_lines(amounts: dict[str, Any]) -> str:
    if not amounts:
        return "<b>-</b>"
    return "".join(
        f"<b>{_e(format_money(amounts[currency]))} {_e(currency)}</b>"
        for currency in sorted(amounts)
    )


def _cards(tally: Tally) -> str:
    reversed_card = (
        f'<div class="card"><span>Reversed (not counted)</span><b>{tally.reversed}</b></div>'
        if tally.reversed
        else ""
    )
    return (
        '<div class="cards">'
        f'<div class="card"><span>Conversions</span><b>{tally.conversions}</b></div>'
        f'<div class="card"><span>Sales</span>{_money_lines(tally.sales)}</div>'
        f'<div class="card"><span>Payouts</span>{_money_lines(tally.payouts)}</div>'
        f"{reversed_card}</div>\n"
    )


def _crumbs(page: Page, scope: Scope, *more: tuple[str, str]) -> str:
    trail = [f' \u203a <a href="{page.href(scope.link())}">{_e(scope.advertiser.name)}</a>']
    trail += [f' \u203a <a href="{page.href(link)}">{_e(label)}</a>' for link, label in more]
    return "".join(trail)


# -- the pages -----------------------------------------------------------------------


def index_page(page: Page, advertisers: Sequence[Advertiser]) -> str:
    if advertisers:
        items = "".join(
            f'<li><a href="{page.href(f"/advertisers/{a.id}")}">{_e(a.name)}</a>'
            f' <span class="muted">#{a.id}</span></li>'
            for a in advertisers
        )
        body = f"<h1>Advertisers</h1>\n<ul>{items}</ul>\n"
    else:
        body = (
            "<h1>Advertisers</h1>\n<p>No advertisers yet. Create one with"
            " <code>pixel-wsgi advertiser add NAME</code>.</p>\n"
        )
    return _layout(page, "Advertisers", body)


def overview_page(page: Page, overview: Overview) -> str:
    scope = overview.scope
    body = [
        _advertiser_header(page, scope, "", f"{scope.advertiser.name}: overview"),
        _range_form(page, scope, scope.path()),
        f'<p class="bar muted">{scope.days.start} to {scope.days.end} (UTC) \u00b7 '
        f'<a href="{page.href(scope.path(".csv") + _query(scope.range_params()))}" download>'
        "Download totals as CSV</a></p>\n",
        _cards(overview.totals),
        "<h2>Per day</h2>\n",
        f'<figure style="margin:0">{daily_chart(overview.days)}</figure>\n',
        f'<p class="muted"><a href="{page.href(scope.link("/days"))}">The numbers per day</a>'
        "</p>\n",
        "<h2>By campaign</h2>\n",
        _table(page, scope, overview.campaigns, interactive=False),
        "<h2>By publisher</h2>\n",
        _table(page, scope, overview.publishers, interactive=False),
    ]
    return _layout(page, scope.advertiser.name, "".join(body), crumbs=_crumbs(page, scope))


def table_page(
    page: Page, scope: Scope, active: str, view: TableView[Any], *, chart: str = ""
) -> str:
    """A section page: the range form, an optional chart, the table."""
    body = [
        _advertiser_header(page, scope, active, f"{scope.advertiser.name}: {view.title.lower()}"),
        _range_form(page, scope, view.path, view.keep),
    ]
    if chart:
        body.append(f'<figure style="margin:0">{chart}</figure>\n')
    body.append(_table(page, scope, view))
    crumbs = _crumbs(page, scope, (scope.link(active), view.title))
    return _layout(page, f"{view.title}: {scope.advertiser.name}", "".join(body), crumbs=crumbs)


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
    items = "".join(
        f'<div class="card"><span>{_e(label)}</span><b>{_e(value)}</b></div>'
        for label, value in facts
    )
    title = f"Conversion {conversion.conversion_id}"
    body = [
        _advertiser_header(
            page, scope, "/conversions", f"{scope.advertiser.name}: {title.lower()}"
        ),
        f'<div class="cards">{items}</div>\n',
        "<h2>Correction chain</h2>\n",
        '<p class="muted">Every ledger row of this conversion, oldest first. Rows are never'
        " changed: a correction is a new row that names the row it corrects, and the last"
        " row is the conversion's current state.</p>\n",
        _table(page, scope, chain.view),
    ]
    crumbs = _crumbs(page, scope, (scope.link("/conversions"), "Conversions"))
    return _layout(page, f"{title}: {scope.advertiser.name}", "".join(body), crumbs=crumbs)


def rejections_page(page: Page, scope: Scope, rejections: Rejections) -> str:
    log = rejections.log
    body = [
        _advertiser_header(page, scope, "/rejections", f"{scope.advertiser.name}: rejections"),
        _range_form(page, scope, log.path, log.keep),
        '<p class="muted">Reports and clicks that did not count, and why (a few reasons,'
        " like too_fast, flag a conversion that did count). Parameters are shown with"
        " personal fields redacted.</p>\n",
        "<h2>By reason</h2>\n",
        _table(page, scope, rejections.reasons, interactive=False),
        "<h2>Log</h2>\n",
        _table(page, scope, log),
    ]
    crumbs = _crumbs(page, scope, (scope.link("/rejections"), "Rejections"))
    return _layout(page, f"Rejections: {scope.advertiser.name}", "".join(body), crumbs=crumbs)


def error_page(page: Page, status: str, message: str) -> str:
    body = (
        f"<h1>{_e(status)}</h1>\n<p>{_e(message)}</p>\n"
        f'<p><a href="{page.href("/")}">Back to the dashboard</a></p>\n'
    )
    return _layout(page, status, body)
