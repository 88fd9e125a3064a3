"""Start-up cost: loading the plugin imports only what its hooks need; the public API
is imported on first access (PEP 562) and still reads like plain attributes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_engagelab
from pytest_engagelab import cassettes
from pytest_engagelab.cassettes import drift as _drift

HEAVY = (
    "httpx",
    "respx",
    "vcr",
    "pytest_engagelab.emulator.core",
    "pytest_engagelab.doors.controls",
    "pytest_engagelab.cassettes.drift",
    "pytest_engagelab.client",
    "pytest_engagelab.doors.mock",
    "pytest_engagelab.doors.server",
)


def test_loading_the_plugin_imports_none_of_the_heavy_modules() -> None:
    script = (
        "import sys, pytest_engagelab.plugin\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


#: What a pytest run that uses nothing of the kit imports of it: the hooks, what they
#: share (options, settings, collection), and the guard (installed at start-up, so that
#: collection is guarded too).  Not the emulator, not even its defaults.
AT_START_UP = [
    "pytest_engagelab",
    "pytest_engagelab._plugin_shared",
    "pytest_engagelab.doors",
    "pytest_engagelab.doors.guard",
    "pytest_engagelab.plugin",
]


def _modules_of_ours(pytester: pytest.Pytester, *args: str) -> list[str]:
    """The modules of this package a whole pytest run (in a new process) has imported."""
    pytester.makepyfile(
        """
        import sys

        def test_modules():
            ours = sorted(m for m in sys.modules if m.startswith("pytest_engagelab"))
            print("modules of ours:", ours)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *args)
    result.assert_outcomes(passed=1)
    (line,) = [line for line in result.outlines if "modules of ours:" in line]
    listed = line.partition("modules of ours:")[2].strip().rstrip(".")
    return ast.literal_eval(listed)  # type: ignore[no-any-return]


def test_a_run_that_uses_nothing_of_the_kit_imports_only_the_hooks_and_the_guard(
    pytester: pytest.Pytester,
) -> None:
    for name in ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET", "ENGAGELAB_BASE_URL"):
        pytester._monkeypatch.delenv(name, raising=False)
    assert _modules_of_ours(pytester) == AT_START_UP


def test_an_engagelab_ini_option_is_read_and_checked_at_start_up(
    pytester: pytest.Pytester,
) -> None:
    """With an ``engagelab_*`` option set, the settings are built when pytest configures
    (a mistake stops the run before any test: tests/test_plugin.py), not at first use."""
    pytester.makeini("[pytest]\nengagelab_seed = 7\n")
    assert "pytest_engagelab.emulator.settings" in _modules_of_ours(pytester)


def test_the_plugin_module_holds_only_hooks_and_fixtures() -> None:
    """pytest looks at every name of a plugin module for hooks and fixtures at each
    start-up: the plugin defines its hooks and fixtures and nothing else (the work is in
    ``_plugin_shared`` and ``_plugin_impl``), and imports only what they need."""
    source = Path(pytest_engagelab.__file__).with_name("plugin.py").read_text(encoding="utf-8")
    hooks, fixtures, other = [], [], []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            marks = [ast.unparse(d) for d in node.decorator_list]
            if any(mark.startswith("pytest.fixture") for mark in marks):
                fixtures.append(node.name)
            elif node.name.startswith("pytest_"):
                hooks.append(node.name)
            else:
                other.append(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            other.extend(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            continue  # not run
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            other.append(ast.unparse(node)[:60])  # an assignment, a class: belongs elsewhere
    assert {"pytest_addoption", "pytest_configure", "pytest_collection_modifyitems"} <= set(hooks)
    assert {"otp_mock", "otp_server", "engagelab_cassette", "engagelab_settings"} <= set(fixtures)
    assert sorted(other) == ["Any", "TYPE_CHECKING", "_shared", "annotations", "pytest"]


def _fixtures_defined_in(module: str) -> set[str]:
    path = Path(pytest_engagelab.__file__).with_name(f"{module}.py")
    return {
        node.name
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d).startswith("pytest.fixture") for d in node.decorator_list)
    }


def _fixtures_listed(pytester: pytest.Pytester) -> dict[str, set[str]]:
    """What ``pytest --fixtures -v`` lists from each module of ours."""
    result = pytester.runpytest("--fixtures", "-v", "-p", "no:cacheprovider")
    listed: dict[str, set[str]] = {}
    for line in result.outlines:
        if " -- " in line and "pytest_engagelab" in line:
            name, _, where = line.partition(" -- ")
            listed.setdefault(Path(where.split(":")[0]).stem, set()).add(name.split(" ")[0])
    return listed


def test_the_plugins_fixtures_are_what_pytest_finds(pytester: pytest.Pytester) -> None:
    """Every fixture of the module is one pytest registers (``--fixtures -v``); the private
    ones are not registered when no test needs them."""
    pytester.makepyfile("def test_plain():\n    pass\n")
    assert _fixtures_listed(pytester) == {"plugin": _fixtures_defined_in("plugin")}


def test_the_private_fixtures_are_registered_when_a_marked_test_needs_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.engagelab(seed=1)
        def test_marked(request):
            assert request.fixturenames[0] == "_engagelab_marker_check"
            assert request.config.pluginmanager.has_plugin("engagelab-private-fixtures")
        """
    )
    assert _fixtures_listed(pytester) == {
        "plugin": _fixtures_defined_in("plugin"),
        "_plugin_fixtures": _fixtures_defined_in("_plugin_fixtures"),
    }
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


RESOLVE = """
import importlib, json, pytest_engagelab
found = {}
for name in pytest_engagelab.__all__:
    try:
        value = getattr(pytest_engagelab, name)  # AttributeError if the lazy table misses it
    except AttributeError as exc:
        found[name] = f"AttributeError: {exc}"
        continue
    if callable(value):  # a class or function: the very object its module defines
        same = getattr(importlib.import_module(value.__module__), name, None) is value
        found[name] = "same object" if same else f"not the object of {value.__module__}"
    else:
        found[name] = "text" if isinstance(value, str) and value else repr(value)
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def resolved() -> dict[str, str]:
    """What each public name resolves to, asked in a fresh interpreter: in this one,
    pytester's in-process runs restore ``sys.modules`` afterwards and drop modules they
    imported, so an identity check here would depend on which tests ran before it."""
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE], capture_output=True, text=True, check=True, timeout=60
    )
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize("name", sorted(pytest_engagelab.__all__))
def test_every_public_name_resolves_to_the_object_of_its_module(
    name: str, resolved: dict[str, str]
) -> None:
    expected = "same object" if callable(getattr(pytest_engagelab, name)) else "text"
    assert resolved[name] == expected


def test_from_import_and_attribute_access_give_the_same_class() -> None:
    from pytest_engagelab import OTPMock
    from pytest_engagelab.doors.mock import OTPMock as Direct

    assert OTPMock is Direct is pytest_engagelab.OTPMock


def test_dir_lists_the_public_api_and_unknown_names_raise() -> None:
    assert set(pytest_engagelab.__all__) <= set(dir(pytest_engagelab))
    with pytest.raises(AttributeError, match="no attribute 'NotThere'"):
        pytest_engagelab.NotThere  # noqa: B018


def test_the_drift_names_of_cassettes_are_imported_on_first_use() -> None:
    assert cassettes.check_drift is _drift.check_drift
    assert cassettes.DriftReport is _drift.DriftReport
    assert cassettes.InteractionDrift is _drift.InteractionDrift
    with pytest.raises(AttributeError):
        cassettes.not_a_name  # noqa: B018


def test_the_import_paths_users_already_use_keep_working() -> None:
    from pytest_engagelab.cassettes import read_cassette
    from pytest_engagelab.doors.mock import OTPMock as DoorMock
    from pytest_engagelab.doors.server import OTPServer as DoorServer
    from pytest_engagelab.mock import OTPMock
    from pytest_engagelab.server import OTPServer

    assert OTPMock is DoorMock
    assert OTPServer is DoorServer
    assert callable(read_cassette)
    assert read_cassette.__module__.startswith("pytest_engagelab.cassettes")


@pytest.mark.parametrize(
    "module",
    [
        "pytest_engagelab.emulator.core",
        "pytest_engagelab.emulator.codes",
        "pytest_engagelab.emulator.journal",
        "pytest_engagelab.emulator.templates",
        "pytest_engagelab.emulator.clock",
        "pytest_engagelab.emulator.settings",
        "pytest_engagelab.magic",
    ],
)
def test_the_core_imports_no_http_library_socket_or_vcrpy(module: str) -> None:
    doors = ("httpx", "respx", "vcr", "socket", "h11", "yaml", "pytest")
    script = f"import sys, {module}\nprint(sorted(m for m in {doors!r} if m in sys.modules))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
