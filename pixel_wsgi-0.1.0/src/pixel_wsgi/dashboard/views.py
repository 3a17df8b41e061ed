"""Each page's data: read through the public Storage API, shaped by :mod:`.reports`.

A view function takes the store, the advertiser, the date range and the query
arguments, and returns what both the HTML page and its CSV export are made
from. Personal data never enters here: the Storage methods used return ledger
rows, entities and the (redacted) rejection log, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from ..clock import seconds_since
from ..delivery.model import OutcomeKind
from ..errors import NotFound
from ..models import (
    Advertiser,
    DeliveryAttempt,
    DeliveryStatus,
    Reason,
    Rejection,
    StoredTarget,
    TargetHealth,
    Transaction,
)
from ..params.values import Query
from ..storage import Storage
from .query import (
    currency_of_sort,
    optional_id,
    parse_table_query,
    reason_filter,
)
from .reports import (
    ChainStep,
    Conversion,
    DateRange,
    DayRow,
    GroupRow,
    OutcomeDay,
    ReasonCount,
    Tally,
    by_campaign,
    by_day,
    by_publisher,
    chain_steps,
    conversions_from_rows,
    day_of,
    format_money,
    format_value,
    original_id,
    outcomes_by_day,
    reason_counts,
    reversal_reason,
    row_type,
    totals,
)
from .tables import Column, Table, TableQuery, money_csv, money_sort, money_text, optional_sort

R = TypeVar("R")

#: The most rows a page shows; the CSV export always has them all.
MAX_HTML_ROWS = 1000


# -- what every advertiser page is about --------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The advertiser and the date range of a page, and links that keep them."""

    advertiser: Advertiser
    days: DateRange

    def range_params(self) -> list[tuple[str, str]]:
        return [("from", self.days.start.isoformat()), ("to", self.days.end.isoformat())]

    def path(self, below: str = "") -> str:
        """A path under the dashboard's root, like ``/advertisers/1/conversions``."""
        return f"/advertisers/{self.advertiser.id}{below}"

    def link(self, below: str = "", params: Sequence[tuple[str, str]] = ()) -> str:
        return f"{self.path(below)}?{urlencode([*self.range_params(), *params])}"


@dataclass(frozen=True)
class TableView(Generic[R]):
    """A table with its rows filtered and sorted: one page's HTML table and its CSV.

    ``keep`` are the page's own filters (``campaign=``, ``reason=``), which every
    link of the page carries along with ``from``/``to``, ``sort``, ``dir`` and ``q``.
    """

    title: str
    path: str
    table: Table[R]
    rows: list[R]
    total: int
    query: TableQuery
    keep: list[tuple[str, str]] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)


def _view(
    title: str,
    path: str,
    table: Table[R],
    rows: Sequence[R],
    args: Query,
    *,
    keep: Sequence[tuple[str, str]] = (),
    filters: Sequence[str] = (),
) -> TableView[R]:
    query = parse_table_query(args, table)
    return TableView(
        title, path, table, table.apply(rows, query), len(rows), query, list(keep), list(filters)
    )


def _default_view(title: str, path: str, table: Table[R], rows: Sequence[R]) -> TableView[R]:
    query = table.default_query()
    return TableView(title, path, table, table.apply(rows, query), len(rows), query)


# -- conversions in the range --------------------------------------------------------


def conversions_in(
    storage: Storage, advertiser_id: int, days: DateRange, *, reference_id: str | None = None
) -> list[Conversion]:
    """The advertiser's conversions first recorded in ``days``, each with its whole chain
    (with ``reference_id``, only the one conversion of that reference).

    Two reads bounded by dates, never the advertiser's whole ledger: the chain ends of
    the conversions made in the range (the store bounds each chain's first row), then
    the ledger rows from the range's first day to the day of the latest of those ends,
    the only span where rows of those chains can be.
    """
    created_from, created_before = days.bounds()
    ends = {
        original_id(end): end
        for end in storage.conversions(
            advertiser_id=advertiser_id, created_from=created_from, created_before=created_before
        )
    }
    if not ends:
        return []
    latest = max(day_of(end.created_at) or days.end for end in ends.values())
    _, until = DateRange(days.start, max(days.end, latest)).bounds()
    rows = storage.transactions(
        advertiser_id=advertiser_id,
        reference_id=reference_id,
        created_from=created_from,
        created_before=until,
    )
    return conversions_from_rows(row for row in rows if original_id(row) in ends)


def _load_conversions(storage: Storage, scope: Scope) -> list[Conversion]:
    return conversions_in(storage, scope.advertiser.id, scope.days)


def _currencies(tallies: Iterable[Tally], requested: str | None) -> tuple[list[str], list[str]]:
    """The sale and the payout currencies that get a column, sorted."""
    sales: set[str] = set()
    payouts: set[str] = set()
    for tally in tallies:
        sales.update(tally.sales)
        payouts.update(tally.payouts)
    if requested is not None:
        sales.add(requested)
        payouts.add(requested)
    return sorted(sales), sorted(payouts)


def _tally_columns(
    get: Callable[[Any], Tally], sale_currencies: Sequence[str], payout_currencies: Sequence[str]
) -> list[Column[Any]]:
    """A count column, then one column per sale currency and per payout currency."""
    columns: list[Column[Any]] = [
        Column(
            "conversions",
            "Conversions",
            lambda row: str(get(row).conversions),
            sort=lambda row: get(row).conversions,
            numeric=True,
        )
    ]

    def money(kind: str, currency: str) -> Column[Any]:
        def amount(row: Any) -> Decimal:
            tally = get(row)
            return tally.sale(currency) if kind == "sales" else tally.payout(currency)

        key = f"{kind}_{currency}"
        return Column(
            key,
            f"{kind.capitalize()} {currency}",
            lambda row: money_text(amount(row), currency),
            sort=amount,
            numeric=True,
            csv=((key, lambda row: format_money(amount(row))),),
        )

    columns += [money("sales", currency) for currency in sale_currencies]
    columns += [money("payouts", currency) for currency in payout_currencies]
    return columns


def _group_table(
    scope: Scope,
    group: str,
    rows: Sequence[GroupRow],
    requested: str | None,
    *,
    described_by: Sequence[Column[GroupRow]] = (),
) -> Table[GroupRow]:
    """Conversions by ``group`` (``campaign`` or ``publisher``); a name links to its own."""
    sales, payouts = _currencies((row.tally for row in rows), requested)
    return Table(
        f"{group}s",
        [
            Column("id", "Id", lambda row: str(row.id), sort=lambda row: row.id, numeric=True),
            Column(
                group,
                group.capitalize(),
                lambda row: row.name,
                sort=lambda row: row.name.casefold(),
                link=lambda row: scope.link("/conversions", [(group, str(row.id))]),
            ),
            *described_by,
            *_tally_columns(lambda row: row.tally, sales, payouts),
        ],
        default_sort="conversions",
        default_descending=True,
    )


def campaign_table(
    scope: Scope, rows: Sequence[GroupRow], requested: str | None
) -> Table[GroupRow]:
    pays = Column[GroupRow]("payout_rule", "Pays", lambda row: row.rule or "-")
    return _group_table(scope, "campaign", rows, requested, described_by=[pays])


def publisher_table(
    scope: Scope, rows: Sequence[GroupRow], requested: str | None
) -> Table[GroupRow]:
    return _group_table(scope, "publisher", rows, requested)


def day_table(scope: Scope, rows: Sequence[DayRow], requested: str | None) -> Table[DayRow]:
    sales, payouts = _currencies((row.tally for row in rows), requested)

    def conversions_of_day(row: DayRow) -> str:
        day = row.day.isoformat()
        return f"{scope.path('/conversions')}?{urlencode([('from', day), ('to', day)])}"

    return Table(
        "days",
        [
            Column("date", "Date (UTC)", lambda row: row.day.isoformat(), link=conversions_of_day),
            *_tally_columns(lambda row: row.tally, sales, payouts),
        ],
        default_sort="date",
    )


@dataclass(frozen=True)
class Overview:
    scope: Scope
    totals: Tally
    days: list[DayRow]
    campaigns: TableView[GroupRow]
    publishers: TableView[GroupRow]


def overview(storage: Storage, scope: Scope) -> Overview:
    conversions = _load_conversions(storage, scope)
    campaigns = by_campaign(conversions, storage.campaigns(advertiser_id=scope.advertiser.id))
    publishers = by_publisher(conversions, {p.id: p for p in storage.publishers()})
    return Overview(
        scope,
        totals(conversions),
        by_day(conversions, scope.days),
        _default_view(
            "By campaign",
            scope.path("/campaigns"),
            campaign_table(scope, campaigns, None),
            campaigns,
        ),
        _default_view(
            "By publisher",
            scope.path("/publishers"),
            publisher_table(scope, publishers, None),
            publishers,
        ),
    )


def campaigns_view(storage: Storage, scope: Scope, args: Query) -> TableView[GroupRow]:
    conversions = _load_conversions(storage, scope)
    rows = by_campaign(conversions, storage.campaigns(advertiser_id=scope.advertiser.id))
    table = campaign_table(scope, rows, currency_of_sort(args))
    return _view("Conversions by campaign", scope.path("/campaigns"), table, rows, args)


def publishers_view(storage: Storage, scope: Scope, args: Query) -> TableView[GroupRow]:
    conversions = _load_conversions(storage, scope)
    rows = by_publisher(conversions, {p.id: p for p in storage.publishers()})
    table = publisher_table(scope, rows, currency_of_sort(args))
    return _view("Conversions by publisher", scope.path("/publishers"), table, rows, args)


def days_view(
    storage: Storage, scope: Scope, args: Query
) -> tuple[TableView[DayRow], list[DayRow]]:
    """The table of days, and every day of the range in order (for the chart)."""
    rows = by_day(_load_conversions(storage, scope), scope.days)
    table = day_table(scope, rows, currency_of_sort(args))
    return _view("Conversions by day", scope.path("/days"), table, rows, args), rows


def _items(row: Any) -> str:
    if not row.sku_list:
        return "-"
    quantities = list(row.quantity_list) + [None] * (len(row.sku_list) - len(row.quantity_list))
    return ", ".join(
        sku if quantity is None else f"{sku} x{quantity}"
        for sku, quantity in zip(row.sku_list, quantities, strict=False)
    )


def status(conversion: Conversion) -> str:
    """``as reported``, ``corrected`` or ``reversed: <reason>``; ``contested, ...`` while
    another visit claims its reference_id and the advertiser's server has not decided."""
    reason = reversal_reason(conversion.current)
    if reason is not None:
        text = f"reversed: {reason}" if reason else "reversed"
    else:
        text = "corrected" if conversion.corrections else "as reported"
    return f"contested, {text}" if conversion.current.contested else text


def shown_time(timestamp: str) -> str:
    """``2026-11-25 11:21:43`` from a stored ``2026-11-25T11:21:43.000123Z``."""
    return timestamp[:19].replace("T", " ")


def _time_column(key: str, label: str, timestamp: Callable[[R], str], csv_header: str) -> Column[R]:
    """A stored timestamp: shown to the second, sorted and exported as stored."""
    return Column(
        key,
        label,
        lambda row: shown_time(timestamp(row)),
        sort=timestamp,
        csv=((csv_header, timestamp),),
    )


def _optional_text_column(key: str, label: str, value: Callable[[R], str | None]) -> Column[R]:
    """Text a row may lack: ``-`` in the page, an empty CSV cell, sorted first."""
    return Column(
        key,
        label,
        lambda row: value(row) or "-",
        sort=lambda row: optional_sort(value(row)),
        csv=((key, lambda row: value(row) or ""),),
    )


def _name(names: dict[int, str], kind: str, key: int) -> str:
    """The name of the campaign or publisher ``key``, or ``"<kind> <key>"`` without one."""
    return names.get(key, f"{kind} {key}")


def _name_column(kind: str, names: dict[int, str], key: Callable[[R], int]) -> Column[R]:
    """A campaign's or a publisher's name, sorted without case; its id too in the CSV."""

    def name(row: R) -> str:
        return _name(names, kind, key(row))

    return Column(
        kind,
        kind.capitalize(),
        name,
        sort=lambda row: name(row).casefold(),
        csv=((f"{kind}_id", lambda row: str(key(row))), (kind, name)),
    )


def _money_column(
    key: str,
    label: str,
    amount: Callable[[R], Decimal | None],
    currency: Callable[[R], str],
    csv_headers: tuple[str, str],
) -> Column[R]:
    """An amount and its currency: one cell in the page, two in the CSV export."""
    amount_header, currency_header = csv_headers
    return Column(
        key,
        label,
        lambda row: money_text(amount(row), currency(row)),
        sort=lambda row: money_sort(amount(row), currency(row)),
        numeric=True,
        csv=((amount_header, lambda row: money_csv(amount(row))), (currency_header, currency)),
    )


def _sale_and_payout_columns(transaction: Callable[[R], Transaction]) -> list[Column[R]]:
    """The sale and the payout of the ledger row that ``transaction`` picks from a row."""
    return [
        _money_column(
            "sale",
            "Sale",
            lambda row: transaction(row).sale_amount,
            lambda row: transaction(row).sale_currency,
            ("sale_amount", "sale_currency"),
        ),
        _money_column(
            "payout",
            "Payout",
            lambda row: transaction(row).payout,
            lambda row: transaction(row).payout_currency,
            ("payout", "payout_currency"),
        ),
    ]


def conversion_table(
    scope: Scope, campaign_names: dict[int, str], publisher_names: dict[int, str]
) -> Table[Conversion]:
    return Table(
        "conversions",
        [
            Column(
                "conversion",
                "Conversion",
                lambda row: str(row.conversion_id),
                sort=lambda row: row.conversion_id,
                numeric=True,
                csv=(("conversion_id", lambda row: str(row.conversion_id)),),
                link=lambda row: scope.link(f"/conversions/{row.conversion_id}"),
            ),
            _time_column("recorded", "Recorded (UTC)", lambda row: row.recorded_at, "recorded_at"),
            _optional_text_column(
                "reference_id", "Reference id", lambda row: row.first.reference_id
            ),
            _name_column("campaign", campaign_names, lambda row: row.current.campaign_id),
            _name_column("publisher", publisher_names, lambda row: row.current.publisher_id),
            Column("status", "Status", status),
            Column("source", "Source", lambda row: row.current.source),
            _optional_text_column(
                "reason_code", "Reason code", lambda row: row.current.reason_code
            ),
            Column(
                "items",
                "Items",
                lambda row: _items(row.current),
                csv=(
                    ("items", lambda row: "" if not row.current.sku_list else _items(row.current)),
                ),
            ),
            *_sale_and_payout_columns(lambda row: row.current),
            Column(
                "corrections",
                "Corrections",
                lambda row: str(row.corrections),
                sort=lambda row: row.corrections,
                numeric=True,
            ),
            _time_column(
                "updated", "Updated (UTC)", lambda row: row.current.created_at, "updated_at"
            ),
        ],
        default_sort="recorded",
        default_descending=True,
        extra_csv=(("transaction_id", lambda row: str(row.current.transaction_id)),),
    )


def conversions_view(storage: Storage, scope: Scope, args: Query) -> TableView[Conversion]:
    campaign_id = optional_id(args, "campaign")
    publisher_id = optional_id(args, "publisher")
    conversions = _load_conversions(storage, scope)
    campaign_names = {c.id: c.name for c in storage.campaigns(advertiser_id=scope.advertiser.id)}
    publisher_names = {p.id: p.name for p in storage.publishers()}
    keep: list[tuple[str, str]] = []
    filters: list[str] = []
    if campaign_id is not None:
        conversions = [c for c in conversions if c.current.campaign_id == campaign_id]
        keep.append(("campaign", str(campaign_id)))
        filters.append(f"campaign: {_name(campaign_names, 'campaign', campaign_id)}")
    if publisher_id is not None:
        conversions = [c for c in conversions if c.current.publisher_id == publisher_id]
        keep.append(("publisher", str(publisher_id)))
        filters.append(f"publisher: {_name(publisher_names, 'publisher', publisher_id)}")
    table = conversion_table(scope, campaign_names, publisher_names)
    return _view(
        "Conversions",
        scope.path("/conversions"),
        table,
        conversions,
        args,
        keep=keep,
        filters=filters,
    )


# -- one conversion's correction chain -----------------------------------------------


@dataclass(frozen=True)
class Chain:
    conversion: Conversion
    campaign: str
    publisher: str
    view: TableView[ChainStep]


def _changes_text(step: ChainStep) -> str:
    if step.step == 1:
        return "first report"
    if not step.changes:
        return "no visible change"
    return "; ".join(f"{c.field}: {c.before} \u2192 {c.after}" for c in step.changes)


def chain_table() -> Table[ChainStep]:
    return Table(
        "chain",
        [
            Column("step", "Step", lambda s: str(s.step), sort=lambda s: s.step, numeric=True),
            Column("type", "Type", lambda s: row_type(s.row)),
            Column("changes", "What changed", _changes_text, wide=True),
            Column(
                "transaction_id",
                "Row",
                lambda s: str(s.row.transaction_id),
                sort=lambda s: s.row.transaction_id,
                numeric=True,
            ),
            Column(
                "corrects",
                "Corrects",
                lambda s: format_value(s.row.corrects_transaction_id),
                sort=lambda s: optional_sort(s.row.corrects_transaction_id),
                csv=(
                    (
                        "corrects_transaction_id",
                        lambda s: (
                            ""
                            if s.row.corrects_transaction_id is None
                            else str(s.row.corrects_transaction_id)
                        ),
                    ),
                ),
            ),
            _time_column("recorded", "Recorded (UTC)", lambda s: s.row.created_at, "created_at"),
            Column("source", "Source", lambda s: s.row.source),
            *_sale_and_payout_columns(lambda s: s.row),
            _optional_text_column("reason_code", "Reason code", lambda s: s.row.reason_code),
            Column("items", "Items", lambda s: _items(s.row)),
            Column(
                "custom_data", "Custom data", lambda s: format_value(s.row.custom_data), wide=True
            ),
        ],
        default_sort="step",
    )


def _conversion_of(storage: Storage, advertiser_id: int, transaction_id: int) -> Conversion | None:
    """The conversion that the ledger row ``transaction_id`` (any of its chain) belongs to."""
    found = next(
        iter(storage.transactions(advertiser_id=advertiser_id, transaction_id=transaction_id)),
        None,
    )
    if found is None:
        return None
    original = original_id(found)
    first = found
    if original != found.transaction_id:
        first = next(
            iter(storage.transactions(advertiser_id=advertiser_id, transaction_id=original))
        )
    day = day_of(first.created_at)
    if day is None:
        return None
    # Bounded by the day the conversion was made (the store's date index), and by its
    # reference_id when it has one: never a scan of the advertiser's later rows.
    chains = conversions_in(
        storage, advertiser_id, DateRange(day, day), reference_id=first.reference_id
    )
    return next((chain for chain in chains if chain.conversion_id == original), None)


def chain_view(storage: Storage, scope: Scope, transaction_id: int, args: Query) -> Chain:
    """The chain of the conversion that ``transaction_id`` (any of its rows) belongs to."""
    advertiser_id = scope.advertiser.id
    conversion = _conversion_of(storage, advertiser_id, transaction_id)
    if conversion is None:
        raise NotFound(f"advertiser {advertiser_id} has no ledger row {transaction_id}")
    campaign_id, publisher_id = conversion.current.campaign_id, conversion.current.publisher_id
    campaigns = {c.id: c.name for c in storage.campaigns(advertiser_id=advertiser_id)}
    publishers = {p.id: p.name for p in storage.publishers()}
    steps = chain_steps(conversion)
    view = _view(
        f"Conversion {conversion.conversion_id}",
        scope.path(f"/conversions/{transaction_id}"),
        chain_table(),
        steps,
        args,
    )
    return Chain(
        conversion,
        _name(campaigns, "campaign", campaign_id),
        _name(publishers, "publisher", publisher_id),
        view,
    )


# -- the rejection log ---------------------------------------------------------------


def meaning(reason: str) -> str:
    """The stored reason code's :attr:`Reason.meaning`, or ``-`` for a code we do not know."""
    try:
        return Reason(reason).meaning
    except ValueError:
        return "-"


def _reason_column(scope: Scope, reason: Callable[[R], str]) -> Column[R]:
    """A rejection reason, linking to the log of that reason alone."""
    return Column(
        "reason",
        "Reason",
        reason,
        link=lambda row: scope.link("/rejections", [("reason", reason(row))]),
    )


def rejection_table(scope: Scope) -> Table[Rejection]:
    return Table(
        "rejections",
        [
            Column("id", "Id", lambda r: str(r.id), sort=lambda r: r.id, numeric=True),
            _time_column("recorded", "Recorded (UTC)", lambda r: r.created_at, "created_at"),
            Column("source", "Source", lambda r: r.source),
            _reason_column(scope, lambda r: r.reason),
            Column("detail", "Detail", lambda r: r.detail or "-", wide=True),
            _optional_text_column("reference_id", "Reference id", lambda r: r.reference_id),
            Column("params", "Parameters (redacted)", lambda r: r.params or "-", wide=True),
        ],
        default_sort="id",
        default_descending=True,
    )


def reason_table(scope: Scope) -> Table[ReasonCount]:
    return Table(
        "rejection-reasons",
        [
            _reason_column(scope, lambda r: r.reason),
            Column("meaning", "Meaning", lambda r: meaning(r.reason), wide=True),
            Column("count", "Count", lambda r: str(r.count), sort=lambda r: r.count, numeric=True),
            _time_column("latest", "Latest (UTC)", lambda r: r.latest, "latest"),
        ],
        default_sort="count",
        default_descending=True,
    )


def _load_rejections(storage: Storage, scope: Scope) -> list[Rejection]:
    created_from, created_before = scope.days.bounds()
    return list(
        storage.rejections(
            advertiser_id=scope.advertiser.id,
            created_from=created_from,
            created_before=created_before,
        )
    )


@dataclass(frozen=True)
class Rejections:
    reasons: TableView[ReasonCount]
    log: TableView[Rejection]


def rejections_view(storage: Storage, scope: Scope, args: Query) -> Rejections:
    reason = reason_filter(args)
    rejections = _load_rejections(storage, scope)
    counts = reason_counts(rejections)
    keep: list[tuple[str, str]] = []
    filters: list[str] = []
    if reason is not None:
        rejections = [r for r in rejections if r.reason == reason]
        keep.append(("reason", reason))
        filters.append(f"reason: {reason}")
    return Rejections(
        _default_view(
            "Rejections by reason",
            scope.path("/rejections/reasons"),
            reason_table(scope),
            counts,
        ),
        _view(
            "Rejection log",
            scope.path("/rejections"),
            rejection_table(scope),
            rejections,
            args,
            keep=keep,
            filters=filters,
        ),
    )


def reasons_view(storage: Storage, scope: Scope, args: Query) -> TableView[ReasonCount]:
    counts = reason_counts(_load_rejections(storage, scope))
    return _view(
        "Rejections by reason", scope.path("/rejections/reasons"), reason_table(scope), counts, args
    )


# -- delivery targets ---------------------------------------------------------------

#: How many days of attempt outcomes a target's page shows.
OUTCOME_DAYS = 14
#: How many of a target's last failed attempts its page shows.
LAST_ERRORS = 20
#: What an attempt's outcome is when it did its job: the rest are the errors.
_REACHED_OUTCOMES = (OutcomeKind.DELIVERED.value, OutcomeKind.DUPLICATE.value)


@dataclass(frozen=True)
class TargetSummary:
    """A target as the advertiser's page lists it: its health, how far behind it is."""

    health: TargetHealth
    #: seconds since the oldest row not delivered yet was made (None: none)
    oldest_undelivered: int | None

    @property
    def id(self) -> int:
        return self.health.target_id

    def path(self, scope: Scope) -> str:
        return scope.link(f"/targets/{self.id}")


def target_summaries(storage: Storage, scope: Scope, now: datetime) -> list[TargetSummary]:
    """The advertiser's targets (not the removed ones), in one read of the store."""
    return [
        TargetSummary(health, seconds_since(health.oldest_undelivered_at, now))
        for health in storage.delivery_health(advertiser_id=scope.advertiser.id)
    ]


@dataclass(frozen=True)
class TargetView:
    """Everything a target's page shows. Its credentials are not here: only settings."""

    target: StoredTarget
    summary: TargetSummary
    #: the publisher a postback pays, by name
    publisher: str | None
    #: every delivery status with the target's rows in it (all of them, zeros included)
    counts: list[tuple[DeliveryStatus, int]]
    #: the outcomes seen in the days shown: the columns of ``days``
    outcomes: list[str]
    days: list[OutcomeDay]
    #: the last attempts that did not reach the platform, newest first (redacted)
    errors: list[DeliveryAttempt]


def target_view(storage: Storage, scope: Scope, target_id: int, now: datetime) -> TargetView:
    """The page of one of the advertiser's targets (a removed one too).

    :raises NotFound: for a target of another advertiser, or none.
    """
    target = storage.target(target_id)
    if target is None or target.advertiser_id != scope.advertiser.id:
        raise NotFound(f"advertiser {scope.advertiser.id} has no delivery target {target_id}")
    [health] = [
        row
        for row in storage.delivery_health(advertiser_id=scope.advertiser.id, removed=True)
        if row.target_id == target_id
    ]
    publisher = None
    if target.publisher_id is not None:
        found = storage.publisher(target.publisher_id)
        publisher = found.name if found is not None else f"publisher {target.publisher_id}"
    counts = storage.delivery_counts(target_id)
    today = now.astimezone(timezone.utc).date()
    days = DateRange(today - timedelta(days=OUTCOME_DAYS - 1), today)
    since, _ = days.bounds()
    outcomes, per_day = outcomes_by_day(storage.attempt_outcomes_by_day(target_id, since), days)
    return TargetView(
        target=target,
        summary=TargetSummary(health, seconds_since(health.oldest_undelivered_at, now)),
        publisher=publisher,
        counts=[(status, counts.get(status, 0)) for status in DeliveryStatus],
        outcomes=outcomes,
        days=list(reversed(per_day)),  # today first
        errors=storage.delivery_attempts(
            target_id, limit=LAST_ERRORS, exclude_outcomes=_REACHED_OUTCOMES
        ),
    )
