"""The README's Delivery section stays true: its command lines are the real CLI's, and
the limits it states are the code's.

Every ``pixel-wsgi ...`` line of the section (in its code blocks, and in its inline code
that names a whole command) parses with the real click group, placeholders (``ID``,
``URL``, ``[--method GET|POST]``) filled in by each option's type. Every ``target add``
line then runs for real against a throwaway SQLite store, with the README's own values
where it gives them and working ones where it gives a placeholder: the target is added,
and its credentials show nowhere in ``target list``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import pytest

from pixel_wsgi.cli import cli
from pixel_wsgi.delivery.backoff import CAP, GIVE_UP_AFTER
from pixel_wsgi.delivery.targets import target_type
from pixel_wsgi.delivery.targets.postback import MACROS
from pixel_wsgi.models import DeliveryStatus, TargetKind

from .cli_helpers import Run, as_json, ok
from .conftest import SECRET

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : None if end < 0 else end]


SECTION = _section(README, "## Delivery")

#: The command lines of issue 11, which users and scripts type: kept exactly.
ISSUE_LINES = {
    TargetKind.POSTBACK: "pixel-wsgi target add --advertiser ID --kind postback --publisher ID"
    " --url TEMPLATE [--method GET|POST]",
    TargetKind.WEBHOOK: "pixel-wsgi target add --advertiser ID --kind webhook --url URL",
    TargetKind.META_CAPI: "pixel-wsgi target add --advertiser ID --kind meta_capi --pixel-id ID"
    " --access-token TOKEN [--test-event-code CODE] [--endpoint URL]",
    TargetKind.GOOGLE_ADS: "pixel-wsgi target add --advertiser ID --kind google_ads"
    " --customer-id ID --conversion-action NAME --client-id ID --client-secret SECRET"
    " --refresh-token TOKEN [--login-customer-id ID] [--validate-only] [--endpoint URL]"
    " [--token-endpoint URL]",
    TargetKind.GA4: "pixel-wsgi target add --advertiser ID --kind ga4 --measurement-id G-XXXX"
    " --api-secret SECRET [--validate] [--endpoint URL]",
    TargetKind.INVOCA_SIGNAL: "pixel-wsgi target add --advertiser ID --kind invoca_signal"
    " --api-token TOKEN --signal-name NAME --call-id-field FIELD [--endpoint URL]",
}

#: A placeholder the README writes for a value: capitals, digits, _ and -, or a choice.
_PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_-]*(?:\|[A-Z][A-Z0-9_-]*)*")


def _code_lines(section: str) -> Iterator[str]:
    """The lines of the section's code blocks, continuations joined, comments cut."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", section, flags=re.DOTALL):
        joined = re.sub(r"\s*\\\n\s*", " ", block)
        for line in joined.splitlines():
            yield re.sub(r"\s+#.*$", "", line).strip()


def readme_commands() -> list[str]:
    """Every whole ``pixel-wsgi`` command the section shows (``...`` elisions left out)."""
    prose = re.sub(r"```.*?```", "", SECTION, flags=re.DOTALL)
    inline = re.findall(r"`(pixel-wsgi [^`]+)`", re.sub(r"\s*\n\s*", " ", prose))
    found = [line for line in _code_lines(SECTION) if line.startswith("pixel-wsgi ")]
    found += [line for line in inline if "..." not in line]
    return list(dict.fromkeys(found))


def _expanded(line: str) -> list[str]:
    """The line's arguments after ``pixel-wsgi``, every ``[optional]`` part given."""
    return shlex.split(line.replace("[", " ").replace("]", " "))[1:]


def _leaf(args: list[str]) -> tuple[click.Command, list[str]]:
    """The command ``args`` name, and the arguments left for it."""
    context = click.Context(cli, info_name="pixel-wsgi")
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group):
        if rest[:1] == ["--storage"]:
            rest = rest[2:]
            continue
        name = rest.pop(0)
        found = command.get_command(context, name)
        assert found is not None, f"pixel-wsgi has no command {name!r} here: {args}"
        command = found
        if isinstance(command, click.Group):
            context = click.Context(command, info_name=name, parent=context)
    return command, rest


def _sample(param: click.Parameter, placeholder: str) -> str:
    """A value of ``param``'s type standing for ``placeholder``."""
    kind = param.type
    if isinstance(kind, click.Choice):
        wanted = placeholder.split("|")[0]
        return wanted if wanted in kind.choices else str(kind.choices[0])
    if isinstance(kind, click.DateTime):
        return "2026-11-01"
    if isinstance(kind, (click.IntRange, click.types.IntParamType)):
        return "1"
    return placeholder.lower()


def filled(line: str, values: dict[str, str] | None = None) -> tuple[click.Command, list[str]]:
    """The command of ``line`` and its arguments, each placeholder replaced by
    ``values[option]`` when given, else by a value of the option's type."""
    given = _expanded(line)
    command, rest = _leaf(given)
    prefix = given[: len(given) - len(rest)]
    options = {name: p for p in command.params for name in [*p.opts, *p.secondary_opts]}
    positional = [p for p in command.params if isinstance(p, click.Argument)]
    out: list[str] = []
    index = 0
    while index < len(rest):
        token = rest[index]
        index += 1
        if token.startswith("--"):
            option = options.get(token)
            assert option is not None, f"{token} is not an option of {line!r}"
            out.append(token)
            if isinstance(option, click.Option) and (option.is_flag or option.count):
                continue
            value = rest[index]
            index += 1
            if _PLACEHOLDER.fullmatch(value):
                value = (values or {}).get(token) or _sample(option, value)
            out.append(value)
        else:
            argument = positional.pop(0)
            out.append(_sample(argument, token) if _PLACEHOLDER.fullmatch(token) else token)
    return command, [*prefix, *out]


# -- the section holds the issue's lines and the code's facts -----------------------


def test_the_section_exists_once_and_the_drafts_are_gone() -> None:
    assert README.count("\n## Delivery\n") == 1
    root = Path(__file__).resolve().parent.parent
    assert not list(root.glob("docs/delivery-*.md"))


@pytest.mark.parametrize("kind", list(TargetKind), ids=lambda kind: kind.value)
def test_each_kind_has_a_subsection_with_the_issues_line(kind: TargetKind) -> None:
    headings = re.findall(r"\n### [^\n]*\(`([a-z0-9_]+)`\)\n", SECTION)
    assert kind.value in headings
    start = SECTION.index(f"(`{kind.value}`)\n")
    subsection = SECTION[start : SECTION.find("\n### ", start)]
    assert f"```\n{ISSUE_LINES[kind]}\n```" in subsection


def test_every_outcome_is_named() -> None:
    for status in DeliveryStatus:
        assert f"`{status.value}`" in SECTION, status


def test_the_limits_are_the_codes() -> None:
    hour, day = timedelta(hours=1), timedelta(days=1)
    meta = target_type(TargetKind.META_CAPI)
    ga4 = target_type(TargetKind.GA4)
    google = target_type(TargetKind.GOOGLE_ADS)
    assert meta.max_event_age and ga4.max_event_age and google.min_event_age
    stated = [
        f"at most {CAP // hour} hours apart",
        f"{GIVE_UP_AFTER // day} days after it was queued",
        f"up to {meta.batch_limit:,} events a request",
        f"more than {meta.max_event_age // day} days ago",
        f"more than {ga4.max_event_age // hour} hours ago",
        f"at most {google.batch_limit:,} rows",
        f"less than {google.min_event_age // hour} hours old",
    ]
    for words in stated:
        assert words in SECTION


def test_every_postback_macro_is_documented() -> None:
    for name in MACROS:
        if re.fullmatch(r"sub[2-4]", name):
            assert "`{sub1}`..`{sub5}`" in SECTION
        else:
            assert f"`{{{name}}}`" in SECTION, name


# -- its command lines are the CLI's ----------------------------------------------


def test_the_section_shows_commands() -> None:
    commands = readme_commands()
    assert set(ISSUE_LINES.values()) <= set(commands)
    for name in ("deliver", "deliveries", "retry", "skip", "target list", "target resume"):
        assert any(c.startswith(f"pixel-wsgi {name}") for c in commands), name


@pytest.mark.parametrize("line", readme_commands(), ids=lambda line: line[11:])
def test_every_command_parses(line: str) -> None:
    command, args = filled(line)
    leaf, rest = _leaf(args)
    assert leaf is command
    leaf.make_context(leaf.name or "", rest)  # raises click.UsageError for a bad line


#: Working values for the options the README leaves as placeholders in ``target add``.
WORKING = {
    "--advertiser": "1",
    "--publisher": "1",
    "--method": "POST",
    "--pixel-id": "1234567890",
    "--access-token": "EAAB-readme-access-token-1",
    "--test-event-code": "TEST4821",
    "--endpoint": "http://127.0.0.1:9",
    "--customer-id": "123-456-7890",
    "--conversion-action": "555",
    "--client-id": "readme-client.apps.googleusercontent.com",
    "--client-secret": "readme-client-secret-1",
    "--refresh-token": "1//readme-refresh-token-1",
    "--login-customer-id": "111-222-3333",
    "--token-endpoint": "http://127.0.0.1:9",
    "--measurement-id": "G-README1",
    "--api-secret": "readme-api-secret-1",
    "--api-token": "readme-invoca-token-1",
    "--signal-name": "Sale",
    "--call-id-field": "invoca_call",
}
#: The options whose values are credentials: never shown after ``target add``.
SECRET_OPTIONS = (
    "--access-token",
    "--client-secret",
    "--refresh-token",
    "--api-secret",
    "--api-token",
)
#: The options of ``target add`` that are not the target's settings.
NOT_SETTINGS = ("--advertiser", "--kind", "--publisher", "--history-from")
URLS = {
    "postback": "https://publisher.example/postback?click={sub1}&amount={sale_amount}",
    "webhook": "http://127.0.0.1:9/hook",
}


def _target_adds() -> list[str]:
    return [line for line in readme_commands() if line.startswith("pixel-wsgi target add ")]


@pytest.mark.parametrize("line", _target_adds(), ids=lambda line: line[11:])
def test_every_target_add_line_adds_a_target(
    line: str, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXEL_WSGI_SECRET_KEY", SECRET)
    kind = _expanded(line)[_expanded(line).index("--kind") + 1]
    _, args = filled(line, {**WORKING, "--url": URLS.get(kind, "")})
    numbers = {
        name: int(args[args.index(name) + 1])
        for name in ("--advertiser", "--publisher")
        if name in args
    }
    for number in range(numbers["--advertiser"]):
        ok(run("advertiser", "add", f"Advertiser {number + 1}"))
    for number in range(numbers.get("--publisher", 0)):
        ok(run("publisher", "add", f"Publisher {number + 1}"))

    added = as_json(run(*args, "--json"))
    assert added["kind"] == kind and added["id"] == 1
    assert ("secret" in added) == (kind == "webhook")

    secrets = [args[args.index(name) + 1] for name in SECRET_OPTIONS if name in args]
    secrets += [added["secret"]] if kind == "webhook" else []
    assert secrets or kind == "postback"
    listed = [run("target", "list").stdout, ok(run("target", "list", "--json"))]
    for secret in secrets:
        for output in listed:
            assert secret not in output
    (target,) = json.loads(listed[1])
    assert target["status"] == "active" and target["kind"] == kind
    # Every option of the line is a setting of the target, under the option's name.
    settings = {}
    for index, name in enumerate(args):
        if name.startswith("--") and name not in (*NOT_SETTINGS, *SECRET_OPTIONS):
            given = args[index + 1] if index + 1 < len(args) else "--"
            settings[name[2:].replace("-", "_")] = "1" if given.startswith("--") else given
    assert target["settings"] == settings


def test_a_wrong_line_would_fail() -> None:
    with pytest.raises(AssertionError, match="--measurement is not an option"):
        filled("pixel-wsgi target add --advertiser ID --kind ga4 --measurement G-XXXX")
    leaf, rest = _leaf(filled("pixel-wsgi target add --kind ga4 --api-secret SECRET")[1])
    with pytest.raises(click.UsageError, match="advertiser"):
        leaf.make_context(leaf.name or "", rest)
