"""``pixel-wsgi demo`` and ``dashboard``: the servers an operator starts.

``pixel-wsgi dashboard`` serves :class:`~pixel_wsgi.dashboard.Dashboard` over the store
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

import os

import click

from ..serving import DASHBOARD_USER, PASSWORD_ENV, PLAIN_HTTP_WARNING, is_loopback, url_host
from .group import cli
from .state import State


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on. Beyond this machine (0.0.0.0) the dashboard needs a"
    " real password in PIXEL_WSGI_DASHBOARD_PASSWORD.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port."
)
@click.pass_obj
def demo(state: State, host: str, port: int) -> None:
    """Run the demo shop.

    Needs Flask: pip install 'pixel-wsgi[demo]'. The shop, a publisher page
    and the tracking link are seeded into the store on first run; stop the
    server with Ctrl-C. The operator dashboard at /dashboard/ has the password
    "demo" unless PIXEL_WSGI_DASHBOARD_PASSWORD is set, which --host beyond
    this machine requires.
    """
    from ..demo import run_demo

    run_demo(state.url, host=host, port=port)


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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8050, show_default=True, help="TCP port."
)
@click.pass_obj
def dashboard(state: State, host: str, port: int) -> None:
    """Serve the operator dashboard.

    Conversions, sales and payouts by campaign, publisher and day, correction
    chains and the rejection log, behind a password (user admin): from
    $PIXEL_WSGI_DASHBOARD_PASSWORD, else asked for. Stop it with Ctrl-C.
    """
    # Only this command needs the dashboard (and Jinja2) and the server.
    from werkzeug.serving import run_simple

    from ..dashboard import Dashboard, basic_auth

    password = _password()
    app = Dashboard(state.reader(), authenticate=basic_auth(password, DASHBOARD_USER))
    click.echo(f"pixel-wsgi dashboard on http://{url_host(host)}:{port}/ (user {DASHBOARD_USER})")
    if not is_loopback(host):
        click.echo(PLAIN_HTTP_WARNING, err=True)
    click.echo("Press Ctrl-C to stop.")
    run_simple(host, port, app, threaded=True)
