"""A real browser for the end-to-end tests: Debian's headless Chromium under Selenium.

Selenium is given the system's ``chromedriver`` and ``chromium`` explicitly, so its
Selenium Manager never tries to download a browser. Every run gets an empty profile.
When Chromium, its driver or Selenium is missing, :func:`chromium` skips the test (and
``CI=true`` turns that skip into a failure, see ``conftest.py``).

Nothing here sleeps for a fixed time: every wait polls a condition and has a timeout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

T = TypeVar("T")

#: Debian's packages ``chromium`` and ``chromium-driver``; overridable for other systems.
CHROMIUM = Path(os.environ.get("PIXEL_WSGI_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("PIXEL_WSGI_CHROMEDRIVER", "/usr/bin/chromedriver"))

#: Headless, and quiet on the network: without the background-networking flags
#: Chromium keeps calling home (updates, sync, safe browsing), which on a closed
#: network only adds noise and time. ``--no-sandbox`` because CI runs as root.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--window-size=1440,900",  # a common laptop screen
)

#: Seconds any single wait may take; pages here are local and small.
WAIT = 10.0
#: Seconds a page load may take before WebDriver gives up on it.
PAGE_LOAD_TIMEOUT = 20.0

# True once every <img> matching the selector (and at least one) has been
# fetched and decoded; a broken image never gets a naturalWidth.
_IMAGES_LOADED = """
const images = Array.from(document.querySelectorAll(arguments[0]));
return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
"""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


class Browser:
    """One headless Chromium window, with the moves the tests make in it.

    ``driver`` is the Selenium WebDriver, for anything not wrapped here.
    """

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    @property
    def url(self) -> str:
        url: str = self.driver.current_url
        return url

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait until the page has loaded (images included)."""
        self.driver.get(url)
        self.wait_for_page()

    def reload(self) -> None:
        """Reload the page, as the visitor's F5 does, and wait for it to load."""
        self.driver.refresh()
        self.wait_for_page()

    def wait_until(
        self,
        condition: Callable[[WebDriver], T],
        message: str | Callable[[], str],
        *,
        timeout: float = WAIT,
    ) -> T:
        """Poll ``condition`` until it returns something truthy, and return that.

        On timeout the test fails with ``message``; make it a callable to describe
        the page as it is then rather than as it was when the wait began.
        """
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition)
        except TimeoutException:
            pytest.fail(f"{message() if callable(message) else message} (waited {timeout:g} s)")

    def wait_for_page(self) -> None:
        self.wait_until(
            lambda d: d.execute_script("return document.readyState") == "complete",
            lambda: f"{self.url} did not finish loading",
        )

    def wait_for_images(self, selector: str = "img") -> None:
        """Wait until the images matching ``selector`` have loaded."""
        self.wait_until(
            lambda d: d.execute_script(_IMAGES_LOADED, selector),
            lambda: f"no loaded image matches {selector!r} on {self.url}",
        )

    def follow(self, by: str, value: str, *, to: str) -> None:
        """Click the element found by ``(by, value)``; wait to be on the page ``to``.

        ``to`` is a URL prefix, so that a query string or an order id may follow.
        """
        from selenium.webdriver.support import expected_conditions as ec

        element = self.wait_until(
            ec.element_to_be_clickable((by, value)),
            lambda: f"nothing clickable at {by}={value!r} on {self.url}",
        )
        assert element  # until() returns only what is truthy: the element
        element.click()
        self.wait_until(
            lambda d: str(d.current_url).startswith(to),
            lambda: f"clicking {by}={value!r} led to {self.url}, not {to}",
        )
        self.wait_for_page()

    def fill(self, by: str, value: str, text: str) -> None:
        """Replace the value of the input found by ``(by, value)`` with ``text``."""
        field = self.driver.find_element(by, value)
        field.clear()
        field.send_keys(text)

    def text(self) -> str:
        """The visible text of the page."""
        body: str = self.driver.find_element("tag name", "body").text
        return body

    def cookies(self) -> list[dict[str, Any]]:
        """The cookies the browser would send to the current page, HttpOnly ones too."""
        cookies: list[dict[str, Any]] = self.driver.get_cookies()
        return cookies

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to ``path`` (parents created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            pytest.fail(f"could not save a screenshot to {path}")
        return path


@contextmanager
def chromium(directory: Path) -> Iterator[Browser]:
    """Start headless Chromium with an empty profile in ``directory``; quit it after.

    Skips the test when Chromium, chromedriver or Selenium is missing. The driver's
    log is written to ``directory / "chromedriver.log"``.
    """
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not _executable(path):
            pytest.skip(f"{path} is missing (apt-get install {package})")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")

    profile = directory / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(directory / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        driver.set_script_timeout(WAIT)
        yield Browser(driver)
    finally:
        driver.quit()
