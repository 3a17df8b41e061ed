"""The package a user installs: built as ``make dist`` builds it, installed into a clean
virtual environment (no checkout on the path, no editable install, no dev extras), then
the README's flow with the installed ``pixel-wsgi`` command and ``PixelMiddleware``.

pixel-wsgi is not on the public index: the README installs it from a checkout or from
this wheel. PyPI serves the runtime dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from .servers import demo_server

ROOT = Path(__file__).resolve().parent.parent
PIP_TIMEOUT = 300

pytestmark = pytest.mark.packaging

# The host application of the README's "Add it to your site", served for real by the
# clean environment's Python, with nothing but what the wheel installed.
HOST_APP = """
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from pixel_wsgi import PixelMiddleware

def shop(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop: " + environ["PATH_INFO"].encode()]

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

app = PixelMiddleware(shop, sys.argv[1], secret_key="packaging-test-key-0123456789abcdef")
server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(server.server_port, flush=True)
server.serve_forever()
"""

# What a browser sends following a link from another site, and loading an <img>.
NAVIGATION = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-User": "?1",
}
IMAGE = {
    "User-Agent": NAVIGATION["User-Agent"],
    "Sec-Fetch-Dest": "image",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Site": "same-origin",
}


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class CleanEnv:
    """A virtual environment with nothing but the wheel and its runtime dependencies."""

    directory: Path
    built: Built

    @property
    def python(self) -> Path:
        return self.directory / "bin" / "python"

    def pixel_wsgi(self, storage: str, *args: str) -> str:
        """Run the installed ``pixel-wsgi`` command; what it printed."""
        command = [str(self.directory / "bin" / "pixel-wsgi"), "--storage", storage, *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=60, env=clean_environ()
        )
        assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
        return result.stdout

    def run_python(self, code: str, *args: str) -> str:
        """Run ``code`` with the environment's python, from its directory; what it printed."""
        return subprocess.run(
            [str(self.python), "-c", code, *args],
            capture_output=True,
            text=True,
            cwd=self.directory,
            env=clean_environ(),
            check=True,
        ).stdout

    def pip_install(self, requirement: str) -> None:
        # The outer environment's pip installs into this one, which needs no pip of
        # its own. The user's pip configuration (index, caches) applies.
        command = [sys.executable, "-m", "pip", "--python", str(self.python), "install"]
        result = subprocess.run(
            [*command, "--quiet", requirement],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def clean_environ() -> dict[str, str]:
    """This process's environment without what would reach into the checkout."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "VIRTUAL_ENV", "PIXEL_WSGI_STORAGE")
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist, and the wheel built from it, as ``make dist`` builds them."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = out.glob("pixel_wsgi-*.whl")
    [sdist] = out.glob("pixel_wsgi-*.tar.gz")
    return Built(wheel, sdist)


@pytest.fixture(scope="module")
def clean_env(built: Built, tmp_path_factory: pytest.TempPathFactory) -> CleanEnv:
    directory = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True, timeout=60
    )
    env = CleanEnv(directory, built)
    env.pip_install(str(built.wheel))
    return env


@pytest.fixture
def host(clean_env: CleanEnv, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The storage URL of a fresh store, and the base URL of the host app serving it."""
    storage = f"sqlite:///{tmp_path / 'shop.db'}"
    server = subprocess.Popen(
        [str(clean_env.python), "-c", HOST_APP, storage],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,  # not the checkout: its src/ must not be importable
        env=clean_environ(),
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        if not port:
            server.wait(timeout=10)
            pytest.fail(f"the host app did not start:\n{server.stderr.read()}")  # type: ignore[union-attr]
        yield storage, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()  # type: ignore[union-attr]
        server.stderr.close()  # type: ignore[union-attr]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_the_wheel_holds_the_package_typed_and_no_tests(built: Built) -> None:
    names = zipfile.ZipFile(built.wheel).namelist()
    assert "pixel_wsgi/py.typed" in names
    assert "pixel_wsgi/dashboard/app.py" in names
    assert "pixel_wsgi/dashboard/templates/base.html" in names
    assert "pixel_wsgi/dashboard/templates/chart.svg" in names
    assert "pixel_wsgi/storage/migrations/sqlite.py" in names
    assert [name for name in names if name.startswith(("tests/", "examples/"))] == []
    assert {name.split("/")[0] for name in names} == {
        "pixel_wsgi",
        f"{built.wheel.name.split('-py3')[0]}.dist-info",
    }
    entry_points = zipfile.ZipFile(built.wheel).read(
        f"{built.wheel.name.split('-py3')[0]}.dist-info/entry_points.txt"
    )
    assert b"pixel-wsgi = pixel_wsgi.cli:main" in entry_points
    assert b"pixel_wsgi = pixel_wsgi.testing" in entry_points  # the pytest plugin


def test_the_sdist_builds_the_same_package(built: Built) -> None:
    """`python -m build` built the wheel from the sdist, so the sdist holds what the
    wheel needs; it also holds the tests that check it, with their helpers."""
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "src/pixel_wsgi/py.typed"} <= names
    assert {"tests/conftest.py", "tests/test_packaging.py", "tests/servers.py"} <= names


def test_the_installed_dashboard_renders_its_templates(clean_env: CleanEnv, tmp_path: Path) -> None:
    """The templates are package data: the wheel's dashboard finds and renders them."""
    script = (
        "import sys\n"
        "from werkzeug.test import Client\n"
        "from pixel_wsgi.dashboard import Dashboard\n"
        "from pixel_wsgi.storage import storage_from_url\n"
        "store = storage_from_url(sys.argv[1])\n"
        "store.migrate()\n"
        "dashboard = Dashboard(store, authenticate=lambda environ: True)\n"
        "print(Client(dashboard).get('/nowhere').get_data(as_text=True))\n"
    )
    page = clean_env.run_python(script, f"sqlite:///{tmp_path / 'pixel.db'}")
    assert "<h1>404 Not Found</h1>" in page
    assert "<p>there is no page /nowhere</p>" in page


def test_the_installed_package_runs_the_readme_flow(
    clean_env: CleanEnv, host: tuple[str, str]
) -> None:
    storage, base = host
    # It is the wheel's copy that runs, not the checkout's.
    where = clean_env.run_python("import pixel_wsgi; print(pixel_wsgi.__file__)")
    assert where.startswith(str(clean_env.directory))
    assert "Created advertiser 1" in clean_env.pixel_wsgi(storage, "advertiser", "add", "Acme")
    clean_env.pixel_wsgi(storage, "publisher", "add", "Deals Blog")
    clean_env.pixel_wsgi(
        storage, "campaign", "add", "--advertiser", "1", "Spring", "--payout-percent", "10"
    )
    link = clean_env.pixel_wsgi(
        storage, "link", "add", "--campaign", "1", "--publisher", "1", "--to", "/landing"
    )
    assert "/pixels/click/1" in link

    browser = urllib.request.build_opener(
        NoRedirect, urllib.request.HTTPCookieProcessor(CookieJar())
    )
    with pytest.raises(urllib.error.HTTPError) as redirect:
        browser.open(urllib.request.Request(f"{base}/pixels/click/1", headers=NAVIGATION))
    redirect.value.close()
    assert redirect.value.code == 302
    assert redirect.value.headers["Location"].endswith("/landing")
    assert "Set-Cookie" in redirect.value.headers
    pixel = f"{base}/pixels/conversion/1.gif?sale_amount=49.90&reference_id=order-1234"
    with browser.open(urllib.request.Request(pixel, headers=IMAGE)) as response:
        assert response.headers["Content-Type"] == "image/gif"
        assert response.read().startswith(b"GIF89a")
    with browser.open(urllib.request.Request(f"{base}/hello", headers=NAVIGATION)) as page:
        assert page.read() == b"the shop: /hello"

    [conversion] = json.loads(clean_env.pixel_wsgi(storage, "conversions", "--json"))
    assert (conversion["reference_id"], conversion["sale_amount"], conversion["payout"]) == (
        "order-1234",
        "49.90",
        "4.99",
    )
    assert (conversion["campaign_id"], conversion["publisher_id"]) == (1, 1)


def test_the_demo_runs_on_the_runtime_dependencies_and_flask(
    clean_env: CleanEnv, tmp_path: Path
) -> None:
    """What `make demo` installs: the package and its ``demo`` extra (Flask), no more."""
    clean_env.pip_install(f"pixel-wsgi[demo] @ {clean_env.built.wheel.as_uri()}")
    with demo_server(tmp_path, python=str(clean_env.python)) as demo:
        page = urllib.request.urlopen(f"{demo.base}/", timeout=10)
        with page:
            assert page.status == 200
            assert b"/pixels/click/" in page.read()
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(clean_env.python), "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {package["name"].lower() for package in json.loads(installed)}
    assert "flask" in names
    assert names.isdisjoint({"pytest", "webtest", "ruff", "mypy", "psycopg", "pyramid"})
