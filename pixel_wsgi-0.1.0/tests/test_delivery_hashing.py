"""Personal data hashed as each platform documents, and as Meta's own SDK does."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from facebook_business.adobjects.serverside.normalize import Normalize

from pixel_wsgi.delivery.hashing import (
    google_email,
    google_phone,
    google_user_data,
    is_sha256_hex,
    meta_email,
    meta_name,
    meta_phone,
    meta_user_data,
    normalize_google_email,
    normalize_google_phone,
    normalize_meta_email,
    normalize_meta_name,
    normalize_meta_phone,
    split_name,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# The normal forms below are written from the platforms' documentation (forwarding.md
# §2 and §3), not computed by the code under test.
@pytest.mark.parametrize(
    ("normalize", "given", "expected"),
    [
        pytest.param(
            normalize_meta_email,
            "  John.Smith@Example.COM ",
            "john.smith@example.com",
            id="meta-em-trim-lower",
        ),
        # Meta does not drop Gmail dots: only Google does
        pytest.param(
            normalize_meta_email,
            "Jane.Doe@gmail.com",
            "jane.doe@gmail.com",
            id="meta-em-gmail-dots-kept",
        ),
        pytest.param(
            normalize_meta_phone, "+1 (650) 555-1212", "16505551212", id="meta-ph-doc-example"
        ),
        pytest.param(normalize_meta_phone, "+16505551212", "16505551212", id="meta-ph-e164"),
        pytest.param(
            normalize_meta_phone, "0044 20 7946 0958", "442079460958", id="meta-ph-leading-zeros"
        ),
        pytest.param(normalize_meta_name, "  Mary ", "mary", id="meta-fn-trim-lower"),
        pytest.param(normalize_meta_name, "O'Brien", "obrien", id="meta-ln-no-punctuation"),
        pytest.param(normalize_meta_name, "Jean-Luc.", "jeanluc", id="meta-fn-hyphen-dot"),
        pytest.param(normalize_meta_name, "JOSÉ", "josé", id="meta-fn-utf8-kept"),
        pytest.param(
            normalize_google_email,
            " Jane.Doe@GMail.com ",
            "janedoe@gmail.com",
            id="google-gmail-dots",
        ),
        pytest.param(
            normalize_google_email,
            "j.a.n.e@googlemail.com",
            "jane@googlemail.com",
            id="google-googlemail-dots",
        ),
        pytest.param(
            normalize_google_email,
            "Jane.Doe@Example.com",
            "jane.doe@example.com",
            id="google-other-dots-kept",
        ),
        pytest.param(
            normalize_google_email,
            "jane.doe+shop@gmail.com",
            "janedoe+shop@gmail.com",
            id="google-plus-kept",
        ),
        pytest.param(normalize_google_phone, "+1 800-555-0100", "+18005550100", id="google-e164"),
        pytest.param(normalize_google_phone, "+44 20 7946 0958", "+442079460958", id="google-uk"),
    ],
)
def test_normal_forms_follow_the_documentation(
    normalize: Callable[[str], str], given: str, expected: str
) -> None:
    assert normalize(given) == expected


@pytest.mark.parametrize(
    ("hash_one", "given", "expected"),
    [
        pytest.param(
            meta_email, "John.Smith@Example.com", sha("john.smith@example.com"), id="meta-em"
        ),
        pytest.param(meta_phone, "+16505551212", sha("16505551212"), id="meta-ph"),
        pytest.param(meta_name, "Mary", sha("mary"), id="meta-fn"),
        pytest.param(
            google_email, "Jane.Doe@gmail.com", sha("janedoe@gmail.com"), id="google-email"
        ),
        pytest.param(google_phone, "+16505551212", sha("+16505551212"), id="google-phone"),
        # already hashed: passed through, lower-cased, never hashed twice
        pytest.param(meta_email, sha("a@b.c").upper(), sha("a@b.c"), id="meta-prehashed"),
        pytest.param(google_email, f" {sha('a@b.c')} ", sha("a@b.c"), id="google-prehashed"),
        pytest.param(meta_email, "   ", None, id="empty"),
        pytest.param(meta_phone, "call me", None, id="no-digits"),
        pytest.param(meta_name, "'.", None, id="only-punctuation"),
    ],
)
def test_hashes(hash_one: Callable[[str], str | None], given: str, expected: str | None) -> None:
    assert hash_one(given) == expected


#: Inputs on which Meta's SDK and its documentation agree.
SDK_TABLE = [
    pytest.param("em", "  John.Smith@Example.COM ", id="em-trim-lower"),
    pytest.param("em", "Jane.Doe@gmail.com", id="em-gmail"),
    pytest.param("em", "ÜBER@example.de", id="em-non-ascii"),
    pytest.param("em", sha("x@y.z"), id="em-prehashed"),
    pytest.param("ph", "+1 (650) 555-1212", id="ph-doc-example"),
    pytest.param("ph", "+16505551212", id="ph-e164"),
    pytest.param("ph", "+44 20 7946 0958", id="ph-uk-spaces"),
    pytest.param("ph", "0033 1 23 45 67 89", id="ph-double-zero"),
    pytest.param("ph", "+861065529988", id="ph-china"),
    pytest.param("fn", "  Mary ", id="fn-trim-lower"),
    pytest.param("ln", "SMITH", id="ln-upper"),
    pytest.param("fn", "José", id="fn-utf8"),
    pytest.param("ln", "Müller", id="ln-umlaut"),
]


@pytest.mark.parametrize(("key", "given"), SDK_TABLE)
def test_meta_hashes_match_metas_sdk(key: str, given: str) -> None:
    ours = {"em": meta_email, "ph": meta_phone, "fn": meta_name, "ln": meta_name}[key]
    assert ours(given) == Normalize.normalize_field(key, given)


def test_names_drop_punctuation_as_documented_where_the_sdk_keeps_it() -> None:
    # The documented rule ("no punctuation") and the SDK (lower and trim only) differ
    # here; we follow the documentation, and this pins the difference.
    assert meta_name("O'Brien") == sha("obrien")
    assert Normalize.normalize_field("ln", "O'Brien") == sha("o'brien")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("Mary Smith", ("Mary", "Smith"), id="two-words"),
        pytest.param("  Mary  Ann   Smith ", ("Mary", "Smith"), id="middle-name-left-out"),
        pytest.param("Cher", None, id="one-word"),
        pytest.param("", None, id="empty"),
    ],
)
def test_split_name(name: str, expected: tuple[str, str] | None) -> None:
    assert split_name(name) == expected


def test_meta_user_data_from_the_pixels_personal_fields() -> None:
    personal = {
        "email_address": " Mary.Smith@Example.com",
        "name": "Mary O'Brien",
        "cell_phone_number": "+16505551212",
        "home_phone_number": "+16505551313",
        "zip_code": "94025",  # not one Meta field we send
        "opt_in_SMS": "1",
    }
    assert meta_user_data(personal) == {
        "em": [sha("mary.smith@example.com")],
        "ph": [sha("16505551212"), sha("16505551313")],
        "fn": [sha("mary")],
        "ln": [sha("obrien")],
    }
    assert meta_user_data({}) == {}
    # the same number in both fields is sent once
    same = {"cell_phone_number": "+16505551212", "home_phone_number": "+16505551212"}
    assert meta_user_data(same) == {"ph": [sha("16505551212")]}


def test_google_user_data_from_the_pixels_personal_fields() -> None:
    personal = {
        "email_address": "Mary.Smith@GMAIL.com",
        "name": "Mary Smith",  # GA4 takes names only inside an address: not sent
        "home_phone_number": "+16505551313",
    }
    assert google_user_data(personal) == {
        "sha256_email_address": [sha("marysmith@gmail.com")],
        "sha256_phone_number": [sha("+16505551313")],
    }
    assert google_user_data({"name": "Mary Smith"}) == {}


def test_is_sha256_hex() -> None:
    assert is_sha256_hex(sha("x"))
    assert is_sha256_hex(sha("x").upper())
    assert not is_sha256_hex(sha("x")[:-1])
    assert not is_sha256_hex("g" * 64)
