"""Test helpers for host applications: assert that your checkout fires the pixel.

This module is a pytest plugin. Installing pixel-wsgi registers it (the
``pytest11`` entry point), so a host application's suite gets its fixtures
with no ``conftest.py`` of its own. Every fixture name starts with ``pixel_``
so that none shadows a suite's own ``app``, ``db`` or ``client``; turn the
plugin off with ``pytest -p no:pixel_wsgi``.

Fixtures:

``pixel_store``
    A migrated, throwaway :class:`~pixel_wsgi.storage.SQLiteStorage` in the
    test's ``tmp_path``, closed afterwards.
``pixel_storage_url``
    Its ``sqlite:///`` URL, for applications configured with a URL.
``pixel_storage_path``
    Its file. Override this fixture when your configuration fixes the file
    (a Paste ``.ini`` naming ``%(here)s/shop.db``, say).
``pixel_world``
    A :class:`PixelWorld` on ``pixel_store``: advertisers, publishers,
    campaigns and tracking links in one call each.
``pixel_secret_key``
    A signing key long enough for :class:`~pixel_wsgi.PixelMiddleware`.

Helpers, for a WebTest :class:`webtest.TestApp` (which keeps cookies the way
a browser does; ``pip install WebTest``):

- :func:`visit_through_link` clicks a tracking link: checks the ``302`` and
  the attribution cookie, and returns the landing page.
- :func:`fire_pixels` loads the conversion pixels a page carries, as a
  browser loads its ``<img>`` elements.

Assertions, which read the store and fail with what *was* recorded and the
latest rejections with their reasons (usually why a conversion is missing). With
``PixelMiddleware(..., ingest="queued")`` they first wait for the applier: what the
requests logged is applied before anything is read, so tests read what they would in
the default mode. They are
:func:`assert_conversion`, :func:`assert_conversions`,
:func:`assert_no_conversion` and :func:`assert_rejected`. Give them a
:class:`ConversionRecorder` instead of the store to look only at what happened
inside a ``with`` block. Money is compared as :class:`~decimal.Decimal`
(``"10.00"``, ``Decimal("10")`` and ``10`` are equal; floats are refused).

A complete Flask example. The shop's factory takes its storage URL and key,
and its thank-you page renders ``<img src="/pixels/conversion/1.gif?...">``::

    # tests/test_checkout.py: no conftest.py needed.
    from webtest import TestApp

    from myshop import create_app
    from pixel_wsgi.testing import (
        ConversionRecorder,
        assert_rejected,
        fire_pixels,
        visit_through_link,
    )


    def test_checkout_fires_one_conversion(pixel_world, pixel_storage_url, pixel_secret_key):
        # Advertiser 1 (the first in a fresh store), a publisher, a campaign
        # paying 10% of the sale, and a tracking link to the home page.
        partner = pixel_world.add_link("/", payout="10%")
        browser = TestApp(create_app(storage=pixel_storage_url, secret_key=pixel_secret_key))

        home = visit_through_link(browser, partner)  # the visit and its cookie
        product = home.click("Fountain pen")
        thanks = product.forms[0].submit().follow()
        with ConversionRecorder(pixel_world.store) as fired:
            fire_pixels(browser, thanks)  # what the browser does with the <img>
            fire_pixels(browser, thanks)  # a reload counts once

        fired.assert_conversion(
            sale_amount="38.50",
            payout="3.85",
            publisher_id=partner.publisher.id,
            reference_id="order-1001",
        )


    def test_no_cookie_no_conversion(pixel_world, pixel_storage_url, pixel_secret_key):
        pixel_world.add_link("/")
        browser = TestApp(create_app(storage=pixel_storage_url, secret_key=pixel_secret_key))
        thanks = browser.post("/checkout", {"sku": "pen"}).follow()  # never clicked a link
        fire_pixels(browser, thanks)
        assert_rejected(pixel_world.store, "no_attribution")

A failing expectation says what was recorded instead, and why reports were
refused (here the visitor never clicked a tracking link)::

    AssertionError: expected 1 conversion with reference_id='order-1002', found 0.
    1 conversion recorded:
      transaction 1: advertiser 1, campaign 1, publisher 1, reference_id 'order-1001',
      sale 38.50 USD, payout 3.85 USD, source pixel (differs: reference_id='order-1001')
    latest rejections, newest first:
      no_attribution (pixel, advertiser 1, reference_id 'order-1002'): the visitor
      carries no valid attribution cookie
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import pytest

from .entities import check_payout
from .errors import MissingDependencyError
from .models import (
    Advertiser,
    Campaign,
    Link,
    PayoutKind,
    PayoutRule,
    Publisher,
    Reason,
    Rejection,
    Source,
    Transaction,
)

if TYPE_CHECKING:
    from webtest import TestApp, TestResponse  # type: ignore[import-untyped]

    from .storage import SQLiteStorage, Storage

__all__ = [
    "ConversionRecorder",
    "PixelWorld",
    "TrackedLink",
    "assert_conversion",
    "assert_conversions",
    "assert_no_conversion",
    "assert_rejected",
    "fire_pixels",
    "parse_payout",
    "pixel_urls",
    "visit_through_link",
]

#: An amount of money: ``"10.00"``, ``Decimal("10.00")`` or ``10``; never a float.
Money: TypeAlias = str | Decimal | int

# The default name of the attribution cookie is this prefix and the advertiser id
# (see pixel_wsgi.attribution.cookie.AttributionCookies).
_COOKIE_PREFIX = "pixel_wsgi_a"
_SECRET_KEY = "pixel-wsgi-testing-only-key-0123456789"
_DEFAULT_PAYOUT = "5.00 USD"
_SHOWN_CONVERSIONS = 20
_SHOWN_REJECTIONS = 10

# What a browser sends when it follows a link from another site, and when it
# loads an <img> on a page of the same site: edge filters may look at them.
_NAVIGATION_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-User": "?1",
}
_IMAGE_HEADERS = {
    "Accept": "image/avif,image/webp,image/png,image/*;q=0.8,*/*;q=0.5",
    "Sec-Fetch-Dest": "image",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Site": "same-origin",
}


# -- money and payouts ---------------------------------------------------------------


def _money(value: Money, name: str) -> Decimal:
    """``value`` as an exact Decimal; a float is refused, as it is not exact."""
    if isinstance(value, bool) or not isinstance(value, (str, Decimal, int)):
        raise TypeError(
            f"{name} must be a str, Decimal or int such as '10.00', got {value!r}"
            + (" (a float is not an exact amount)" if isinstance(value, float) else "")
        )
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ValueError(f"{name} must be an amount such as '10.00', got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{name} must be a finite amount, got {value!r}")
    return amount


def parse_payout(payout: str | Decimal | int | PayoutRule) -> PayoutRule:
    """A campaign's payout rule from short text.

    ``"10%"`` pays 10 percent of the sale; ``"4.50 USD"``, ``"4.50"``,
    ``Decimal("4.50")`` or ``4`` pay a fixed amount per conversion (USD unless
    a currency follows). A :class:`~pixel_wsgi.PayoutRule` is returned as is.

    :raises EntityInvalid: (a ``ValueError``) for a rule that breaks
        :func:`pixel_wsgi.entities.check_payout`, such as ``"150%"``.
    """
    if isinstance(payout, PayoutRule):
        return payout
    if isinstance(payout, str):
        text = payout.strip()
        if text.endswith("%"):
            return check_payout(PayoutRule(PayoutKind.PERCENT, _money(text[:-1], "payout percent")))
        amount_text, _, currency = text.partition(" ")
        currency = currency.strip() or "USD"
        if not (len(currency) == 3 and currency.isascii() and currency.isupper()):
            raise ValueError(f"a payout looks like '10%', '4.50' or '4.50 USD', got {payout!r}")
        amount = _money(amount_text, "payout")
    else:
        amount, currency = _money(payout, "payout"), "USD"
    return check_payout(PayoutRule(PayoutKind.FIXED, amount, currency))


# -- building the catalog ----------------------------------------------------------------


@dataclass(frozen=True)
class TrackedLink:
    """A tracking link with the advertiser, publisher and campaign behind it."""

    advertiser: Advertiser
    publisher: Publisher
    campaign: Campaign
    link: Link

    def click_path(self, prefix: str = "/pixels") -> str:
        """The path a publisher sends visitors to: ``/pixels/click/<link id>``."""
        return f"{prefix}/click/{self.link.id}"


class PixelWorld:
    """Makes advertisers, publishers, campaigns and tracking links, one call each.

    Everything is created on demand; names are generated. In a fresh store the
    first advertiser has id 1, which is what a thank-you page usually hardcodes::

        partner = pixel_world.add_link("/landing", payout="10%")
        partner.link.id, partner.publisher.id, partner.campaign.id

        # A second publisher on the same campaign:
        rival = pixel_world.add_link("/landing", campaign=partner.campaign)

    :param store: where to create them (the ``pixel_store`` fixture's store).
    """

    def __init__(self, store: Storage) -> None:
        self.store = store
        self._advertiser: Advertiser | None = None
        self._counts = {"advertiser": 0, "publisher": 0, "campaign": 0}

    def __repr__(self) -> str:
        return f"PixelWorld({self.store!r})"

    def _name(self, kind: str) -> str:
        self._counts[kind] += 1
        return f"Test {kind} {self._counts[kind]}"

    @property
    def advertiser(self) -> Advertiser:
        """The default advertiser, created on first use."""
        if self._advertiser is None:
            self._advertiser = self.add_advertiser()
        return self._advertiser

    def add_advertiser(self, name: str | None = None) -> Advertiser:
        """A new advertiser; the first one made becomes :attr:`advertiser`."""
        advertiser = self.store.add_advertiser(name or self._name("advertiser"))
        if self._advertiser is None:
            self._advertiser = advertiser
        return advertiser

    def add_publisher(self, name: str | None = None) -> Publisher:
        return self.store.add_publisher(name or self._name("publisher"))

    def add_campaign(
        self,
        payout: str | Decimal | int | PayoutRule = _DEFAULT_PAYOUT,
        *,
        reason_codes: Iterable[str] = (),
        advertiser: Advertiser | None = None,
        name: str | None = None,
    ) -> Campaign:
        """A campaign of ``advertiser`` (default :attr:`advertiser`).

        :param payout: see :func:`parse_payout`: ``"10%"``, ``"4.50 USD"``, a rule.
        :param reason_codes: pay only conversions with one of these ``reason_code``\\ s.
        """
        rule = parse_payout(payout)
        codes = tuple(reason_codes)
        if codes:
            if rule.reason_codes:
                raise ValueError("give reason_codes in the PayoutRule or as an argument, not both")
            rule = PayoutRule(rule.kind, rule.value, rule.currency, codes)
        owner = advertiser or self.advertiser
        return self.store.add_campaign(owner.id, name or self._name("campaign"), rule)

    def add_link(
        self,
        destination: str = "/",
        *,
        payout: str | Decimal | int | PayoutRule | None = None,
        reason_codes: Iterable[str] = (),
        campaign: Campaign | None = None,
        publisher: Publisher | None = None,
        advertiser: Advertiser | None = None,
    ) -> TrackedLink:
        """A tracking link to ``destination``, with whatever it needs.

        Without ``campaign``, a new campaign of ``advertiser`` (default
        :attr:`advertiser`) paying ``payout`` (default 5.00 USD per conversion).
        Without ``publisher``, a new publisher.
        """
        if campaign is None:
            campaign = self.add_campaign(
                _DEFAULT_PAYOUT if payout is None else payout,
                reason_codes=reason_codes,
                advertiser=advertiser,
            )
        elif payout is not None or tuple(reason_codes) or advertiser is not None:
            raise ValueError(
                "an existing campaign already has its advertiser and payout:"
                " give campaign, or payout/reason_codes/advertiser, not both"
            )
        owner = self.store.advertiser(campaign.advertiser_id)
        assert owner is not None, f"campaign {campaign.id} has no advertiser in the store"
        publisher = publisher or self.add_publisher()
        link = self.store.add_link(campaign.id, publisher.id, destination)
        return TrackedLink(advertiser=owner, publisher=publisher, campaign=campaign, link=link)


# -- a browser in WebTest --------------------------------------------------------------------


def _webtest() -> Any:
    """WebTest, imported only when a helper needs it: the plugin loads without it."""
    try:
        import webtest
    except ImportError:
        raise MissingDependencyError(
            "pixel_wsgi.testing drives applications with WebTest: pip install WebTest"
        ) from None
    return webtest


def _require_test_app(test_app: Any, helper: str) -> None:
    if not isinstance(test_app, _webtest().TestApp):
        raise TypeError(
            f"{helper}() needs a webtest.TestApp wrapping your WSGI application,"
            f" e.g. TestApp(app), got {type(test_app).__name__}"
        )


def _link_facts(link: TrackedLink | Link | int) -> tuple[int, int | None]:
    """The link id, and the advertiser id when known."""
    if isinstance(link, TrackedLink):
        return link.link.id, link.advertiser.id
    if isinstance(link, Link):
        return link.id, link.advertiser_id
    if isinstance(link, bool) or not isinstance(link, int):
        raise TypeError(f"link must be a TrackedLink, a Link or a link id, got {link!r}")
    return link, None


def _cookie_names(response: TestResponse) -> list[str]:
    headers: list[str] = response.headers.getall("Set-Cookie")
    # On https the attribution cookie's name carries the __Host- prefix.
    return [header.partition("=")[0].strip().removeprefix("__Host-") for header in headers]


def _snippet(response: TestResponse) -> str:
    text: str = response.body.decode("utf-8", "replace").strip()
    return text if len(text) <= 300 else text[:300] + "..."


def visit_through_link(
    test_app: TestApp,
    link: TrackedLink | Link | int,
    *,
    prefix: str = "/pixels",
    follow: bool = True,
    expect_cookie: bool = True,
    headers: Mapping[str, str] | None = None,
) -> TestResponse:
    """Click a tracking link in ``test_app``, as a visitor arriving from a publisher.

    Checks that the link answers ``302`` and sets the attribution cookie (which
    ``test_app`` keeps for later requests), then follows the redirect.

    :param test_app: a :class:`webtest.TestApp` around the wrapped application.
    :param link: a :class:`TrackedLink`, a :class:`~pixel_wsgi.Link` or a link id.
    :param prefix: the middleware's ``prefix``.
    :param follow: return the landing page; False returns the ``302`` itself.
    :param expect_cookie: False checks that *no* cookie is set (``Sec-GPC: 1``,
        a consent hook that says no).
    :param headers: extra request headers, e.g. ``{"Sec-GPC": "1"}``.
    :returns: the landing page (or the redirect).
    :raises AssertionError: when the link does not redirect or the cookie is not
        as expected.
    """
    __tracebackhide__ = True
    _require_test_app(test_app, "visit_through_link")
    link_id, advertiser_id = _link_facts(link)
    path = f"{prefix}/click/{link_id}"
    response: TestResponse = test_app.get(
        path, headers={**_NAVIGATION_HEADERS, **(headers or {})}, status="*"
    )
    if response.status_int != 302:
        hint = (
            "is the link in the store the application uses?"
            if response.status_int == 404 and "Unknown tracking link" in response.text
            else f"is PixelMiddleware wrapping the application, with prefix={prefix!r}?"
        )
        raise AssertionError(
            f"tracking link {path} answered {response.status}, not 302 Found: {hint}\n"
            f"body: {_snippet(response)}"
        )
    names = [name for name in _cookie_names(response) if name.startswith(_COOKIE_PREFIX)]
    if advertiser_id is not None:
        names = [name for name in names if name == f"{_COOKIE_PREFIX}{advertiser_id}"]
    if expect_cookie and not names:
        raise AssertionError(
            f"tracking link {path} redirected but set no attribution cookie: does the"
            " request send Sec-GPC: 1, or does the application's consent hook refuse?"
        )
    if not expect_cookie and names:
        raise AssertionError(f"tracking link {path} set an attribution cookie: {names}")
    if not follow:
        return response
    landing: TestResponse = response.follow()
    return landing


class _ImageSources(HTMLParser):
    """The ``src`` of every ``<img>`` of a page, entities unescaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            src = dict(attrs).get("src")
            if src is not None and src.strip():
                self.sources.append(src.strip())

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def pixel_urls(
    page: TestResponse,
    *,
    prefix: str = "/pixels",
    legacy_prefix: str = "/tracked_actions/web_sale",
) -> list[str]:
    """The absolute URLs of the conversion pixels in an HTML page, in page order.

    Relative ``src`` values are resolved against the page's URL; images on
    other hosts are left out (the browser would not ask this application).
    """
    parser = _ImageSources()
    parser.feed(page.text)
    parser.close()
    base = page.request.url
    host = urlsplit(base).netloc
    found = []
    for src in parser.sources:
        url = urlsplit(urljoin(base, src))
        if url.scheme not in ("http", "https") or url.netloc != host:
            continue
        rest = url.path.removeprefix(f"{prefix}/conversion/")
        is_pixel = rest != url.path and rest.endswith(".gif") and "/" not in rest
        legacy = url.path.removeprefix(f"{legacy_prefix}/")
        if is_pixel or (legacy != url.path and legacy and "/" not in legacy):
            found.append(urlunsplit(url._replace(fragment="")))
    return found


def fire_pixels(
    test_app: TestApp,
    page: TestResponse,
    *,
    prefix: str = "/pixels",
    legacy_prefix: str = "/tracked_actions/web_sale",
    headers: Mapping[str, str] | None = None,
) -> list[TestResponse]:
    """Load every conversion pixel of ``page`` with ``test_app``, as a browser would.

    The ``<img>`` elements are found with an HTML parser, their ``src`` unescaped
    and resolved against the page (absolute URLs on the same host included), and
    fetched with the cookies ``test_app`` holds, a ``Referer`` and an image
    request's ``Sec-Fetch-*`` headers. Call it again to simulate a reload.

    :param page: the thank-you page, as ``test_app`` returned it.
    :returns: the pixel responses, in page order.
    :raises AssertionError: when the page carries no pixel, or one does not answer
        the GIF.
    """
    __tracebackhide__ = True
    _require_test_app(test_app, "fire_pixels")
    urls = pixel_urls(page, prefix=prefix, legacy_prefix=legacy_prefix)
    if not urls:
        parser = _ImageSources()
        parser.feed(page.text)
        raise AssertionError(
            f'{page.request.url} has no conversion pixel (<img src="{prefix}/conversion/'
            f'<advertiser id>.gif?...">); its images: {parser.sources or "none"}'
        )
    request_headers = {**_IMAGE_HEADERS, "Referer": page.request.url, **(headers or {})}
    responses = []
    for url in urls:
        response: TestResponse = test_app.get(url, headers=request_headers, status="*")
        if response.status_int != 200 or response.content_type != "image/gif":
            raise AssertionError(
                f"the pixel {url} answered {response.status} {response.content_type},"
                f" not 200 image/gif: is PixelMiddleware wrapping the application?\n"
                f"body: {_snippet(response)}"
            )
        responses.append(response)
    return responses


# -- reading and asserting -------------------------------------------------------------------


class ConversionRecorder:
    """What the store recorded after a checkpoint: for assertions about one step.

    The checkpoint is taken when the recorder is made; leaving a ``with`` block
    closes the window, so that later activity is not seen::

        with ConversionRecorder(pixel_store) as fired:
            fire_pixels(browser, thanks)
        fired.assert_conversion(sale_amount="10.00", publisher_id=partner.publisher.id)
        assert fired.rejections() == []

    :param store: the store to watch.
    :param advertiser_id: only this advertiser's rows, when given.
    """

    def __init__(self, store: Storage, *, advertiser_id: int | None = None) -> None:
        self.store = store
        self.advertiser_id = advertiser_id
        _applied()  # what came before the window is not in it
        self._after_transaction = self._last_transaction_id()
        self._after_rejection = self._last_rejection_id()
        self._until: tuple[int, int] | None = None

    def _last_transaction_id(self) -> int:
        last = 0
        for row in self.store.transactions(advertiser_id=self.advertiser_id):
            last = row.transaction_id
        return last

    def _last_rejection_id(self) -> int:
        newest = next(iter(self.store.rejections(limit=1)), None)
        return 0 if newest is None else newest.id

    def __enter__(self) -> ConversionRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _applied()  # what the block's requests logged is in it
        self._until = (self._last_transaction_id(), self._last_rejection_id())

    def transactions(self) -> list[Transaction]:
        """The ledger rows appended in the window, corrections included, oldest first."""
        rows = self.store.transactions(
            advertiser_id=self.advertiser_id, after_transaction_id=self._after_transaction
        )
        if self._until is None:
            return list(rows)
        return [row for row in rows if row.transaction_id <= self._until[0]]

    def conversions(self) -> list[Transaction]:
        """Conversions recorded or corrected in the window, each in its latest state."""
        latest: dict[int, Transaction] = {}
        for row in self.transactions():
            latest[row.original_transaction_id] = row
        return sorted(latest.values(), key=lambda row: row.original_transaction_id)

    def rejections(self) -> list[Rejection]:
        """The rejections logged in the window, newest first."""
        found = []
        for rejection in self.store.rejections(advertiser_id=self.advertiser_id):
            if rejection.id <= self._after_rejection:
                break
            if self._until is None or rejection.id <= self._until[1]:
                found.append(rejection)
        return found

    def assert_conversion(self, **expected: Any) -> Transaction:
        """:func:`assert_conversion` on this window."""
        return assert_conversion(self, **expected)

    def assert_conversions(self, count: int, **expected: Any) -> list[Transaction]:
        """:func:`assert_conversions` on this window."""
        return assert_conversions(self, count, **expected)

    def assert_no_conversion(self, **expected: Any) -> None:
        """:func:`assert_no_conversion` on this window."""
        assert_no_conversion(self, **expected)

    def assert_rejected(self, reason: Reason | str, **expected: Any) -> Rejection:
        """:func:`assert_rejected` on this window."""
        return assert_rejected(self, reason, **expected)


Recorded: TypeAlias = "Storage | ConversionRecorder"


def _applied() -> None:
    """Wait for the queued mode's appliers of this process, if any runs: what the
    requests logged is in the store before a test reads it."""
    applier = sys.modules.get("pixel_wsgi.outage.applier")  # loaded by a queued middleware
    if applier is not None and not applier.apply_queued_events():
        raise AssertionError(
            "the queued events could not be applied within 5 seconds: is the store writable?"
        )


def _conversions(store: Recorded, advertiser_id: int | None) -> list[Transaction]:
    _applied()
    if isinstance(store, ConversionRecorder):
        rows = store.conversions()
        return [r for r in rows if advertiser_id is None or r.advertiser_id == advertiser_id]
    return list(store.conversions(advertiser_id=advertiser_id))


def _rejections(store: Recorded, limit: int | None = None) -> list[Rejection]:
    _applied()
    if isinstance(store, ConversionRecorder):
        return store.rejections()[:limit]
    return list(store.rejections(limit=limit))


def _expectations(
    *,
    advertiser_id: int | None,
    campaign_id: int | None,
    publisher_id: int | None,
    reference_id: str | None,
    sale_amount: Money | None,
    sale_currency: str | None,
    payout: Money | None,
    payout_currency: str | None,
    reason_code: str | None,
    sku_list: Sequence[str] | None,
    quantity_list: Sequence[int] | None,
    source: Source | str | None,
) -> dict[str, object]:
    """The given criteria, normalised to the types of a Transaction's fields."""
    for name, items in (("sku_list", sku_list), ("quantity_list", quantity_list)):
        if isinstance(items, str):
            raise TypeError(f"{name} must be a list, got a str: {items!r}")
    given: dict[str, object] = {
        "advertiser_id": advertiser_id,
        "campaign_id": campaign_id,
        "publisher_id": publisher_id,
        "reference_id": reference_id,
        "sale_amount": None if sale_amount is None else _money(sale_amount, "sale_amount"),
        "sale_currency": sale_currency,
        "payout": None if payout is None else _money(payout, "payout"),
        "payout_currency": payout_currency,
        "reason_code": reason_code,
        "sku_list": None if sku_list is None else tuple(sku_list),
        "quantity_list": None if quantity_list is None else tuple(quantity_list),
        "source": Source(source).value if source is not None else None,
    }
    return {name: value for name, value in given.items() if value is not None}


def _differences(row: Transaction, expected: Mapping[str, object]) -> dict[str, object]:
    return {
        name: getattr(row, name) for name, value in expected.items() if getattr(row, name) != value
    }


def _show(value: object) -> str:
    if isinstance(value, (Decimal, int)):
        return str(value)
    if isinstance(value, tuple):
        return repr(list(value))
    return repr(value)


def _describe_conversion(row: Transaction) -> str:
    parts = [
        f"transaction {row.transaction_id}: advertiser {row.advertiser_id}",
        f"campaign {row.campaign_id}",
        f"publisher {row.publisher_id}",
        f"reference_id {row.reference_id!r}",
        "no sale" if row.sale_amount is None else f"sale {row.sale_amount} {row.sale_currency}",
        f"payout {row.payout} {row.payout_currency}",
        f"source {row.source}",
    ]
    if row.reason_code is not None:
        parts.append(f"reason_code {row.reason_code!r}")
    if row.sku_list:
        parts.append(f"sku_list {list(row.sku_list)} quantity_list {list(row.quantity_list)}")
    if row.corrects_transaction_id is not None:
        parts.append(f"corrects transaction {row.corrects_transaction_id}")
    reversal: object = getattr(row, "reversal_reason", None)
    if reversal is not None:
        parts.append(f"reversed: {reversal!r}")
    return ", ".join(parts)


def _describe_rejection(rejection: Rejection) -> str:
    where = [rejection.source]
    if rejection.advertiser_id is not None:
        where.append(f"advertiser {rejection.advertiser_id}")
    if rejection.reference_id is not None:
        where.append(f"reference_id {rejection.reference_id!r}")
    return f"{rejection.reason} ({', '.join(where)}): {rejection.detail}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _criteria(expected: Mapping[str, object]) -> str:
    if not expected:
        return "(any)"
    return ", ".join(f"{name}={_show(value)}" for name, value in sorted(expected.items()))


def _scope(store: Recorded) -> str:
    return " in the recorder's window" if isinstance(store, ConversionRecorder) else ""


def _conversion_lines(
    store: Recorded, rows: list[Transaction], expected: Mapping[str, object]
) -> list[str]:
    """What was recorded, each row with what differs from the expectation."""
    lines = [f"{_plural(len(rows), 'conversion')} recorded{_scope(store)}:"]
    shown = rows[-_SHOWN_CONVERSIONS:]
    if len(rows) > len(shown):
        lines.append(f"  ... {len(rows) - len(shown)} older ones not shown")
    for row in shown:
        differs = _differences(row, expected)
        note = ""
        if differs:
            note = " (differs: " + ", ".join(f"{k}={_show(v)}" for k, v in differs.items()) + ")"
        lines.append(f"  {_describe_conversion(row)}{note}")
    if not rows:
        lines.append("  (none)")
    return lines


def _rejection_lines(store: Recorded) -> list[str]:
    """The latest rejections: usually why a conversion is missing."""
    rejections = _rejections(store, _SHOWN_REJECTIONS + 1)
    lines = [f"latest rejections{_scope(store)}, newest first:"]
    lines.extend(f"  {_describe_rejection(r)}" for r in rejections[:_SHOWN_REJECTIONS])
    if len(rejections) > _SHOWN_REJECTIONS:
        lines.append("  ... older ones not shown")
    if not rejections:
        lines.append("  (none)")
    return lines


def assert_conversions(
    store: Recorded,
    count: int,
    *,
    advertiser_id: int | None = None,
    campaign_id: int | None = None,
    publisher_id: int | None = None,
    reference_id: str | None = None,
    sale_amount: Money | None = None,
    sale_currency: str | None = None,
    payout: Money | None = None,
    payout_currency: str | None = None,
    reason_code: str | None = None,
    sku_list: Sequence[str] | None = None,
    quantity_list: Sequence[int] | None = None,
    source: Source | str | None = None,
) -> list[Transaction]:
    """Assert that exactly ``count`` conversions match; return them.

    Conversions are read in their current state (the end of each correction
    chain). A criterion left at None is not checked; the others must all hold.

    :param store: a :class:`~pixel_wsgi.Storage`, or a :class:`ConversionRecorder`
        to look only at its window.
    :param sale_amount: compared as a Decimal: ``"10.00"``, ``Decimal("10")``, ``10``.
    :param payout: the publisher's payout, compared as a Decimal.
    :param source: ``"pixel"``, ``"legacy_pixel"``, ``"api"``...
    :raises AssertionError: listing what was recorded, what differs from the
        expectation, and the latest rejections with their reasons.
    """
    __tracebackhide__ = True
    expected = _expectations(
        advertiser_id=advertiser_id,
        campaign_id=campaign_id,
        publisher_id=publisher_id,
        reference_id=reference_id,
        sale_amount=sale_amount,
        sale_currency=sale_currency,
        payout=payout,
        payout_currency=payout_currency,
        reason_code=reason_code,
        sku_list=sku_list,
        quantity_list=quantity_list,
        source=source,
    )
    rows = _conversions(store, advertiser_id)
    matched = [row for row in rows if not _differences(row, expected)]
    if len(matched) != count:
        summary = f"expected {_plural(count, 'conversion')} with {_criteria(expected)}"
        raise AssertionError(
            "\n".join(
                [
                    f"{summary}, found {len(matched)}.",
                    *_conversion_lines(store, rows, expected),
                    *_rejection_lines(store),
                ]
            )
        )
    return matched


def assert_conversion(
    store: Recorded,
    *,
    advertiser_id: int | None = None,
    campaign_id: int | None = None,
    publisher_id: int | None = None,
    reference_id: str | None = None,
    sale_amount: Money | None = None,
    sale_currency: str | None = None,
    payout: Money | None = None,
    payout_currency: str | None = None,
    reason_code: str | None = None,
    sku_list: Sequence[str] | None = None,
    quantity_list: Sequence[int] | None = None,
    source: Source | str | None = None,
) -> Transaction:
    """Assert that exactly one conversion matches; return it.

    ::

        conversion = assert_conversion(
            pixel_store, sale_amount="10.00", publisher_id=partner.publisher.id
        )

    The criteria are those of :func:`assert_conversions`.
    """
    __tracebackhide__ = True
    [row] = assert_conversions(
        store,
        1,
        advertiser_id=advertiser_id,
        campaign_id=campaign_id,
        publisher_id=publisher_id,
        reference_id=reference_id,
        sale_amount=sale_amount,
        sale_currency=sale_currency,
        payout=payout,
        payout_currency=payout_currency,
        reason_code=reason_code,
        sku_list=sku_list,
        quantity_list=quantity_list,
        source=source,
    )
    return row


def assert_no_conversion(
    store: Recorded,
    *,
    advertiser_id: int | None = None,
    campaign_id: int | None = None,
    publisher_id: int | None = None,
    reference_id: str | None = None,
    sale_amount: Money | None = None,
    sale_currency: str | None = None,
    payout: Money | None = None,
    payout_currency: str | None = None,
    reason_code: str | None = None,
    sku_list: Sequence[str] | None = None,
    quantity_list: Sequence[int] | None = None,
    source: Source | str | None = None,
) -> None:
    """Assert that no conversion matches (with no criteria: none at all).

    The criteria are those of :func:`assert_conversions`.
    """
    __tracebackhide__ = True
    assert_conversions(
        store,
        0,
        advertiser_id=advertiser_id,
        campaign_id=campaign_id,
        publisher_id=publisher_id,
        reference_id=reference_id,
        sale_amount=sale_amount,
        sale_currency=sale_currency,
        payout=payout,
        payout_currency=payout_currency,
        reason_code=reason_code,
        sku_list=sku_list,
        quantity_list=quantity_list,
        source=source,
    )


def assert_rejected(
    store: Recorded,
    reason: Reason | str,
    *,
    advertiser_id: int | None = None,
    reference_id: str | None = None,
    source: Source | str | None = None,
) -> Rejection:
    """Assert that a report was rejected for ``reason``; return the newest such rejection.

    ::

        assert_rejected(pixel_store, "no_attribution", advertiser_id=1)

    :param reason: a :class:`~pixel_wsgi.Reason` or its value, e.g. ``"no_attribution"``.
    :param source: where the report came from: ``"pixel"``, ``"click"``...
    :raises AssertionError: listing the latest rejections and the conversions.
    """
    __tracebackhide__ = True
    try:
        wanted = Reason(reason).value
    except ValueError:
        known = ", ".join(r.value for r in Reason)
        raise ValueError(f"unknown rejection reason {reason!r}; known: {known}") from None
    expected: dict[str, object] = {"reason": wanted}
    if advertiser_id is not None:
        expected["advertiser_id"] = advertiser_id
    if reference_id is not None:
        expected["reference_id"] = reference_id
    if source is not None:
        expected["source"] = source.value if isinstance(source, Source) else source
    for rejection in _rejections(store):
        if all(getattr(rejection, name) == value for name, value in expected.items()):
            return rejection
    rows = _conversions(store, advertiser_id)
    raise AssertionError(
        "\n".join(
            [
                f"expected a rejection with {_criteria(expected)}, found none.",
                *_rejection_lines(store),
                *_conversion_lines(store, rows, {}),
            ]
        )
    )


# -- the pytest fixtures -------------------------------------------------------------------


@pytest.fixture
def pixel_storage_path(tmp_path: Path) -> Path:
    """The SQLite file of ``pixel_store``; override it to match your configuration."""
    return tmp_path / "pixel-wsgi.db"


@pytest.fixture
def pixel_storage_url(pixel_storage_path: Path) -> str:
    """``sqlite:///`` URL of ``pixel_store``, for an application configured by URL."""
    return f"sqlite:///{quote(pixel_storage_path.resolve().as_posix())}"


@pytest.fixture
def pixel_store(pixel_storage_path: Path) -> Iterator[SQLiteStorage]:
    """A migrated, empty SQLite store, thrown away after the test."""
    # Imported here: every pytest run of a host application loads this plugin,
    # and most of its tests never ask for a store.
    from .storage import SQLiteStorage

    store = SQLiteStorage(pixel_storage_path)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def pixel_world(pixel_store: SQLiteStorage) -> PixelWorld:
    """A :class:`PixelWorld` that builds advertisers, campaigns and links in ``pixel_store``."""
    return PixelWorld(pixel_store)


@pytest.fixture
def pixel_secret_key() -> str:
    """A cookie-signing key for tests only (PixelMiddleware wants 16 characters or more)."""
    return _SECRET_KEY
