"""Every ```python block of README.md runs, so a reader can copy any of them.

The blocks are found anew on each run, so a block added to the README is tested
without touching this file.  How a block runs depends on what it is:

* a block that defines ``test_`` functions is a test module: it runs through
  ``pytester`` in a scratch project, with the plugin loaded from its entry point
  as in a user's project, and every test in it must pass;
* any other block is a script: it runs in a fresh interpreter from the
  repository's root and must exit with status 0.

A line ``<!-- readme-test: KIND ... -->`` right before the opening fence (a blank
line between is allowed) says otherwise:

* ``fragment tests/FILE.py::TEST ...`` -- the block cannot run on its own (it uses
  names defined elsewhere, or a service the suite does not have); the tests named
  there (one or more, separated by spaces) cover what it shows.  The block must
  still be valid Python, and each named test must exist.
* ``conftest`` -- the block is a ``conftest.py``: it is loaded with a test that
  requests every fixture it defines.
* ``record`` -- the block is a test module on a cassette: it is recorded against a
  stand-in for EngageLab (an ``OTPServer`` that ``ENGAGELAB_BASE_URL`` points to),
  then replayed offline with that server stopped.
* ``pytest ARGS`` -- a test module run with these extra pytest arguments.

A block that fails says where it is (``README.md:LINE``, under which heading) and
how to mark it when it cannot run on its own.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import pytest
import vcr
import yaml

# pytester unloads the modules an in-process run imported.  The cassette code the outer
# process keeps would then read with one run's yaml classes another run's documents, and
# every run would import vcrpy and hypothesis (its plugin's summary) anew: imported here,
# they stay loaded across the runs below.
del hypothesis, vcr, yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: The directive kinds a ``<!-- readme-test: KIND ... -->`` line may name.
KINDS = ("fragment", "conftest", "record", "pytest")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<marker>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
_DIRECTIVE = re.compile(r"^[ \t]*<!--[ \t]*readme-test:(?P<text>.*?)-->[ \t]*$")
_HOW_TO_MARK = (
    "If the block cannot run on its own, put "
    "'<!-- readme-test: fragment tests/FILE.py::TEST -->' on the line before its fence, "
    "naming the test that covers it (see tests/test_readme.py)."
)


@dataclass(frozen=True)
class Block:
    """One fenced ```python block of the README."""

    line: int  # of the opening fence, 1-based
    heading: str
    code: str
    kind: str  # "module", "script", or a directive kind
    argument: str = ""

    @property
    def where(self) -> str:
        return f"README.md:{self.line} (under {self.heading!r})"


@dataclass(frozen=True)
class Parsed:
    blocks: list[Block]
    problems: list[str]


def _defines_tests(code: str) -> bool:
    tree = ast.parse(code)
    return any(
        (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"))
        or (isinstance(node, ast.ClassDef) and node.name.startswith("Test"))
        for node in tree.body
    )


def parse_readme(text: str) -> Parsed:
    """The python blocks of a Markdown text, with their directives, and the directives
    that belong to no python block (or name no known kind)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    heading = "the top"
    directive: tuple[int, str, str] | None = None  # (line, kind, argument)
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence is None:
            found = _DIRECTIVE.match(line)
            if found is not None:
                if directive is not None:
                    problems.append(f"README.md:{directive[0]}: directive followed by another one")
                kind, _, argument = found["text"].strip().partition(" ")
                if kind not in KINDS:
                    problems.append(
                        f"README.md:{index + 1}: unknown readme-test kind {kind!r}; "
                        f"use one of {', '.join(KINDS)}"
                    )
                directive = (index + 1, kind, argument.strip())
            elif line.strip():
                if directive is not None:
                    problems.append(
                        f"README.md:{directive[0]}: a readme-test directive must stand right "
                        "before a ```python fence"
                    )
                    directive = None
                if line.startswith("#"):
                    heading = line.lstrip("#").strip()
            index += 1
            continue
        marker = fence["marker"]
        end = index + 1
        while end < len(lines):
            closing = lines[end].strip()
            if closing.startswith(marker) and not closing.strip(marker[0]):
                break
            end += 1
        body = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"
        if fence["info"] == "python":
            if directive is not None:
                kind, argument = directive[1], directive[2]
            else:
                try:
                    kind = "module" if _defines_tests(body) else "script"
                except SyntaxError:
                    kind = "script"  # the test reports the SyntaxError with the block's line
                argument = ""
            blocks.append(Block(index + 1, heading, body, kind, argument))
        elif directive is not None:
            problems.append(
                f"README.md:{directive[0]}: the block after this directive is "
                f"```{fence['info']}, not ```python"
            )
        directive = None
        index = end + 1
    if directive is not None:
        problems.append(f"README.md:{directive[0]}: directive at the end, before no block")
    return Parsed(blocks, problems)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "block"


def _ids(blocks: list[Block]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for block in blocks:
        slug = _slug(block.heading)
        seen[slug] = seen.get(slug, 0) + 1
        ids.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return ids


PARSED = parse_readme(README.read_text(encoding="utf-8"))


# -- running a block ------------------------------------------------------------------------


def _inner_ini(pytester: pytest.Pytester) -> None:
    """The scratch project's ini: what a user's project would set for pytest-asyncio."""
    lines = ["[pytest]"]
    if importlib.util.find_spec("pytest_asyncio") is not None:
        lines.append("asyncio_default_fixture_loop_scope = function")
    pytester.makeini("\n".join(lines) + "\n")


def _run_module(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the scratch project as a careful user would: warnings are errors."""
    return pytester.runpytest("-p", "no:cacheprovider", "-W", "error", *args)


def _assert_all_passed(block: Block, result: pytest.RunResult, what: str) -> int:
    __tracebackhide__ = True
    outcomes = result.parseoutcomes()
    passed = outcomes.get("passed", 0)
    bad = {k: v for k, v in outcomes.items() if k not in ("passed", "warnings") and v}
    if result.ret != 0 or bad or not passed:
        pytest.fail(
            f"{block.where}: {what}: exit code {int(result.ret)}, outcomes {outcomes} "
            f"(the run's output is under 'Captured stdout call').\n{_HOW_TO_MARK}",
            pytrace=False,
        )
    return passed


def _module_file(pytester: pytest.Pytester, block: Block) -> None:
    pytester.makepyfile(**{f"test_readme_{_slug(block.heading).replace('-', '_')}": block.code})


def run_module(block: Block, pytester: pytest.Pytester, **_: object) -> None:
    _inner_ini(pytester)
    _module_file(pytester, block)
    _assert_all_passed(block, _run_module(pytester), "its tests did not all pass")


def run_pytest_args(block: Block, pytester: pytest.Pytester, **_: object) -> None:
    _inner_ini(pytester)
    _module_file(pytester, block)
    args = shlex.split(block.argument)
    result = _run_module(pytester, *args)
    _assert_all_passed(block, result, f"with {block.argument!r}, its tests did not all pass")


def run_script(block: Block, **_: object) -> None:
    done = subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{block.where}: the script exited with status {done.returncode}.\n{_HOW_TO_MARK}\n\n"
            f"{done.stdout}{done.stderr}",
            pytrace=False,
        )


def _fixture_names(code: str) -> list[str]:
    names = []
    for node in ast.parse(code).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if ast.unparse(target) in ("pytest.fixture", "fixture"):
                    names.append(node.name)
    return names


def run_conftest(block: Block, pytester: pytest.Pytester, **_: object) -> None:
    names = _fixture_names(block.code)
    assert names, f"{block.where}: marked conftest, but it defines no fixture"
    _inner_ini(pytester)
    pytester.makeconftest(block.code)
    pytester.makepyfile(
        test_uses_the_conftest=f"""
        import pytest

        @pytest.mark.parametrize("name", {names!r})
        def test_fixture_builds(request, name):
            request.getfixturevalue(name)
        """
    )
    passed = _assert_all_passed(block, _run_module(pytester), "its fixtures did not build")
    assert passed == len(names)


def run_record(
    block: Block,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    recording_with: Callable[[str, str], None],
    **_: object,
) -> None:
    from pytest_engagelab.doors.server import OTPServer
    from pytest_engagelab.emulator.core import Emulator

    key, secret = "readme-recording-key", "readme-recording-secret-0123"
    recording_with(key, secret)
    _inner_ini(pytester)
    _module_file(pytester, block)
    with OTPServer(Emulator(dev_key=key, dev_secret=secret)) as stand_in:
        monkeypatch.setenv("ENGAGELAB_DEV_KEY", key)
        monkeypatch.setenv("ENGAGELAB_DEV_SECRET", secret)
        monkeypatch.setenv("ENGAGELAB_BASE_URL", stand_in.url)
        recorded = _run_module(pytester, "--engagelab-record-mode=once")
        _assert_all_passed(block, recorded, "recording against a stand-in failed")
        assert stand_in.sent, f"{block.where}: recording sent nothing to the stand-in"
    cassettes = sorted((pytester.path / "cassettes").rglob("*.yaml"))
    assert cassettes, f"{block.where}: recording wrote no cassette"
    for name in ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET", "ENGAGELAB_BASE_URL"):
        monkeypatch.delenv(name)
    replayed = _run_module(pytester)  # the stand-in is gone: only the cassette answers
    _assert_all_passed(block, replayed, "replaying its cassette failed")


def check_fragment(block: Block, **_: object) -> None:
    compile(block.code, block.where, "exec")  # still valid Python
    citations = block.argument.split()
    if not citations or not all("::" in cited for cited in citations):
        pytest.fail(
            f"{block.where}: 'fragment' must name the tests that cover the block, as "
            f"tests/FILE.py::TEST (several separated by spaces), not {block.argument!r}",
            pytrace=False,
        )
    for cited in citations:
        _check_cited(block, cited)


def _check_cited(block: Block, cited: str) -> None:
    path, _, name = cited.partition("::")
    source = ROOT / path
    if not source.is_file():
        pytest.fail(f"{block.where}: the covering test's file {path} does not exist", pytrace=False)
    scope: list[ast.stmt] = ast.parse(source.read_text(encoding="utf-8")).body
    *classes, function = name.split("::")
    for cls in classes:
        found = [n for n in scope if isinstance(n, ast.ClassDef) and n.name == cls]
        if not found:
            pytest.fail(f"{block.where}: no class {cls} in {path}", pytrace=False)
        scope = found[0].body
    defined = {n.name for n in scope if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    if function not in defined:
        pytest.fail(f"{block.where}: the covering test {cited} does not exist", pytrace=False)


RUNNERS: dict[str, Callable[..., None]] = {
    "module": run_module,
    "script": run_script,
    "fragment": check_fragment,
    "conftest": run_conftest,
    "record": run_record,
    "pytest": run_pytest_args,
}


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("block", PARSED.blocks, ids=_ids(PARSED.blocks))
def test_the_readme_block_runs(
    block: Block,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    recording_with: Callable[[str, str], None],
) -> None:
    runner = RUNNERS.get(block.kind)
    if runner is None:
        pytest.fail(f"{block.where}: unknown readme-test kind {block.kind!r}", pytrace=False)
    runner(
        block, pytester=pytester, monkeypatch=monkeypatch, recording_with=recording_with
    )


def test_every_readme_test_directive_stands_before_a_python_block() -> None:
    assert PARSED.problems == []


# -- the parser itself ------------------------------------------------------------------------

_SAMPLE = """\
# Title

```python
def test_a(): pass
```

## Part

<!-- readme-test: fragment tests/test_x.py::test_y -->

```python
otp_mock.fail_next(5001)
```

- a list item:

  ```python
  print("indented in a list")
  ```

```console
$ pytest
```
<!-- readme-test: conftest -->
some text
```python
x = 1
```
<!-- readme-test: bogus -->
```python
y = 2
```
<!-- readme-test: record -->
```json
{}
```
"""


def test_the_parser_reads_kinds_headings_and_directives() -> None:
    parsed = parse_readme(_SAMPLE)
    assert [(b.line, b.heading, b.kind, b.argument) for b in parsed.blocks] == [
        (3, "Title", "module", ""),
        (11, "Part", "fragment", "tests/test_x.py::test_y"),
        (17, "Part", "script", ""),
        (26, "Part", "script", ""),  # the directive before it stood before text: dropped
        (30, "Part", "bogus", ""),
    ]
    assert parsed.blocks[2].code == 'print("indented in a list")\n'
    assert parsed.problems == [
        "README.md:24: a readme-test directive must stand right before a ```python fence",
        "README.md:29: unknown readme-test kind 'bogus'; use one of fragment, conftest, record, "
        "pytest",
        "README.md:33: the block after this directive is ```json, not ```python",
    ]
    assert _ids(parsed.blocks) == ["title", "part", "part-2", "part-3", "part-4"]
