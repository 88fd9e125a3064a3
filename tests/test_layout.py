"""The layout keeps its promises: no import circles, one recipient parser, one Basic auth."""

from __future__ import annotations

import ast
import base64
from pathlib import Path

import pytest

from pytest_engagelab.cassettes import Scrubber, redact_recipients
from pytest_engagelab.emulator import recipients
from pytest_engagelab.emulator.auth import basic_authorization, basic_token, parse_basic

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_engagelab"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """Every project module this file imports when it runs (at any depth, function-level
    imports included), leaving out ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in modules:
                    found.add(full)
                elif node.module in modules:
                    found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_module_of_the_package_imports_itself_through_a_circle() -> None:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), set(files)) - {name}
        for name, path in files.items()
    }
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def walk(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                walk(target, stack)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [])
    assert circles == []


def test_the_core_imports_nothing_from_the_doors_or_the_cassettes() -> None:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    for name, path in files.items():
        if name.startswith("pytest_engagelab.emulator"):
            imported = _imports(ast.parse(path.read_text(encoding="utf-8")), set(files))
            outside = {
                m
                for m in imported
                if not m.startswith("pytest_engagelab.emulator") and m != "pytest_engagelab.magic"
            }
            assert outside == set(), name


@pytest.mark.parametrize(
    "address",
    [
        "josé@exämple.com",
        "o'brien@example.ie",
        "first.last+tag@sub.example.co.uk",
        "用户@例子.中国",
    ],
)
def test_validation_and_redaction_read_an_address_the_same_way(address: str) -> None:
    assert recipients.is_email(address)
    text = f'{{"to":"{address}","template":{{"id":"signup"}}}}'
    redacted = redact_recipients(text)
    assert address not in redacted
    assert redacted.startswith('{"to":"recipient-')
    assert redacted.endswith('@example.invalid","template":{"id":"signup"}}')
    # the scrubber of a recording that redacts recipients does the same
    scrubber = Scrubber("key-abcdef", "secret-abcdef", redact_recipients=True)
    assert address not in scrubber.text(text)


def test_a_quoted_local_part_is_redacted_whole_in_json_text() -> None:
    text = '{"to":"\\"john doe\\"@example.com"}'
    assert recipients.is_email('"john doe"@example.com')
    redacted = redact_recipients(text)
    assert "john" not in redacted
    assert "example.com" not in redacted


@pytest.mark.parametrize("to", ["not-an-address", "a@b", "@example.com", ""])
def test_what_is_not_an_address_is_neither_valid_nor_redacted(to: str) -> None:
    assert not recipients.is_email(to)
    assert redact_recipients(f'"{to}"') == f'"{to}"'


def test_an_address_inside_a_longer_string_is_refused_but_still_redacted() -> None:
    assert not recipients.is_email("a b@example.com")
    assert redact_recipients('"a b@example.com"').startswith('"a recipient-')


def test_phone_numbers_are_e164_for_both() -> None:
    assert recipients.is_phone("+6591234567")
    assert not recipients.is_phone("6591234567")
    assert not recipients.is_phone("+0591234567")
    assert redact_recipients('"+6591234567"').startswith('"+1555')
    assert redact_recipients('"+10000005001"') == '"+10000005001"'  # magic numbers stay


def test_basic_auth_is_built_and_parsed_in_one_place() -> None:
    header = basic_authorization("dev-kéy", "s3cr:et")
    assert header == "Basic " + base64.b64encode("dev-kéy:s3cr:et".encode()).decode()
    assert header == "Basic " + basic_token("dev-kéy", "s3cr:et")
    assert parse_basic(header) == ("dev-kéy", "s3cr:et")
    assert parse_basic("Bearer abc") is None
    assert parse_basic("Basic !!!") is None
    assert parse_basic("Basic " + base64.b64encode(b"no-colon").decode()) is None


def test_every_module_over_400_lines_says_why_in_its_docstring() -> None:
    long_and_silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 400:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if "Why this module is long:" not in docstring:
                long_and_silent.append(str(path.relative_to(PACKAGE.parent)))
    assert long_and_silent == [], f"no 'Why this module is long:' in {long_and_silent}"
