"""What the dashboard shows, computed from ledger rows: pure functions, no WSGI, no I/O.

A *conversion* is a correction chain: its first row says when it happened (the
date range filters on that), its last row says what it is now (sale, payout,
reason code). Sums are kept per currency in exact decimals, never mixed and
never converted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any

from ..clock import iso_utc
from ..ledger.payouts import describe_payout
from ..models import Campaign, Publisher, Rejection, Transaction
from ..money import ZERO, add, format_money

__all__ = [
    "ChainStep",
    "Change",
    "Conversion",
    "DateRange",
    "DayRow",
    "GroupRow",
    "OutcomeDay",
    "ReasonCount",
    "Tally",
    "age_text",
    "by_campaign",
    "by_day",
    "by_publisher",
    "chain_steps",
    "conversions_from_rows",
    "day_of",
    "describe_payout",
    "format_money",
    "format_value",
    "original_id",
    "outcomes_by_day",
    "reason_counts",
    "reversal_reason",
    "row_type",
    "totals",
]


def day_of(timestamp: str) -> date | None:
    """The UTC day of a stored timestamp (``2026-11-25T11:21:43.000123Z``), or None."""
    try:
        return date.fromisoformat(timestamp[:10])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DateRange:
    """Whole UTC days from ``start`` to ``end``, both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"the range ends ({self.end}) before it starts ({self.start})")

    @property
    def length(self) -> int:
        """How many days the range covers."""
        return (self.end - self.start).days + 1

    def days(self) -> list[date]:
        return [self.start + timedelta(days=offset) for offset in range(self.length)]

    def contains(self, timestamp: str) -> bool:
        day = day_of(timestamp)
        return day is not None and self.start <= day <= self.end

    def bounds(self) -> tuple[str, str | None]:
        """The range as a store's ``created_from`` (inclusive) and ``created_before``
        (exclusive): the first instants of ``start`` and of the day after ``end``, UTC;
        no upper bound when ``end`` is the last day a date can hold."""
        following = None if self.end == date.max else self.end + timedelta(days=1)
        return _start_of(self.start), None if following is None else _start_of(following)


def _start_of(day: date) -> str:
    return iso_utc(datetime.combine(day, time(0), tzinfo=timezone.utc))


def reversal_reason(row: Transaction) -> str | None:
    """Why the row voids its conversion, or None (also for a ledger without reversals)."""
    reason = getattr(row, "reversal_reason", None)
    return None if reason is None else str(reason)


def row_type(row: Transaction) -> str:
    """``conversion`` (a chain's first row), ``correction`` or ``reversal``."""
    if reversal_reason(row) is not None:
        return "reversal"
    return "conversion" if row.corrects_transaction_id is None else "correction"


@dataclass(slots=True)
class Tally:
    """A count of conversions and their sale and payout sums, per currency.

    A conversion whose current state is a reversal is void: it is counted in
    ``reversed`` only, and its sale and payout in no sum.
    """

    conversions: int = 0
    sales: dict[str, Decimal] = field(default_factory=dict)
    payouts: dict[str, Decimal] = field(default_factory=dict)
    reversed: int = 0

    def add(self, row: Transaction) -> None:
        if reversal_reason(row) is not None:
            self.reversed += 1
            return
        self.conversions += 1
        if row.sale_amount is not None:
            self.sales[row.sale_currency] = add(
                self.sales.get(row.sale_currency, ZERO), row.sale_amount
            )
        self.payouts[row.payout_currency] = add(
            self.payouts.get(row.payout_currency, ZERO), row.payout
        )

    def sale(self, currency: str) -> Decimal:
        return self.sales.get(currency, ZERO)

    def payout(self, currency: str) -> Decimal:
        return self.payouts.get(currency, ZERO)


@dataclass(frozen=True, slots=True)
class Conversion:
    """One conversion: the rows of its correction chain, in chain order."""

    rows: tuple[Transaction, ...]

    @property
    def first(self) -> Transaction:
        return self.rows[0]

    @property
    def current(self) -> Transaction:
        """The end of the chain: what the conversion is now."""
        return self.rows[-1]

    @property
    def conversion_id(self) -> int:
        """The id of the chain's first row, which names the conversion."""
        return self.rows[0].transaction_id

    @property
    def recorded_at(self) -> str:
        return self.rows[0].created_at

    @property
    def corrections(self) -> int:
        return len(self.rows) - 1


def original_id(row: Transaction) -> int:
    """The id of the conversion ``row`` belongs to: its chain's first row."""
    # Backends report a first row's original_transaction_id as its own id; be
    # lenient with one that leaves it empty.
    return row.original_transaction_id or row.transaction_id


def _chain_order(rows: list[Transaction]) -> tuple[Transaction, ...]:
    """Follow ``corrects_transaction_id`` from the first row to the end of the chain."""
    rows.sort(key=lambda row: row.transaction_id)
    children: dict[int, list[Transaction]] = defaultdict(list)
    for row in rows:
        if row.corrects_transaction_id is not None:
            children[row.corrects_transaction_id].append(row)
    start = rows[0]
    ordered = [start]
    seen = {start.transaction_id}
    while True:
        following = [
            row
            for row in children.get(ordered[-1].transaction_id, ())
            if row.transaction_id not in seen
        ]
        if not following:
            break
        ordered.append(following[0])
        seen.add(following[0].transaction_id)
    # The ledger serialises corrections, so a chain never forks; should a store
    # ever hold one that does, no row may vanish from the report.
    ordered.extend(row for row in rows if row.transaction_id not in seen)
    return tuple(ordered)


def conversions_from_rows(rows: Iterable[Transaction]) -> list[Conversion]:
    """Group ledger rows into conversions, in the order they were first recorded."""
    chains: dict[int, list[Transaction]] = defaultdict(list)
    for row in rows:
        chains[original_id(row)].append(row)
    return [Conversion(_chain_order(chains[key])) for key in sorted(chains)]


@dataclass(frozen=True, slots=True)
class GroupRow:
    """A campaign's or a publisher's conversions (``rule`` is a campaign's payout)."""

    id: int
    name: str
    tally: Tally
    rule: str = ""


@dataclass(frozen=True, slots=True)
class DayRow:
    day: date
    tally: Tally


def totals(conversions: Iterable[Conversion]) -> Tally:
    tally = Tally()
    for conversion in conversions:
        tally.add(conversion.current)
    return tally


def by_campaign(conversions: Iterable[Conversion], campaigns: Sequence[Campaign]) -> list[GroupRow]:
    """One row per campaign of the advertiser, those without conversions included."""
    tallies: dict[int, Tally] = defaultdict(Tally)
    for conversion in conversions:
        tallies[conversion.current.campaign_id].add(conversion.current)
    rows = [
        GroupRow(c.id, c.name, tallies.pop(c.id, Tally()), describe_payout(c.payout))
        for c in campaigns
    ]
    # A conversion always names one of the advertiser's campaigns; keep any other.
    rows.extend(GroupRow(key, f"campaign {key}", tally) for key, tally in sorted(tallies.items()))
    return rows


def by_publisher(
    conversions: Iterable[Conversion], publishers: Mapping[int, Publisher]
) -> list[GroupRow]:
    """One row per publisher that earned a conversion."""
    tallies: dict[int, Tally] = defaultdict(Tally)
    for conversion in conversions:
        tallies[conversion.current.publisher_id].add(conversion.current)
    return [
        GroupRow(key, publishers[key].name if key in publishers else f"publisher {key}", tally)
        for key, tally in sorted(tallies.items())
    ]


def by_day(conversions: Iterable[Conversion], days: DateRange) -> list[DayRow]:
    """One row per day of the range, days without conversions included."""
    tallies: dict[date, Tally] = {day: Tally() for day in days.days()}
    for conversion in conversions:
        day = day_of(conversion.recorded_at)
        if day in tallies:
            tallies[day].add(conversion.current)
    return [DayRow(day, tally) for day, tally in tallies.items()]


# -- correction chains -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One field that a correction changed, both sides formatted for display."""

    field: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class ChainStep:
    """A row of a correction chain and what it changed from the row before it."""

    step: int
    row: Transaction
    changes: tuple[Change, ...]


# Bookkeeping that differs on every row, or that a correction inherits by rule.
_NOT_CHANGES = frozenset(
    {
        "transaction_id",
        "corrects_transaction_id",
        "original_transaction_id",
        "created_at",
        "source",
        "visit_id",
        "reference_id",
        "advertiser_id",
        "transaction_type",
    }
)
# Amounts shown with their currency, as one field.
_MONEY_FIELDS = {"sale_amount": ("sale", "sale_currency"), "payout": ("payout", "payout_currency")}
_CURRENCY_FIELDS = frozenset(currency for _name, currency in _MONEY_FIELDS.values())


def format_value(value: Any) -> str:
    """Any ledger field as text: lists joined, mappings as ``key=value``, nothing as ``-``."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}={item}" for key, item in sorted(value.items()))
    if isinstance(value, Decimal):
        return format_money(value)
    return str(value)


def _money_text(document: Mapping[str, Any], amount_key: str, currency_key: str) -> str:
    amount = document.get(amount_key)
    if amount is None:
        return "-"
    return f"{format_money(Decimal(str(amount)))} {document.get(currency_key)}"


def _changes(before: Transaction, after: Transaction) -> tuple[Change, ...]:
    # Compare the JSON-ready documents, so that a field the ledger gains later
    # shows up here without the dashboard knowing its name.
    old, new = before.as_dict(), after.as_dict()
    changes: list[Change] = []
    for key in new:
        if key in _NOT_CHANGES or key in _CURRENCY_FIELDS:
            continue
        if key in _MONEY_FIELDS:
            label, currency_key = _MONEY_FIELDS[key]
            if (old.get(key), old.get(currency_key)) != (new[key], new.get(currency_key)):
                changes.append(
                    Change(
                        label,
                        _money_text(old, key, currency_key),
                        _money_text(new, key, currency_key),
                    )
                )
        elif old.get(key) != new[key]:
            changes.append(Change(key, format_value(old.get(key)), format_value(new[key])))
    return tuple(changes)


def chain_steps(conversion: Conversion) -> list[ChainStep]:
    """Every row of the chain in order, each with what it changed."""
    steps = [ChainStep(1, conversion.first, ())]
    for number, (before, after) in enumerate(pairwise(conversion.rows), start=2):
        steps.append(ChainStep(number, after, _changes(before, after)))
    return steps


# -- the rejection log -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    count: int
    latest: str


def reason_counts(rejections: Iterable[Rejection]) -> list[ReasonCount]:
    """How many rejections each reason has, and when it last happened; most frequent first."""
    counts: Counter[str] = Counter()
    latest: dict[str, str] = {}
    for rejection in rejections:
        counts[rejection.reason] += 1
        latest[rejection.reason] = max(latest.get(rejection.reason, ""), rejection.created_at)
    return [
        ReasonCount(reason, count, latest[reason])
        for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


# -- delivery --------------------------------------------------------------------------


def age_text(seconds: int | None) -> str:
    """A duration for people: ``-``, ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    if seconds is None:
        return "-"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{minutes} min"
    if seconds < 86400:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


@dataclass(frozen=True, slots=True)
class OutcomeDay:
    """A target's attempts of one UTC day, by outcome (in the order of the columns)."""

    day: date
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)


def outcomes_by_day(
    rows: Iterable[tuple[str, str, int]], days: DateRange
) -> tuple[list[str], list[OutcomeDay]]:
    """``(day, outcome, attempts)`` rows as a table: the outcomes seen (sorted, the
    columns), and every day of ``days``, those without attempts included."""
    counts: dict[tuple[date, str], int] = {}
    outcomes: set[str] = set()
    for day_text, outcome, attempts in rows:
        day = day_of(day_text)
        if day is None or not days.start <= day <= days.end:
            continue
        outcomes.add(outcome)
        counts[day, outcome] = counts.get((day, outcome), 0) + attempts
    columns = sorted(outcomes)
    return columns, [
        OutcomeDay(day, tuple(counts.get((day, outcome), 0) for outcome in columns))
        for day in days.days()
    ]
