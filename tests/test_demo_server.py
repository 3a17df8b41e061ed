"""``pixel-wsgi demo`` as ``make demo`` runs it: a real server, real HTTP, real cookies."""

from __future__ import annotations

import html
import http.cookiejar
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PIXEL_IMG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The demo server on a free local port; yields its base URL and storage URL."""
    port = free_port()
    storage = f"sqlite:///{tmp_path / 'demo.db'}"
    server = subprocess.Popen(
        [sys.executable, "-m", "pixel_wsgi", "--storage", storage, "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read() if server.stdout else ""
                    pytest.fail(f"the demo did not start:\n{output}")
                time.sleep(0.1)
        yield base, storage
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout:
            server.stdout.close()


def test_the_demo_records_an_attributed_conversion_over_http(demo: tuple[str, str]) -> None:
    base, storage = demo
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    publisher_page = browser.open(f"{base}/publisher").read().decode()
    assert 'href="/pixels/click/1"' in publisher_page
    landing = browser.open(f"{base}/pixels/click/1")  # 302, followed like a browser does
    assert landing.geturl() == f"{base}/landing"
    assert [cookie.name for cookie in jar] == ["pixel_wsgi_a1"]

    form = urllib.parse.urlencode({"sku": "TEA-100", "quantity": "2"}).encode()
    thank_you = browser.open(f"{base}/checkout", data=form)
    assert "/thank-you/" in thank_you.geturl()
    match = PIXEL_IMG.search(thank_you.read().decode())
    assert match is not None
    pixel_url = base + html.unescape(match.group(1))
    for _ in range(2):  # the thank-you page reloaded: still one conversion
        gif = browser.open(pixel_url)
        assert gif.headers["Content-Type"] == "image/gif"
        assert len(gif.read()) == 43

    listing = subprocess.run(
        [sys.executable, "-m", "pixel_wsgi", "--storage", storage, "conversions", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    [conversion] = json.loads(listing.stdout)
    assert (conversion["sale_amount"], conversion["payout"]) == ("49.00", "4.90")
    assert (conversion["campaign_id"], conversion["publisher_id"]) == (1, 1)
