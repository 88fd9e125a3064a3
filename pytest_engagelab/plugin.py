"""The pytest plugin: options, markers and fixtures.  Registered through ``pytest11``.

Nothing here imports vcrpy: only a test that records or replays a cassette pays
for it.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Final

import pytest

from pytest_engagelab.emulator.settings import (
    INI_OPTIONS,
    MARKER_KEYWORDS,
    EngageLabSettings,
    SettingsError,
    settings_from_ini,
)

# -- start-up cost: the emulator, its doors and the clients (with httpx, respx, asyncio) are
# imported by the fixtures that use them, not when pytest loads the plugin (bench row 3).
if TYPE_CHECKING:
    from pytest_engagelab.cassettes.credentials import Credentials
    from pytest_engagelab.cassettes.recorder import ActiveCassette
    from pytest_engagelab.cassettes.settings import CassetteSettings
    from pytest_engagelab.client import AsyncOTPClient, OTPClient
    from pytest_engagelab.doors.controls import EmulatorControls
    from pytest_engagelab.doors.mock import OTPMock
    from pytest_engagelab.doors.server import OTPServer

# -- cassettes ---------------------------------------------------------------------------------

_CASSETTES_KEY = pytest.StashKey["CassetteSettings"]()
#: ``pytest_engagelab.cassettes.settings.RECORD_MODES`` (a test keeps them equal), here so
#: that loading the plugin does not import the cassettes.
_RECORD_MODES: Final = ("none", "once", "new_episodes", "all", "rewrite")
#: The variables the cassette settings read (``pytest_engagelab.cassettes.credentials``).
_CASSETTE_ENVIRON: Final = ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET", "ENGAGELAB_BASE_URL")
_CALL_REPORT_KEY = pytest.StashKey[pytest.TestReport]()
_ACTIVE_KEY = pytest.StashKey["ActiveCassette"]()
_CASSETTE_MARKER = (
    "engagelab_cassette(name=None): run this test on a vcrpy cassette (YAML, under the ini "
    "option engagelab_cassette_dir): otp_client, otp_async_client and any httpx request go "
    "through it to the real EngageLab base URL; --engagelab-record-mode says whether it records."
)
# -- end cassettes -----------------------------------------------------------------------------

_SETTINGS_KEY = pytest.StashKey[EngageLabSettings]()

_ENGAGELAB_MARKER = (
    "engagelab(*, dev_key=..., dev_secret=..., base_url=..., strict_templates=False, "
    "seed=None, journal_limit=10000, assert_all_fired=True, key_status='active', "
    "forbidden_endpoints=(), rate_limit=True, max_verify_attempts=None): configure the "
    "EngageLab emulator behind otp_mock, otp_client and otp_server for this test (keyword-only; "
    "overrides the engagelab_* ini options)."
)


# -- options ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("engagelab", "EngageLab OTP emulator and cassettes (pytest-engagelab)")
    for option in INI_OPTIONS:
        parser.addini(option.name, help=option.help, type="string", default="")
    # -- cassettes -----------------------------------------------------------------------------
    group.addoption(
        "--engagelab-record-mode",
        dest="engagelab_record_mode",
        choices=_RECORD_MODES,
        default=None,
        help="cassette record mode: none (default: replay only), once, new_episodes, all, "
        "rewrite (record the cassette anew); recording needs ENGAGELAB_DEV_KEY and "
        "ENGAGELAB_DEV_SECRET",
    )
    group.addoption(
        "--engagelab-check-drift",
        dest="engagelab_check_drift",
        action="store_true",
        default=False,
        help="instead of the tests, replay every interaction of the cassette directory through "
        "the emulator and fail each one whose answer differs (status, error code, body shape)",
    )
    parser.addini(
        "engagelab_cassette_dir",
        help="directory of the engagelab cassettes, relative to the rootdir (default cassettes)",
        type="string",
        default="cassettes",
    )
    parser.addini(
        "engagelab_record_mode",
        help="default of --engagelab-record-mode (default none: replay only)",
        type="string",
        default="",
    )
    parser.addini(
        "engagelab_redact_recipients",
        help="replace phone numbers and e-mail addresses in cassettes with stable placeholders "
        "(default false)",
        type="string",
        default="",
    )
    parser.addini(
        "engagelab_extra_secrets",
        help="more secrets to scrub from cassettes, one per line; $NAME means the value of the "
        "environment variable NAME",
        type="linelist",
        default=[],
    )
    # -- end cassettes -------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _ENGAGELAB_MARKER)

    def read(name: str) -> Any:
        return config.getini(name)

    try:
        settings = settings_from_ini(read, EngageLabSettings())
    except SettingsError as error:
        raise pytest.UsageError(f"pytest-engagelab: {error}") from None
    config.stash[_SETTINGS_KEY] = settings
    # -- cassettes -----------------------------------------------------------------------------
    config.addinivalue_line("markers", _CASSETTE_MARKER)
    if _cassettes_configured(config):  # checked now: a mistake stops the run before any test
        _cassette_settings(config)
    # -- end cassettes -------------------------------------------------------------------------


def _cassettes_configured(config: pytest.Config) -> bool:
    """Whether any cassette option or variable is set.  When none is, the settings are the
    defaults, which cannot be wrong: they are read on first use, so a suite that never
    uses a cassette does not import them (start-up cost, bench row 3)."""
    return bool(
        config.getoption("engagelab_record_mode", None)
        or config.getoption("engagelab_check_drift", False)
        or str(config.getini("engagelab_record_mode")).strip()
        or str(config.getini("engagelab_redact_recipients")).strip()
        or config.getini("engagelab_extra_secrets")
        or any(name in os.environ for name in _CASSETTE_ENVIRON)
    )


def _cassette_settings(config: pytest.Config) -> CassetteSettings:
    """The session's cassette settings, read and checked once."""
    settings = config.stash.get(_CASSETTES_KEY, None)
    if settings is not None:
        return settings
    from pytest_engagelab.cassettes.settings import cassette_settings

    try:
        settings = cassette_settings(
            rootdir=config.rootpath,
            directory=str(config.getini("engagelab_cassette_dir")),
            record_mode=config.getoption("engagelab_record_mode", None),
            ini_record_mode=str(config.getini("engagelab_record_mode")),
            redact=str(config.getini("engagelab_redact_recipients")),
            extra_secrets=config.getini("engagelab_extra_secrets"),
            environ=os.environ,
            default_base_url=config.stash[_SETTINGS_KEY].base_url,
        )
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[_CASSETTES_KEY] = settings
    return settings


# -- settings -----------------------------------------------------------------------------


def _marker_settings(node: pytest.Item, base: EngageLabSettings) -> EngageLabSettings:
    """``base`` with every ``engagelab`` marker applied, the closest to the test last."""
    __tracebackhide__ = True
    markers = list(node.iter_markers("engagelab"))
    settings = base
    for marker in reversed(markers):  # iter_markers yields the closest first
        if marker.args:
            pytest.fail(
                f"@pytest.mark.engagelab takes keyword arguments only, got {marker.args!r}; "
                f"allowed: {', '.join(MARKER_KEYWORDS)}",
                pytrace=False,
            )
        problem = None
        try:
            settings = settings.merged(marker.kwargs, source="@pytest.mark.engagelab")
        except SettingsError as error:
            problem = str(error)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
    return settings


@pytest.fixture
def _engagelab_marker_check(request: pytest.FixtureRequest) -> None:
    """Check ``@pytest.mark.engagelab`` on a test that carries it, fixture of ours or not.

    Given at collection to the marked tests only (see :func:`_plan`), not run as a
    hook for every test.
    """
    _marker_settings(request.node, request.config.stash[_SETTINGS_KEY])


# -- what a test of the kit costs: nothing for the others -----------------------------------
# No autouse fixture and no per-test hook at load: at collection, the fixtures below are
# added to the tests that carry a marker of ours or use otp_server_session, and the report
# hook is registered by the first fixture of ours that needs it.  A suite that never uses
# the kit runs the same function calls per test as with ``-p no:engagelab``.

_OUR_MARKERS: Final = frozenset({"engagelab", "engagelab_cassette"})
_REPORTS_PLUGIN: Final = "engagelab-reports"
#: The fixtures a marked test gets first, each with the marker that asks for it.
_FIRST: Final = (
    ("_engagelab_marker_check", "engagelab"),
    ("engagelab_cassette", "engagelab_cassette"),
)


def _plan(items: list[pytest.Item]) -> None:
    """Give each test the fixtures its markers and ``otp_server_session`` need.

    Cheap for a test without them: an attribute read and two membership tests
    (markers of a module or class are looked up once per module or class).
    """
    parent: object = None
    inherited: frozenset[str] = frozenset()
    for item in items:
        if item.parent is not parent:
            parent = item.parent
            inherited = _markers_above(item)
        try:
            names = item.fixturenames  # type: ignore[attr-defined]
        except AttributeError:  # not a test function (another plugin's item): nothing to add
            continue
        marks = inherited
        if item.own_markers:
            marks = marks | {mark.name for mark in item.own_markers}
        if marks & _OUR_MARKERS:
            # First, as an autouse fixture would have run: the marker is checked, and the
            # cassette active, before the test's own fixtures are set up.
            first = [name for name, marker in _FIRST if marker in marks]
            if names[: len(first)] != first:
                names[:] = [*first, *(name for name in names if name not in first)]
        if "otp_server_session" in names and _PER_TEST_RESET not in names:
            # Right after the session server: reset before the test's own fixtures use it.
            names.insert(names.index("otp_server_session") + 1, _PER_TEST_RESET)


def _markers_above(item: pytest.Item) -> frozenset[str]:
    """The names of our markers on the item's module, class and other parents."""
    found: set[str] = set()
    node = item.parent
    while node is not None:
        found.update(mark.name for mark in node.own_markers)
        node = node.parent
    return frozenset(found & _OUR_MARKERS)


class _Reports:
    """The report hook, registered by the first fixture of ours that needs it."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.when == "call":
            item.stash[_CALL_REPORT_KEY] = report
        if call.excinfo is not None and report.failed:
            from pytest_engagelab.cassettes.errors import CassetteMiss
            from pytest_engagelab.cassettes.reports import miss_report

            if call.excinfo.errisinstance(CassetteMiss):
                report.longrepr = miss_report(call.excinfo, item.path)
        active = item.stash.get(_ACTIVE_KEY, None)
        if active is not None:  # real credentials may be about: keep them out of reports
            from pytest_engagelab.cassettes.reports import scrub_report

            scrub_report(report, active.scrubber)
        return report


_WATCHING_KEY = pytest.StashKey[bool]()


def _watch_reports(config: pytest.Config) -> None:
    """Start reading test reports (a passed call, a cassette miss, secrets to scrub)."""
    if not config.stash.get(_WATCHING_KEY, False):
        if not config.pluginmanager.has_plugin(_REPORTS_PLUGIN):
            config.pluginmanager.register(_Reports(), _REPORTS_PLUGIN)
        config.stash[_WATCHING_KEY] = True


@pytest.fixture(scope="session")
def engagelab_settings(request: pytest.FixtureRequest) -> EngageLabSettings:
    """Suite-wide emulator settings, from the ``engagelab_*`` ini options.

    Override this fixture in a conftest.py to set defaults in code (any scope);
    ``@pytest.mark.engagelab(...)`` still applies on top of what it returns.
    Session-scoped: the ini options do not change during a run, and a test using
    ``otp_mock`` then does not pay for setting it up and tearing it down again.
    """
    return request.config.stash[_SETTINGS_KEY]


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def otp_mock(
    request: pytest.FixtureRequest, engagelab_settings: EngageLabSettings
) -> Iterator[OTPMock]:
    """EngageLab's OTP API emulated in-process for every httpx client (an ``OTPMock``).

    Requests to the base URL (``https://otp.api.engagelab.cc`` by default) are
    answered as EngageLab documents; other hosts are left alone.  Assert with
    ``otp_mock.sent``, ``assert_sent(...)``, ``assert_sent_once(...)``,
    ``assert_not_sent(...)``, ``assert_sent_count(n, ...)``; read codes with
    ``last_code(to)``; inject failures with ``fail_next(...)``/``fail_for(...)``;
    move time with ``advance(seconds)``.  Configure with
    ``@pytest.mark.engagelab(...)``.  An injected failure that never fired fails
    the test at teardown.
    """
    if request.node.get_closest_marker("engagelab_cassette") is not None:  # -- cassettes --
        pytest.fail(_CASSETTE_AND_MOCK, pytrace=False)
    from pytest_engagelab.doors.mock import OTPMock

    settings = _marker_settings(request.node, engagelab_settings)
    _watch_reports(request.config)
    mock = OTPMock(settings.build_emulator(), base_url=settings.base_url)
    with mock:
        yield mock
    _check_all_fired(request, mock, settings, "otp_mock")


def _check_all_fired(
    request: pytest.FixtureRequest,
    controls: EmulatorControls,
    settings: EngageLabSettings,
    name: str,
) -> None:
    """Fail the test at teardown for injected failures that never fired.

    Only after a passing test: when the test already failed, the unfired
    injection is most likely a consequence, and one problem should read as one.
    """
    __tracebackhide__ = True
    call = request.node.stash.get(_CALL_REPORT_KEY, None)
    if not settings.assert_all_fired or call is None or not call.passed:
        return
    report = controls.unfired_report()
    if report is not None:
        pytest.fail(f"{name}: {report}", pytrace=False)


def _client_credentials(request: pytest.FixtureRequest) -> Credentials:  # -- cassettes --
    """The cassette's credentials on a marked test, otherwise ``otp_mock``'s."""
    active: ActiveCassette | None = request.getfixturevalue("engagelab_cassette")
    if active is not None:
        return active.credentials
    from pytest_engagelab.cassettes.credentials import Credentials

    mock: OTPMock = request.getfixturevalue("otp_mock")
    return Credentials(mock.dev_key, mock.dev_secret, mock.base_url)


@pytest.fixture
def otp_client(request: pytest.FixtureRequest) -> Iterator[OTPClient]:
    """An ``OTPClient`` wired to ``otp_mock``'s base URL and credentials.

    On a test marked ``@pytest.mark.engagelab_cassette`` it talks to the real base
    URL through the cassette instead (no ``otp_mock``): with the credentials from
    ``ENGAGELAB_DEV_KEY``/``ENGAGELAB_DEV_SECRET`` when recording, with the
    emulator's placeholder credentials when replaying.
    """
    from pytest_engagelab.client import OTPClient

    credentials = _client_credentials(request)
    with OTPClient(
        credentials.dev_key, credentials.dev_secret, base_url=credentials.base_url
    ) as client:
        yield client


@pytest.fixture
def otp_async_client(request: pytest.FixtureRequest) -> Iterator[AsyncOTPClient]:
    """An ``AsyncOTPClient`` wired to ``otp_mock``'s base URL and credentials.

    Use it in async tests (anyio, pytest-asyncio); it is closed after the test.
    On a test marked ``@pytest.mark.engagelab_cassette`` it talks through the
    cassette, like ``otp_client``.
    """
    import asyncio

    import httpx

    from pytest_engagelab.client import AsyncOTPClient

    credentials = _client_credentials(request)
    # -- cassettes: with real connections (recording), none may outlive the test's event
    # loop, so none is kept alive; closing in a new loop below then has nothing to close.
    limits = httpx.Limits(max_keepalive_connections=0)
    http = httpx.AsyncClient(timeout=10.0, limits=limits)
    client = AsyncOTPClient(
        credentials.dev_key, credentials.dev_secret, base_url=credentials.base_url, http_client=http
    )
    yield client
    asyncio.run(http.aclose())


# -- cassettes ---------------------------------------------------------------------------------

_CASSETTE_AND_MOCK = (
    "pytest-engagelab: this test is marked @pytest.mark.engagelab_cassette and asks for otp_mock: "
    "respx (otp_mock) and vcrpy (the cassette) both patch httpx's transport, so one would "
    "silently answer the other's requests. Use otp_mock to test against the emulator, or the "
    "cassette to replay what EngageLab answered, not both in one test."
)


@pytest.hookimpl(trylast=True)  # after the hooks that add markers or deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the tests of the kit their fixtures (:func:`_plan`).  Recording: two tests on one
    cassette would overwrite each other; refuse at once."""
    _plan(items)
    settings = config.stash.get(_CASSETTES_KEY, None)  # read at configure when recording
    if settings is not None and settings.records:
        from pytest_engagelab.cassettes.files import shared_cassettes

        problem = shared_cassettes(settings.directory, config.rootpath, items)
        if problem is not None:
            raise pytest.UsageError(problem)


def pytest_collection(session: pytest.Session) -> bool | None:
    """Under ``--engagelab-check-drift``, the items are the recorded interactions."""
    if not session.config.getoption("engagelab_check_drift", False):
        return None
    from pytest_engagelab.cassettes.drift import collect_drift_items

    items = collect_drift_items(session, _cassette_settings(session.config).directory)
    session.items = items
    hook = session.config.hook
    hook.pytest_collectreport(report=pytest.CollectReport("", "passed", None, list(items)))
    hook.pytest_collection_modifyitems(session=session, config=session.config, items=items)
    hook.pytest_collection_finish(session=session)
    session.testscollected = len(items)
    return True


def _cassette_for(request: pytest.FixtureRequest, marker: pytest.Mark) -> ActiveCassette:
    __tracebackhide__ = True
    from pytest_engagelab.cassettes.credentials import Credentials
    from pytest_engagelab.cassettes.files import cassette_path
    from pytest_engagelab.cassettes.recorder import ActiveCassette

    settings = _cassette_settings(request.config)
    node = request.node
    rootdir = request.config.rootpath
    problem = None
    try:
        path = cassette_path(settings.directory, rootdir, node.path, node.nodeid, marker)
    except ValueError as error:
        problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        display = path.relative_to(rootdir).as_posix()
    except ValueError:
        display = str(path)
    emulator = _marker_settings(node, request.config.stash[_SETTINGS_KEY])
    base_url = os.environ.get("ENGAGELAB_BASE_URL", "").strip() or emulator.base_url
    replay = Credentials(emulator.dev_key, emulator.dev_secret, base_url.rstrip("/"))
    return ActiveCassette(
        settings, path, nodeid=node.nodeid, replay_credentials=replay, display_path=display
    )


@pytest.fixture
def engagelab_cassette(request: pytest.FixtureRequest) -> Iterator[ActiveCassette | None]:
    """The vcrpy cassette of a test marked ``@pytest.mark.engagelab_cassette``, else ``None``.

    Active for the whole test: every httpx request (``otp_client``,
    ``otp_async_client``, the code under test) is replayed from the cassette, or
    recorded when ``--engagelab-record-mode`` allows it.  The cassette is written
    (atomically, scrubbed) only when the test passes.  Its ``path``,
    ``record_mode`` and ``credentials`` are there to read.
    """
    marker = request.node.get_closest_marker("engagelab_cassette")
    if marker is None:
        yield None
        return
    _watch_reports(request.config)
    active = _cassette_for(request, marker)
    request.node.stash[_ACTIVE_KEY] = active
    problem = None
    try:
        active.start()
    except Exception as error:  # an unreadable cassette: CassetteError names file and problem
        problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        yield active
    finally:
        passed = request.node.stash.get(_CALL_REPORT_KEY, None)
        try:
            active.stop(save=passed is not None and passed.passed)
        except Exception as error:  # CassetteError: the file could not be written
            problem = str(error)
        if problem is not None:
            pytest.fail(problem, pytrace=False)


# -- end cassettes -----------------------------------------------------------------------------


# -- loopback server -----------------------------------------------------------------------

# Settings a test's marker cannot change on the shared server: its emulator was built with them.
_SESSION_FIXED = ("dev_key", "dev_secret", "journal_limit")


@pytest.fixture
def otp_server(
    request: pytest.FixtureRequest, engagelab_settings: EngageLabSettings
) -> Iterator[OTPServer]:
    """EngageLab's OTP API on a real HTTP socket, for clients that do not use httpx.

    An ``OTPServer`` on ``127.0.0.1`` and a free port, for this test: give
    ``otp_server.url`` (``http://127.0.0.1:PORT``), ``dev_key`` and ``dev_secret``
    to the official SDK, ``requests``, urllib or a subprocess.  The same journal,
    assertions, ``last_code``, injection, templates and clock as ``otp_mock``,
    configured by the same ``@pytest.mark.engagelab(...)`` (``base_url`` aside);
    an injected exception closes the connection without an answer.  An injected
    failure that never fired fails the test at teardown.  For one server per
    session, use ``otp_server_session``.
    """
    from pytest_engagelab.doors.server import OTPServer

    settings = _marker_settings(request.node, engagelab_settings)
    _watch_reports(request.config)
    with OTPServer(settings.build_emulator()) as server:
        yield server
    _check_all_fired(request, server, settings, "otp_server")


@pytest.fixture(scope="session")
def otp_server_session(request: pytest.FixtureRequest) -> Iterator[OTPServer]:
    """One ``OTPServer`` for the whole session, reset before each test that uses it.

    Session-scoped, so session fixtures (a service started once with its
    ``url``) can use it.  Before every test that uses it, directly or through
    another fixture, it forgets messages, codes, limits, injections and
    templates and its clock starts over, as a fresh ``otp_server`` would; after
    the test, injected failures that never fired fail it.  Built from the
    ``engagelab_*`` ini options; ``@pytest.mark.engagelab(...)`` applies per test
    except ``dev_key``, ``dev_secret`` and ``journal_limit`` (use ``otp_server``
    for those).
    """
    from pytest_engagelab.doors.server import OTPServer

    settings = request.config.stash[_SETTINGS_KEY]
    with OTPServer(settings.build_emulator()) as server:
        yield server


_PER_TEST_RESET: Final = "_engagelab_session_server_per_test"


@pytest.fixture
def _engagelab_session_server_per_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Reset ``otp_server_session`` before each test that uses it; check its injections after.

    Given at collection to the tests that use ``otp_server_session`` (see :func:`_plan`).
    """
    _watch_reports(request.config)
    server: OTPServer = request.getfixturevalue("otp_server_session")
    base = request.config.stash[_SETTINGS_KEY]
    settings = _marker_settings(request.node, base)
    fixed = [name for name in _SESSION_FIXED if getattr(settings, name) != getattr(base, name)]
    if fixed:
        pytest.fail(
            f"@pytest.mark.engagelab({', '.join(fixed)}=...) cannot change otp_server_session, "
            "which is shared by the whole session; use the otp_server fixture for this test, "
            "or set it with the engagelab_* ini options",
            pytrace=False,
        )
    emulator = server.emulator
    emulator.strict_templates = settings.strict_templates
    emulator.seed = settings.seed
    emulator.key_status = settings.key_status
    emulator.forbidden_endpoints = frozenset(settings.forbidden_endpoints)
    emulator.rate_limit = settings.rate_limit
    emulator.max_verify_attempts = settings.max_verify_attempts
    server.reset()
    yield
    _check_all_fired(request, server, settings, "otp_server_session")
