"""Shared test configuration: pytester for plugin tests; deep fuzzing only on request;
and a last check that no file the suite wrote holds a credential it recorded with."""

from __future__ import annotations

import base64
import errno
import importlib.util
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx

pytest_plugins = ["pytester"]


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, with pytest-asyncio configured in its runs as a user's project would.

    pytest-asyncio is installed for the README's async section; unconfigured, it warns
    at the start of every run of a scratch project (and fails runs under ``-W error``).
    """
    if importlib.util.find_spec("pytest_asyncio") is not None:
        given = os.environ.get("PYTEST_ADDOPTS", "")
        option = "-o asyncio_default_fixture_loop_scope=function"
        monkeypatch.setenv("PYTEST_ADDOPTS", f"{given} {option}".strip())
    return pytester


@pytest.fixture
def cassette_inner_runs(monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester) -> None:
    """Inner pytest runs of the cassette tests: quick (no hypothesis or cache plugin, the
    suite's own inner-run options kept), no recording credentials from the outer
    environment, and an empty ini of their own."""
    given = os.environ.get("PYTEST_ADDOPTS", "")
    monkeypatch.setenv("PYTEST_ADDOPTS", f"{given} -p no:hypothesispytest -p no:cacheprovider")
    for name in ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET", "ENGAGELAB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini("[pytest]\n")


@pytest.fixture
def accept_out_of_fds(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], list[float]]:
    """``accept_out_of_fds(seconds)``: from now on ``socket.accept()`` fails with EMFILE for
    ``seconds`` after its first call, then works; returns the list of call times, which
    grows as the listener retries.  ``monkeypatch.undo()`` restores ``accept``."""

    def patch(seconds: float) -> list[float]:
        calls: list[float] = []
        original = socket.socket.accept

        def accept(self: socket.socket) -> tuple[socket.socket, Any]:
            calls.append(time.monotonic())
            if calls[-1] - calls[0] < seconds:
                raise OSError(errno.EMFILE, "Too many open files")
            return original(self)

        monkeypatch.setattr(socket.socket, "accept", accept)
        return calls

    return patch


@pytest.fixture
def thread_tracebacks() -> Iterator[list[str]]:
    """Every exception that escapes a thread during the test; none may (the socket doors'
    tests use it: a connection must never end in a thread's traceback)."""
    caught: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        caught.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}")

    threading.excepthook = hook
    try:
        yield caught
    finally:
        threading.excepthook = previous
    assert caught == []


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (``@pytest.mark.anyio``)."""
    return "asyncio"


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which client a test drives: ``OTPClient`` or ``AsyncOTPClient``."""
    return str(request.param)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """A respx router for the EngageLab base URL, for tests of the client on its own."""
    with respx.mock(base_url="https://otp.api.engagelab.cc", assert_all_called=False) as mock:
        yield mock

#: Every form of every credential a test recorded cassettes with (see recording_with).
_RECORDED_WITH: set[str] = set()


@pytest.fixture
def recording_with() -> Callable[[str, str], None]:
    """Note credentials a test records with: the session ends by scanning for them."""

    def register(dev_key: str, dev_secret: str) -> None:
        pair = f"{dev_key}:{dev_secret}"
        forms = {dev_key, dev_secret, pair, base64.b64encode(pair.encode()).decode()}
        _RECORDED_WITH.update(forms)

    return register


@pytest.fixture(scope="session", autouse=True)
def _no_recorded_secret_in_any_written_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """After the session: search every file the suite wrote (cassettes, logs, leftovers)."""
    yield
    if not _RECORDED_WITH:
        return
    hits = []
    for path in tmp_path_factory.getbasetemp().rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits.extend(
                f"{path}: {form[:4]}..." for form in sorted(_RECORDED_WITH) if form.encode() in data
            )
    assert not hits, "recorded credentials were written to disk:\n" + "\n".join(hits)


def pytest_configure(config: pytest.Config) -> None:
    """Inner pytest runs (pytester) skip schemathesis's plugin: pytester drops the modules an
    inner run imported, so each run would import it anew (0.4 s; only
    tests/test_schemathesis.py uses it, see addopts in pyproject.toml)."""
    addopts = os.environ.get("PYTEST_ADDOPTS", "")
    if "no:schemathesis" not in addopts:
        os.environ["PYTEST_ADDOPTS"] = f"{addopts} -p no:schemathesis".strip()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``@pytest.mark.deep`` tests unless ``-m`` names ``deep``."""
    if "deep" in (config.getoption("markexpr") or ""):
        return
    deep = [item for item in items if item.get_closest_marker("deep") is not None]
    if deep:
        config.hook.pytest_deselected(items=deep)
        items[:] = [item for item in items if item.get_closest_marker("deep") is None]
