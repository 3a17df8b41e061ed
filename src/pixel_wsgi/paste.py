"""PasteDeploy support: the ``egg:pixel-wsgi#pixel`` filter.

Put the middleware in front of an application in a Paste ``.ini`` file
(Pyramid's ``pserve``, or ``paste.deploy.loadapp``)::

    [pipeline:main]
    pipeline = pixel shop

    [filter:pixel]
    use = egg:pixel-wsgi#pixel
    storage = sqlite:///%(here)s/pixel-wsgi.db
    secret_key = a long random string, kept out of source control
    # optional:
    old_secret_keys = keys-that-still-verify-during-a-rotation
    prefix = /pixels
    legacy_prefix = /tracked_actions/web_sale
    default_currency = USD
    attribution_window_days = 30
    allowed_redirect_hosts = shop.example www.shop.example
    honor_gpc = true
    migrate = true

``storage`` and ``secret_key`` are required. ``%(here)s`` is the directory of
the ``.ini`` file, which makes a SQLite path independent of the server's
working directory. ``secret_key`` is taken verbatim (spaces included);
``old_secret_keys`` is a whitespace-separated list of retired keys that still
verify cookies while ``secret_key`` signs new ones. An unknown option is an
error, so a misspelt one cannot be silently ignored.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .middleware import PixelMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["filter_app_factory"]

_OPTIONS = (
    "storage",
    "secret_key",
    "old_secret_keys",
    "prefix",
    "legacy_prefix",
    "default_currency",
    "attribution_window_days",
    "allowed_redirect_hosts",
    "honor_gpc",
    "migrate",
)
# The spellings PasteDeploy's own asbool() accepts.
_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0"})
_DAYS_RE = re.compile(r"[0-9]{1,4}")


def _as_bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"[filter:pixel] {name} must be true or false, got {value!r}")


def _as_days(name: str, value: str) -> timedelta:
    text = value.strip()
    if _DAYS_RE.fullmatch(text) is None:
        raise ConfigurationError(
            f"[filter:pixel] {name} must be a whole number of days, got {value!r}"
        )
    return timedelta(days=int(text))


def _required(local_conf: dict[str, str], name: str, example: str) -> str:
    value = local_conf.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"the pixel-wsgi filter needs the option: {name} = {example}")
    return value


def filter_app_factory(
    app: WSGIApplication, global_conf: dict[str, str], **local_conf: str
) -> PixelMiddleware:
    """Wrap ``app`` in :class:`~pixel_wsgi.middleware.PixelMiddleware` from ``.ini`` options.

    The ``paste.filter_app_factory`` entry point ``pixel``; see the module
    documentation for the options.

    :raises ConfigurationError: for a missing ``storage`` or ``secret_key``, an
        unknown option or a value that cannot be used.
    """
    unknown = sorted(set(local_conf) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown pixel-wsgi filter option(s): {', '.join(unknown)}"
            f" (known: {', '.join(_OPTIONS)})"
        )
    storage = _required(local_conf, "storage", "sqlite:///%(here)s/pixel-wsgi.db")
    secret_key = _required(local_conf, "secret_key", "<a long random string>")
    options: dict[str, Any] = {}
    for name in ("prefix", "legacy_prefix", "default_currency"):
        if name in local_conf:
            options[name] = local_conf[name].strip()
    if "attribution_window_days" in local_conf:
        options["attribution_window"] = _as_days(
            "attribution_window_days", local_conf["attribution_window_days"]
        )
    if "allowed_redirect_hosts" in local_conf:
        options["allowed_redirect_hosts"] = local_conf["allowed_redirect_hosts"].split()
    for name in ("honor_gpc", "migrate"):
        if name in local_conf:
            options[name] = _as_bool(name, local_conf[name])
    # The middleware signs with the last key and verifies with all of them.
    keys = [*local_conf.get("old_secret_keys", "").split(), secret_key]
    return PixelMiddleware(app, storage, secret_key=keys, **options)
