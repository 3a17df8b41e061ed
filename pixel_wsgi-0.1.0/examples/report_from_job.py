"""A background job that reports order outcomes to pixel-wsgi's Conversion Reporting API.

Run it from cron or a worker once a minute (Invoca's advice for its API) with the
orders whose state changed since the last run::

    PIXEL_WSGI_SECRET=pwk_... python examples/report_from_job.py \\
        --url https://shop.example.com --advertiser 1 changed-orders.csv

``changed-orders.csv`` has the columns ``order_id,status,amount``: ``confirmed`` reports
the final amount (a correction when it differs from what the pixel saw), ``cancelled``
reverses the conversion. Every POST carries an ``Idempotency-Key`` made from the row, so
a retry after a timeout or a ``503`` can never count twice; reports are idempotent by
``reference_id`` anyway. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

RETRIES = 4


def report_fields(order: dict[str, str]) -> dict[str, str]:
    """The API fields for one changed order."""
    fields = {"reference_id": f"order-{order['order_id']}"}
    if order["status"] == "cancelled":
        fields["reversal_reason"] = "order cancelled"
    elif order["status"] == "confirmed":
        fields["sale_amount"] = order["amount"]
        fields["reason_code"] = "confirmed_order"
    else:
        raise ValueError(f"unknown status {order['status']!r} for order {order['order_id']}")
    return fields


def post(
    url: str, advertiser_id: int, secret: str, fields: dict[str, str], *, delay: float = 1.0
) -> tuple[int, dict[str, Any]]:
    """POST one report, retrying transient failures with the same Idempotency-Key."""
    body = urllib.parse.urlencode(fields).encode()
    key = hashlib.sha256(body).hexdigest()
    token = base64.b64encode(f"{advertiser_id}:{secret}".encode()).decode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/pixels/api/conversions",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Basic {token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Idempotency-Key": key,
        },
    )
    for attempt in range(RETRIES):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                if error.code != 503 or attempt == RETRIES - 1:
                    return error.code, json.load(error)
                wait = float(error.headers.get("Retry-After", delay))
        except OSError:
            if attempt == RETRIES - 1:
                raise
            wait = delay
        time.sleep(wait * (attempt + 1))
    raise AssertionError("unreachable")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("orders", help="CSV of changed orders: order_id,status,amount")
    parser.add_argument("--url", required=True, help="The shop's base URL.")
    parser.add_argument("--advertiser", type=int, required=True, help="Advertiser id.")
    args = parser.parse_args(argv)
    secret = os.environ.get("PIXEL_WSGI_SECRET")
    if not secret:
        parser.error("set PIXEL_WSGI_SECRET to the secret from `pixel-wsgi credential add`")
    with open(args.orders, encoding="utf-8", newline="") as file:
        orders = list(csv.DictReader(file))
    failed = 0
    for order in orders:
        status, answer = post(args.url, args.advertiser, secret, report_fields(order))
        if status in (200, 201):
            row = answer["transaction"]
            print(f"order {order['order_id']}: {answer['result']} (payout {row['payout']})")
        elif status == 202:
            # The shop's store was down: the report is durable in its outage spool
            # and will be applied by `pixel-wsgi replay`.
            print(f"order {order['order_id']}: accepted, applied once the store is back")
        else:
            failed += 1
            error = answer.get("error", {})
            print(
                f"order {order['order_id']}: {status} {error.get('code')}: {error.get('message')}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
