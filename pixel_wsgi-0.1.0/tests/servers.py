"""Real servers for the tests that need real HTTP: the demo shop, and a "publisher" site.

The demo runs as ``python -m pixel_wsgi --storage ... demo --port N``, as ``make demo``
runs it, in its own process; the publisher's site is a few static pages served from a
thread, so that a browser can be sent from one site to the other.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

#: How long the demo may take to start listening.
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class DemoServer:
    """A running ``pixel-wsgi demo``: where it listens and where it keeps its data."""

    port: int
    storage: str
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> Any:
        """Run ``pixel-wsgi --storage <this store> ARGS --json`` and parse what it prints."""
        return pixel_cli(self.storage, *args)


def pixel_cli(storage: str, *args: str) -> Any:
    """The operator's command line against ``storage``, as JSON."""
    command = [sys.executable, "-m", "pixel_wsgi", "--storage", storage, *args, "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout)


@contextmanager
def demo_server(
    directory: Path, *, env: Mapping[str, str] | None = None, python: str = sys.executable
) -> Iterator[DemoServer]:
    """Serve the demo on a free port of 127.0.0.1, with its store in ``directory``.

    ``env`` is added to this process's environment for the server; ``python`` runs
    it (another environment's, to run an installed copy). The server's
    output goes to ``demo.log`` in ``directory`` (a pipe nobody reads would fill
    up and stall the server) and is shown when it fails to start.
    """
    port = free_port()
    demo = DemoServer(port, f"sqlite:///{directory / 'demo.db'}", directory / "demo.log")
    command = [python, "-m", "pixel_wsgi", "--storage", demo.storage, "demo"]
    with demo.log.open("w", encoding="utf-8") as log:
        server = subprocess.Popen(
            [*command, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = demo.log.read_text(encoding="utf-8", errors="replace")
                    pytest.fail(f"the demo did not start:\n{output}")
                time.sleep(0.05)
        yield demo
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@contextmanager
def static_site(pages: Mapping[str, str]) -> Iterator[int]:
    """Serve ``pages`` (path -> HTML) on a free port of 127.0.0.1; yield the port.

    Open it as ``http://localhost:<port>``: to a browser that is another site
    than ``127.0.0.1``, which is the point.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = pages.get(self.path)
            body = (page if page is not None else "not found\n").encode()
            self.send_response(200 if page is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the browser's favicon requests are not worth a line each

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
