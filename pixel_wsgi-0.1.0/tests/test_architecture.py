"""The arrows of ARCHITECTURE.md, read from the source: what may import what.

The import graph is built with :mod:`ast` from ``src/pixel_wsgi`` (no module is
executed). An arrow is any import that runs: at module level or inside a
function (a lazy import is still a dependency), but not one under
``if TYPE_CHECKING:``, which only the type checker follows. Importing a module
also runs its packages' ``__init__``; those implied arrows are left out, or
every package that imports its own submodules would be a cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "pixel_wsgi"

#: The kernel: plain data and rules every part may use, importing nothing of ours
#: but each other.
KERNEL = frozenset(
    f"{ROOT}.{name}"
    for name in ("models", "errors", "clock", "currencies", "money", "columns", "entities")
)
#: Third-party and standard modules that speak HTTP or talk to a database.
WEB_OR_DB = frozenset(
    {"werkzeug", "itsdangerous", "wsgiref", "sqlite3", "psycopg", "psycopg2", "sqlite_utils"}
)
#: What Storage must never reach: the parts above it.
ABOVE_STORAGE = (
    f"{ROOT}.endpoints",
    f"{ROOT}.delivery",
    f"{ROOT}.cli",
    f"{ROOT}.dashboard",
    f"{ROOT}.demo",
    f"{ROOT}.serving",
    f"{ROOT}.middleware",
    f"{ROOT}.settings",
    f"{ROOT}.integrations",
    f"{ROOT}.testing",
)
# SQL statements as they start in a string literal; prose rarely writes them in capitals.
SQL_RE = re.compile(
    r"\b(?:SELECT\s+[\w*(]|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(?:TABLE|"
    r"(?:UNIQUE\s+)?INDEX)|ALTER\s+TABLE|DROP\s+(?:TABLE|INDEX))"
)


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    #: our modules it imports (at run time, when imported or later in a function)
    imports: set[str] = field(default_factory=set)
    #: the top-level names of everything else it imports (at run time)
    external: set[str] = field(default_factory=set)
    #: what of both importing it runs: not the imports inside functions
    eager: set[str] = field(default_factory=set)


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _runtime_imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement but those under ``if TYPE_CHECKING:``, and whether it
    runs when the module is imported (False: inside a function)."""

    def visit(node: ast.AST, eager: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield from visit(child, eager)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, eager
        inner = eager and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, True)


@cache
def graph() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        name, is_package = _module_name(path)
        modules[name] = Module(name, path, is_package)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        for node, eager in _runtime_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # "from .pkg import sub" imports the submodule; "from .mod import name" the module.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                if target == ROOT or target.startswith(f"{ROOT}."):
                    if target in modules and target != module.name:
                        module.imports.add(target)
                        if eager:
                            module.eager.add(target)
                else:
                    module.external.add(target.partition(".")[0])
                    if eager:
                        module.eager.add(target.partition(".")[0])
    return modules


def _packages(name: str) -> Iterator[str]:
    while "." in name:
        name = name.rpartition(".")[0]
        yield name


def reach(start: str) -> set[str]:
    """What ``start`` may run: itself, what it imports (lazily too), and all that
    importing those runs (their packages' ``__init__`` included), ours and others'."""
    modules = graph()
    seen = {start}
    todo = [start]
    while todo:
        current = todo.pop()
        # The start's own lazy imports count; past it, what importing runs.
        targets = modules[current].imports | modules[current].external
        if current != start:
            targets = set(modules[current].eager)
        if current in modules:
            targets |= set(_packages(current))
        for target in targets:
            if target not in seen:
                seen.add(target)
                if target in modules:
                    todo.append(target)
    return seen


def cycles() -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    modules = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in sorted(modules[name].imports):
            if target not in index:
                connect(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == name:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for name in sorted(modules):
        if name not in index:
            connect(name)
    return found


def _in(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def test_the_graph_sees_the_package() -> None:
    modules = graph()
    assert f"{ROOT}.middleware" in modules
    assert f"{ROOT}.ledger.ledger" in modules[f"{ROOT}.middleware"].imports
    assert "werkzeug" in modules[f"{ROOT}.attribution.cookie"].external


def test_no_two_modules_import_each_other() -> None:
    found = cycles()
    assert found == set(), sorted(sorted(cycle) for cycle in found)


def test_nothing_imports_the_cli() -> None:
    # ``python -m pixel_wsgi`` (__main__) is the CLI's own entry point.
    importers = {
        module.name
        for module in graph().values()
        if not _in(module.name, f"{ROOT}.cli", f"{ROOT}.__main__")
        and any(_in(target, f"{ROOT}.cli") for target in module.imports)
    }
    assert importers == set()


@pytest.mark.parametrize(
    "part",
    [
        pytest.param(f"{ROOT}.params", id="params"),
        pytest.param(f"{ROOT}.ledger", id="ledger"),
        *(pytest.param(name, id=name.rpartition(".")[2]) for name in sorted(KERNEL)),
    ],
)
def test_params_ledger_and_kernel_speak_no_http_and_no_sql_driver(part: str) -> None:
    offenders = {}
    for name in graph():
        if _in(name, part):
            reached = reach(name) & WEB_OR_DB
            if reached:
                offenders[name] = sorted(reached)
    assert offenders == {}


def test_the_kernel_imports_nothing_but_the_kernel() -> None:
    offenders = {name: sorted(graph()[name].imports - KERNEL) for name in KERNEL if name in graph()}
    assert {name: found for name, found in offenders.items() if found} == {}


def _sql_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.value[:80]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and SQL_RE.search(node.value)
    ]


def test_only_storage_writes_sql() -> None:
    offenders = {
        name: found
        for name, module in graph().items()
        if not _in(name, f"{ROOT}.storage")
        if (found := _sql_strings(module.path))
    }
    assert offenders == {}


def test_the_sql_detector_sees_sql() -> None:
    assert SQL_RE.search("SELECT id FROM transactions WHERE advertiser_id = ?")
    assert SQL_RE.search("INSERT INTO visits (link_id) VALUES (?)")
    assert not SQL_RE.search("select the advertiser you want")
    assert _sql_strings(SRC / ROOT / "storage" / "sqlite.py")


def test_storage_reaches_no_part_above_it() -> None:
    offenders = {
        name: sorted(target for target in reach(name) if _in(target, *ABOVE_STORAGE))
        for name in graph()
        if _in(name, f"{ROOT}.storage")
    }
    assert {name: found for name, found in offenders.items() if found} == {}
