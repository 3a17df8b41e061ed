"""``GET /pixels/api/transactions.json`` and ``.csv``: the Transactions API over WSGI."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from webtest import TestApp, TestResponse

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.cli import cli
from pixel_wsgi.columns import COLUMNS
from pixel_wsgi.endpoints.api.auth import issue_credential
from pixel_wsgi.endpoints.api.transactions import DEFAULT_LIMIT, MAX_LIMIT
from pixel_wsgi.models import TransactionDraft

from .conftest import FakeClock, World

URL = "/pixels/api/transactions.json"
CSV_URL = "/pixels/api/transactions.csv"
CONVERSIONS = "/pixels/api/conversions"


@pytest.fixture
def auth(world: World) -> dict[str, str]:
    secret = issue_credential(world.storage, world.advertiser_id).secret
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def other_auth(world: World) -> dict[str, str]:
    secret = issue_credential(world.storage, world.other_advertiser_id).secret
    return {"Authorization": f"Bearer {secret}"}


def report(
    app: TestApp,
    auth: dict[str, str],
    reference_id: str,
    *,
    skus: tuple[tuple[str, str], ...] = (),
    **fields: str,
) -> TestResponse:
    """Report a conversion (or update one) through the Conversion Reporting API.

    ``skus``: ``(sku, quantity)`` pairs, sent as repeated ``sku_list[]``/``quantity_list[]``.
    """
    body = [("reference_id", reference_id), *fields.items()]
    body += [("sku_list[]", sku) for sku, _ in skus]
    body += [("quantity_list[]", quantity) for _, quantity in skus]
    response = app.post(CONVERSIONS, body, headers=auth)
    assert response.status_int in (200, 201), response.text
    return response


def new(
    app: TestApp,
    auth: dict[str, str],
    world: World,
    reference_id: str,
    *,
    skus: tuple[tuple[str, str], ...] = (),
    **fields: str,
) -> int:
    """A new conversion in the world's percent campaign; its transaction id."""
    response = report(
        app,
        auth,
        reference_id,
        skus=skus,
        advertiser_campaign_id=str(world.percent_campaign_id),
        affiliate_id=str(world.publisher_id),
        **{"sale_amount": "10.00", **fields},
    )
    assert response.json["result"] == "created"
    transaction_id: int = response.json["transaction"]["transaction_id"]
    return transaction_id


def get(app: TestApp, auth: dict[str, str], query: str = "", url: str = URL, **kw: Any) -> Any:
    response = app.get(f"{url}?{query}" if query else url, headers=auth, **kw)
    assert response.status_int == 200, response.text
    return response.json


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [row["transaction_id"] for row in rows]


def fill(world: World, count: int, *, advertiser_id: int | None = None) -> list[int]:
    """``count`` conversions written straight to the store in one transaction (fast)."""
    advertiser = advertiser_id or world.advertiser_id
    written = []
    with world.storage.writer() as writer:
        for _ in range(count):
            transaction_id = writer.insert_transaction(
                TransactionDraft(
                    advertiser_id=advertiser,
                    campaign_id=world.percent_campaign_id,
                    publisher_id=world.publisher_id,
                    visit_id=None,
                    source="api",
                    reference_id=f"bulk-{uuid.uuid4().hex}",
                    corrects_transaction_id=None,
                    original_transaction_id=None,
                    sale_amount=Decimal("1.00"),
                    sale_currency="USD",
                    reason_code=None,
                    sku_list=(),
                    quantity_list=(),
                    external_data=None,
                    custom_data={},
                    payout=Decimal("0.10"),
                    payout_currency="USD",
                    fingerprint="",
                    created_at="2026-11-25T12:00:00.000000Z",
                )
            )
            assert transaction_id is not None
            written.append(transaction_id)
    return written


@pytest.fixture
def chain(app: TestApp, auth: dict[str, str], world: World) -> dict[str, int]:
    """A conversion, its correction and its reversal, and a second conversion."""
    first = new(app, auth, world, "order-1", skus=(("a", "1"), ("b", "2")))
    corrected = report(app, auth, "order-1", sale_amount="12.50")
    assert corrected.json["result"] == "corrected"
    reversed_ = report(app, auth, "order-1", reversal_reason="customer refund")
    assert reversed_.json["result"] == "corrected"
    # A refund is its own conversion here (a negative amount never creates one).
    second = new(app, auth, world, "order-2", sale_amount="5.00", reason_code="refund")
    return {
        "conversion": first,
        "correction": corrected.json["transaction"]["transaction_id"],
        "reversal": reversed_.json["transaction"]["transaction_id"],
        "second": second,
    }


# -- the rows and their fields -------------------------------------------------------


def test_rows_carry_their_type_and_the_row_they_correct(
    app: TestApp, auth: dict[str, str], chain: dict[str, int]
) -> None:
    rows = get(app, auth)
    assert ids(rows) == [
        chain["conversion"],
        chain["correction"],
        chain["reversal"],
        chain["second"],
    ]
    kinds = [(r["transaction_type"], r["corrects_transaction_id"]) for r in rows]
    assert kinds == [
        ("conversion", None),
        ("correction", chain["conversion"]),
        ("reversal", chain["correction"]),
        ("conversion", None),
    ]
    assert [r["original_transaction_id"] for r in rows[:3]] == [chain["conversion"]] * 3
    assert rows[2]["reversal_reason"] == "customer refund"
    assert [r["sale_amount"] for r in rows] == ["10.00", "12.50", "0.00", "5.00"]
    assert [r["payout"] for r in rows] == ["1.00", "1.25", "0.00", "0.50"]
    assert rows[0]["sku_list"] == ["a", "b"] and rows[0]["quantity_list"] == [1, 2]


def test_money_is_always_a_string_never_a_float(
    app: TestApp, auth: dict[str, str], chain: dict[str, int]
) -> None:
    response = app.get(URL, headers=auth)
    for row in response.json:
        assert isinstance(row["sale_amount"], str) and isinstance(row["payout"], str)
    assert b'"sale_amount":"12.50"' in response.body
    assert b'"payout":"1.25"' in response.body
    # Parsed with floats forbidden, the body still reads: it holds no JSON number
    # with a fraction anywhere.
    json.loads(response.body, parse_float=lambda text: pytest.fail(f"a float: {text}"))


def test_the_json_rows_are_the_clis_transactions_json(
    app: TestApp, auth: dict[str, str], chain: dict[str, int], world: World, db_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        ["--storage", f"sqlite:///{db_path}", "transactions", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.stdout)
    from_api = get(app, auth)
    assert from_api == from_cli
    assert list(from_api[0]) == list(from_cli[0]) == list(COLUMNS)


def test_the_answer_is_not_cached(
    app: TestApp, auth: dict[str, str], chain: dict[str, int]
) -> None:
    for response in (
        app.get(URL, headers=auth),
        app.get(CSV_URL, headers=auth),
        app.get(f"{URL}?limit=x", headers=auth, status=400),
    ):
        assert "no-store" in response.headers["Cache-Control"]


# -- filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("conversion", ["conversion", "second"], id="conversion"),
        pytest.param("correction", ["correction"], id="correction"),
        pytest.param("reversal", ["reversal"], id="reversal"),
    ],
)
def test_transaction_type_filter(
    app: TestApp, auth: dict[str, str], chain: dict[str, int], kind: str, expected: list[str]
) -> None:
    rows = get(app, auth, f"transaction_type={kind}")
    assert ids(rows) == [chain[name] for name in expected]
    assert {row["transaction_type"] for row in rows} == {kind}


def test_transaction_id_and_reference_id_filters(
    app: TestApp, auth: dict[str, str], chain: dict[str, int]
) -> None:
    assert ids(get(app, auth, f"transaction_id={chain['correction']}")) == [chain["correction"]]
    assert get(app, auth, "transaction_id=999999") == []
    order_1 = [chain["conversion"], chain["correction"], chain["reversal"]]
    assert ids(get(app, auth, "reference_id=order-1")) == order_1
    assert ids(get(app, auth, "reference_id=order-2")) == [chain["second"]]
    assert get(app, auth, "reference_id=order-3") == []
    combined = get(app, auth, "reference_id=order-1&transaction_type=correction")
    assert ids(combined) == [chain["correction"]]


# Instants around the New York day 2026-11-25 (UTC-5 in November).
INSTANTS = {
    "a": "2026-11-24T23:30:00",  # NY 11-24 18:30
    "b": "2026-11-25T04:30:00",  # NY 11-24 23:30: the 25th in UTC, the 24th in New York
    "c": "2026-11-25T05:00:00",  # NY 11-25 00:00, the first instant of the day
    "d": "2026-11-26T04:59:59.999999",  # NY 11-25 23:59:59.999999, the last one
    "e": "2026-11-26T05:00:00",  # NY 11-26 00:00
    # Around the start of daylight saving time in New York (8 March 2026, a 23-hour day).
    "f": "2026-03-08T04:59:59",  # NY 03-07 23:59:59 EST
    "g": "2026-03-08T05:00:00",  # NY 03-08 00:00 EST
    "h": "2026-03-09T03:59:59",  # NY 03-08 23:59:59 EDT
    "i": "2026-03-09T04:00:00",  # NY 03-09 00:00 EDT
}


@pytest.fixture
def dated(app: TestApp, auth: dict[str, str], world: World, clock: FakeClock) -> dict[str, int]:
    """A conversion created at each of :data:`INSTANTS`, in time order."""
    made = {}
    for name, instant in sorted(INSTANTS.items(), key=lambda item: item[1]):
        clock.now = datetime.fromisoformat(instant).replace(tzinfo=timezone.utc)
        made[name] = new(app, auth, world, f"at-{name}")
    return made


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("from=2026-11-25&to=2026-11-25", "bc", id="utc-by-default"),
        pytest.param("from=2026-11-25&to=2026-11-25&timezone=UTC", "bc", id="utc"),
        pytest.param("from=2026-11-25&to=2026-11-25&timezone=Etc/UTC", "bc", id="etc-utc"),
        pytest.param("from=2026-11-24&to=2026-11-24&timezone=America/New_York", "ab", id="ny-24"),
        pytest.param("from=2026-11-25&to=2026-11-25&timezone=America/New_York", "cd", id="ny-25"),
        pytest.param("from=2026-11-25&timezone=America/New_York", "cde", id="ny-from-only"),
        pytest.param("to=2026-11-24&timezone=America/New_York", "fghiab", id="ny-to-only"),
        pytest.param("from=2026-11-25&to=2026-11-25&timezone=Asia/Tokyo", "abc", id="tokyo"),
        pytest.param("from=2026-11-26&to=2026-11-26&timezone=Asia/Kolkata", "de", id="half-hour"),
        pytest.param("from=2026-03-08&to=2026-03-08&timezone=America/New_York", "gh", id="dst"),
        pytest.param("from=2026-03-08&to=2026-03-08", "fg", id="dst-day-in-utc"),
        pytest.param("from=2026-03-09&to=2026-03-09", "hi", id="utc-after-dst"),
        pytest.param("from=2026-11-27", "", id="after-everything"),
        # The ends of the calendar: no bound, not an error.
        pytest.param("to=9999-12-31", "fghiabcde", id="last-day"),
        pytest.param("from=0001-01-01&timezone=Asia/Tokyo", "fghiabcde", id="first-day-east"),
        pytest.param(
            "from=0001-01-01&to=9999-12-31&timezone=America/Los_Angeles", "fghiabcde", id="all-west"
        ),
    ],
)
def test_from_and_to_are_inclusive_dates_in_the_chosen_timezone(
    app: TestApp, auth: dict[str, str], dated: dict[str, int], query: str, expected: str
) -> None:
    assert ids(get(app, auth, query)) == [dated[name] for name in expected]


# -- columns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "columns"),
    [
        pytest.param(
            "include_columns=transaction_id,sale_amount",
            ["transaction_id", "sale_amount"],
            id="include",
        ),
        pytest.param(
            "include_columns=sale_amount,%20transaction_id",
            ["transaction_id", "sale_amount"],
            id="include-in-column-order",
        ),
        pytest.param(
            "exclude_columns=custom_data,visit_id",
            [c for c in COLUMNS if c not in ("custom_data", "visit_id")],
            id="exclude",
        ),
        pytest.param(
            "include_columns=transaction_id,payout,created_at&exclude_columns=created_at",
            ["transaction_id", "payout"],
            id="both",
        ),
        pytest.param("include_columns=", list(COLUMNS), id="empty-include"),
    ],
)
def test_include_and_exclude_columns(
    app: TestApp, auth: dict[str, str], chain: dict[str, int], query: str, columns: list[str]
) -> None:
    rows = get(app, auth, query)
    assert [list(row) for row in rows] == [columns] * 4
    table = list(csv.reader(io.StringIO(app.get(f"{CSV_URL}?{query}", headers=auth).text)))
    assert table[0] == columns
    assert len(table) == 5


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("include_columns=transaction_id,bogus", "include_columns", id="include"),
        pytest.param("exclude_columns=bogus", "exclude_columns", id="exclude"),
        pytest.param(
            "include_columns=transaction_id&exclude_columns=bogus",
            "exclude_columns",
            id="exclude-with-include",
        ),
        pytest.param("include_columns=Sale_Amount", "include_columns", id="case"),
        pytest.param(
            "include_columns=payout&exclude_columns=payout", "exclude_columns", id="nothing-left"
        ),
        pytest.param(
            "include_columns=payout&include_columns=payout", "include_columns", id="twice"
        ),
    ],
)
def test_bad_column_selections_are_400(
    app: TestApp, auth: dict[str, str], query: str, field: str
) -> None:
    response = app.get(f"{URL}?{query}", headers=auth, status=400)
    assert response.json["error"]["code"] == "invalid_parameter"
    assert response.json["error"]["field"] == field


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("%00", id="nul"),
        pytest.param("a%0Ab", id="newline"),
        pytest.param("%20padded", id="whitespace"),
        pytest.param("r" * 129, id="too-long"),
    ],
)
def test_a_reference_id_no_conversion_can_have_is_400(
    app: TestApp, auth: dict[str, str], value: str
) -> None:
    # A NUL made PostgreSQL fail the query: a 503 for a bad request (issue 9).
    response = app.get(f"{URL}?reference_id={value}", headers=auth, status=400)
    assert response.json["error"]["code"] == "invalid_parameter"
    assert response.json["error"]["field"] == "reference_id"


# -- CSV -----------------------------------------------------------------------------


def test_csv_has_a_header_of_the_columns_and_one_line_per_row(
    app: TestApp, auth: dict[str, str], chain: dict[str, int]
) -> None:
    response = app.get(CSV_URL, headers=auth)
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="transactions.csv"'
    assert int(response.headers["Content-Length"]) == len(response.body)
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert list(table[0]) == list(COLUMNS)
    assert [int(row["transaction_id"]) for row in table] == list(chain.values())
    first, correction, reversal, second = table
    assert (first["sku_list"], first["quantity_list"]) == ("a,b", "1,2")
    assert (first["corrects_transaction_id"], first["custom_data"]) == ("", "")
    assert correction["corrects_transaction_id"] == str(chain["conversion"])
    assert (reversal["transaction_type"], reversal["reversal_reason"]) == (
        "reversal",
        "customer refund",
    )
    assert (second["sale_amount"], second["payout"]) == ("5.00", "0.50")
    assert response.body.count(b"\r\n") == 5


@pytest.mark.parametrize(
    ("url", "accept", "form"),
    [
        pytest.param("/pixels/api/transactions", None, "json", id="default-json"),
        pytest.param("/pixels/api/transactions", "text/csv", "csv", id="accept-csv"),
        pytest.param("/pixels/api/transactions", "text/csv; q=0.9", "csv", id="accept-csv-q"),
        pytest.param("/pixels/api/transactions", "application/json", "json", id="accept-json"),
        pytest.param(
            "/pixels/api/transactions", "application/json, text/csv", "json", id="accept-both"
        ),
        pytest.param("/pixels/api/transactions", "*/*", "json", id="accept-anything"),
        pytest.param(
            "/pixels/api/transactions",
            "application/json;q=0.1, text/csv",
            "csv",
            id="csv-preferred-by-q",
        ),
        pytest.param(
            "/pixels/api/transactions", "text/csv;q=0, */*", "json", id="csv-refused-by-q0"
        ),
        pytest.param(
            "/pixels/api/transactions",
            "text/csv;q=0.5, application/json;q=0.9",
            "json",
            id="json-preferred-by-q",
        ),
        pytest.param("/pixels/api/transactions", "text/*", "csv", id="text-wildcard"),
        pytest.param("/pixels/api/transactions", "TEXT/CSV", "csv", id="case-insensitive"),
        pytest.param(
            "/pixels/api/transactions", "text/csv, */*;q=0.1", "csv", id="csv-over-wildcard"
        ),
        # Neither offer acceptable: JSON, as without the header (no 406; see _negotiate).
        pytest.param("/pixels/api/transactions", "text/html", "json", id="only-unacceptable"),
        pytest.param(
            "/pixels/api/transactions", "application/json;q=0", "json", id="json-q0-alone"
        ),
        pytest.param(URL, "text/csv", "json", id="extension-wins-json"),
        pytest.param(CSV_URL, "application/json", "csv", id="extension-wins-csv"),
    ],
)
def test_the_format_comes_from_the_extension_or_accept(
    app: TestApp,
    auth: dict[str, str],
    chain: dict[str, int],
    url: str,
    accept: str | None,
    form: str,
) -> None:
    headers = {**auth, **({"Accept": accept} if accept else {})}
    response = app.get(url, headers=headers)
    if form == "csv":
        assert response.content_type == "text/csv"
        assert response.text.startswith("transaction_id,transaction_type,")
    else:
        assert response.content_type == "application/json"
        assert len(response.json) == 4


def test_csv_cells_keep_commas_and_quotes(app: TestApp, auth: dict[str, str], world: World) -> None:
    new(app, auth, world, "q-1", reason_code='gift, "wrapped"', skus=(("a,1", "1"), ("b", "1")))
    [row] = csv.DictReader(io.StringIO(app.get(CSV_URL, headers=auth).text))
    assert row["reason_code"] == 'gift, "wrapped"'
    assert json.loads(row["sku_list"]) == ["a,1", "b"]


# -- paging --------------------------------------------------------------------------


def next_link(response: TestResponse) -> str | None:
    link = response.headers.get("Link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match is not None, link
    return match.group(1)


def test_limit_defaults_to_1000_and_a_full_page_links_the_next(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    written = fill(world, DEFAULT_LIMIT + 1)
    first = app.get(URL, headers=auth)
    assert ids(first.json) == written[:DEFAULT_LIMIT]
    link = next_link(first)
    assert link is not None
    parts = urlsplit(link)
    assert parts.path == URL
    assert parse_qs(parts.query) == {"start_after_transaction_id": [str(written[999])]}
    second = app.get(link, headers=auth)
    assert ids(second.json) == written[DEFAULT_LIMIT:]
    assert next_link(second) is None


def test_limit_may_be_4000_but_not_more(app: TestApp, auth: dict[str, str], world: World) -> None:
    written = fill(world, MAX_LIMIT + 1)
    page = app.get(f"{URL}?limit={MAX_LIMIT}", headers=auth)
    assert ids(page.json) == written[:MAX_LIMIT]
    assert next_link(page) is not None
    too_many = app.get(f"{URL}?limit={MAX_LIMIT + 1}", headers=auth, status=400)
    assert too_many.json["error"]["field"] == "limit"


def test_the_link_keeps_the_query_and_paging_ends_on_an_empty_page(
    app: TestApp, auth: dict[str, str], world: World, chain: dict[str, int]
) -> None:
    query = "transaction_type=conversion&limit=1&include_columns=transaction_id,reference_id"
    seen = []
    url: str | None = f"{URL}?{query}"
    pages = 0
    while url is not None:
        response = app.get(url, headers=auth)
        seen.extend(response.json)
        url = next_link(response)
        if url is not None:
            assert parse_qs(urlsplit(url).query)["transaction_type"] == ["conversion"]
        pages += 1
    # Two full pages of one row, then an empty page (a full page always links on).
    assert pages == 3
    assert seen == [
        {"transaction_id": chain["conversion"], "reference_id": "order-1"},
        {"transaction_id": chain["second"], "reference_id": "order-2"},
    ]


def test_start_after_transaction_id_pages_through_the_rows(
    app: TestApp, auth: dict[str, str], world: World, other_auth: dict[str, str]
) -> None:
    mine = fill(world, 25)
    fill(world, 5, advertiser_id=world.other_advertiser_id)
    mine += fill(world, 5)
    seen: list[int] = []
    after = 0
    while True:
        page = ids(get(app, auth, f"start_after_transaction_id={after}&limit=7"))
        if not page:
            break
        seen += page
        after = page[-1]
    assert seen == mine
    assert get(app, auth, f"start_after_transaction_id={mine[-1]}") == []


def test_paging_while_writes_continue_never_skips_or_repeats_a_row(
    middleware: PixelMiddleware,
    auth: dict[str, str],
    other_auth: dict[str, str],
    world: World,
) -> None:
    other_campaign = world.storage.campaigns(advertiser_id=world.other_advertiser_id)[0].id
    committed: list[int] = []  # the advertiser's rows, appended once committed
    finished = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        writer_app = TestApp(middleware)
        try:
            for index in range(150):
                row = new(writer_app, auth, world, f"live-{index}")
                committed.append(row)
                if index % 10 == 3:
                    committed.append(
                        report(writer_app, auth, f"live-{index}", sale_amount="11.00").json[
                            "transaction"
                        ]["transaction_id"]
                    )
                if index % 5 == 0:  # another advertiser's rows interleave
                    writer_app.post(
                        CONVERSIONS,
                        {
                            "reference_id": f"other-{index}",
                            "advertiser_campaign_id": str(other_campaign),
                            "affiliate_id": str(world.publisher_id),
                        },
                        headers=other_auth,
                        status=201,
                    )
                time.sleep(0.002)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)
        finally:
            finished.set()

    reader = TestApp(middleware)
    writer = threading.Thread(target=write, name="writer")
    writer.start()
    seen: list[int] = []
    after = 0
    pages_during_writes = 0
    final_empty_pages = 0
    empty_pages = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            writing_was_over = finished.is_set()
            committed_before = list(committed)
            page = ids(get(reader, auth, f"start_after_transaction_id={after}&limit=7"))
            if not writing_was_over:
                pages_during_writes += 1
            if page:
                seen += page
                after = page[-1]
                continue
            # An empty page: every row committed before it was asked for was seen.
            assert set(committed_before) <= set(seen)
            if writing_was_over:
                final_empty_pages += 1
                if final_empty_pages == 2:  # the empty page, and once more
                    break
            empty_pages += 1
            time.sleep(0.001)  # let the writer on
        else:
            pytest.fail("paging did not reach the end")
    finally:
        finished.wait(timeout=60)
        writer.join(timeout=60)
    assert failures == []
    assert seen == sorted(set(seen)), "ids strictly increase: nothing repeats"
    assert seen == committed
    assert len(seen) == 150 + 15
    # The reader caught up with the writer (and checked the rule above) mid-write.
    assert pages_during_writes > 1 and empty_pages > 0


# -- bad requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("oauth_token=x", "oauth_token", id="unknown"),
        pytest.param("Limit=10", "Limit", id="case-matters"),
        pytest.param("page=", "page", id="unknown-blank"),
        pytest.param("limit=0", "limit", id="limit-zero"),
        pytest.param("limit=-1", "limit", id="limit-negative"),
        pytest.param("limit=ten", "limit", id="limit-text"),
        pytest.param("limit=", "limit", id="limit-blank"),
        pytest.param("limit=4001", "limit", id="limit-over-max"),
        pytest.param("limit=%EF%BC%91", "limit", id="limit-fullwidth-digit"),
        pytest.param("limit=1&limit=2", "limit", id="limit-twice"),
        pytest.param("start_after_transaction_id=-1", "start_after_transaction_id", id="cursor"),
        pytest.param(
            "start_after_transaction_id=99999999999999999999",
            "start_after_transaction_id",
            id="cursor-huge",
        ),
        pytest.param("transaction_id=0", "transaction_id", id="transaction-id-zero"),
        pytest.param("transaction_id=abc", "transaction_id", id="transaction-id-text"),
        pytest.param("transaction_type=Sale", "transaction_type", id="invocas-type-name"),
        pytest.param("transaction_type=CONVERSION", "transaction_type", id="type-case"),
        pytest.param("from=2026-13-01", "from", id="month-13"),
        pytest.param("from=2026-02-30", "from", id="february-30"),
        pytest.param("from=2026-11-5", "from", id="short-day"),
        pytest.param("from=20261125", "from", id="basic-format"),
        pytest.param("from=2026-11-25T00:00", "from", id="a-time"),
        pytest.param("to=yesterday", "to", id="words"),
        pytest.param("to=%D9%A2026-11-25", "to", id="non-ascii-digit"),
        pytest.param("from=2026-11-26&to=2026-11-25", "to", id="to-before-from"),
        pytest.param("from=2026-11-25&from=2026-11-26", "from", id="from-twice"),
        pytest.param("timezone=Mars/Olympus_Mons", "timezone", id="unknown-zone"),
        pytest.param("timezone=America", "timezone", id="zone-directory"),
        pytest.param("timezone=" + "a" * 300, "timezone", id="zone-too-long"),
        pytest.param("timezone=../../../etc/passwd", "timezone", id="zone-path"),
        pytest.param("timezone=/etc/localtime", "timezone", id="zone-absolute"),
        pytest.param("timezone=", "timezone", id="zone-blank"),
        pytest.param("timezone=%2B05:00", "timezone", id="zone-offset"),
    ],
)
def test_bad_parameters_are_400_with_the_field(
    app: TestApp, auth: dict[str, str], query: str, field: str
) -> None:
    response = app.get(f"{URL}?{query}", headers=auth, status=400)
    assert response.content_type == "application/json"
    assert response.json["error"]["code"] == "invalid_parameter"
    assert response.json["error"]["field"] == field
    assert response.json["error"]["message"]


def test_a_query_that_is_not_utf8_is_400(app: TestApp, auth: dict[str, str]) -> None:
    response = app.get(f"{URL}?reference_id=%FF", headers=auth, status=400)
    assert response.json["error"]["code"] == "invalid_query"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(app: TestApp, auth: dict[str, str], method: str) -> None:
    for url in (URL, CSV_URL, "/pixels/api/transactions"):
        response = app.request(url, method=method, headers=auth, status=405)
        assert response.headers["Allow"] == "GET, HEAD"
        assert response.json["error"]["code"] == "method_not_allowed"


def test_an_unknown_format_is_404(app: TestApp, auth: dict[str, str]) -> None:
    response = app.get("/pixels/api/transactions.xml", headers=auth, status=404)
    assert response.json["error"]["code"] == "not_found"


@pytest.mark.parametrize("url", [pytest.param(URL, id="json"), pytest.param(CSV_URL, id="csv")])
def test_head_has_the_headers_of_get_and_no_body(
    app: TestApp, auth: dict[str, str], chain: dict[str, int], url: str
) -> None:
    got = app.get(url, headers=auth)
    head = app.head(url, headers=auth)
    assert head.status_int == 200
    assert head.body == b""
    for name in ("Content-Type", "Content-Length", "Cache-Control"):
        assert head.headers[name] == got.headers[name]
    bad = app.head(f"{url}?limit=0", headers=auth, status=400)
    assert bad.body == b""


def test_head_on_a_full_page_has_the_link(app: TestApp, auth: dict[str, str], world: World) -> None:
    fill(world, 3)
    assert next_link(app.head(f"{URL}?limit=3", headers=auth)) is not None


def test_each_advertiser_sees_only_its_rows(
    app: TestApp, auth: dict[str, str], other_auth: dict[str, str], world: World
) -> None:
    fill(world, 2)
    fill(world, 2, advertiser_id=world.other_advertiser_id)
    assert {row["advertiser_id"] for row in get(app, auth)} == {world.advertiser_id}
    assert {row["advertiser_id"] for row in get(app, other_auth)} == {world.other_advertiser_id}
