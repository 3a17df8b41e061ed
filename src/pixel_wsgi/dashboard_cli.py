"""``pixel-wsgi dashboard``: serve the operator dashboard on its own.

The command serves :class:`~pixel_wsgi.dashboard.Dashboard` over the store
named by ``--storage`` with Werkzeug's development server, behind HTTP Basic
authentication (user ``admin``)::

    PIXEL_WSGI_DASHBOARD_PASSWORD=s3cret pixel-wsgi --storage sqlite:///pixel-wsgi.db dashboard
    # open http://127.0.0.1:8050/

Without ``PIXEL_WSGI_DASHBOARD_PASSWORD`` it asks for a password (hidden
input). It listens on 127.0.0.1 by default: Basic authentication sends the
password in the clear over plain HTTP, so reach a remote one through an SSH
tunnel, or mount :class:`~pixel_wsgi.dashboard.Dashboard` in a site served
over HTTPS.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

import click

from .dashboard import Dashboard, basic_auth

if TYPE_CHECKING:
    # Only a type: cli.py may import this module to register the command.
    from .cli import _State

__all__ = [
    "DASHBOARD_USER",
    "PASSWORD_ENV",
    "PLAIN_HTTP_WARNING",
    "dashboard",
    "is_loopback",
    "url_host",
]

#: The environment variable that holds the dashboard's password.
PASSWORD_ENV = "PIXEL_WSGI_DASHBOARD_PASSWORD"
#: The user name that ``pixel-wsgi dashboard`` (and the demo) accept.
DASHBOARD_USER = "admin"


#: What a server listening beyond this machine over plain HTTP prints on stderr.
PLAIN_HTTP_WARNING = (
    "Warning: listening beyond this machine over plain HTTP; the password crosses"
    " the network readable. Prefer an SSH tunnel or HTTPS."
)


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" and other names: every interface, or who knows


def url_host(host: str) -> str:
    """How to write the address a server listens on in a URL to open."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return f"[{shown}]" if ":" in shown else shown  # an IPv6 address in a URL


def _password() -> str:
    password = os.environ.get(PASSWORD_ENV, "")
    if password:
        return password
    password = click.prompt(
        f"Dashboard password for user {DASHBOARD_USER} (or set {PASSWORD_ENV})",
        hide_input=True,
        default="",
        show_default=False,
    )
    if not password:
        raise click.UsageError(f"the dashboard needs a password: type one or set {PASSWORD_ENV}")
    return str(password)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8050, show_default=True, help="TCP port."
)
@click.pass_obj
def dashboard(state: _State, host: str, port: int) -> None:
    """Serve the operator dashboard.

    Conversions, sales and payouts by campaign, publisher and day, correction
    chains and the rejection log, behind a password (user admin): from
    $PIXEL_WSGI_DASHBOARD_PASSWORD, else asked for. Stop it with Ctrl-C.
    """
    from werkzeug.serving import run_simple

    password = _password()
    app = Dashboard(state.reader(), authenticate=basic_auth(password, DASHBOARD_USER))
    click.echo(f"pixel-wsgi dashboard on http://{url_host(host)}:{port}/ (user {DASHBOARD_USER})")
    if not is_loopback(host):
        click.echo(PLAIN_HTTP_WARNING, err=True)
    click.echo("Press Ctrl-C to stop.")
    run_simple(host, port, app, threaded=True)
