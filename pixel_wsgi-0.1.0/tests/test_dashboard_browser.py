"""The dashboard in headless Chromium: a laptop and a phone screen, no page-wide scrolling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from webtest import TestApp
from werkzeug.serving import make_server

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.dashboard import Dashboard, basic_auth

from .browser import Browser, chromium
from .conftest import FakeClock, World

PASSWORD = "browser pw"

# How far the page itself scrolls sideways (0 when everything fits the screen),
# and how far the widest table scrolls inside its own box.
_OVERFLOW = """
const page = document.documentElement.scrollWidth - window.innerWidth;
const boxes = Array.from(document.querySelectorAll('.scroll'));
const inner = Math.max(0, ...boxes.map((box) => box.scrollWidth - box.clientWidth));
return [page, inner];
"""


@pytest.fixture
def base(world: World, middleware: PixelMiddleware, clock: FakeClock) -> Iterator[str]:
    """The dashboard over a few conversions, served on a free port of 127.0.0.1."""
    for number, link in enumerate((world.percent_link_id, world.fixed_link_id) * 3):
        visitor = TestApp(middleware)
        visitor.get(f"/pixels/click/{link}")
        visitor.get(
            f"/pixels/conversion/{world.advertiser_id}.gif",
            {
                "sale_amount": f"{10 + number}.50",
                "reference_id": f"order-with-a-long-reference-{number:04d}",
                "reason_code": "renewal",
                "sku_list[]": ["TEA-100", "MUG-200"],
                "quantity_list[]": ["2", "1"],
            },
        )
    TestApp(middleware).get(f"/pixels/conversion/{world.advertiser_id}.gif?sale_amount=1")
    dashboard = Dashboard(world.storage, authenticate=basic_auth(PASSWORD), clock=clock)
    server = make_server("127.0.0.1", 0, dashboard, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://admin:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    with chromium(tmp_path / "browser") as window:
        yield window


@pytest.mark.parametrize(
    ("width", "height"),
    [pytest.param(1366, 768, id="laptop"), pytest.param(390, 844, id="phone")],
)
def test_pages_fit_the_screen(
    browser: Browser, base: str, world: World, width: int, height: int, tmp_path: Path
) -> None:
    browser.driver.set_window_size(width, height)
    advertiser = f"/advertisers/{world.advertiser_id}"
    for path in (advertiser, f"{advertiser}/conversions", f"{advertiser}/rejections"):
        browser.open(base + path)
        assert "Acme" in browser.text()
        page, inner = browser.driver.execute_script(_OVERFLOW)
        # The page never scrolls sideways; a wide table scrolls inside its box.
        assert page <= 0, (path, width, page)
        if width < 500 and path.endswith("/conversions"):
            assert inner > 0
        browser.screenshot(tmp_path / f"{width}{path.replace('/', '-')}.png")
    # The chart scales to the screen.
    browser.open(base + advertiser)
    chart_width = browser.driver.execute_script(
        "return document.querySelector('svg.chart').getBoundingClientRect().width"
    )
    assert 0 < chart_width <= width
