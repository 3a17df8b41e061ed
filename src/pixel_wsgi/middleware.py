"""``PixelMiddleware``: the whole of pixel-wsgi in front of a host WSGI app."""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from .attribution.cookie import DEFAULT_WINDOW, AttributionCookies
from .attribution.signing import PixelUrlSigner
from .clock import Clock, utc_now
from .endpoints.api import ReportingAPI
from .endpoints.click import ConsentCheck, TrackingLink
from .endpoints.health import HealthCheck
from .endpoints.pixel import ConversionPixel
from .endpoints.reporting import ConversionReporter, RequestReporter
from .endpoints.responses import method_not_allowed, text_response
from .errors import ConfigurationError, PixelError, StorageError
from .ledger.ledger import DEFAULT_RELOAD_WINDOW
from .ledger.server_reports import ReportResult
from .outage.spool import DEFAULT_MAX_BYTES, Spool
from .outage.spooling import SpoolingLedger
from .params.sale import DEFAULT_LIMITS, Limits
from .settings import QUEUED_MODES, SECRET_KEY_ENV, Settings, secret_keys
from .storage import Storage, storage_from_url

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .delivery.background import BackgroundDelivery
    from .outage.applier import QueueApplier

logger = logging.getLogger("pixel_wsgi")


_READ_METHODS = ("GET", "HEAD")
_UNAVAILABLE = "Temporarily unavailable.\n"

_Handler = Callable[["WSGIEnvironment", "StartResponse", str], Iterable[bytes]]


class _Route(NamedTuple):
    """One route of the table: where it starts, who answers, what may follow."""

    #: What the path starts with. No prefix of the table starts another.
    prefix: str
    #: ``handler(environ, start_response, rest)``: the path after ``prefix``, without
    #: ``suffix``.
    handler: _Handler
    #: One path segment (an id) follows ``prefix``; False: ``prefix`` is the whole path.
    segment: bool = True
    #: What the segment must end with, not handed on (the pixel's ``.gif``).
    suffix: str = ""
    #: ``rest[:cut]`` drops the suffix (None: there is none), computed once.
    cut: int | None = None
    #: The handler takes every method and every path below ``prefix`` (the API
    #: routes and answers 404 and 405 itself); otherwise only GET and HEAD.
    any_method: bool = False


class _Started:
    """The server's ``start_response`` for one of our routes, remembering that it was
    called: a second call (our 503 after a route failed half-way) carries the failure
    as ``exc_info``, as PEP 3333 asks, so that a server that has sent the first headers
    re-raises instead of mixing two answers."""

    __slots__ = ("called", "start_response")

    def __init__(self, start_response: StartResponse) -> None:
        self.start_response = start_response
        self.called = False

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
    ) -> Callable[[bytes], object]:
        if self.called and exc_info is None:
            failure = sys.exc_info()
            if failure[0] is not None:
                exc_info = failure
        self.called = True
        return self.start_response(status, headers, exc_info)


class PixelMiddleware:
    """Conversion tracking for any WSGI application.

    Serves a few routes itself and hands every other request to ``app``
    untouched::

        /pixels/click/<link_id>                    tracking link: visit, cookie, 302
        /pixels/conversion/<advertiser_id>.gif     conversion pixel: 1x1 GIF
        /tracked_actions/web_sale/<advertiser_id>  the pre-2012 pixel
        /pixels/api/conversions                    Conversion Reporting API (POST)
        /pixels/api/conversions.csv                bulk CSV upload (POST)
        /pixels/api/transactions.json (.csv)       Transactions API (GET)
        /pixels/health                             200 when the store answers, else 503

    Host code reports server-side conversions in process: during a request with
    ``environ["pixel_wsgi"].report(...)`` (a
    :class:`~pixel_wsgi.endpoints.reporting.RequestReporter`,
    which credits the visitor's cookie), elsewhere with :meth:`report`.

    Flask::

        # the key from $PIXEL_WSGI_SECRET_KEY; or pass secret_key=...
        app.wsgi_app = PixelMiddleware(app.wsgi_app, "sqlite:////srv/shop/pixel-wsgi.db")

    :param app: the WSGI application to wrap.
    :param storage: a storage URL (``sqlite:///path.db``) or a
        :class:`~pixel_wsgi.storage.Storage` object.
    :param secret_key: signs attribution cookies: one key of at least 16
        characters, or a list for rotation (the last signs, all verify). None (the
        default) reads ``$PIXEL_WSGI_SECRET_KEY``; make a key with
        ``python -c "import secrets; print(secrets.token_urlsafe(32))"``.
    :param prefix: where the ``click``, ``conversion`` and ``health`` routes live.
    :param legacy_prefix: the pre-December-2012 pixel's route.
    :param attribution_window: how long a click can earn a conversion (at most
        400 days; the cookie's ``Max-Age`` and the signature's maximum age).
    :param reload_window: how long a repeat of the same values from the same
        visit, without ``reference_id``, is taken for a page reload.
    :param default_currency: the ISO 4217 code of an amount given without one.
    :param honor_gpc: set no cookie for browsers that send ``Sec-GPC: 1``.
    :param consent: ``consent(environ) -> bool``; no cookie when it says False.
    :param allowed_redirect_hosts: hosts besides the request's own that a link's
        stored absolute destination may point to.
    :param limits: caps on the size of pixel parameters.
    :param advertiser_id: the site's own advertiser: the one in-process reports are
        for when they name none.
    :param api_allowed_origins: ``Origin`` values whose pages may call the APIs (by
        default no browser may).
    :param environ_key: where each request's
        :class:`~pixel_wsgi.endpoints.reporting.RequestReporter`
        goes in the environ; None to put none there.
    :param spool_dir: where clicks and conversions go when the store fails (locked,
        full, read-only, down), fsync'd, until ``pixel-wsgi replay`` applies them:
        ``"auto"`` puts it beside a SQLite file (``<file>.spool``) or in
        ``./pixel-wsgi.spool``; None keeps no spool (such events are lost). A spool
        that cannot be set up (a directory this user may not create, or one the spool
        refuses) never stops the host: it is logged once as CRITICAL, the events are
        lost, and ``/pixels/health`` answers 503 with ``"spool": "unavailable: ..."``.
    :param spool_max_bytes: the most the spool holds (256 MiB by default); past it
        events are lost, logged once as ``CRITICAL``, and the health check says ``full``.
    :param migrate: bring the store's schema up to date at construction, and check
        that it is writable (a failure is logged loudly, never raised).
    :param bot_user_agents: ``User-Agent`` substrings (case-insensitive) of bots
        whose clicks and pixel hits never count; None for
        :data:`~pixel_wsgi.endpoints.filters.DEFAULT_BOT_USER_AGENTS`, ``()`` for none.
    :param min_seconds_to_convert: flag (``too_fast`` in the rejection log; the
        conversion still counts) a conversion sooner than this after its click;
        0, the default, flags none.
    :param refuse_without_user_activation: refuse a click that is a cross-site
        navigation without user activation (a script or a meta refresh on another
        site: no ``Sec-Fetch-User: ?1``) instead of only flagging it
        (``no_user_activation`` in the rejection log).
    :param deliver_in_background: deliver the ledger's rows to the advertisers'
        delivery targets (``pixel-wsgi target add``) from a thread in each process of
        the application, for a site that runs no ``pixel-wsgi deliver`` service. The
        thread starts with the process's first request (again in each forked worker),
        sends nothing the pixel waits for, and stops at exit or on :meth:`close`; its
        failures are logged (``pixel_wsgi.delivery``), never raised. Running it in many
        processes, or beside ``pixel-wsgi deliver``, sends no row twice.
    :param ingest: ``"sync"`` (the default): a click or a conversion is in the store
        when its request is answered. ``"queued"``, for high traffic: the pixel and the
        click append their event to the local log (the spool directory) and answer; an
        applier thread in each process applies the log in batches, one transaction
        each, exactly once, through the same rules (within a fraction of a second
        while it keeps up), and ``pixel-wsgi replay --loop`` may run as a service
        beside it. An event survives a crash of the process, not a power loss (as
        SQLite's ``synchronous=NORMAL``). ``"queued-durable"``: the same, and each
        request's event is on disk before it is answered, one ``fdatasync`` of the log
        for the requests that arrive together (group commit): it survives a power loss
        too. Server-side reports (the APIs, in-process) still apply at once. See the
        README, "Throughput".
    :param clock: the current UTC time (for tests).

    Signed pixel URLs for templates: ``middleware.pixel_urls.url(advertiser_id,
    sale_amount=..., reference_id=...)`` (a :class:`~pixel_wsgi.signing.PixelUrlSigner`
    with this ``secret_key`` and ``prefix``), or the helpers of :mod:`pixel_wsgi.signing`.

    Security: the cookie is only as secret as ``secret_key``; keep it out of
    source control. Behind a proxy that terminates TLS, wrap the application in
    :class:`werkzeug.middleware.proxy_fix.ProxyFix` so that cookies get
    ``Secure`` and the truncated client address is the visitor's.
    """

    def __init__(
        self,
        app: WSGIApplication,
        storage: str | Storage = "sqlite:///pixel-wsgi.db",
        *,
        secret_key: str | bytes | Sequence[str | bytes] | None = None,
        prefix: str = "/pixels",
        legacy_prefix: str = "/tracked_actions/web_sale",
        attribution_window: timedelta = DEFAULT_WINDOW,
        reload_window: timedelta = DEFAULT_RELOAD_WINDOW,
        default_currency: str = "USD",
        honor_gpc: bool = True,
        consent: ConsentCheck | None = None,
        allowed_redirect_hosts: Iterable[str] = (),
        limits: Limits = DEFAULT_LIMITS,
        advertiser_id: int | None = None,
        api_allowed_origins: Iterable[str] = (),
        environ_key: str | None = "pixel_wsgi",
        migrate: bool = True,
        bot_user_agents: Iterable[str] | None = None,
        min_seconds_to_convert: float = 0,
        refuse_without_user_activation: bool = False,
        spool_dir: str | os.PathLike[str] | None = "auto",
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        deliver_in_background: bool = False,
        ingest: str = "sync",
        clock: Clock = utc_now,
    ) -> None:
        self.application = app
        self.storage = storage_from_url(storage) if isinstance(storage, str) else storage
        if not isinstance(self.storage, Storage):
            raise ConfigurationError(f"storage must be a URL or a Storage, got {storage!r}")
        #: Every option but ``app`` and ``storage``, checked (a wrong one raised).
        self.settings = settings = Settings(
            secret_keys=secret_keys(secret_key),
            prefix=prefix,
            legacy_prefix=legacy_prefix,
            attribution_window=attribution_window,
            reload_window=reload_window,
            default_currency=default_currency,
            honor_gpc=honor_gpc,
            consent=consent,
            allowed_redirect_hosts=allowed_redirect_hosts,
            limits=limits,
            advertiser_id=advertiser_id,
            api_allowed_origins=api_allowed_origins,
            environ_key=environ_key,
            migrate=migrate,
            bot_user_agents=bot_user_agents,
            min_seconds_to_convert=min_seconds_to_convert,
            refuse_without_user_activation=refuse_without_user_activation,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
            deliver_in_background=deliver_in_background,
            ingest=ingest,
            clock=clock,
        )
        self.prefix = prefix
        self.legacy_prefix = legacy_prefix
        self.default_currency = default_currency
        self.environ_key = environ_key
        self.cookies = AttributionCookies(settings.secret_keys, window=attribution_window)
        #: why there is no outage spool although one was asked for (None: there is one,
        #: or ``spool_dir=None``); ``/pixels/health`` reports it.
        self.spool_problem: str | None = None
        self.spool = self._open_spool(spool_dir, spool_max_bytes)
        ledger_type = SpoolingLedger
        queued = ingest in QUEUED_MODES
        if queued:
            from .outage.queued import QueuedLedger  # only when asked for

            ledger_type = QueuedLedger
            if ingest == "queued-durable" and self.spool is not None:
                self.spool.sync_appends = True
        self.ledger = ledger_type(
            self.storage, self.spool, reload_window=reload_window, clock=clock
        )
        self.filters = settings.filters()
        self.pixel_urls = PixelUrlSigner(settings.secret_keys, prefix=prefix)
        self.conversion_pixel = ConversionPixel(
            self.ledger, self.cookies, settings, filters=self.filters, signer=self.pixel_urls
        )
        self.legacy_pixel = ConversionPixel(
            self.ledger, self.cookies, settings, legacy=True, filters=self.filters
        )
        self.tracking_link = TrackingLink(self.ledger, self.cookies, settings, filters=self.filters)
        self.api = ReportingAPI(self.ledger, settings)
        self.reporter = ConversionReporter(self.ledger, self.cookies, settings)
        self.health = HealthCheck(
            self.storage, self.spool, self.spool_problem, clock=clock, queued=queued
        )
        #: Whether this process's background threads are still to be started: the one
        #: thing every request checks (set again after a fork, and by a thread that
        #: ended idle).
        self._start_threads = False
        rearm = _rearming(self)
        #: The delivery thread of ``deliver_in_background`` (None without it).
        self.background: BackgroundDelivery | None = None
        if settings.deliver_in_background:
            self.background = _background_delivery(self, rearm)
        #: The queued mode's applier thread (None in the default mode, or without a
        #: usable spool: then events are written at once).
        self.applier: QueueApplier | None = None
        if queued and self.spool is not None:
            self.applier = self._queue_applier(rearm)
        #: The store's upkeep off the request path (SQLite: WAL checkpoints), or None.
        self.housekeeping = self.storage.housekeeping(after_exit=rearm)
        self._threads = tuple(
            thread
            for thread in (self.background, self.applier, self.housekeeping)
            if thread is not None
        )
        self._start_threads = bool(self._threads)
        #: Our routes, the most frequent first: the pixel is the hot path.
        self.routes = (
            _Route(f"{prefix}/conversion/", self.conversion_pixel, suffix=".gif", cut=-4),
            _Route(f"{prefix}/click/", self.tracking_link),
            _Route(f"{legacy_prefix}/", self.legacy_pixel),
            _Route(f"{prefix}/api/", self.api, any_method=True),
            _Route(f"{prefix}/health", self.health, segment=False),
        )
        # One str.startswith() on a tuple decides pass-through (~0.1 µs).
        self._prefixes = tuple(route.prefix for route in self.routes)
        if migrate:
            self._migrate()

    def _open_spool(self, spool_dir: str | os.PathLike[str] | None, max_bytes: int) -> Spool | None:
        """The outage spool, or None: a spool that cannot be set up never stops the host.

        The usual deployment has the CLI make the database as one user and the
        application run as another, who may not create ``<db>.spool`` beside it.
        """
        if spool_dir is None:
            return None
        try:
            if spool_dir == "auto":
                spool_dir = self.storage.default_spool_dir()
            return Spool(spool_dir, max_bytes=max_bytes)
        except (PixelError, OSError) as exc:  # ConfigurationError, SpoolError, ...
            self.spool_problem = f"unavailable: {exc}"
            logger.critical(
                "pixel-wsgi has no outage spool (%s): a click or conversion the store cannot"
                " take is LOST. Pages, tracking links and pixels are still answered. Give"
                " spool_dir= a directory this user (uid %d) owns and may write, then restart",
                exc,
                os.geteuid(),
            )
            return None

    def _migrate(self) -> None:
        try:
            self.storage.migrate()
            self.storage.check(writable=True)
        except StorageError:
            # The host application must keep serving its own pages; clicks and
            # conversions go to the spool until the store is fixed.
            logger.critical(
                "pixel-wsgi cannot write to its store %r; events are spooled to %s until"
                " it can, then run `pixel-wsgi replay`",
                self.storage,
                self.spool.directory if self.spool else "nowhere (no spool): they are LOST",
                exc_info=True,
            )
        finally:
            # No connection may outlive construction: a server that forks
            # after loading the app (gunicorn --preload) must not share it.
            self.storage.close()

    def report(self, **fields: Any) -> ReportResult:
        """Report a server-side conversion from anywhere (a background job, a refund).

        The keyword arguments of :meth:`pixel_wsgi.endpoints.reporting.ConversionReporter.report`;
        the same rules as ``POST /pixels/api/conversions``.
        """
        return self.reporter.report(**fields)

    def close(self) -> None:
        """Stop what the middleware runs in the background: the delivery thread of
        ``deliver_in_background`` (the request in flight may finish within a few
        seconds), the queued mode's applier (after a last pass over the log) and the
        store's upkeep. Requests are still answered; the threads do not start again
        (queued events then wait in the log for ``pixel-wsgi replay``)."""
        self._start_threads = False
        for thread in self._threads:
            thread.close()

    def _queue_applier(self, rearm: Callable[[], None]) -> QueueApplier:
        """The applier thread of the queued mode (not started)."""
        from .outage.applier import QueueApplier

        assert self.spool is not None
        return QueueApplier(self.spool, self.storage, limits=self.settings.limits, after_fork=rearm)

    def _begin_threads(self, environ: WSGIEnvironment) -> None:
        """Start this process's background threads (the first request, the first after
        a fork, the first after one ended idle); a failure to start one is logged,
        never the host's. The store learns whether this server runs threads."""
        self._start_threads = False
        self.storage.serve_threads(bool(environ.get("wsgi.multithread", True)))
        for thread in self._threads:
            try:
                thread.start()
            except Exception:
                logger.exception("pixel-wsgi could not start its %s thread", thread.name)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._start_threads:  # background threads, once per process: ~20 instructions
            self._begin_threads(environ)
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(self._prefixes):
            # Inline rather than self._host(): this is every host request's cost.
            if self.environ_key is not None:
                environ[self.environ_key] = RequestReporter((self.reporter, environ))
            return self.application(environ, start_response)
        started = _Started(start_response)
        try:
            answer = self._dispatch(path, environ, started)
        except Exception:
            # Never let our failure become the host's error page.
            logger.exception("pixel-wsgi failed on %s", path)
            return text_response(started, "503 Service Unavailable", _UNAVAILABLE)
        if answer is None:
            # A look-alike path: the host's, outside our try, so that its exceptions
            # reach its server, debugger and error views untouched.
            return self._host(environ, start_response)
        return answer

    def _host(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Hand a look-alike path to the host application, with its in-process reporter.

        Our own routes need no reporter, so the pixel does not pay for one.
        """
        if self.environ_key is not None:
            environ[self.environ_key] = RequestReporter((self.reporter, environ))
        return self.application(environ, start_response)

    def _dispatch(
        self, path: str, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes] | None:
        """Our answer for one of our routes; None for a path that only looks like one."""
        # The prefixes do not overlap: the first that matches decides.
        for prefix, handler, segment, suffix, cut, any_method in self.routes:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if any_method:
                return handler(environ, start_response, rest)
            if segment:
                if not rest or "/" in rest or not rest.endswith(suffix):
                    return None
            elif rest:
                return None
            if environ["REQUEST_METHOD"] not in _READ_METHODS:
                return method_not_allowed(start_response)
            return handler(environ, start_response, rest[:cut])
        return None


def _rearming(middleware: PixelMiddleware) -> Callable[[], None]:
    """What a background thread calls for the middleware's next request to start it
    again (in the child of a fork, or after it ended idle). It holds the middleware
    weakly: a fork hook must not keep a discarded middleware alive."""
    owner = weakref.ref(middleware)

    def rearm() -> None:
        alive = owner()
        if alive is not None:
            alive._start_threads = True

    return rearm


def _background_delivery(
    middleware: PixelMiddleware, rearm: Callable[[], None]
) -> BackgroundDelivery:
    """The delivery thread of ``middleware`` (not started): imported only when asked for,
    so that a site without it loads no delivery code (nor its cryptography)."""
    from .delivery.background import BackgroundDelivery
    from .delivery.secrets import SecretBox

    settings = middleware.settings
    return BackgroundDelivery(
        middleware.storage,
        SecretBox(settings.secret_keys),
        clock=settings.clock,
        after_fork=rearm,
    )


__all__ = ["SECRET_KEY_ENV", "PixelMiddleware"]
