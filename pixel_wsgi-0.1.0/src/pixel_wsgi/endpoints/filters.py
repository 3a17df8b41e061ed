"""Fraud and noise filters: decisions on the WSGI environ, made before anything counts.

Nothing a filter stops is dropped silently: the click or conversion goes to the
rejection log with its reason, where the dashboard and ``pixel-wsgi rejections``
show it.

- ``bot`` -- known crawlers, link-preview bots and mail link scanners, by a
  case-insensitive ``User-Agent`` substring (:data:`DEFAULT_BOT_USER_AGENTS`,
  configurable). A bot's click still gets its redirect, so link previews work,
  but no visit and no cookie; a bot's pixel hit is not a conversion.
- ``cookie_stuffing`` -- a click that is not a top-level navigation: a
  ``Sec-Fetch-Dest`` other than ``document`` (a tracking link loaded as an
  ``<img>``, ``<iframe>``, script, style or ``fetch()``). The visitor never
  clicked anything. Same answer as a real click, without the cookie.
- ``cross_site_pixel`` -- a pixel fetched from another site
  (``Sec-Fetch-Site: cross-site``). The ``SameSite=Lax`` cookie would not be
  sent anyway; this says why the conversion did not count. ``same-site``
  (the shop's own subdomains) is allowed.
- ``too_fast`` -- a conversion within ``min_seconds_to_convert`` of its click.
  A flag, not a rejection: the conversion counts, and the log says it looked
  automated.
- ``no_user_activation`` -- a cross-site navigation to a tracking link without
  user activation (no ``Sec-Fetch-User: ?1``): a script's ``location`` change or a
  meta refresh on another site, not a person's click (navigation stuffing). A flag:
  the click counts and sets its cookie, and the log says how it came; with
  ``refuse_without_user_activation`` it is refused like ``cookie_stuffing``.
- ``daily_cap_reached`` -- a campaign's :attr:`~pixel_wsgi.models.Campaign.daily_cap`
  (decided by the ledger, inside its serialised write: see
  :meth:`pixel_wsgi.ledger.ledger.Ledger.record_web_conversion`).

Browsers that send no ``Sec-Fetch-*`` headers (older ones, test clients) are
never refused for lacking them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..clock import utc_day_start
from ..errors import ConfigurationError
from ..models import Reason

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "DEFAULT_BOT_USER_AGENTS",
    "MAX_MATCHED_USER_AGENT",
    "Filters",
    "UserAgentFilter",
    "is_cross_site",
    "non_navigation_destination",
    "utc_day_start",
    "without_user_activation",
]

#: Lower-case ``User-Agent`` substrings of clients that are not a visitor.
#:
#: Left out on purpose: ``curl``, ``wget``, ``python-requests`` and headless
#: browsers (``HeadlessChrome``). Developers check an installation with curl and
#: run end-to-end suites in headless Chromium: both must see what a visitor sees.
#: A script that wants to pass for a browser sends a browser's user agent anyway,
#: so listing them would cost honest users and stop no one. No user agent at all
#: is not a bot either, for the same reasons (test clients send none).
DEFAULT_BOT_USER_AGENTS: tuple[str, ...] = (
    # search engines
    "googlebot",
    "google-inspectiontool",
    "adsbot-google",
    "mediapartners-google",
    "apis-google",
    "feedfetcher-google",
    "storebot-google",
    "bingbot",
    "bingpreview",
    "msnbot",
    "adidxbot",
    "yandexbot",
    "baiduspider",
    "duckduckbot",
    "applebot",
    "petalbot",
    "sogou",
    "seznambot",
    "exabot",
    # SEO and AI crawlers
    "ahrefsbot",
    "semrushbot",
    "mj12bot",
    "dotbot",
    "blexbot",
    "dataforseobot",
    "screaming frog",
    "gptbot",
    "chatgpt-user",
    "oai-searchbot",
    "claudebot",
    "perplexitybot",
    "ccbot",
    "bytespider",
    "amazonbot",
    "meta-externalagent",
    # link previews of chat and social apps
    "facebookexternalhit",
    "facebookcatalog",
    "meta-externalfetcher",
    "twitterbot",
    "linkedinbot",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "skypeuripreview",
    "pinterestbot",
    "redditbot",
    "embedly",
    "iframely",
    "bitlybot",
    # mail and document link scanners (they open every link before the reader)
    "microsoft office",
    "ms-office",
    "proofpoint",
    "barracuda",
    "mimecast",
    "ironport",
    # uptime and speed monitors
    "pingdom",
    "uptimerobot",
    "statuscake",
    "site24x7",
    "gtmetrix",
)

#: The characters of a ``User-Agent`` the bot filter reads and remembers. Real ones
#: are under 300; a bot names itself near the start.
MAX_MATCHED_USER_AGENT = 512

# Sec-Fetch-Dest of a top-level navigation: the only way a person follows a link.
_NAVIGATION = "document"
_MAX_SHOWN_USER_AGENT = 160
_NO_ACTIVATION = (
    "a cross-site navigation without user activation (no Sec-Fetch-User: ?1):"
    " a script or a meta refresh, not a click"
)
_UNSEEN = "(unseen)"  # not None: an unseen user agent goes through the full match


class UserAgentFilter:
    """Recognises bots by case-insensitive ``User-Agent`` substrings.

    :param substrings: what to look for; None for :data:`DEFAULT_BOT_USER_AGENTS`,
        an empty iterable to recognise none.
    :param cache_size: distinct user agents remembered. Real traffic has few, and
        a remembered answer costs a dict look-up instead of a scan of the list
        (~0.05 µs instead of ~7 µs); the memory is cleared when full.

    Only the first :data:`MAX_MATCHED_USER_AGENT` characters of a user agent are
    matched and remembered, so the memory stays under ``cache_size`` times that
    whatever clients send (1,500 distinct 100 KB user agents once kept 140 MB).
    """

    def __init__(self, substrings: Iterable[str] | None = None, *, cache_size: int = 4096) -> None:
        if isinstance(substrings, (str, bytes)):
            raise ConfigurationError(
                "bot_user_agents must be a list of user-agent substrings, not one string"
            )
        given = DEFAULT_BOT_USER_AGENTS if substrings is None else tuple(substrings)
        for item in given:
            if not isinstance(item, str) or not item.strip():
                raise ConfigurationError(
                    f"bot_user_agents entries must be non-blank strings, got {item!r}"
                )
        # Duplicates dropped, order kept: the first match names the rejection.
        self.substrings: tuple[str, ...] = tuple(dict.fromkeys(s.strip().lower() for s in given))
        self.cache_size = cache_size
        self._seen: dict[str, str | None] = {}

    def match(self, user_agent: str) -> str | None:
        """The listed substring the start of ``user_agent`` contains, or None."""
        # A slice that covers the whole string is the string itself: free for real ones.
        user_agent = user_agent[:MAX_MATCHED_USER_AGENT]
        try:
            return self._seen[user_agent]
        except KeyError:
            pass
        lowered = user_agent.lower()
        found = next((s for s in self.substrings if s in lowered), None)
        if len(self._seen) >= self.cache_size:
            self._seen.clear()
        self._seen[user_agent] = found
        return found


def non_navigation_destination(environ: WSGIEnvironment) -> str | None:
    """A click's ``Sec-Fetch-Dest`` when it is not a top-level navigation, else None.

    ``document`` is a person following a link; ``image``, ``iframe``, ``frame``,
    ``embed``, ``object``, ``script``, ``style``, ``empty`` (``fetch()``) and the
    rest are a page loading the link by itself: cookie stuffing. No header (an
    older browser, a test client) is taken for a navigation.
    """
    dest: str = environ.get("HTTP_SEC_FETCH_DEST", "")
    if not dest:
        return None
    dest = dest.strip().lower()
    return None if dest == _NAVIGATION else dest


def without_user_activation(environ: WSGIEnvironment) -> bool:
    """A cross-site navigation the visitor did not make: no ``Sec-Fetch-User: ?1``.

    Browsers send ``Sec-Fetch-User: ?1`` only on navigations a person started (a
    click, a key press); a script's ``location`` change or a meta refresh sends none.
    Only a browser that sends ``Sec-Fetch-Site`` is judged (an older browser or a test
    client sends neither), and only across sites: a link on the shop's own pages, or
    a typed or bookmarked one (``none``), is the shop's own business.
    """
    return (
        environ.get("HTTP_SEC_FETCH_SITE") == "cross-site"
        and environ.get("HTTP_SEC_FETCH_USER") != "?1"
    )


def is_cross_site(environ: WSGIEnvironment) -> bool:
    """``Sec-Fetch-Site: cross-site``: another site's page made the request."""
    return environ.get("HTTP_SEC_FETCH_SITE") == "cross-site"


def _shown_user_agent(user_agent: str) -> str:
    # repr() escapes anything odd a client put in its header.
    return repr(user_agent[:_MAX_SHOWN_USER_AGENT])


class Filters:
    """The filters one :class:`~pixel_wsgi.middleware.PixelMiddleware` applies.

    :param bot_user_agents: see :class:`UserAgentFilter` (None: the defaults;
        ``()``: no bot filter).
    :param min_seconds_to_convert: flag a conversion made sooner than this after
        its click (``too_fast``); 0 flags none.
    :param refuse_without_user_activation: refuse (no visit, no cookie, the same
        redirect) a cross-site navigation without user activation instead of only
        flagging it (``no_user_activation``).
    """

    def __init__(
        self,
        *,
        bot_user_agents: Iterable[str] | None = None,
        min_seconds_to_convert: float = 0,
        refuse_without_user_activation: bool = False,
    ) -> None:
        if not isinstance(refuse_without_user_activation, bool):
            raise ConfigurationError(
                "refuse_without_user_activation must be True or False,"
                f" got {refuse_without_user_activation!r}"
            )
        self.refuse_without_user_activation = refuse_without_user_activation
        self.bots = UserAgentFilter(bot_user_agents)
        self._seen = self.bots._seen  # the bot filter's memory, read directly on the hot path
        if (
            isinstance(min_seconds_to_convert, bool)
            or not isinstance(min_seconds_to_convert, (int, float))
            or not math.isfinite(min_seconds_to_convert)
            or min_seconds_to_convert < 0
        ):
            raise ConfigurationError(
                "min_seconds_to_convert must be a number of seconds >= 0,"
                f" got {min_seconds_to_convert!r}"
            )
        self.min_seconds_to_convert = float(min_seconds_to_convert)

    def bot(self, environ: WSGIEnvironment) -> tuple[Reason, str] | None:
        user_agent: str = environ.get("HTTP_USER_AGENT", "")
        if not user_agent or not self.bots.substrings:
            return None
        found = self.bots.match(user_agent)
        if found is None:
            return None
        return Reason.BOT, f"user agent matches {found!r}: {_shown_user_agent(user_agent)}"

    def click_problem(self, environ: WSGIEnvironment) -> tuple[Reason, str] | None:
        """Why a click must not count (``bot``, ``cookie_stuffing``, and with
        ``refuse_without_user_activation`` ``no_user_activation``), or None."""
        problem = self.bot(environ)
        if problem is not None:
            return problem
        dest = non_navigation_destination(environ)
        if dest is not None:
            shown = dest[:40]
            return (
                Reason.COOKIE_STUFFING,
                f"the link was loaded as Sec-Fetch-Dest {shown!r}, not followed by a person",
            )
        if self.refuse_without_user_activation and without_user_activation(environ):
            return Reason.NO_USER_ACTIVATION, _NO_ACTIVATION
        return None

    def click_flag(self, environ: WSGIEnvironment) -> tuple[Reason, str] | None:
        """What a counted click looked like, for a flag in the log (``no_user_activation``)."""
        if without_user_activation(environ):
            return Reason.NO_USER_ACTIVATION, f"{_NO_ACTIVATION}; the click counts"
        return None

    def pixel_problem(self, environ: WSGIEnvironment) -> tuple[Reason, str] | None:
        """Why a pixel hit must not count (``bot``, ``cross_site_pixel``), or None."""
        # On every pixel hit: a user agent seen before costs one dict look-up here.
        user_agent: str | None = environ.get("HTTP_USER_AGENT")
        if user_agent and self._seen.get(user_agent[:MAX_MATCHED_USER_AGENT], _UNSEEN) is not None:
            problem = self.bot(environ)
            if problem is not None:
                return problem
        if environ.get("HTTP_SEC_FETCH_SITE") == "cross-site":
            return Reason.CROSS_SITE_PIXEL, "the pixel was requested by another site's page"
        return None

    def too_fast(self, clicked_at: int, now: float) -> str | None:
        """A ``too_fast`` detail when the click was under the minimum ago, else None.

        :param clicked_at: the Unix time the attribution cookie was signed (its click),
            from :meth:`~pixel_wsgi.attribution.cookie.AttributionCookies.verify_timed`.
        :param now: the current Unix time (the clock the cookie was signed with).
        """
        if not self.min_seconds_to_convert:
            return None
        elapsed = now - clicked_at
        if elapsed >= self.min_seconds_to_convert:
            return None
        return (
            f"converted {max(elapsed, 0):.1f} s after the click (minimum"
            f" {self.min_seconds_to_convert:g} s); the conversion counts"
        )
