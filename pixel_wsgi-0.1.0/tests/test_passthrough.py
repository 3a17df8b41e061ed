"""Everything that is not ours reaches the host application exactly as it was sent."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import pytest
from webtest import TestApp
from werkzeug.test import EnvironBuilder, run_wsgi_app

from pixel_wsgi import PixelMiddleware

from .conftest import SECRET, World

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class StreamingBody:
    """A body that streams in chunks and records whether close() was called."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"chunk-1;"
        yield b"chunk-2"

    def close(self) -> None:
        self.closed = True


class RecordingApp:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.body = StreamingBody()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.calls.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        start_response(
            "418 I'm a teapot",
            [("Content-Type", "text/plain"), ("X-Host", "yes"), ("Set-Cookie", "host=1; Path=/")],
        )
        return self.body


@pytest.fixture
def host() -> RecordingApp:
    return RecordingApp()


@pytest.fixture
def wrapped(world: World, host: RecordingApp) -> TestApp:
    return TestApp(PixelMiddleware(host, world.storage, secret_key=SECRET))


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/", id="root"),
        pytest.param("/checkout", id="host-page"),
        pytest.param("/pixels", id="bare-prefix"),
        pytest.param("/pixels/", id="prefix-slash"),
        pytest.param("/pixels/conversionX/1.gif", id="conversion-lookalike"),
        pytest.param("/pixels/conversion/1.png", id="not-a-gif"),
        pytest.param("/pixels/conversion/1.gif/extra", id="gif-with-suffix"),
        pytest.param("/pixels/conversion/a/1.gif", id="nested"),
        pytest.param("/Pixels/conversion/1.gif", id="other-case"),
        pytest.param("/pixels/click/", id="click-without-id"),
        pytest.param("/pixels/click/1/extra", id="click-nested"),
        pytest.param("/pixels/clicks/1", id="click-lookalike"),
        pytest.param("/pixels/health/x", id="health-nested"),
        pytest.param("/tracked_actions/web_sale/", id="legacy-without-id"),
        pytest.param("/tracked_actions/web_sales/1", id="legacy-lookalike"),
        pytest.param("/static/pixels/click/1", id="embedded"),
    ],
)
def test_paths_that_are_not_ours_pass_through(
    wrapped: TestApp, host: RecordingApp, path: str
) -> None:
    response = wrapped.get(path, status=418)
    assert response.body == b"chunk-1;chunk-2"
    assert response.headers["X-Host"] == "yes"
    assert response.headers["Set-Cookie"] == "host=1; Path=/"
    assert host.calls == [f"GET {path}"]
    assert host.body.closed


def test_the_host_response_object_is_returned_untouched(world: World, host: RecordingApp) -> None:
    middleware = PixelMiddleware(host, world.storage, secret_key=SECRET)
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None):  # type: ignore[no-untyped-def]
        seen.append((status, headers))
        return lambda data: None

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/checkout", "QUERY_STRING": "a=1"}
    result = middleware(environ, start_response)  # type: ignore[arg-type]
    assert result is host.body
    assert seen == [
        (
            "418 I'm a teapot",
            [("Content-Type", "text/plain"), ("X-Host", "yes"), ("Set-Cookie", "host=1; Path=/")],
        )
    ]


def test_host_exceptions_are_the_hosts_own(world: World) -> None:
    def failing(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise KeyError("host bug")

    middleware = PixelMiddleware(failing, world.storage, secret_key=SECRET)
    with pytest.raises(KeyError, match="host bug"):
        middleware({"PATH_INFO": "/x", "REQUEST_METHOD": "GET"}, lambda *a: None)  # type: ignore[arg-type,return-value]


def test_our_failures_never_reach_the_host(
    world: World, host: RecordingApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    middleware = PixelMiddleware(host, world.storage, secret_key=SECRET)

    def broken(*args: object) -> None:
        raise RuntimeError("bug in pixel-wsgi")

    monkeypatch.setattr(middleware.tracking_link, "__call__", broken)
    monkeypatch.setattr(type(middleware.tracking_link), "__call__", broken)
    response = TestApp(middleware).get(f"/pixels/click/{world.percent_link_id}", status=503)
    assert response.body == b"Temporarily unavailable.\n"
    assert host.calls == []


def test_health(world: World, app: TestApp) -> None:
    response = app.get("/pixels/health")
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store, private"


def test_health_degraded(app: TestApp, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("gone")

    monkeypatch.setattr(world.storage, "check", broken)
    assert app.get("/pixels/health", status=503).json == {
        "status": "degraded",
        "store": "unavailable",
        "spooled_bytes": 0,
    }


def test_custom_prefix(world: World, host: RecordingApp) -> None:
    app = TestApp(PixelMiddleware(host, world.storage, secret_key=SECRET, prefix="/t"))
    assert app.get(f"/t/click/{world.percent_link_id}").status_int == 302
    app.get(f"/pixels/click/{world.percent_link_id}", status=418)
    assert host.calls == [f"GET /pixels/click/{world.percent_link_id}"]


class HostBug(Exception):
    """What the host application raises: it must reach the host's server untouched."""


class Started:
    """A server's ``start_response``: records each call's status and ``exc_info``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        self.calls.append((status, exc_info))
        return lambda data: None

    @property
    def statuses(self) -> list[str]:
        return [status for status, _ in self.calls]


def direct(middleware: PixelMiddleware, path: str, start_response: Started) -> Iterable[bytes]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""}
    return middleware(environ, start_response)  # type: ignore[arg-type]


LOOK_ALIKES = [
    pytest.param("/pixels/conversion/a.png", id="conversion-not-a-gif"),
    pytest.param("/pixels/conversion/a/1.gif", id="conversion-nested"),
    pytest.param("/pixels/click/1/extra", id="click-nested"),
    pytest.param("/pixels/click/", id="click-without-id"),
    pytest.param("/pixels/health/deep", id="health-nested"),
    pytest.param("/tracked_actions/web_sale/1/x", id="legacy-nested"),
    pytest.param("/checkout", id="host-page"),
]


@pytest.mark.parametrize("path", LOOK_ALIKES)
def test_a_host_exception_on_a_look_alike_path_reaches_the_server(
    world: World, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    bug = HostBug("host bug")

    def failing(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise bug

    middleware = PixelMiddleware(failing, world.storage, secret_key=SECRET)
    started = Started()
    with pytest.raises(HostBug) as raised:
        direct(middleware, path, started)
    assert raised.value is bug
    assert started.calls == []
    assert "pixel-wsgi failed" not in caplog.text
    # And as a debugger or an error view sees it through a WSGI test client.
    with pytest.raises(HostBug):
        TestApp(middleware).get(path, expect_errors=True)


@pytest.mark.parametrize("path", LOOK_ALIKES)
def test_a_host_that_started_its_response_then_failed_is_not_answered_twice(
    world: World, path: str
) -> None:
    def half_done(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise HostBug("after start_response")

    middleware = PixelMiddleware(half_done, world.storage, secret_key=SECRET)
    started = Started()
    with pytest.raises(HostBug, match="after start_response"):
        direct(middleware, path, started)
    assert started.statuses == ["200 OK"]


def test_our_own_failure_after_starting_the_response_passes_exc_info(
    world: World, host: RecordingApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PEP 3333: a second start_response must carry exc_info, so a server that has not
    sent the first headers yet replaces them, and one that has re-raises."""
    middleware = PixelMiddleware(host, world.storage, secret_key=SECRET)

    def broken(self: object, environ: object, start_response: StartResponse, text: str) -> None:
        start_response("302 Found", [("Location", "/x")])
        raise RuntimeError("bug in pixel-wsgi")

    monkeypatch.setattr(type(middleware.tracking_link), "__call__", broken)
    started = Started()
    body = direct(middleware, f"/pixels/click/{world.percent_link_id}", started)
    assert b"".join(body) == b"Temporarily unavailable.\n"
    assert started.statuses == ["302 Found", "503 Service Unavailable"]
    assert started.calls[0][1] is None
    exc_info = started.calls[1][1]
    assert isinstance(exc_info, tuple) and isinstance(exc_info[1], RuntimeError)
    assert host.calls == []


def test_our_own_failure_before_starting_the_response_is_a_plain_503(
    world: World, host: RecordingApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without exc_info: a strict server (Werkzeug's test runner) re-raises any exc_info."""
    middleware = PixelMiddleware(host, world.storage, secret_key=SECRET)

    def broken(self: object, environ: object, start_response: StartResponse, text: str) -> None:
        raise RuntimeError("bug in pixel-wsgi")

    monkeypatch.setattr(type(middleware.tracking_link), "__call__", broken)
    environ = EnvironBuilder(path=f"/pixels/click/{world.percent_link_id}").get_environ()
    body, status, _ = run_wsgi_app(middleware, environ)
    assert (status, b"".join(body)) == ("503 Service Unavailable", b"Temporarily unavailable.\n")
    assert host.calls == []
