"""Delivery throughput and memory: ledger rows delivered per second to a local server.

A SQLite ledger of ``--rows`` conversions (1,000,000 by default), each with the request
context Meta needs, and one ``meta_capi`` target pointed (``--endpoint``) at a loopback
server that answers as Meta does (``{"events_received": n}``). One worker pass
(:meth:`pixel_wsgi.delivery.worker.Worker.run_once`) queues them in pages, claims them
in batches of 1,000 (Meta's limit), sends, and settles each batch. Printed:

- rows delivered per second, for the whole pass (queueing, claiming, building the
  JSON, HTTP over loopback, settling);
- the worker's resident memory at every tenth of the rows: flat means the pass holds
  a page or a batch at a time, never the ledger.

Exit status 2 when a row was not delivered exactly once (a broken benchmark, not a slow
one): the figures are a report, never a test::

    .venv/bin/python benchmarks/deliver.py [--rows N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pixel_wsgi import PayoutKind, PayoutRule, SQLiteStorage
from pixel_wsgi.delivery.model import HttpRequest, HttpResponse
from pixel_wsgi.delivery.outbox import add_target
from pixel_wsgi.delivery.secrets import SecretBox
from pixel_wsgi.delivery.worker import Worker
from pixel_wsgi.models import (
    ConversionContext,
    DeliveryStatus,
    TargetKind,
    TransactionDraft,
)

SECRET_KEY = b"benchmark-secret-key-0123456789abcdef"
PIXEL_ID = "1234567890"
CONTEXT = ConversionContext(
    fbp="fb.1.1700000000000.987654321",
    ga_client_id="1234567890.1700000000",
    user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    ip_prefix="203.0.113.0",
    page_url="https://shop.example/checkout/thanks",
)
#: Rows written per ledger transaction while filling the store.
FILL_BATCH = 5000


class _Meta(BaseHTTPRequestHandler):
    """Meta's events endpoint, as far as a worker can tell: counts the events."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        events = len(json.loads(body)["data"])
        with self.server.lock:
            self.server.events += events
        answer = json.dumps({"events_received": events, "fbtrace_id": "bench"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lock = threading.Lock()
    events = 0


def resident_mib() -> float:
    """This process's resident memory now (Linux ``/proc``), in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def fill(storage: SQLiteStorage, rows: int) -> int:
    """An advertiser with ``rows`` conversions carrying Meta's context; its id."""
    advertiser = storage.add_advertiser("Bench Advertiser")
    publisher = storage.add_publisher("Bench Publisher")
    campaign = storage.add_campaign(
        advertiser.id, "Bench", PayoutRule(PayoutKind.FIXED, Decimal("1.00"), "USD")
    )
    storage.set_advertiser_keeps_conversion_context(advertiser.id, True)
    created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    for start in range(0, rows, FILL_BATCH):
        with storage.writer() as writer:
            for n in range(start, min(rows, start + FILL_BATCH)):
                writer.insert_transaction(
                    TransactionDraft(
                        advertiser_id=advertiser.id,
                        campaign_id=campaign.id,
                        publisher_id=publisher.id,
                        visit_id=None,
                        source="api",
                        reference_id=f"order-{n}",
                        corrects_transaction_id=None,
                        original_transaction_id=None,
                        sale_amount=Decimal("24.50"),
                        sale_currency="USD",
                        reason_code=None,
                        sku_list=("TEA-100",),
                        quantity_list=(1,),
                        external_data=None,
                        custom_data={},
                        payout=Decimal("1.00"),
                        payout_currency="USD",
                        fingerprint="",
                        created_at=created_at,
                        conversion=CONTEXT,
                    )
                )
    return advertiser.id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 rows: a smoke run")
    args = parser.parse_args(argv)
    rows = 20_000 if args.quick else args.rows
    tmpdir = Path(tempfile.mkdtemp(prefix="deliver-", dir=Path(__file__).parent))
    server = _Server(("127.0.0.1", 0), _Meta)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        storage = SQLiteStorage(tmpdir / "ledger.db")
        storage.migrate()
        box = SecretBox([SECRET_KEY])
        started = time.perf_counter()
        advertiser_id = fill(storage, rows)
        filled = time.perf_counter() - started
        target = add_target(
            storage,
            box,
            advertiser_id,
            TargetKind.META_CAPI,
            settings={"pixel_id": PIXEL_ID, "endpoint": f"http://127.0.0.1:{server.server_port}"},
            secrets={"access_token": "EAAB-bench"},
            # It replays the whole ledger, as target add --history-from does.
            history_from=datetime.now(timezone.utc) - timedelta(days=1),
        ).stored

        samples: list[tuple[int, float]] = [(0, resident_mib())]
        sent = 0
        step = max(rows // 10, 1)

        def send(request: HttpRequest) -> HttpResponse:
            nonlocal sent
            from pixel_wsgi.delivery.http import send as http_send

            answer = http_send(request)
            before = sent
            sent += len(request.transaction_ids)
            if sent // step > before // step:
                samples.append((sent, resident_mib()))
            return answer

        worker = Worker(storage, box, send=send)
        started = time.perf_counter()
        report = worker.run_once()
        elapsed = time.perf_counter() - started
        delivered = report.settled.get(DeliveryStatus.DELIVERED, 0)
        counts = storage.delivery_counts(target.id)
        storage.close()
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(tmpdir, ignore_errors=True)

    print("pixel-wsgi delivery benchmark: one worker pass, a meta_capi target, loopback")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"ledger: {rows:,} conversions written in {filled:.1f} s")
    print(
        f"delivered {delivered:,} rows in {report.requests:,} requests in {elapsed:.1f} s:"
        f" {delivered / elapsed:,.0f} rows/s"
    )
    print("worker memory (resident MiB) by rows sent:")
    for count, mib in samples:
        print(f"  {count:>10,}  {mib:7.1f}")
    after_first = samples[1:] or samples
    growth = max(mib for _, mib in after_first) - after_first[0][1]
    print(f"growth after the first tenth: {growth:+.1f} MiB")
    if delivered != rows or server.events != rows or counts != {DeliveryStatus.DELIVERED: rows}:
        print(f"BENCHMARK BROKEN: {rows} rows, {delivered} delivered, {server.events} received")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
