"""Google Ads: click conversions by ``gclid``/``gbraid``/``wbraid``, and their adjustments.

The REST binding of the Google Ads API, v26 (no SDK: ``google-ads`` is gRPC and 235 MB).
A conversion becomes a ``ClickConversion`` of ``:uploadClickConversions``; a correction
a ``RESTATEMENT`` and a reversal a ``RETRACTION`` of ``:uploadConversionAdjustments``,
both naming the conversion by its ``orderId`` (the ``reference_id``). Requests carry an
OAuth access token, exchanged for the target's refresh token by :meth:`authorize`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from ...errors import ConfigurationError
from ...models import Transaction, TransactionType
from ..model import DeliveryItem, HttpRequest, HttpResponse, Outcome, OutcomeKind, TargetKind
from .answers import json_object, no_answer, retry_after
from .base import Send, TargetType, with_endpoint
from .payloads import conversion_key, json_body, row_time

if TYPE_CHECKING:
    from ..model import Target

__all__ = ["API_VERSION", "TOKEN_URL", "GoogleAds"]

#: The Google Ads API version whose REST paths the requests use.
API_VERSION = "v26"
#: Where a refresh token becomes an access token (``--token-endpoint`` replaces the host).
TOKEN_URL = "https://oauth2.googleapis.com/token"
_API_URL = f"https://googleads.googleapis.com/{API_VERSION}/customers/{{customer}}:{{method}}"
#: Fewer than 2,001 conversions per request (``TOO_MANY_CONVERSIONS_IN_REQUEST``).
_BATCH_LIMIT = 2000
#: An access token is renewed this long before Google says it expires, so that no
#: request goes out with a token that dies on the way.
_TOKEN_MARGIN = timedelta(minutes=5)
#: ``TOO_RECENT_EVENT``: "the click ... occurred less than 6 hours ago. Retry after 6 hours".
_SIX_HOURS = timedelta(hours=6)
#: Google's click ids, in the order one is chosen when the link carried several
#: (a conversion takes exactly one: ``GBRAID_WBRAID_BOTH_SET`` otherwise).
_CLICK_ID_PREFERENCE = ("gclid", "gbraid", "wbraid")
_RESOURCE_NAME = re.compile(r"customers/(\d+)/conversionActions/(\d+)")

_CLICKS = "uploadClickConversions"
_ADJUSTMENTS = "uploadConversionAdjustments"
#: The repeated field of each method's request body, in REST JSON (lowerCamelCase).
_ROWS_FIELD = {_CLICKS: "conversions", _ADJUSTMENTS: "conversionAdjustments"}
#: How an error's ``fieldPathElements`` name those fields (Google writes the proto
#: name, ``conversion_adjustments``; the camel-case form is accepted too).
_ROW_FIELD_NAMES = frozenset({"conversions", "conversion_adjustments", "conversionAdjustments"})

#: Per-row error codes (``errorCode`` values of a partial failure) that mean Google
#: already has the row: the conversion (same click and time, or same order id) or the
#: adjustment (a restatement with the same time is "treated as a duplicate").
_DUPLICATE_CODES = frozenset(
    {
        "CLICK_CONVERSION_ALREADY_EXISTS",
        "ORDER_ID_ALREADY_IN_USE",
        "DUPLICATE_ORDER_ID",
        "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
        "RESTATEMENT_ALREADY_EXISTS",
        "DUPLICATE_ADJUSTMENT_IN_REQUEST",
        "MORE_RECENT_RESTATEMENT_FOUND",
    }
)
#: Per-row codes that resolve themselves: the click or the conversion action is less
#: than 6 hours old.
_TOO_RECENT_CODES = frozenset(
    {"TOO_RECENT_EVENT", "TOO_RECENT_CONVERSION_ACTION", "TOO_RECENT_CONVERSION"}
)
#: Google's own transient failures ("user should retry"), per row or for the request.
_TRANSIENT_CODES = frozenset(
    {"TRANSIENT_ERROR", "INTERNAL_ERROR", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}
)
#: RPC statuses of a failed request (the ``error.status`` of a REST answer).
_RETRY_STATUSES = frozenset({"INTERNAL", "DEADLINE_EXCEEDED", "UNAVAILABLE", "RESOURCE_EXHAUSTED"})
_AUTH_STATUSES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
#: Explanations added to the code in an outcome's detail, where the code alone misleads.
_NOTES = {
    "CLICK_NOT_FOUND": (
        "Google matched no click to this conversion (the click did not come from a "
        "Google Ads campaign of this account); Google says it can be ignored"
    ),
    "EXPIRED_EVENT": "the click is older than the conversion action's click-through window",
    "UNPARSEABLE_GCLID": "Google could not decode the click id (was it changed on the way?)",
    "CONVERSION_PRECEDES_EVENT": "the conversion time is before the click",
    "CONVERSION_ALREADY_RETRACTED": "the conversion was already retracted",
    "MORE_RECENT_RESTATEMENT_FOUND": "Google holds a newer restatement of this conversion",
}


class GoogleAds(TargetType):
    """Click conversions and conversion adjustments sent to one Google Ads account.

    Settings: ``customer_id`` (the account's ten digits, dashes allowed),
    ``conversion_action`` (the action's numeric id, or its resource name
    ``customers/<id>/conversionActions/<id>``), ``client_id`` (the OAuth client), and
    optionally ``login_customer_id`` (the manager account acting for the customer),
    ``validate_only`` (``"1"``: Google checks every row and records none, the test
    mode), ``endpoint`` and ``token_endpoint`` (local servers). Secrets:
    ``client_secret`` and ``refresh_token``. No developer token: they were sunset on
    2026-09-09 and the header is ignored (forwarding.md §0.2).

    What each ledger row becomes:

    - a conversion: a ``ClickConversion`` with its click's ``gclid``, else ``gbraid``,
      else ``wbraid`` (exactly one), ``conversionDateTime`` = the row's ``created_at``
      to the second (``2026-12-05 08:00:00+00:00``), ``conversionValue`` and
      ``currencyCode`` when it has a sale amount, and ``orderId`` = its
      ``reference_id`` (``pixel-wsgi-<transaction id>`` without one): the key Google
      deduplicates on, and that adjustments name it by;
    - a correction: a ``RESTATEMENT`` to its ``sale_amount``; a reversal: a
      ``RETRACTION``. Their ``adjustmentDateTime`` is the correction row's
      ``created_at``, rounded *up* to the second so that it falls after the conversion's
      (rounded down): later rows of a chain get later times, and a retry sends the same
      time, which Google treats as a duplicate. Two corrections of one conversion
      within the same second share a time, and Google keeps the first it gets.

    Rows without a Google click id, adjustments of a ``wbraid`` conversion (Google
    cannot adjust those) and corrections without a sale amount are ``unsupported``.
    A request carries one kind (conversions or adjustments) and at most 2,000 rows;
    ``partialFailure`` is always set, and each row's outcome is read from the
    ``partialFailureError`` of the answer.

    >>> from pixel_wsgi.delivery.model import Target, TargetStatus
    >>> target = Target(1, 1, TargetKind.GOOGLE_ADS, None,
    ...     {"customer_id": "123-456-7890", "conversion_action": "555", "client_id": "c"},
    ...     {"client_secret": "s", "refresh_token": "r"}, TargetStatus.ACTIVE, None, "")
    >>> GoogleAds(target).conversion_action
    'customers/1234567890/conversionActions/555'
    """

    kind: ClassVar[TargetKind] = TargetKind.GOOGLE_ADS
    batch_limit: ClassVar[int] = _BATCH_LIMIT
    min_event_age: ClassVar[timedelta | None] = _SIX_HOURS
    required_settings: ClassVar[frozenset[str]] = frozenset(
        {"customer_id", "conversion_action", "client_id"}
    )
    optional_settings: ClassVar[frozenset[str]] = frozenset(
        {"login_customer_id", "validate_only", "endpoint", "token_endpoint"}
    )
    required_secrets: ClassVar[frozenset[str]] = frozenset({"client_secret", "refresh_token"})

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.check_settings(self.settings, self.secrets)
        self.customer_id = _digits(self.settings["customer_id"])
        login = self.settings.get("login_customer_id")
        self.login_customer_id = _digits(login) if login else None
        self.validate_only = self.settings.get("validate_only") == "1"
        action = self.settings["conversion_action"].strip()
        self.conversion_action = (
            action
            if _RESOURCE_NAME.fullmatch(action)
            else f"customers/{self.customer_id}/conversionActions/{action}"
        )
        self._access_token: str | None = None
        self._token_expires: datetime | None = None

    @classmethod
    def check_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().check_settings(settings, secrets)
        for name in ("customer_id", "login_customer_id"):
            if name in settings and not settings[name].replace("-", "").strip().isdigit():
                raise ConfigurationError(
                    f"{name} of a google_ads target is the account's digits "
                    f"(like 123-456-7890), got {settings[name]!r}"
                )
        action = settings["conversion_action"].strip()
        if not (action.isdigit() or _RESOURCE_NAME.fullmatch(action)):
            raise ConfigurationError(
                "conversion_action of a google_ads target is a numeric id or "
                f"customers/<id>/conversionActions/<id>, got {action!r}"
            )
        if settings.get("validate_only", "1") != "1":
            raise ConfigurationError("validate_only of a google_ads target is '1' when given")
        for name in ("endpoint", "token_endpoint"):
            if name in settings:
                with_endpoint(TOKEN_URL, settings[name])  # raises for a malformed URL

    # -- rows -----------------------------------------------------------------------

    def unsupported(self, item: DeliveryItem) -> str | None:
        click = _click_id(item)
        if click is None:
            return "no Google click id (gclid, gbraid or wbraid) on the conversion's click"
        kind = item.row.transaction_type
        if kind is TransactionType.CONVERSION:
            return None
        if click[0] == "wbraid":
            return "Google cannot adjust a conversion of a wbraid click"
        if kind is TransactionType.CORRECTION and item.row.sale_amount is None:
            return "a correction without a sale amount has no value to restate"
        return None

    def requests(self, items: Sequence[DeliveryItem], now: datetime) -> list[HttpRequest]:
        clicks = [i for i in items if i.row.transaction_type is TransactionType.CONVERSION]
        adjustments = [i for i in items if i.row.transaction_type is not TransactionType.CONVERSION]
        built = []
        for method, group, encode in (
            (_CLICKS, clicks, self._click_conversion),
            (_ADJUSTMENTS, adjustments, self._adjustment),
        ):
            for start in range(0, len(group), _BATCH_LIMIT):
                chunk = group[start : start + _BATCH_LIMIT]
                body = {
                    _ROWS_FIELD[method]: [encode(item) for item in chunk],
                    "partialFailure": True,
                    "validateOnly": self.validate_only,
                }
                built.append(
                    HttpRequest(
                        "POST",
                        with_endpoint(
                            _API_URL.format(customer=self.customer_id, method=method),
                            self.settings.get("endpoint"),
                        ),
                        self._headers(),
                        json_body(body),
                        tuple(item.row.transaction_id for item in chunk),
                    )
                )
        return built

    def _headers(self) -> tuple[tuple[str, str], ...]:
        # Before authorize() (``deliver --dry-run`` prints requests without sending any,
        # the token exchange included) the header says so; Google would answer 401.
        token = self._access_token or "[access token: not authorized yet]"
        headers = [
            ("Authorization", f"Bearer {token}"),
            ("Content-Type", "application/json"),
        ]
        if self.login_customer_id:
            headers.append(("login-customer-id", self.login_customer_id))
        return tuple(headers)

    def _click_conversion(self, item: DeliveryItem) -> dict[str, Any]:
        click = _click_id(item)
        if click is None:
            raise ValueError(f"row {item.row.transaction_id} has no Google click id")
        row = item.row
        conversion: dict[str, Any] = {
            click[0]: click[1],
            "conversionAction": self.conversion_action,
            "conversionDateTime": _google_time(row, round_up=False),
        }
        if row.sale_amount is not None:
            conversion["conversionValue"] = row.sale_amount
            conversion["currencyCode"] = row.sale_currency
        conversion["orderId"] = conversion_key(item.original)
        return conversion

    def _adjustment(self, item: DeliveryItem) -> dict[str, Any]:
        row = item.row
        adjustment: dict[str, Any] = {
            "conversionAction": self.conversion_action,
            "orderId": conversion_key(item.original),
            "adjustmentDateTime": _google_time(row, round_up=True),
        }
        if row.transaction_type is TransactionType.REVERSAL:
            adjustment["adjustmentType"] = "RETRACTION"
        else:
            adjustment["adjustmentType"] = "RESTATEMENT"
            adjustment["restatementValue"] = {
                "adjustedValue": row.sale_amount,
                "currencyCode": row.sale_currency,
            }
        return adjustment

    # -- OAuth ----------------------------------------------------------------------

    def authorize(self, send: Send, now: datetime) -> Outcome | None:
        """Exchange the refresh token for an access token, unless the last one is still
        good for more than a few minutes.

        ``invalid_grant`` (the refresh token was revoked or expired) and
        ``invalid_client`` (wrong client id or secret), like any other 4xx but 429,
        are AUTH outcomes; a 429, a 5xx or no answer is RETRY.
        """
        if self._access_token and self._token_expires and now < self._token_expires:
            return None
        form = urlencode(
            {
                "grant_type": "refresh_token",
                "client_id": self.settings["client_id"],
                "client_secret": self.secrets["client_secret"],
                "refresh_token": self.secrets["refresh_token"],
            }
        ).encode("ascii")
        request = HttpRequest(
            "POST",
            with_endpoint(TOKEN_URL, self.settings.get("token_endpoint")),
            (("Content-Type", "application/x-www-form-urlencoded"),),
            form,
            (),
        )
        try:
            response = send(request)
        except OSError as exc:
            return Outcome(OutcomeKind.RETRY, f"OAuth token endpoint: no answer ({exc})")
        answer = json_object(response.body)
        if response.status == 200:
            token = answer.get("access_token")
            expires_in = answer.get("expires_in")
            if isinstance(token, str) and token and isinstance(expires_in, int):
                self._access_token = token
                self._token_expires = now + timedelta(seconds=expires_in) - _TOKEN_MARGIN
                return None
            return Outcome(OutcomeKind.RETRY, "OAuth token endpoint: 200 without an access_token")
        self._access_token = None
        error = answer.get("error")
        error = error if isinstance(error, str) else ""
        detail = f"OAuth token endpoint: {response.status} {error}".strip()
        if response.status == 429 or response.status >= 500:
            return Outcome(OutcomeKind.RETRY, detail, retry_after(response))
        hint = {
            "invalid_grant": "the refresh token was revoked or has expired: authorize again",
            "invalid_client": "the client id or client secret is wrong",
        }.get(error, "the credentials were refused")
        return Outcome(OutcomeKind.AUTH, f"{detail}: {hint}")

    # -- answers --------------------------------------------------------------------

    def classify(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> dict[int, Outcome]:
        ids = request.transaction_ids
        if response is None:
            return _all(ids, no_answer(error))
        answer = json_object(response.body)
        if response.status != 200:
            return _all(ids, self._request_failure(response, answer))
        if not answer and response.body.strip() != b"{}":
            # Google always answers a 200 with a JSON object: without one nothing says
            # which rows it took. Sending again is safe (order ids, adjustment times).
            return _all(ids, Outcome(OutcomeKind.RETRY, "Google Ads 200 without a JSON body"))
        retractions = _retraction_indexes(request)
        failures: dict[int, list[str]] = {}
        spread: list[str] = []
        for index, code in _partial_failures(answer):
            if index is None or not 0 <= index < len(ids):
                spread.append(code)
            else:
                failures.setdefault(index, []).append(code)
        delivered = Outcome(
            OutcomeKind.DELIVERED,
            "validated only (validate_only): Google recorded nothing"
            if self.validate_only
            else "accepted",
        )
        outcomes = {}
        for index, transaction_id in enumerate(ids):
            codes = failures.get(index, []) + spread
            if not codes:
                outcomes[transaction_id] = delivered
            else:
                outcomes[transaction_id] = _row_outcome(codes, index in retractions)
        return outcomes

    def _request_failure(self, response: HttpResponse, answer: Mapping[str, Any]) -> Outcome:
        error = answer.get("error")
        error = error if isinstance(error, dict) else {}
        status = error.get("status")
        status = status if isinstance(status, str) else ""
        codes = [code for _, code in _error_codes(error.get("details"), None)]
        named = [code for code in codes if code != status][:3]
        detail = " ".join([f"Google Ads {response.status}", status, *named]).strip()
        if response.status == 401 or status in _AUTH_STATUSES or response.status == 403:
            self._access_token = None  # a new one on resume
            return Outcome(OutcomeKind.AUTH, detail)
        if (
            response.status in (429, 500, 502, 503, 504)
            or status in _RETRY_STATUSES
            or _TRANSIENT_CODES.intersection(codes)
        ):
            return Outcome(OutcomeKind.RETRY, detail, retry_after(response))
        return Outcome(OutcomeKind.PERMANENT, detail)

    def redacted(self, request: HttpRequest) -> str:
        """The request without its access token, and with click ids cut to their first
        six characters (they are never logged in full)."""
        text = super().redacted(request)
        if self._access_token:
            text = text.replace(self._access_token, "[token]")
        return re.sub(
            r'("(?:gclid|gbraid|wbraid)":\s*")([^"]{0,6})[^"]*"',
            r'\1\2…"',
            re.sub(r"Bearer \S+", "Bearer [token]", text),
        )


def _click_id(item: DeliveryItem) -> tuple[str, str] | None:
    if item.click is None:
        return None
    for name in _CLICK_ID_PREFERENCE:
        value = item.click.click_ids.get(name)
        if value:
            return name, value
    return None


def _digits(text: str) -> str:
    return text.replace("-", "").strip()


def _google_time(row: Transaction, *, round_up: bool) -> str:
    """``2026-12-05 08:00:00+00:00`` from a ledger time (Google takes whole seconds)."""
    moment = row_time(row)
    if round_up and moment.microsecond:
        moment += timedelta(seconds=1)
    return moment.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _row_outcome(codes: list[str], retraction: bool) -> Outcome:
    """One row's outcome from its error codes: any refusal wins over a retry, which
    wins over a duplicate. A retraction of a conversion already retracted (a retry whose
    first answer was lost) is a duplicate; a restatement of one is refused."""
    notes = "; ".join(f"{code}: {_NOTES[code]}" if code in _NOTES else code for code in codes)
    duplicates = _DUPLICATE_CODES | ({"CONVERSION_ALREADY_RETRACTED"} if retraction else set())
    if all(code in duplicates for code in codes):
        return Outcome(OutcomeKind.DUPLICATE, notes)
    if all(code in _DUPLICATE_CODES | _TOO_RECENT_CODES | _TRANSIENT_CODES for code in codes):
        too_recent = _TOO_RECENT_CODES.intersection(codes)
        wait = _SIX_HOURS.total_seconds() if too_recent else None
        return Outcome(OutcomeKind.RETRY, notes, wait)
    return Outcome(OutcomeKind.PERMANENT, notes)


def _retraction_indexes(request: HttpRequest) -> set[int]:
    """The indexes of the ``RETRACTION`` rows of an adjustments request."""
    body = json_object(request.body)
    rows = body.get(_ROWS_FIELD[_ADJUSTMENTS])
    return {
        index
        for index, row in enumerate(rows if isinstance(rows, list) else ())
        if isinstance(row, dict) and row.get("adjustmentType") == "RETRACTION"
    }


def _partial_failures(answer: Mapping[str, Any]) -> Iterator[tuple[int | None, str]]:
    failure = answer.get("partialFailureError")
    if isinstance(failure, dict):
        yield from _error_codes(failure.get("details"), failure.get("message"))


def _error_codes(details: object, message: object) -> Iterator[tuple[int | None, str]]:
    """``(row index or None, code)`` for each error of a ``GoogleAdsFailure`` list.

    The index is the one of the ``conversions`` / ``conversionAdjustments`` element of
    the error's ``location.fieldPathElements``; the code the value of its ``errorCode``
    (``{"conversionUploadError": "CLICK_NOT_FOUND"}`` gives ``CLICK_NOT_FOUND``).
    """
    found = False
    for detail in details if isinstance(details, list) else ():
        errors = detail.get("errors") if isinstance(detail, dict) else None
        for error in errors if isinstance(errors, list) else ():
            if not isinstance(error, dict):
                continue
            code_map = error.get("errorCode")
            codes = [str(v) for v in code_map.values()] if isinstance(code_map, dict) else []
            found = True
            yield _error_index(error), (codes[0] if codes else "UNKNOWN")
    if not found and message:
        yield None, "UNKNOWN"


def _error_index(error: Mapping[str, Any]) -> int | None:
    location = error.get("location")
    elements = location.get("fieldPathElements") if isinstance(location, dict) else None
    for element in elements if isinstance(elements, list) else ():
        if isinstance(element, dict) and element.get("fieldName") in _ROW_FIELD_NAMES:
            index = element.get("index")
            return index if isinstance(index, int) else None
    return None


def _all(ids: Sequence[int], outcome: Outcome) -> dict[int, Outcome]:
    return dict.fromkeys(ids, outcome)
