"""What every target type does: rows in, HTTP requests out; responses in, outcomes out.

A target type is pure: it builds requests and reads responses, and a worker does the
sending (:mod:`pixel_wsgi.delivery.http`), the claiming and the bookkeeping. So each type
is tested against a local server that answers as its platform documents, and the worker
is tested once for all of them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

from ...errors import ConfigurationError
from ...models import Transaction
from ..model import (
    DeliveryItem,
    HttpRequest,
    HttpResponse,
    Outcome,
    Target,
    TargetKind,
)
from .payloads import masked, row_time

__all__ = ["SEND_MARGIN", "Send", "TargetType", "with_endpoint"]

#: How long a request may take between being built and reaching the platform: a row
#: this close to a platform's deadline counts as past it, lest it turn stale on the way
#: (one stale event fails a whole Meta batch).
SEND_MARGIN = timedelta(minutes=1)

#: How a target type reaches the network when it must before building requests (an OAuth
#: token exchange): the worker's sender, with its timeout. Raises OSError on no answer.
Send = Callable[[HttpRequest], HttpResponse]


def original_id(row: Transaction) -> int:
    """The first row of ``row``'s chain in the ledger (the row itself for a conversion)."""
    return row.original_transaction_id or row.transaction_id


def with_endpoint(documented_url: str, endpoint: str | None) -> str:
    """The platform's documented URL, or the same path on ``endpoint``'s scheme, host and
    port (``--endpoint``: tests and staging point a target at a local server).

    >>> with_endpoint("https://graph.facebook.com/v26.0/1/events", "http://127.0.0.1:8000")
    'http://127.0.0.1:8000/v26.0/1/events'
    """
    if not endpoint:
        return documented_url
    given = urlsplit(endpoint)
    if given.scheme not in ("http", "https") or not given.netloc:
        raise ConfigurationError(
            f"an endpoint is a URL like http://127.0.0.1:8000, got {endpoint!r}"
        )
    documented = urlsplit(documented_url)
    return urlunsplit((given.scheme, given.netloc, documented.path, documented.query, ""))


class TargetType(abc.ABC):
    """One platform's rules. Subclasses set the class attributes and implement the
    abstract methods; :data:`pixel_wsgi.delivery.targets.TARGET_TYPES` names them.

    :param target: the target, its settings and decrypted secrets.
    """

    kind: ClassVar[TargetKind]
    #: the most rows one request may carry (the platform's documented limit)
    batch_limit: ClassVar[int] = 1
    #: rows older than this (by the row's own ``created_at``) are expired, never sent
    #: (Meta 7 days, GA4 72 hours); the worker keeps them out of every batch
    max_event_age: ClassVar[timedelta | None] = None
    #: a row younger than this waits (Google Ads needs the click 6 hours old): measured
    #: from the click when its time is known, else from the conversion's first row
    min_event_age: ClassVar[timedelta | None] = None
    #: the settings ``target add`` requires and accepts (names as stored: ``pixel_id``)
    required_settings: ClassVar[frozenset[str]] = frozenset()
    optional_settings: ClassVar[frozenset[str]] = frozenset()
    #: the secrets ``target add`` requires: stored encrypted, masked by ``target list``
    required_secrets: ClassVar[frozenset[str]] = frozenset()
    #: whether the pixel must keep the conversion's context (cookies, user agent) for it
    needs_conversion_context: ClassVar[bool] = False
    #: how long after a conversion its context stays needed once its rows were sent:
    #: for the corrections the platform can take later (GA4's refund needs the visitor's
    #: client id); None forgets it as soon as every row made so far is settled
    context_kept_for: ClassVar[timedelta | None] = None

    def __init__(self, target: Target) -> None:
        self.target = target
        self.settings = target.settings
        self.secrets = target.secrets

    @classmethod
    def check_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        """Refuse a target that cannot work, naming the bad value (``target add``).

        The default checks the names; subclasses add their formats (call ``super()``).

        :raises ConfigurationError: for a missing, unknown or malformed value.
        """
        missing = sorted(
            (cls.required_settings - settings.keys()) | (cls.required_secrets - secrets.keys())
        )
        if missing:
            raise ConfigurationError(f"a {cls.kind.value} target needs {', '.join(missing)}")
        unknown = sorted(settings.keys() - cls.required_settings - cls.optional_settings)
        if unknown:
            raise ConfigurationError(f"a {cls.kind.value} target takes no {', '.join(unknown)}")
        for name, value in (*settings.items(), *secrets.items()):
            if not value.strip():
                raise ConfigurationError(f"{name} of a {cls.kind.value} target must not be empty")

    #: whether :meth:`placements` needs the rows that ``rows`` correct, and where they
    #: were placed (a postback follows the credit from publisher to publisher)
    follows_credit: ClassVar[bool] = False

    def concerns(self, row: Transaction) -> bool:
        """Whether the target is meant to get ``row`` at all (a postback gets only its
        publisher's rows); rows it is not are passed over without a trace."""
        return True

    def placements(
        self,
        rows: Sequence[Transaction],
        corrected: Mapping[int, Transaction],
        origins: Mapping[int, int],
    ) -> list[tuple[int, int]]:
        """The deliveries ``rows`` (new ledger rows, in order) make for this target:
        ``(transaction id, origin)``, the origin being the first row of the row's chain
        as this target sees it (what a correction waits for). The default: every row
        :meth:`concerns`, in its ledger chain.

        :param corrected: with :attr:`follows_credit`, the rows that ``rows`` correct.
        :param origins: with :attr:`follows_credit`, the origins those were placed with.
        """
        return [(row.transaction_id, original_id(row)) for row in rows if self.concerns(row)]

    def unsupported(self, item: DeliveryItem) -> str | None:
        """Why the platform cannot take this row (recorded as ``unsupported``), or None."""
        return None

    def expired(self, item: DeliveryItem, now: datetime) -> bool:
        """Whether ``item`` is past the platform's deadline (:attr:`max_event_age`, less
        :data:`SEND_MARGIN`) at ``now``: it is never sent, never retried."""
        age = self.max_event_age
        return age is not None and row_time(item.row) < now - age + SEND_MARGIN

    def not_before(self, item: DeliveryItem) -> datetime | None:
        """When ``item`` may be sent at the earliest (:attr:`min_event_age` after the
        click when its time is known, else after the conversion's first row)."""
        if self.min_event_age is None:
            return None
        click = item.click
        if click is not None and click.clicked_at_ms is not None:
            clicked = datetime.fromtimestamp(click.clicked_at_ms / 1000, timezone.utc)
            return clicked + self.min_event_age
        return row_time(item.original) + self.min_event_age

    def sendable(self, items: Sequence[DeliveryItem], now: datetime) -> list[DeliveryItem]:
        """The items a request may carry: not :meth:`expired`, not :meth:`unsupported`."""
        return [
            item for item in items if not self.expired(item, now) and self.unsupported(item) is None
        ]

    def authorize(self, send: Send, now: datetime) -> Outcome | None:
        """Get what requests need from the network first (an access token), or say why
        not: an AUTH outcome pauses the target, a RETRY one waits. None when ready."""
        return None

    @abc.abstractmethod
    def requests(self, items: Sequence[DeliveryItem], now: datetime) -> list[HttpRequest]:
        """The requests that carry ``items`` (at most :attr:`batch_limit` each; every
        item in exactly one), with the platform's idempotency keys derived from the
        ledger, so that sending one again cannot count twice."""

    @abc.abstractmethod
    def classify(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> dict[int, Outcome]:
        """The outcome of every row of ``request`` (keys: its ``transaction_ids``).

        :param response: what came back, or None when nothing did.
        :param error: why nothing came back (a timeout, a refused connection).
        """

    def redacted(self, request: HttpRequest) -> str:
        """The request as the attempt log keeps it: no secret, no personal data.

        The default masks every secret's value wherever it appears, as it is and
        percent-encoded (:func:`~.payloads.masked`); types whose bodies
        carry personal data (hashed or not) override it.
        """
        text = f"{request.method} {request.url}\n"
        text += "".join(f"{name}: {value}\n" for name, value in request.headers)
        text += request.body.decode("utf-8", "replace")
        return masked(text, self.secrets.values())
