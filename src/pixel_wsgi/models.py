"""Plain value types shared by the parser, the ledger and the storage backends."""

from __future__ import annotations

import enum
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
    """

    id: int
    name: str
    created_at: str
    require_signed_pixels: bool = False


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


@dataclass(frozen=True, slots=True)
class ReferenceClaim:
    """A second browser claim of a conversion's ``reference_id``, from another visit.

    Kept, never paid, until the advertiser's server reports that ``reference_id``:
    the claim whose values the report confirms wins the attribution.
    ``report`` is the claimed sale values as JSON (:func:`pixel_wsgi.outage.records.encode_report`),
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
