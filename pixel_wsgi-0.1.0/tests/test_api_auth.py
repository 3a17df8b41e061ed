"""Who may call ``/pixels/api/...``: per-advertiser credentials, and never a browser."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp, TestResponse

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.endpoints.api.auth import CHALLENGES, hash_token, issue_credential

from .cli_helpers import Run
from .conftest import SECRET, FakeClock, World, basic_authorization, host_app

TRANSACTIONS = "/pixels/api/transactions.json"
CONVERSIONS = "/pixels/api/conversions"
CHALLENGE_VALUES = [value for _, value in CHALLENGES]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def secret(world: World) -> str:
    return issue_credential(world.storage, world.advertiser_id).secret


@pytest.fixture
def other_secret(world: World) -> str:
    return issue_credential(world.storage, world.other_advertiser_id).secret


def no_cors(response: TestResponse) -> None:
    """No Access-Control-* header and no cookie, whatever the answer."""
    cors = [name for name in response.headers if name.lower().startswith("access-control-")]
    assert cors == []
    assert "Set-Cookie" not in response.headers


def assert_unauthorized(response: TestResponse) -> None:
    assert response.status_int == 401
    assert response.headers.getall("WWW-Authenticate") == CHALLENGE_VALUES
    assert response.content_type == "application/json"
    assert response.json["error"]["code"] == "unauthorized"
    assert response.json["error"]["message"]
    assert response.headers["Cache-Control"] == "no-store, private"
    no_cors(response)


def assert_browser_refused(response: TestResponse) -> None:
    assert response.status_int == 403
    assert response.json["error"]["code"] == "browser_request"
    # Not a challenge: no credential makes a browser's request acceptable.
    assert "WWW-Authenticate" not in response.headers
    no_cors(response)


def new_report(world: World, reference_id: str, campaign_id: int | None = None) -> dict[str, str]:
    return {
        "reference_id": reference_id,
        "sale_amount": "20.00",
        "advertiser_campaign_id": str(campaign_id or world.percent_campaign_id),
        "affiliate_id": str(world.publisher_id),
    }


def other_campaign_id(world: World) -> int:
    [campaign] = world.storage.campaigns(advertiser_id=world.other_advertiser_id)
    return campaign.id


# -- accepted ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme",
    [
        pytest.param("Basic", id="basic"),
        pytest.param("Bearer", id="bearer"),
        # RFC 9110: the scheme is case-insensitive.
        pytest.param("BASIC", id="basic-upper-case"),
        pytest.param("bearer", id="bearer-lower-case"),
    ],
)
def test_basic_with_the_advertiser_id_and_bearer_are_accepted(
    app: TestApp, world: World, secret: str, scheme: str
) -> None:
    if scheme.lower() == "basic":
        value = basic_authorization(world.advertiser_id, secret)["Authorization"].split(" ", 1)[1]
    else:
        value = secret
    response = app.get(TRANSACTIONS, headers={"Authorization": f"{scheme} {value}"})
    assert response.status_int == 200
    assert response.json == []
    no_cors(response)


def test_a_credential_reports_for_its_own_advertiser(
    app: TestApp, world: World, secret: str
) -> None:
    response = app.post(CONVERSIONS, new_report(world, "order-1"), headers=bearer(secret))
    assert response.status_int == 201
    assert response.json["transaction"]["advertiser_id"] == world.advertiser_id
    no_cors(response)


# -- 401 -----------------------------------------------------------------------------


def _wrong_headers(world: World, secret: str, other_secret: str) -> dict[str, dict[str, str]]:
    prefix, _, token = secret.rpartition("_")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    return {
        "missing": {},
        "empty": {"Authorization": ""},
        "wrong-secret-basic": basic_authorization(world.advertiser_id, f"{prefix}_{flipped}"),
        "wrong-secret-bearer": bearer(f"{prefix}_{flipped}"),
        "truncated-secret": bearer(secret[:-1]),
        "secret-without-prefix": bearer(token),
        "unknown-credential-id": bearer(f"pwk_999_{token}"),
        "wrong-user": basic_authorization(world.other_advertiser_id, secret),
        "empty-user": basic_authorization("", secret),
        "user-with-leading-zero": basic_authorization(f"0{world.advertiser_id}", secret),
        "another-advertisers-secret-as-mine": basic_authorization(
            world.advertiser_id, other_secret
        ),
        "secret-as-user": basic_authorization(secret, ""),
        "basic-not-base64": {"Authorization": "Basic !!!not-base64!!!"},
        "basic-not-utf8": {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
        "basic-without-value": {"Authorization": "Basic"},
        "bearer-without-value": {"Authorization": "Bearer"},
        "bearer-blank": {"Authorization": "Bearer   "},
        "unknown-scheme": {"Authorization": f"Token {secret}"},
        "bare-secret": {"Authorization": secret},
        "oversized": bearer(secret + "x" * 5000),
    }


WRONG = [
    "missing",
    "empty",
    "wrong-secret-basic",
    "wrong-secret-bearer",
    "truncated-secret",
    "secret-without-prefix",
    "unknown-credential-id",
    "wrong-user",
    "empty-user",
    "user-with-leading-zero",
    "another-advertisers-secret-as-mine",
    "secret-as-user",
    "basic-not-base64",
    "basic-not-utf8",
    "basic-without-value",
    "bearer-without-value",
    "bearer-blank",
    "unknown-scheme",
    "bare-secret",
    "oversized",
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case) for case in WRONG])
def test_wrong_malformed_or_missing_credentials_get_401_with_both_challenges(
    app: TestApp, world: World, secret: str, other_secret: str, case: str
) -> None:
    headers = _wrong_headers(world, secret, other_secret)[case]
    assert_unauthorized(app.get(TRANSACTIONS, headers=headers, status="*"))
    assert_unauthorized(
        app.post(CONVERSIONS, new_report(world, "order-1"), headers=headers, status="*")
    )
    assert list(world.storage.transactions()) == []


def test_401_on_every_endpoint_and_head_has_no_body(app: TestApp) -> None:
    for path in (
        "/pixels/api/transactions",
        "/pixels/api/transactions.json",
        "/pixels/api/transactions.csv",
    ):
        assert_unauthorized(app.get(path, status="*"))
        head = app.head(path, status="*")
        assert head.status_int == 401
        assert head.body == b""
        assert head.headers.getall("WWW-Authenticate") == CHALLENGE_VALUES
    for path in (CONVERSIONS, "/pixels/api/conversions.csv"):
        assert_unauthorized(app.post(path, b"", content_type="text/csv", status="*"))


def test_a_revoked_credential_gets_401(app: TestApp, world: World, secret: str, run: Run) -> None:
    assert app.get(TRANSACTIONS, headers=bearer(secret)).status_int == 200
    [credential] = world.storage.credentials(advertiser_id=world.advertiser_id)
    result = run("credential", "revoke", str(credential.id))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Credential {credential.id} revoked.\n"
    assert_unauthorized(app.get(TRANSACTIONS, headers=bearer(secret), status="*"))
    assert_unauthorized(
        app.get(TRANSACTIONS, headers=basic_authorization(world.advertiser_id, secret), status="*")
    )


def test_an_advertisers_other_credentials_survive_a_revocation(
    app: TestApp, world: World, run: Run
) -> None:
    first = issue_credential(world.storage, world.advertiser_id, "old server")
    second = issue_credential(world.storage, world.advertiser_id, "new server")
    assert run("credential", "revoke", str(first.credential.id)).exit_code == 0
    assert_unauthorized(app.get(TRANSACTIONS, headers=bearer(first.secret), status="*"))
    assert app.get(TRANSACTIONS, headers=bearer(second.secret)).status_int == 200


# -- 403: browsers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://evil.example"}, id="foreign-origin"),
        pytest.param({"Origin": "null"}, id="opaque-origin"),
        pytest.param({"Origin": "http://localhost"}, id="own-origin-not-listed"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site"),
        pytest.param({"Sec-Fetch-Site": "bogus"}, id="unknown-fetch-site"),
        pytest.param(
            {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},
            id="foreign-origin-claiming-same-origin",
        ),
    ],
)
def test_browser_borne_requests_are_refused_even_with_a_valid_credential(
    app: TestApp, world: World, secret: str, headers: dict[str, str]
) -> None:
    all_headers = {**bearer(secret), **headers}
    assert_browser_refused(app.get(TRANSACTIONS, headers=all_headers, status="*"))
    assert_browser_refused(
        app.post(CONVERSIONS, new_report(world, "order-1"), headers=all_headers, status="*")
    )
    assert list(world.storage.transactions()) == []


def test_browser_requests_are_refused_before_credentials_are_checked(app: TestApp) -> None:
    # A page learns nothing about a guessed credential: the answer is 403 either way.
    response = app.get(
        TRANSACTIONS,
        headers={"Sec-Fetch-Site": "cross-site", **bearer("pwk_1_guess")},
        status="*",
    )
    assert_browser_refused(response)


@pytest.mark.parametrize(
    "fetch_site",
    [pytest.param("same-origin", id="same-origin"), pytest.param("none", id="none")],
)
def test_same_origin_and_user_initiated_fetches_are_allowed(
    app: TestApp, secret: str, fetch_site: str
) -> None:
    response = app.get(TRANSACTIONS, headers={**bearer(secret), "Sec-Fetch-Site": fetch_site})
    assert response.status_int == 200
    no_cors(response)


@pytest.fixture
def admin_app(world: World, clock: FakeClock) -> TestApp:
    return TestApp(
        PixelMiddleware(
            host_app,
            world.storage,
            secret_key=SECRET,
            clock=clock,
            api_allowed_origins=["https://admin.example"],
        )
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Origin": "https://admin.example"}, 200, id="listed"),
        pytest.param(
            {"Origin": "https://admin.example", "Sec-Fetch-Site": "same-origin"},
            200,
            id="listed-same-origin",
        ),
        pytest.param({"Origin": "https://admin.example:8443"}, 403, id="other-port"),
        pytest.param({"Origin": "http://admin.example"}, 403, id="other-scheme"),
        pytest.param({"Origin": "https://admin.example.evil"}, 403, id="suffix"),
        pytest.param({"Origin": "https://evil.example"}, 403, id="not-listed"),
        # Listing an origin never opens the API to other sites' pages.
        pytest.param(
            {"Origin": "https://admin.example", "Sec-Fetch-Site": "cross-site"},
            403,
            id="listed-but-cross-site",
        ),
    ],
)
def test_api_allowed_origins_lets_listed_pages_in(
    admin_app: TestApp, secret: str, headers: dict[str, str], status: int
) -> None:
    response = admin_app.get(TRANSACTIONS, headers={**bearer(secret), **headers}, status="*")
    assert response.status_int == status
    no_cors(response)


def test_a_cors_preflight_gets_no_cors_headers(app: TestApp) -> None:
    response = app.options(
        TRANSACTIONS,
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
        status="*",
    )
    assert response.status_int == 405
    assert response.headers["Allow"] == "GET, HEAD"
    no_cors(response)


# -- cookies are not credentials -------------------------------------------------------


def test_a_valid_attribution_cookie_alone_is_not_auth(app: TestApp, world: World) -> None:
    app.get(f"/pixels/click/{world.percent_link_id}", status=302)
    assert app.cookies, "the click set the attribution cookie"
    assert_unauthorized(app.get(TRANSACTIONS, status="*"))
    assert_unauthorized(app.post(CONVERSIONS, new_report(world, "order-1"), status="*"))
    assert list(world.storage.transactions()) == []


def test_a_cookie_named_like_a_header_is_not_auth(app: TestApp, secret: str) -> None:
    app.set_cookie("Authorization", f"Bearer {secret}")
    app.set_cookie("secret", secret)
    assert_unauthorized(app.get(TRANSACTIONS, status="*"))


# -- one advertiser never sees another's data ------------------------------------------


def test_a_credential_never_sees_another_advertisers_rows(
    app: TestApp, world: World, secret: str, other_secret: str
) -> None:
    mine = app.post(CONVERSIONS, new_report(world, "mine"), headers=bearer(secret))
    theirs = app.post(
        CONVERSIONS,
        new_report(world, "theirs", other_campaign_id(world)),
        headers=bearer(other_secret),
    )
    my_id = mine.json["transaction"]["transaction_id"]
    their_id = theirs.json["transaction"]["transaction_id"]

    listed = app.get(TRANSACTIONS, headers=bearer(secret)).json
    assert [row["transaction_id"] for row in listed] == [my_id]
    csv_text = app.get("/pixels/api/transactions.csv", headers=bearer(secret)).text
    assert "theirs" not in csv_text and "mine" in csv_text
    their_listing = app.get(TRANSACTIONS, headers=bearer(other_secret)).json
    assert [row["transaction_id"] for row in their_listing] == [their_id]

    # Another advertiser's row answers exactly as a row that does not exist.
    for query in (f"transaction_id={their_id}", "reference_id=theirs"):
        theirs_answer = app.get(f"{TRANSACTIONS}?{query}", headers=bearer(secret))
        missing_query = query.replace(str(their_id), "999").replace("theirs", "nobody")
        missing_answer = app.get(f"{TRANSACTIONS}?{missing_query}", headers=bearer(secret))
        assert (theirs_answer.status_int, theirs_answer.body) == (200, b"[]")
        assert (missing_answer.status_int, missing_answer.body) == (200, b"[]")


def test_another_advertisers_conversion_or_campaign_answers_as_a_missing_one(
    app: TestApp, world: World, secret: str, other_secret: str
) -> None:
    other_campaign = other_campaign_id(world)
    app.post(CONVERSIONS, new_report(world, "theirs", other_campaign), headers=bearer(other_secret))

    def answer(fields: dict[str, str]) -> tuple[int, str, Any]:
        response = app.post(CONVERSIONS, fields, headers=bearer(secret), status="*")
        error = response.json["error"]
        return response.status_int, error["code"], error.get("field")

    # Updating their conversion is like updating one that never existed.
    update = {"sale_amount": "1.00"}
    assert answer({"reference_id": "theirs", **update}) == answer(
        {"reference_id": "nobody", **update}
    )
    assert answer({"parent_reference_id": "theirs", **update}) == answer(
        {"parent_reference_id": "nobody", **update}
    )
    # Crediting their campaign is like crediting one that does not exist.
    assert answer(new_report(world, "x", other_campaign)) == answer(new_report(world, "y", 999_999))
    [their_row] = world.storage.transactions(advertiser_id=world.other_advertiser_id)
    assert their_row.sale_amount is not None and str(their_row.sale_amount) == "20.00"
    assert list(world.storage.transactions(advertiser_id=world.advertiser_id)) == []


# -- the command line ------------------------------------------------------------------


def test_credential_add_json_prints_a_username_and_a_secret_that_works_at_once(
    app: TestApp, world: World, run: Run
) -> None:
    result = run("credential", "add", "--advertiser", str(world.advertiser_id), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["username"] == str(world.advertiser_id)
    assert document["advertiser_id"] == world.advertiser_id
    assert document["secret"].startswith(f"pwk_{document['id']}_")
    assert "secret_hash" not in document
    response = app.get(
        TRANSACTIONS, headers=basic_authorization(document["username"], document["secret"])
    )
    assert response.status_int == 200
    assert app.get(TRANSACTIONS, headers=bearer(document["secret"])).status_int == 200


def test_credential_add_text_shows_the_secret_once(app: TestApp, world: World, run: Run) -> None:
    result = run("credential", "add", "--advertiser", str(world.advertiser_id), "--label", "erp")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["username:", str(world.advertiser_id)]
    assert lines[2].split()[0] == "secret:"
    secret = lines[2].split()[1]
    assert app.get(TRANSACTIONS, headers=bearer(secret)).status_int == 200


def test_credential_add_for_a_missing_advertiser_fails(run: Run, world: World) -> None:
    result = run("credential", "add", "--advertiser", "999")
    assert result.exit_code == 1
    assert result.stderr == "Error: no advertiser with id 999\n"
    assert world.storage.credentials() == []


def test_credential_list_never_shows_a_secret_or_its_digest(world: World, run: Run) -> None:
    added = json.loads(
        run("credential", "add", "--advertiser", str(world.advertiser_id), "--json").stdout
    )
    secret: str = added["secret"]
    [stored] = world.storage.credentials()
    token = secret.split("_", 2)[2]
    assert stored.secret_hash == hash_token(token)
    for args in ((), ("--json",), ("--advertiser", str(world.advertiser_id))):
        result = run("credential", "list", *args)
        assert result.exit_code == 0, result.output
        assert token not in result.output
        assert stored.secret_hash not in result.output
        assert str(stored.id) in result.output
    [listed] = json.loads(run("credential", "list", "--json").stdout)
    assert set(listed) == {"id", "advertiser_id", "username", "label", "created_at", "revoked_at"}


def test_the_store_holds_only_a_digest_of_the_secret(
    app: TestApp, world: World, run: Run, db_path: Path
) -> None:
    added = json.loads(
        run("credential", "add", "--advertiser", str(world.advertiser_id), "--json").stdout
    )
    secret: str = added["secret"]
    assert app.get(TRANSACTIONS, headers=bearer(secret)).status_int == 200  # used once
    token = secret.split("_", 2)[2]
    [stored] = world.storage.credentials()
    # The database file and its WAL and shared-memory files, whatever was checkpointed.
    files = sorted(p for p in db_path.parent.glob(db_path.name + "*") if p.is_file())
    data = b"".join(path.read_bytes() for path in files)
    assert stored.secret_hash.encode() in data  # the right files were read
    for needle in (secret, token, token[:16]):
        assert needle.encode() not in data
        assert base64.b64encode(needle.encode()) not in data


def test_credential_revoke_twice_and_a_missing_one(world: World, run: Run) -> None:
    issued = issue_credential(world.storage, world.advertiser_id)
    credential_id = str(issued.credential.id)
    first = run("credential", "revoke", credential_id, "--json")
    again = run("credential", "revoke", credential_id, "--json")
    assert json.loads(first.stdout) == {
        "id": issued.credential.id,
        "revoked": True,
        "already_revoked": False,
    }
    assert json.loads(again.stdout)["already_revoked"] is True
    text = run("credential", "revoke", credential_id)
    assert (text.exit_code, text.stdout) == (
        0,
        f"Credential {credential_id} was revoked already.\n",
    )
    revoked = world.storage.credential(issued.credential.id)
    assert revoked is not None and revoked.revoked_at is not None
    [listed] = json.loads(run("credential", "list", "--json").stdout)
    assert listed["revoked_at"] == revoked.revoked_at
    missing = run("credential", "revoke", "999")
    assert (missing.exit_code, missing.stderr) == (1, "Error: no credential with id 999\n")
