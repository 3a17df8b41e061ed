"""``pixel-wsgi demo`` as ``make demo`` runs it: a real server, real HTTP, real cookies."""

from __future__ import annotations

import html
import http.cookiejar
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PIXEL_IMG
from .servers import demo_server


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The demo server on a free local port; yields its base URL and storage URL."""
    with demo_server(tmp_path) as server:
        yield server.base, server.storage


def test_the_demo_records_an_attributed_conversion_over_http(demo: tuple[str, str]) -> None:
    base, storage = demo
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    publisher_page = browser.open(f"{base}/publisher").read().decode()
    assert 'href="/pixels/click/1?sub1=spring-tea-post"' in publisher_page
    # 302, followed like a browser does
    landing = browser.open(f"{base}/pixels/click/1?sub1=spring-tea-post")
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

    # The demo publisher's server gets its postback from the app's delivery thread.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        page = browser.open(f"{base}/publisher/postbacks").read().decode()
        if "spring-tea-post" in page:
            break
        time.sleep(0.2)
    row = f"<tr><td>{conversion['transaction_id']}</td><td>conversion</td>"
    assert row in page
    assert "<td>49.00 USD</td><td>4.90</td><td>spring-tea-post</td>" in page
