"""Plain value types shared by the parser, the ledger and the storage backends."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple


class Reason(str, enum.Enum):
    """Why a report or click did not count. The values are stable and machine-readable.

    The rejection log holds rejections *and flags*: ``TOO_FAST`` marks a conversion
    that was recorded (it counts) but looks suspicious.
    """

    # Malformed requests
    INVALID_QUERY = "invalid_query"
    QUERY_TOO_LONG = "query_too_long"
    TOO_MANY_PARAMETERS = "too_many_parameters"
    DUPLICATE_PARAMETER = "duplicate_parameter"
    INVALID_TEXT = "invalid_text"
    VALUE_TOO_LONG = "value_too_long"
    INVALID_SALE_AMOUNT = "invalid_sale_amount"
    INVALID_CURRENCY = "invalid_currency"
    INVALID_QUANTITY = "invalid_quantity"
    QUANTITY_MISMATCH = "quantity_mismatch"
    TOO_MANY_ITEMS = "too_many_items"
    INVALID_PERSONAL_DATA = "invalid_personal_data"
    TOO_MANY_CUSTOM_FIELDS = "too_many_custom_fields"
    CONFLICTING_REFERENCE = "conflicting_reference"
    #: pixel-wsgi itself failed on the hit (a bug): the rejection log keeps it, see the log
    INTERNAL_ERROR = "internal_error"
    # Attribution
    UNKNOWN_ADVERTISER = "unknown_advertiser"
    NO_ATTRIBUTION = "no_attribution"
    INVALID_COOKIE = "invalid_cookie"
    EXPIRED_COOKIE = "expired_cookie"
    UNKNOWN_VISIT = "unknown_visit"
    CROSS_ADVERTISER = "cross_advertiser"
    # Duplicates and corrections
    DUPLICATE_REFERENCE_ID = "duplicate_reference_id"
    DUPLICATE_RELOAD = "duplicate_reload"
    UNCHANGED_CORRECTION = "unchanged_correction"
    UNKNOWN_PARENT_REFERENCE = "unknown_parent_reference"
    PARENT_FROM_OTHER_VISIT = "parent_from_other_visit"
    # Server-side reports (the Conversion Reporting API, CSV upload, in-process calls)
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_CAMPAIGN = "unknown_campaign"
    UNKNOWN_PUBLISHER = "unknown_publisher"
    PUBLISHER_NOT_APPROVED = "publisher_not_approved"
    ATTRIBUTION_CONFLICT = "attribution_conflict"
    IMMUTABLE_TRANSACTION = "immutable_transaction"
    # Clicks
    UNKNOWN_LINK = "unknown_link"
    LINK_DESTINATION_NOT_ALLOWED = "link_destination_not_allowed"
    # Signed pixel URLs (pixel_wsgi.signing)
    INVALID_SIGNATURE = "invalid_signature"
    EXPIRED_SIGNATURE = "expired_signature"
    UNSIGNED_PIXEL = "unsigned_pixel"
    # Fraud and noise filters (pixel_wsgi.endpoints.filters)
    BOT = "bot"
    COOKIE_STUFFING = "cookie_stuffing"
    CROSS_SITE_PIXEL = "cross_site_pixel"
    DAILY_CAP_REACHED = "daily_cap_reached"
    #: a flag, not a rejection: the conversion was recorded
    TOO_FAST = "too_fast"
    # issue 9: money rules no browser can bend
    #: the advertiser's server has reported this conversion: browsers can no longer change it
    SERVER_REPORTED = "server_reported"
    #: a flag: a second browser claim of a reference_id, kept until the server decides
    CONTESTED_CLAIM = "contested_claim"
    #: another browser claims this conversion too: only the server can change it now
    CONTESTED_REFERENCE = "contested_reference"
    #: the server's report confirmed another claim of this reference_id
    CONTEST_LOST = "contest_lost"
    #: this signed pixel URL has already been counted
    DUPLICATE_SIGNED_PIXEL = "duplicate_signed_pixel"
    #: the request carried the attribution cookie twice (one may be tossed from a subdomain)
    DUPLICATE_COOKIE = "duplicate_cookie"
    # issue 9: input
    #: a link whose stored destination no redirect can use (stored before it was checked)
    INVALID_LINK_DESTINATION = "invalid_link_destination"
    #: a cross-site navigation without user activation (a script or a meta refresh, not a
    #: click): a flag, or a refused click with ``refuse_without_user_activation``
    NO_USER_ACTIVATION = "no_user_activation"

    @property
    def meaning(self) -> str:
        """What the reason means, in a short sentence for the people reading the log."""
        return _REASON_MEANINGS[self]


#: What each :class:`Reason` means, for the people reading the rejection log
#: (:attr:`Reason.meaning`; the dashboard shows it beside the code).
_REASON_MEANINGS: dict[Reason, str] = {
    Reason.INVALID_QUERY: "the query string could not be parsed",
    Reason.QUERY_TOO_LONG: "the query string was longer than allowed",
    Reason.TOO_MANY_PARAMETERS: "the report carried more parameters than allowed",
    Reason.DUPLICATE_PARAMETER: "a single-valued parameter was given twice",
    Reason.INVALID_TEXT: "a value was not clean UTF-8 text",
    Reason.VALUE_TOO_LONG: "a value was longer than allowed",
    Reason.INVALID_SALE_AMOUNT: "sale_amount was not a plain decimal with at most 2 places",
    Reason.INVALID_CURRENCY: "sale_currency was not an ISO 4217 code",
    Reason.INVALID_QUANTITY: "a quantity was not a whole number of at least 1",
    Reason.QUANTITY_MISMATCH: "quantity_list did not match sku_list",
    Reason.TOO_MANY_ITEMS: "the report listed more SKUs than allowed",
    Reason.INVALID_PERSONAL_DATA: "a remarketing field was malformed (its value is not kept)",
    Reason.TOO_MANY_CUSTOM_FIELDS: "the report carried more custom fields than allowed",
    Reason.CONFLICTING_REFERENCE: "reference_id and parent_reference_id did not fit together",
    Reason.INTERNAL_ERROR: "pixel-wsgi failed on it (a bug, see the application's log)",
    Reason.UNKNOWN_ADVERTISER: "the pixel named an advertiser that does not exist",
    Reason.NO_ATTRIBUTION: "the visitor carried no attribution cookie",
    Reason.INVALID_COOKIE: "the attribution cookie was tampered with or foreign",
    Reason.EXPIRED_COOKIE: "the attribution cookie was older than the attribution window",
    Reason.UNKNOWN_VISIT: "the attribution cookie named a visit that does not exist",
    Reason.CROSS_ADVERTISER: "the visit came through another advertiser's campaign",
    Reason.DUPLICATE_REFERENCE_ID: "this reference_id was already reported",
    Reason.DUPLICATE_RELOAD: "the same visit reported the same values again (a reload)",
    Reason.UNCHANGED_CORRECTION: "an update carried the conversion's current values",
    Reason.UNKNOWN_PARENT_REFERENCE: "parent_reference_id named no conversion",
    Reason.PARENT_FROM_OTHER_VISIT: "an update came from a visit other than the conversion's",
    Reason.MISSING_FIELD: "a server-side report left out a required field",
    Reason.INVALID_FIELD: "a server-side report carried a malformed field",
    Reason.UNKNOWN_CAMPAIGN: "the report named a campaign that does not exist",
    Reason.UNKNOWN_PUBLISHER: "the report named a publisher that does not exist",
    Reason.PUBLISHER_NOT_APPROVED: "the publisher is not approved for this campaign",
    Reason.ATTRIBUTION_CONFLICT: "the report's attribution contradicted the conversion's",
    Reason.IMMUTABLE_TRANSACTION: "the report tried to change a conversion that cannot change",
    Reason.UNKNOWN_LINK: "a tracking link that does not exist was followed",
    Reason.LINK_DESTINATION_NOT_ALLOWED: "a tracking link's destination is not allowed",
    Reason.INVALID_SIGNATURE: "the signed pixel URL's signature did not verify",
    Reason.EXPIRED_SIGNATURE: "the signed pixel URL was too old",
    Reason.UNSIGNED_PIXEL: "the advertiser requires signed pixel URLs; this one was not signed",
    Reason.BOT: "the request came from a bot or crawler",
    Reason.COOKIE_STUFFING: "the click did not come from a visitor's own navigation",
    Reason.CROSS_SITE_PIXEL: "another site's page fired the pixel",
    Reason.DAILY_CAP_REACHED: "a daily cap on conversions was reached",
    Reason.TOO_FAST: "a flag, not a rejection: the conversion counts, but came suspiciously fast",
    Reason.SERVER_REPORTED: "the advertiser's server has reported this conversion: browsers can"
    " no longer change it",
    Reason.CONTESTED_CLAIM: "another visit claimed this reference_id first: both claims are kept"
    " until the advertiser's server reports it",
    Reason.CONTESTED_REFERENCE: "other visits claim this conversion too: only the advertiser's"
    " server can change it",
    Reason.CONTEST_LOST: "the advertiser's server report confirmed another claim of this"
    " reference_id",
    Reason.DUPLICATE_SIGNED_PIXEL: "this signed pixel URL had already been counted",
    Reason.DUPLICATE_COOKIE: "the attribution cookie came twice (one may be planted from a"
    " subdomain): no attribution",
    # issue 9: input
    Reason.INVALID_LINK_DESTINATION: "a tracking link's stored destination is not a valid URL",
    Reason.NO_USER_ACTIVATION: "a click made by a script or a meta refresh, not by the visitor",
}


class Source(str, enum.Enum):
    """Where a ledger row came from."""

    PIXEL = "pixel"
    LEGACY_PIXEL = "legacy_pixel"
    API = "api"
    CSV_UPLOAD = "csv_upload"
    IN_PROCESS = "in_process"


class TransactionType(str, enum.Enum):
    """What a ledger row is: a conversion's first row, or a later row of its chain."""

    CONVERSION = "conversion"
    CORRECTION = "correction"
    #: a correction that voids the conversion (payout 0.00), with a reason
    REVERSAL = "reversal"


class PayoutKind(str, enum.Enum):
    FIXED = "fixed"
    PERCENT = "percent"


@dataclass(frozen=True, slots=True)
class PayoutRule:
    """How a campaign pays its publisher for one conversion.

    ``FIXED``: ``value`` in ``currency`` per qualifying conversion.
    ``PERCENT``: ``value`` percent of ``sale_amount``, in the sale's currency.
    ``reason_codes``: when not empty, only conversions with one of these
    ``reason_code`` values earn a payout (the others are recorded at 0.00).
    """

    kind: PayoutKind
    value: Decimal
    currency: str = "USD"
    reason_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Advertiser:
    """A site whose conversions are tracked.

    ``require_signed_pixels``: refuse conversion pixels without a valid signature
    (see :mod:`pixel_wsgi.signing`).
    ``keeps_conversion_context``: keep each pixel conversion's request context (the
    ``_fbp`` and ``_ga`` cookies, User-Agent, truncated IP, page) for delivery targets
    that need it (Meta, GA4); off by default.
    """

    id: int
    name: str
    created_at: str
    require_signed_pixels: bool = False
    keeps_conversion_context: bool = False


@dataclass(frozen=True, slots=True)
class Publisher:
    id: int
    name: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Campaign:
    """What an advertiser pays a publisher per conversion.

    ``daily_cap``: at most this many conversions per UTC day are accepted from
    browsers (the pixels); None for no cap.
    """

    id: int
    advertiser_id: int
    name: str
    payout: PayoutRule
    created_at: str
    daily_cap: int | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """A tracking link: where a publisher's visitors land for a campaign."""

    id: int
    campaign_id: int
    publisher_id: int
    advertiser_id: int
    destination: str
    created_at: str


class Attribution(NamedTuple):
    """Who is credited for a conversion through a tracking link, and how it is paid.

    The same for every visit through the link, so it is cached per link. (A named
    tuple: cheaper to build than a frozen dataclass.)
    """

    advertiser_id: int
    campaign_id: int
    publisher_id: int
    payout: PayoutRule
    #: the campaign's :attr:`Campaign.daily_cap`
    daily_cap: int | None = None
    #: the advertiser's :attr:`Advertiser.keeps_conversion_context`
    keeps_conversion_context: bool = False


@dataclass(slots=True)
class SaleReport:
    """The validated shared sale parameters of one conversion report."""

    sale_amount: Decimal | None = None
    sale_currency: str = "USD"
    reason_code: str | None = None
    sku_list: tuple[str, ...] = ()
    quantity_list: tuple[int, ...] = ()
    reference_id: str | None = None
    parent_reference_id: str | None = None
    external_data: str | None = None
    custom_data: dict[str, str] = field(default_factory=dict)
    personal_data: dict[str, str] = field(default_factory=dict)
    # The shared fields the report actually carried ("sku_list", not "sku_list[]"):
    # a correction replaces only these and inherits the rest.
    given: frozenset[str] = frozenset()

    def as_json(self) -> dict[str, Any]:
        """The report as JSON values: how a contesting claim is stored, and spooled."""
        return {
            "sale_amount": None if self.sale_amount is None else str(self.sale_amount),
            "sale_currency": self.sale_currency,
            "reason_code": self.reason_code,
            "sku_list": list(self.sku_list),
            "quantity_list": list(self.quantity_list),
            "reference_id": self.reference_id,
            "parent_reference_id": self.parent_reference_id,
            "external_data": self.external_data,
            "custom_data": dict(self.custom_data),
            "personal_data": dict(self.personal_data),
            "given": sorted(self.given),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SaleReport:
        """A report :meth:`as_json` made, read back from the store (trusted: a spooled
        one goes through :func:`pixel_wsgi.outage.records.validated_report`)."""
        amount = data["sale_amount"]
        return cls(
            sale_amount=None if amount is None else Decimal(amount),
            sale_currency=data["sale_currency"],
            reason_code=data["reason_code"],
            sku_list=tuple(data["sku_list"]),
            quantity_list=tuple(int(q) for q in data["quantity_list"]),
            reference_id=data["reference_id"],
            parent_reference_id=data["parent_reference_id"],
            external_data=data["external_data"],
            custom_data=dict(data["custom_data"]),
            personal_data=dict(data["personal_data"]),
            given=frozenset(data["given"]),
        )


@dataclass(frozen=True, slots=True)
class ServerReport:
    """A conversion reported by the advertiser's servers (API, CSV upload, in-process).

    :param report: the shared sale parameters, as the pixel's.
    :param campaign_id: ``advertiser_campaign_id``, for a conversion the pixel never saw.
    :param publisher_id: ``affiliate_id``, the publisher credited with it.
    :param reversal_reason: voids the conversion ``reference_id`` names.
    """

    report: SaleReport
    campaign_id: int | None = None
    publisher_id: int | None = None
    reversal_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Everything the report says, as JSON values (its digest, its spool record)."""
        return {
            "report": self.report.as_json(),
            "campaign_id": self.campaign_id,
            "publisher_id": self.publisher_id,
            "reversal_reason": self.reversal_reason,
        }


class VisitClaim(NamedTuple):
    """What a verified attribution cookie says: this browser made visit ``visit_id``
    via ``link_id`` (a negative ``visit_id``: a click spooled while the store was down)."""

    visit_id: int
    link_id: int


#: Sub id parameters of a tracking link, kept with the visit for the publisher's postback.
SUB_ID_PARAMS = ("sub1", "sub2", "sub3", "sub4", "sub5")
#: TUNE's names for the same sub ids (``aff_sub`` is ``sub1``).
SUB_ID_ALIASES = {
    "aff_sub": "sub1",
    "aff_sub2": "sub2",
    "aff_sub3": "sub3",
    "aff_sub4": "sub4",
    "aff_sub5": "sub5",
}
#: Ad platforms' click ids of a tracking link, kept byte for byte (they are case-sensitive).
CLICK_ID_PARAMS = ("gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid")


@dataclass(frozen=True, slots=True)
class ClickContext:
    """What the tracking link's query carried, kept with the visit."""

    #: ``sub1``..``sub5`` (aliases already folded), only those given
    sub_ids: Mapping[str, str] = field(default_factory=dict)
    #: ``gclid``, ``gbraid``, ``wbraid``, ``fbclid``, ``ttclid``, ``msclkid``, only those given
    click_ids: Mapping[str, str] = field(default_factory=dict)
    #: when the click happened, in Unix milliseconds (Meta's ``fbc`` carries it)
    clicked_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ConversionContext:
    """What the conversion's request carried that a target needs, kept only for delivery."""

    #: Meta's browser id, the ``_fbp`` cookie of the host's domain
    fbp: str | None = None
    #: GA4's client id, from the ``_ga`` cookie (``GA1.2.X.Y`` gives ``X.Y``)
    ga_client_id: str | None = None
    #: the browser's ``User-Agent``
    user_agent: str | None = None
    #: the visitor's network, truncated (IPv4 /24, IPv6 /48), never the full address
    ip_prefix: str | None = None
    #: the page that fired the pixel (``Referer``): Meta's ``event_source_url``
    page_url: str | None = None


def click_context_json(click: ClickContext) -> dict[str, Any]:
    """A click's context as JSON values, its empty members left out: how the store
    (``visits.click_data``) and the outage spool keep it."""
    data: dict[str, Any] = {}
    if click.sub_ids:
        data["sub_ids"] = dict(click.sub_ids)
    if click.click_ids:
        data["click_ids"] = dict(click.click_ids)
    if click.clicked_at_ms is not None:
        data["clicked_at_ms"] = click.clicked_at_ms
    return data


def click_context_from_json(data: Mapping[str, Any]) -> ClickContext:
    """The inverse of :func:`click_context_json`, for what the store holds (trusted: a
    spooled one goes through :func:`pixel_wsgi.params.click_ids.validated_click_context`)."""
    return ClickContext(
        sub_ids=dict(data.get("sub_ids", {})),
        click_ids=dict(data.get("click_ids", {})),
        clicked_at_ms=data.get("clicked_at_ms"),
    )


def conversion_context_json(context: ConversionContext) -> dict[str, str]:
    """A conversion's request context as JSON values, its empty members left out (the
    store's ``delivery_context``, the spool); ``ConversionContext(**data)`` reads it back."""
    data = {}
    for name in ("fbp", "ga_client_id", "user_agent", "ip_prefix", "page_url"):
        value = getattr(context, name)
        if value is not None:
            data[name] = value
    return data


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What delivery may need of a ledger row beyond the row: its chain's original's
    (a correction or a reversal shares its conversion's), but for the click of a row
    credited to another visit than its original's (a contest the server decided).

    :param click: the click of the row's own visit (its original's, for a row with
        none), when its link carried sub ids or click ids.
    :param conversion: the original's request context, when its advertiser keeps it
        (and until delivery forgets it).
    :param personal: the original's personal (remarketing) fields; empty when none or
        erased.
    :param original_click: the click of the original's visit.
    """

    click: ClickContext | None
    conversion: ConversionContext | None
    personal: Mapping[str, str]
    original_click: ClickContext | None = None


@dataclass(frozen=True, slots=True)
class Transaction:
    """One immutable ledger row. A correction names the row it corrects."""

    transaction_id: int
    advertiser_id: int
    campaign_id: int
    publisher_id: int
    visit_id: int | None
    source: str
    reference_id: str | None
    corrects_transaction_id: int | None
    original_transaction_id: int
    sale_amount: Decimal | None
    sale_currency: str
    reason_code: str | None
    sku_list: tuple[str, ...]
    quantity_list: tuple[int, ...]
    external_data: str | None
    custom_data: dict[str, str]
    payout: Decimal
    payout_currency: str
    created_at: str
    reversal_reason: str | None = None
    #: another browser claims this row's reference_id and the server has not decided
    contested: bool = False

    @property
    def transaction_type(self) -> TransactionType:
        if self.reversal_reason is not None:
            return TransactionType.REVERSAL
        if self.corrects_transaction_id is not None:
            return TransactionType.CORRECTION
        return TransactionType.CONVERSION

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; money is a string, never a float."""
        return {
            "transaction_id": self.transaction_id,
            "transaction_type": self.transaction_type.value,
            "advertiser_id": self.advertiser_id,
            "campaign_id": self.campaign_id,
            "publisher_id": self.publisher_id,
            "visit_id": self.visit_id,
            "source": self.source,
            "reference_id": self.reference_id,
            "corrects_transaction_id": self.corrects_transaction_id,
            "original_transaction_id": self.original_transaction_id,
            "sale_amount": None if self.sale_amount is None else str(self.sale_amount),
            "sale_currency": self.sale_currency,
            "reason_code": self.reason_code,
            "sku_list": list(self.sku_list),
            "quantity_list": list(self.quantity_list),
            "external_data": self.external_data,
            "custom_data": dict(self.custom_data),
            "payout": str(self.payout),
            "payout_currency": self.payout_currency,
            "reversal_reason": self.reversal_reason,
            "created_at": self.created_at,
            "contested": self.contested,
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """A report or click that did not count, and why."""

    id: int
    advertiser_id: int | None
    source: str
    reason: str
    detail: str
    visit_id: int | None
    reference_id: str | None
    params: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "advertiser_id": self.advertiser_id,
            "source": self.source,
            "reason": self.reason,
            "detail": self.detail,
            "visit_id": self.visit_id,
            "reference_id": self.reference_id,
            "params": self.params,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class TransactionDraft:
    """A ledger row about to be written (no id yet).

    ``original_transaction_id`` is None for the first row of a conversion and
    the first row's id for every correction of it. ``fingerprint`` identifies
    the reported values, to catch reloads that carry no ``reference_id``.
    """

    advertiser_id: int
    campaign_id: int
    publisher_id: int
    visit_id: int | None
    source: str
    reference_id: str | None
    corrects_transaction_id: int | None
    original_transaction_id: int | None
    sale_amount: Decimal | None
    sale_currency: str
    reason_code: str | None
    sku_list: tuple[str, ...]
    quantity_list: tuple[int, ...]
    external_data: str | None
    custom_data: dict[str, str]
    payout: Decimal
    payout_currency: str
    fingerprint: str
    created_at: str
    personal_data: dict[str, str] = field(default_factory=dict)
    reversal_reason: str | None = None
    #: the request's context, for delivery (a conversion's first row only, and only
    #: when its advertiser keeps it): stored by the row's own INSERT
    conversion: ConversionContext | None = None


@dataclass(frozen=True, slots=True)
class ReferenceClaim:
    """A second browser claim of a conversion's ``reference_id``, from another visit.

    Kept, never paid, until the advertiser's server reports that ``reference_id``:
    the claim whose values the report confirms wins the attribution.
    ``report`` is the claimed sale values as JSON (:meth:`SaleReport.as_json`),
    without personal data. ``claim_id`` is 0 for a claim not yet written.
    """

    claim_id: int
    advertiser_id: int
    reference_id: str
    visit_id: int
    campaign_id: int
    publisher_id: int
    source: str
    report: str
    created_at: str


@dataclass(slots=True)
class RejectionDraft:
    advertiser_id: int | None
    source: str
    reason: Reason
    detail: str
    visit_id: int | None
    reference_id: str | None
    params: str
    created_at: str


@dataclass(frozen=True, slots=True)
class ApiCredential:
    """A secret an advertiser's servers use on the Conversion Reporting and Transactions APIs.

    Only a SHA-256 digest of the secret is stored; the secret itself is shown once.
    """

    id: int
    advertiser_id: int
    label: str
    secret_hash: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "advertiser_id": self.advertiser_id,
            "username": str(self.advertiser_id),
            "label": self.label,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The answer given to a request with an ``Idempotency-Key``, to give again on a retry."""

    advertiser_id: int
    key: str
    request_hash: str
    status: int
    body: str
    created_at: str


# -- delivery: where each ledger row stands with each target ---------------------------


class TargetKind(str, enum.Enum):
    """Where a target sends rows: the ``--kind`` of ``pixel-wsgi target add``."""

    #: the publisher's own server-to-server postback URL, with its sub ids (TUNE, Everflow)
    POSTBACK = "postback"
    #: a JSON POST per ledger row, signed as the Standard Webhooks specification says
    WEBHOOK = "webhook"
    #: Meta's Conversions API: a ``Purchase`` event per conversion
    META_CAPI = "meta_capi"
    #: Google Ads click conversions and conversion adjustments
    GOOGLE_ADS = "google_ads"
    #: the GA4 Measurement Protocol: ``purchase`` and ``refund`` events
    GA4 = "ga4"
    #: Invoca's Signal API: a signal on the call a conversion names
    INVOCA_SIGNAL = "invoca_signal"


class TargetStatus(str, enum.Enum):
    """Whether a worker sends a target's rows."""

    ACTIVE = "active"
    #: paused by an operator (``pixel-wsgi target pause``)
    PAUSED = "paused"
    #: paused by the worker: the platform refused the credentials (resume after fixing them)
    AUTH_FAILED = "auth_failed"
    #: removed by an operator; its deliveries are kept for the record
    REMOVED = "removed"


class DeliveryStatus(str, enum.Enum):
    """Where one ledger row stands with one target."""

    #: due: to be sent at ``next_attempt_at`` (at once for a new row)
    PENDING = "pending"
    #: the platform has it (2xx, or whatever its documentation says is success)
    DELIVERED = "delivered"
    #: the platform already had it: counts as delivered
    DUPLICATE = "duplicate"
    #: refused for good (the reason is kept); ``pixel-wsgi retry`` sends it again
    DEAD = "dead"
    #: the target cannot express this row (a correction for Meta, a sale without a click
    #: id for Google Ads, ...): recorded, never silently dropped
    UNSUPPORTED = "unsupported"
    #: past the platform's deadline (Meta 7 days, GA4 72 hours) before it could be sent
    EXPIRED = "expired"
    #: skipped by an operator (``pixel-wsgi skip``)
    SKIPPED = "skipped"

    @property
    def settled(self) -> bool:
        """Whether nothing more will be sent for this row (unless an operator says so)."""
        return self is not DeliveryStatus.PENDING

    @property
    def reached(self) -> bool:
        """Whether the platform has the row: what a correction waits for."""
        return self in (DeliveryStatus.DELIVERED, DeliveryStatus.DUPLICATE)


@dataclass(frozen=True, slots=True)
class StoredTarget:
    """A delivery target as the store keeps it: its credentials still sealed.

    :param sealed_secrets: the credentials, encrypted (``pixel_wsgi.delivery.secrets``);
        the store never sees them in plain text.
    :param cursor: the last ledger row id looked at: rows after it are not queued yet.
    :param failures: requests in a row that got no usable answer (the circuit breaker).
    :param resume_at: while the breaker is open, when the target is tried again.
    """

    id: int
    advertiser_id: int
    kind: TargetKind
    publisher_id: int | None
    settings: dict[str, str]
    sealed_secrets: str
    status: TargetStatus
    status_detail: str | None
    cursor: int
    failures: int
    resume_at: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ledger row with one target.

    :param original_transaction_id: the first row of its chain (its own id for a conversion).
    :param original_status: for a correction or reversal, where its original stands with
        the same target (None when the original was never queued for it).
    :param lease_until: while a worker holds the row (sending it), until when.
    :param superseded_by: for a correction claimed for sending, the newest later row of
        its chain the target already has (None: none).
    """

    target_id: int
    transaction_id: int
    original_transaction_id: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str
    detail: str | None
    created_at: str
    updated_at: str
    lease_until: str | None = None
    original_status: DeliveryStatus | None = None
    superseded_by: int | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a worker decided for one claimed row after an attempt (or without one)."""

    transaction_id: int
    status: DeliveryStatus
    #: attempts made so far, this one included
    attempts: int
    #: when to try again (PENDING), else when it settled
    next_attempt_at: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One request sent (or that could not be), as the attempt log keeps it: redacted."""

    target_id: int
    transaction_ids: tuple[int, ...]
    attempted_at: str
    #: the outcome of the request as a whole: an OutcomeKind value, or "mixed"
    outcome: str
    detail: str
    #: the request as sent, secrets and personal data masked
    request: str
    #: the status and the start of the body, or why nothing came back
    response: str
    duration_ms: int
    id: int | None = None


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """One target's delivery at a glance, read in one query for every target
    (``/pixels/health``, the dashboard): where it stands and how far behind it is."""

    target_id: int
    advertiser_id: int
    kind: TargetKind
    status: TargetStatus
    #: why it is paused (refused credentials: the platform's answer, secrets masked)
    status_detail: str | None
    #: requests failed in a row: the circuit breaker
    failures: int
    #: while the breaker is open, when the target is tried again
    resume_at: str | None
    #: rows queued and not settled yet (the backlog)
    pending: int
    #: when the oldest ledger row still pending for the target was made
    oldest_pending_at: str | None
    #: when the oldest ledger row of the advertiser after the target's cursor was made: a
    #: row no worker has looked at yet (None when the cursor is at the end)
    oldest_unqueued_at: str | None

    @property
    def oldest_undelivered_at(self) -> str | None:
        """When the oldest row not delivered yet was made, queued or not: what grows
        while no worker runs, or while the target cannot take what it is sent."""
        times = [t for t in (self.oldest_pending_at, self.oldest_unqueued_at) if t is not None]
        # One fixed-width UTC form (pixel_wsgi.clock): text sorts as time does.
        return min(times) if times else None
