"""The daily chart: a server-rendered SVG bar chart, no script, no external resource.

One panel of bars for the conversions per day, then one per payout currency
(amounts in different currencies never share an axis). Every bar carries a
``<title>``, which browsers show as a tooltip, and the chart is well-formed XML
that scales to the width of its container.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape

from ..money import MONEY
from .reports import DayRow, format_money

__all__ = ["MAX_CURRENCY_PANELS", "daily_chart"]

#: Payout currencies drawn; the others are named in a note (the tables have them all).
MAX_CURRENCY_PANELS = 3

_WIDTH = 560
_LEFT = 68  # room for the axis labels
_RIGHT = 8
_TITLE = 28
_PLOT = 100
_AXIS = 20
_GAP = 12
_PANEL = _TITLE + _PLOT + _AXIS
_CONVERSIONS_COLOUR = "#2563eb"
_PAYOUT_COLOUR = "#0f766e"
_TWO_PLACES = Decimal("0.01")


def _num(value: Decimal | int) -> str:
    """A coordinate with at most two decimals and no exponent (SVG accepts no ``1E+2``)."""
    text = f"{MONEY.quantize(Decimal(value), _TWO_PLACES):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _attr(value: str) -> str:
    return escape(value, quote=True)


def _panel(
    top: int,
    title: str,
    days: Sequence[DayRow],
    value: Callable[[DayRow], Decimal],
    label: Callable[[Decimal], str],
    tooltip: Callable[[DayRow], str],
    colour: str,
) -> list[str]:
    plot_width = Decimal(_WIDTH - _LEFT - _RIGHT)
    plot_top = top + _TITLE
    baseline = plot_top + _PLOT
    values = [value(day) for day in days]
    highest = max(values, default=Decimal(0))
    step = plot_width / len(days) if days else plot_width
    bar = step * Decimal("0.8") if step >= 2 else step
    parts = [
        f'<text x="0" y="{top + 15}" font-size="14" font-weight="600">{escape(title)}</text>',
        f'<line x1="{_LEFT}" y1="{baseline}" x2="{_WIDTH - _RIGHT}" y2="{baseline}"'
        ' stroke="#999" stroke-width="1"/>',
        f'<text x="{_LEFT - 6}" y="{baseline}" text-anchor="end">'
        f"{escape(label(Decimal(0)))}</text>",
    ]
    if highest > 0:
        parts += [
            f'<line x1="{_LEFT}" y1="{plot_top}" x2="{_WIDTH - _RIGHT}" y2="{plot_top}"'
            ' stroke="#ddd" stroke-width="1" stroke-dasharray="4 3"/>',
            f'<text x="{_LEFT - 6}" y="{plot_top + 4}" text-anchor="end">'
            f"{escape(label(highest))}</text>",
        ]
    else:
        parts.append(
            f'<text x="{_LEFT + int(plot_width) // 2}" y="{plot_top + _PLOT // 2}"'
            ' text-anchor="middle" fill="#777">nothing in this range</text>'
        )
    for index, (day, amount) in enumerate(zip(days, values, strict=True)):
        if amount <= 0:
            continue
        # At least one unit tall, so that a small day next to a big one still shows.
        height = max(amount / highest * _PLOT, Decimal(1))
        x = _LEFT + step * index + (step - bar) / 2
        parts.append(
            f'<rect x="{_num(x)}" y="{_num(baseline - height)}" width="{_num(bar)}"'
            f' height="{_num(height)}" fill="{colour}"><title>{escape(tooltip(day))}</title></rect>'
        )
    if days:
        first, last = days[0].day.isoformat(), days[-1].day.isoformat()
        axis_y = baseline + 15
        parts.append(f'<text x="{_LEFT}" y="{axis_y}">{first}</text>')
        if len(days) > 1:
            parts.append(
                f'<text x="{_WIDTH - _RIGHT}" y="{axis_y}" text-anchor="end">{last}</text>'
            )
    return parts


def daily_chart(days: Sequence[DayRow]) -> str:
    """The SVG for one row per day (see :func:`~pixel_wsgi.dashboard.reports.by_day`)."""
    currencies = sorted(
        {currency for day in days for currency, amount in day.tally.payouts.items() if amount}
    )
    shown, hidden = currencies[:MAX_CURRENCY_PANELS], currencies[MAX_CURRENCY_PANELS:]
    panels: list[list[str]] = []
    top = 0

    def count_tooltip(day: DayRow) -> str:
        noun = "conversion" if day.tally.conversions == 1 else "conversions"
        return f"{day.day.isoformat()}: {day.tally.conversions} {noun}"

    panels.append(
        _panel(
            top,
            "Conversions per day",
            days,
            lambda day: Decimal(day.tally.conversions),
            lambda amount: str(int(amount)),
            count_tooltip,
            _CONVERSIONS_COLOUR,
        )
    )
    for currency in shown:
        top += _PANEL + _GAP

        def payout(day: DayRow, currency: str = currency) -> Decimal:
            return day.tally.payout(currency)

        def payout_tooltip(day: DayRow, currency: str = currency) -> str:
            return f"{day.day.isoformat()}: {format_money(day.tally.payout(currency))} {currency}"

        def payout_label(amount: Decimal, currency: str = currency) -> str:
            return f"{format_money(amount)} {currency}"

        panels.append(
            _panel(
                top,
                f"Payouts per day ({currency})",
                days,
                payout,
                payout_label,
                payout_tooltip,
                _PAYOUT_COLOUR,
            )
        )
    height = top + _PANEL
    if hidden:
        height += _GAP + 14
        panels.append(
            [
                f'<text x="0" y="{height - 2}" fill="#777">Payouts in {escape(", ".join(hidden))}'
                " are in the tables below.</text>"
            ]
        )
    start = days[0].day.isoformat() if days else ""
    end = days[-1].day.isoformat() if days else ""
    body = "\n".join(part for panel in panels for part in panel)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {_WIDTH} {height}"'
        f' width="{_WIDTH}" height="{height}" role="img" aria-labelledby="chart-title"'
        ' font-family="system-ui, sans-serif" font-size="12" fill="currentColor">\n'
        f'<title id="chart-title">{_attr(f"Conversions and payouts per day, {start} to {end}")}'
        "</title>\n"
        f"{body}\n</svg>"
    )
