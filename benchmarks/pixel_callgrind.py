"""N pixel hits of ``hot_path.py``'s setup, for ``valgrind --tool=callgrind``.

Instruction counts are exact where wall-clock times are noise: run it under callgrind
twice, with N and 2N hits, and the difference divided by N is one hit's cost, the
start-up, imports and setup (the same in both runs) taken out::

    for n in 200 400; do
        valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
            .venv/bin/python benchmarks/pixel_callgrind.py $n [--keep-context]
    done
    # per hit: (Ir of /tmp/cg.400 - Ir of /tmp/cg.200) / 200   ("summary:" line)

``--keep-context``: the advertiser keeps each conversion's request context (cookies,
User-Agent, network, page) for delivery, where the store supports it. Each hit is
``hot_path.py``'s pixel hit: a unique ``reference_id``, a valid attribution cookie beside
a ``_ga`` cookie, a browser's User-Agent and Referer. Without valgrind it runs too, and
prints the rows it wrote (a check that every hit counted).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # hot_path.py, beside this file, however it is run
import hot_path as hot  # noqa: E402

# Hits before the measured ones (in both runs): caches, prepared statements, the WAL.
WARM_UP = 50


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("hits", type=int, help="pixel hits after the warm-up")
    parser.add_argument("--keep-context", action="store_true")
    args = parser.parse_args(argv)
    tmpdir = Path(tempfile.mkdtemp(prefix="pixel_callgrind-"))
    try:
        bench = hot.setup(tmpdir)
        if args.keep_context:
            bench.storage.set_advertiser_keeps_conversion_context(bench.advertiser_id, True)
        path = f"/pixels/conversion/{bench.advertiser_id}.gif"
        base = hot.make_environ(path, "", bench.cookie_header)
        environs = []
        for i in range(WARM_UP + args.hits):
            environ = base.copy()
            environ["QUERY_STRING"] = hot.pixel_query(f"ref-{i:010d}")
            environs.append(environ)
        middleware, start_response = bench.middleware, hot.start_response
        for environ in environs:
            for _chunk in middleware(environ, start_response):
                pass
        bench.close()
        conn = sqlite3.connect(tmpdir / "pixel.db")
        try:
            rows = conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0]
        finally:
            conn.close()
        print(f"{rows} rows for {WARM_UP + args.hits} hits")
        return 0 if rows == WARM_UP + args.hits else 2
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
