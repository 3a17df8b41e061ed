"""The dashboard's Jinja2 environment: the templates in ``templates/``, autoescaped.

Every value a template prints is escaped unless it is already markup (a
:class:`~markupsafe.Markup`, like the rendered chart), so no page has an escape
call to remember. The environment is built on first use, not on import.
"""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from .reports import format_money

__all__ = ["environment", "render"]


def _escaped(value: object) -> object:
    # Autoescape would escape this anyway; doing it with html.escape first keeps the
    # entities the pages have always had (&quot; and &#x27;, not MarkupSafe's &#34;
    # and &#39;), and markup passes through untouched.
    if hasattr(value, "__html__"):
        return value
    return Markup(escape(str(value), quote=True))


@cache
def environment() -> Environment:
    """The one environment of the dashboard's templates, built on first use."""
    env = Environment(
        loader=PackageLoader("pixel_wsgi.dashboard", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "svg"), default=True),
        finalize=_escaped,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["format_money"] = format_money
    return env


def render(name: str, /, **context: Any) -> Markup:
    """The template ``name`` rendered with ``context``, as markup."""
    return Markup(environment().get_template(name).render(**context))
