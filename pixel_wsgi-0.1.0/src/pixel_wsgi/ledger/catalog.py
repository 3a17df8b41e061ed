"""A per-process cache of tracking links, campaign rules and advertiser options.

The conversion pixel needs a link's campaign, publisher and advertiser, the campaign's
payout rule and daily cap, whether the advertiser requires signed pixels and whether it
keeps conversion contexts, on every hit. These rows are written rarely and read millions
of times, so each process keeps what it has read for ``ttl`` seconds instead of a
database round trip per hit. A row another process adds is read on first use; an edit
(``pixel-wsgi advertiser set``, ``pixel-wsgi campaign set``) is seen by every running
process within ``ttl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..models import Advertiser, Attribution, Link, Reason

if TYPE_CHECKING:
    from ..storage.base import Storage

DEFAULT_TTL = 60.0
T = TypeVar("T")


class Catalog:
    """Cached look-ups of links and of what a conversion through a link earns.

    :param storage: where the rows live.
    :param ttl: seconds an entry is trusted.
    :param max_entries: entries kept per kind; the cache is cleared beyond it.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.ttl = ttl
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._links: dict[int, tuple[float, Link]] = {}
        self._attributions: dict[int, tuple[float, Attribution]] = {}
        self._advertisers: dict[int, tuple[float, Advertiser]] = {}

    def link(self, link_id: int) -> Link | None:
        """The tracking link with this id, or None."""
        return self._cached(self._links, link_id, self.storage.link)

    def advertiser(self, advertiser_id: int) -> Advertiser | None:
        """The advertiser with this id, or None."""
        return self._cached(self._advertisers, advertiser_id, self.storage.advertiser)

    def unsigned_refusal(self, advertiser_id: int, legacy: bool) -> tuple[Reason, str] | None:
        """Why an unsigned pixel hit for this advertiser is refused (``unsigned_pixel``,
        with the detail); None when the advertiser accepts unsigned pixels (or is unknown).

        Asked by the pixel on every unsigned hit, and by a replay for a hit spooled
        before the pixel could read it.
        """
        # Asked on every pixel hit: the fresh-entry case inline, without _cached's call.
        entry = self._advertisers.get(advertiser_id)
        if entry is None or entry[0] <= self._monotonic():
            advertiser = self.advertiser(advertiser_id)
            if advertiser is None or not advertiser.require_signed_pixels:
                return None
        elif not entry[1].require_signed_pixels:
            return None
        why = "the legacy pixel cannot be signed" if legacy else "this one is not"
        return (
            Reason.UNSIGNED_PIXEL,
            f"advertiser {advertiser_id} accepts only signed pixels; {why}",
        )

    def attribution(self, link_id: int) -> Attribution | None:
        """Who is credited for, and how is paid, a conversion through a link; None if unknown."""
        return self._cached(self._attributions, link_id, self._load_attribution)

    def _load_attribution(self, link_id: int) -> Attribution | None:
        link = self.link(link_id)
        campaign = None if link is None else self.storage.campaign(link.campaign_id)
        if link is None or campaign is None:
            return None
        # Cached too: the pixel read it already (unsigned_refusal), or the next will.
        advertiser = self.advertiser(link.advertiser_id)
        return Attribution(
            advertiser_id=link.advertiser_id,
            campaign_id=link.campaign_id,
            publisher_id=link.publisher_id,
            payout=campaign.payout,
            daily_cap=campaign.daily_cap,
            keeps_conversion_context=advertiser is not None and advertiser.keeps_conversion_context,
        )

    def _cached(
        self, cache: dict[int, tuple[float, T]], key: int, load: Callable[[int], T | None]
    ) -> T | None:
        now = self._monotonic()
        entry = cache.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = load(key)
        if value is not None:  # unknown ids are not cached: another process may add them
            if len(cache) >= self.max_entries:
                cache.clear()
            cache[key] = (now + self.ttl, value)
        return value
