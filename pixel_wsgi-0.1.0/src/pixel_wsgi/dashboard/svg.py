"""The daily chart: a server-rendered SVG bar chart, no script, no external resource.

One panel of bars for the conversions per day, then one per payout currency
(amounts in different currencies never share an axis). Every bar carries a
``<title>``, which browsers show as a tooltip, and the chart is well-formed XML
that scales to the width of its container. This module computes the geometry;
``templates/chart.svg`` draws it, with every text escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup

from ..money import MONEY
from .reports import DayRow, format_money
from .templating import render

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


@dataclass(frozen=True, slots=True)
class _Bar:
    x: str
    y: str
    width: str
    height: str
    tooltip: str


@dataclass(frozen=True, slots=True)
class _Panel:
    """One panel's coordinates and texts, as ``chart.svg`` draws them."""

    top: int
    title: str
    colour: str
    zero_label: str
    #: The label of the top gridline; None draws "nothing in this range" instead.
    highest_label: str | None
    bars: list[_Bar]
    first: str
    last: str

    @property
    def plot_top(self) -> int:
        return self.top + _TITLE

    @property
    def baseline(self) -> int:
        return self.plot_top + _PLOT


def _panel(
    top: int,
    title: str,
    days: Sequence[DayRow],
    value: Callable[[DayRow], Decimal],
    label: Callable[[Decimal], str],
    tooltip: Callable[[DayRow], str],
    colour: str,
) -> _Panel:
    plot_width = Decimal(_WIDTH - _LEFT - _RIGHT)
    baseline = top + _TITLE + _PLOT
    values = [value(day) for day in days]
    highest = max(values, default=Decimal(0))
    step = plot_width / len(days) if days else plot_width
    bar_width = step * Decimal("0.8") if step >= 2 else step
    bars: list[_Bar] = []
    for index, (day, amount) in enumerate(zip(days, values, strict=True)):
        if amount <= 0:
            continue
        # At least one unit tall, so that a small day next to a big one still shows.
        height = max(amount / highest * _PLOT, Decimal(1))
        x = _LEFT + step * index + (step - bar_width) / 2
        bars.append(
            _Bar(_num(x), _num(baseline - height), _num(bar_width), _num(height), tooltip(day))
        )
    return _Panel(
        top,
        title,
        colour,
        label(Decimal(0)),
        label(highest) if highest > 0 else None,
        bars,
        days[0].day.isoformat() if days else "",
        days[-1].day.isoformat() if len(days) > 1 else "",
    )


def daily_chart(days: Sequence[DayRow]) -> Markup:
    """The SVG for one row per day (see :func:`~pixel_wsgi.dashboard.reports.by_day`)."""
    currencies = sorted(
        {currency for day in days for currency, amount in day.tally.payouts.items() if amount}
    )
    shown, hidden = currencies[:MAX_CURRENCY_PANELS], currencies[MAX_CURRENCY_PANELS:]

    def count_tooltip(day: DayRow) -> str:
        noun = "conversion" if day.tally.conversions == 1 else "conversions"
        return f"{day.day.isoformat()}: {day.tally.conversions} {noun}"

    panels = [
        _panel(
            0,
            "Conversions per day",
            days,
            lambda day: Decimal(day.tally.conversions),
            lambda amount: str(int(amount)),
            count_tooltip,
            _CONVERSIONS_COLOUR,
        )
    ]
    for number, currency in enumerate(shown, start=1):

        def payout(day: DayRow, currency: str = currency) -> Decimal:
            return day.tally.payout(currency)

        def payout_tooltip(day: DayRow, currency: str = currency) -> str:
            return f"{day.day.isoformat()}: {format_money(day.tally.payout(currency))} {currency}"

        def payout_label(amount: Decimal, currency: str = currency) -> str:
            return f"{format_money(amount)} {currency}"

        panels.append(
            _panel(
                number * (_PANEL + _GAP),
                f"Payouts per day ({currency})",
                days,
                payout,
                payout_label,
                payout_tooltip,
                _PAYOUT_COLOUR,
            )
        )
    height = panels[-1].top + _PANEL + (_GAP + 14 if hidden else 0)
    return render(
        "chart.svg",
        width=_WIDTH,
        height=height,
        left=_LEFT,
        right=_WIDTH - _RIGHT,
        middle=_LEFT + (_WIDTH - _LEFT - _RIGHT) // 2,
        half_plot=_PLOT // 2,
        panels=panels,
        hidden=hidden,
        start=days[0].day.isoformat() if days else "",
        end=days[-1].day.isoformat() if days else "",
    )
