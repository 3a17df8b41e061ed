"""PasteDeploy support: the ``egg:pixel-wsgi#pixel`` filter.

Put the middleware in front of an application in a Paste ``.ini`` file
(Pyramid's ``pserve``, or ``paste.deploy.loadapp``)::

    [pipeline:main]
    pipeline = pixel shop

    [filter:pixel]
    use = egg:pixel-wsgi#pixel
    storage = sqlite:///%(here)s/pixel-wsgi.db
    secret_key = a long random string, kept out of source control
    # optional, with their defaults or an example:
    old_secret_keys = keys-that-still-verify-during-a-rotation
    prefix = /pixels
    legacy_prefix = /tracked_actions/web_sale
    default_currency = USD
    attribution_window = 30d
    reload_window = 24h
    honor_gpc = true
    allowed_redirect_hosts = shop.example, www.shop.example
    advertiser_id = 1
    api_allowed_origins = https://admin.shop.example
    environ_key = pixel_wsgi
    migrate = true
    bot_user_agents = default, MyMonitor/1.0
    min_seconds_to_convert = 3
    spool_dir = %(here)s/pixel-wsgi.spool
    deliver_in_background = true
    ingest = sync
    max_query_length = 8192

Every option of :class:`~pixel_wsgi.middleware.PixelMiddleware` that text can
express is accepted, converted, and checked, with an error naming the option for
a value that cannot be used:

- ``storage`` (required) and ``secret_key`` (required unless
  ``PIXEL_WSGI_SECRET_KEY`` is set in the environment) are taken verbatim (a key's
  spaces included); ``%(here)s`` is the directory of the ``.ini`` file, which makes a
  SQLite path independent of the server's working directory.
- ``old_secret_keys``: retired keys, separated by whitespace, that still verify
  cookies while ``secret_key`` signs new ones.
- Durations (``attribution_window``, ``reload_window``): a whole number and a unit,
  ``30d``, ``12h``, ``15m`` or ``90s``. ``attribution_window_days = 30`` still works.
- Booleans (``honor_gpc``, ``migrate``, ``refuse_without_user_activation``,
  ``deliver_in_background``):
  ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``.
- Lists (``allowed_redirect_hosts``, ``api_allowed_origins``): separated by commas
  or whitespace. ``bot_user_agents``: separated by commas or new lines (a
  ``User-Agent`` substring may hold spaces); ``default`` stands for the built-in list
  (:data:`~pixel_wsgi.endpoints.filters.DEFAULT_BOT_USER_AGENTS`), ``none`` for no bot filter.
- ``advertiser_id``: a whole number; ``min_seconds_to_convert``: a number of seconds
  (``3``, ``1.5``).
- ``environ_key``: a name, or ``none`` for no in-process reporter in the environ;
  ``spool_dir``: a directory, ``auto`` (the default) or ``none``; ``ingest``: ``sync``
  (the default), ``queued`` or ``queued-durable``.
- The fields of :class:`~pixel_wsgi.params.sale.Limits` (``max_query_length``,
  ``max_parameters``, ...): whole numbers.

``consent`` and ``clock`` take Python callables: wrap the application in code to
set them. An unknown option is an error, so a misspelt one cannot be silently
ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..attribution.keyring import MAKE_A_KEY
from ..endpoints.filters import DEFAULT_BOT_USER_AGENTS
from ..errors import ConfigurationError
from ..middleware import SECRET_KEY_ENV, PixelMiddleware
from ..params.sale import Limits

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["filter_app_factory"]

# The spellings PasteDeploy's own asbool() accepts.
_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0"})
_DAYS_RE = re.compile(r"[0-9]{1,4}")
_DURATION_RE = re.compile(r"([0-9]{1,7})\s*([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_WHOLE_RE = re.compile(r"[0-9]{1,18}")
_SECONDS_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")
_NONE = "none"


def _error(name: str, expected: str, value: str) -> ConfigurationError:
    return ConfigurationError(f"[filter:pixel] {name} must be {expected}, got {value!r}")


def _as_text(name: str, value: str) -> str:
    return value.strip()


def _as_bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _error(name, "true or false", value)


def _as_days(name: str, value: str) -> timedelta:
    text = value.strip()
    if _DAYS_RE.fullmatch(text) is None:
        raise _error(name, "a whole number of days", value)
    return timedelta(days=int(text))


def _as_duration(name: str, value: str) -> timedelta:
    match = _DURATION_RE.fullmatch(value.strip().lower())
    if match is None:
        raise _error(name, "a duration like 30d, 12h, 15m or 90s", value)
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _as_whole(name: str, value: str) -> int:
    text = value.strip()
    if _WHOLE_RE.fullmatch(text) is None:
        raise _error(name, "a whole number", value)
    return int(text)


def _as_seconds(name: str, value: str) -> float:
    text = value.strip()
    if _SECONDS_RE.fullmatch(text) is None:
        raise _error(name, "a number of seconds like 3 or 1.5", value)
    return float(text)


def _as_list(name: str, value: str) -> list[str]:
    return [item for item in re.split(r"[\s,]+", value) if item]


def _as_bot_list(name: str, value: str) -> tuple[str, ...] | None:
    items = [item.strip() for item in re.split(r"[,\n]+", value) if item.strip()]
    if [item.lower() for item in items] == [_NONE]:
        return ()
    if not items:
        raise _error(name, "a list of User-Agent substrings, 'default' or 'none'", value)
    if len(items) == 1 and items[0].lower() == "default":
        return None
    found: list[str] = []
    for item in items:
        found.extend(DEFAULT_BOT_USER_AGENTS if item.lower() == "default" else [item])
    return tuple(found)


def _as_optional_text(name: str, value: str) -> str | None:
    text = value.strip()
    if not text:
        raise _error(name, f"a name or {_NONE!r}", value)
    return None if text.lower() == _NONE else text


_Convert = Callable[[str, str], Any]

#: ini option -> (PixelMiddleware argument, converter). ``storage``, ``secret_key``,
#: ``old_secret_keys`` and the fields of Limits are handled apart.
_CONVERTED: dict[str, tuple[str, _Convert]] = {
    "prefix": ("prefix", _as_text),
    "legacy_prefix": ("legacy_prefix", _as_text),
    "default_currency": ("default_currency", _as_text),
    "attribution_window": ("attribution_window", _as_duration),
    "attribution_window_days": ("attribution_window", _as_days),
    "reload_window": ("reload_window", _as_duration),
    "honor_gpc": ("honor_gpc", _as_bool),
    "allowed_redirect_hosts": ("allowed_redirect_hosts", _as_list),
    "advertiser_id": ("advertiser_id", _as_whole),
    "api_allowed_origins": ("api_allowed_origins", _as_list),
    "environ_key": ("environ_key", _as_optional_text),
    "migrate": ("migrate", _as_bool),
    "bot_user_agents": ("bot_user_agents", _as_bot_list),
    "min_seconds_to_convert": ("min_seconds_to_convert", _as_seconds),
    "refuse_without_user_activation": ("refuse_without_user_activation", _as_bool),
    "spool_dir": ("spool_dir", _as_optional_text),
    "spool_max_bytes": ("spool_max_bytes", _as_whole),
    "deliver_in_background": ("deliver_in_background", _as_bool),
    "ingest": ("ingest", _as_text),
}
_LIMITS = tuple(field.name for field in dataclasses.fields(Limits))
#: Every option the filter takes.
OPTIONS = ("storage", "secret_key", "old_secret_keys", *_CONVERTED, *_LIMITS)
#: PixelMiddleware arguments that text cannot express.
NOT_TEXT = ("app", "consent", "clock")


def _required(local_conf: dict[str, str], name: str, example: str) -> str:
    value = local_conf.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"the pixel-wsgi filter needs the option: {name} = {example}")
    return value


def _signing_key(local_conf: dict[str, str]) -> str:
    if local_conf.get("secret_key", "").strip():
        return local_conf["secret_key"]
    from_environment = os.environ.get(SECRET_KEY_ENV, "")
    if from_environment:
        return from_environment
    raise ConfigurationError(
        "the pixel-wsgi filter needs the option: secret_key = <a long random string>"
        f" (or {SECRET_KEY_ENV} in the environment); make one with: {MAKE_A_KEY}"
    )


def filter_app_factory(
    app: WSGIApplication, global_conf: dict[str, str], **local_conf: str
) -> PixelMiddleware:
    """Wrap ``app`` in :class:`~pixel_wsgi.middleware.PixelMiddleware` from ``.ini`` options.

    The ``paste.filter_app_factory`` entry point ``pixel``; see the module
    documentation for the options.

    :raises ConfigurationError: for a missing ``storage`` or ``secret_key``, an
        unknown option or a value that cannot be used (the message names the option).
    """
    unknown = sorted(set(local_conf) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown pixel-wsgi filter option(s): {', '.join(unknown)}"
            f" (known: {', '.join(OPTIONS)})"
        )
    if "attribution_window" in local_conf and "attribution_window_days" in local_conf:
        raise ConfigurationError(
            "[filter:pixel] give attribution_window or attribution_window_days, not both"
        )
    storage = _required(local_conf, "storage", "sqlite:///%(here)s/pixel-wsgi.db")
    options: dict[str, Any] = {}
    for name, (argument, convert) in _CONVERTED.items():
        if name in local_conf:
            options[argument] = convert(name, local_conf[name])
    limits = {name: _as_whole(name, local_conf[name]) for name in _LIMITS if name in local_conf}
    if limits:
        options["limits"] = Limits(**limits)
    # The middleware signs with the last key and verifies with all of them.
    keys = [*local_conf.get("old_secret_keys", "").split(), _signing_key(local_conf)]
    return PixelMiddleware(app, storage, secret_key=keys, **options)
