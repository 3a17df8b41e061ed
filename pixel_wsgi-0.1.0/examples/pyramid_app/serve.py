"""Serve ``development.ini`` with the standard library's wsgiref (no pserve needed).

Run from this directory::

    python serve.py            # http://127.0.0.1:6543/landing
"""

from __future__ import annotations

import sys
from pathlib import Path
from wsgiref.simple_server import make_server

from paste.deploy import loadapp

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))  # so that "call:pyramid_shop:main" imports
    app = loadapp(f"config:{HERE / 'development.ini'}")
    with make_server("127.0.0.1", 6543, app) as server:
        print("Serving on http://127.0.0.1:6543/landing (Ctrl-C stops)")
        server.serve_forever()
