"""The pytest plugin: options, markers and fixtures.  Registered through ``pytest11``.

Nothing here imports vcrpy: only a test that records or replays a cassette pays
for it.

Why this module is long: pytest finds hooks and fixtures in the plugin module, and
each fixture's docstring is what ``pytest --fixtures`` shows users; the work behind
them lives in the doors, the emulator settings and the cassettes package.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Final, Literal

import pytest

from pytest_engagelab.doors import guard as _guard
from pytest_engagelab.emulator.defaults import DEFAULT_BASE_URL, INI_OPTIONS

# -- start-up cost: the emulator, its doors and the clients (with httpx, respx, asyncio) are
# imported by the fixtures that use them, not when pytest loads the plugin (bench row 3); so
# are the emulator settings (a dataclass), unless an engagelab_* ini option is set.
if TYPE_CHECKING:
    from pytest_engagelab.cassettes.credentials import Credentials
    from pytest_engagelab.cassettes.recorder import ActiveCassette
    from pytest_engagelab.cassettes.settings import CassetteSettings
    from pytest_engagelab.client import AsyncOTPClient, OTPClient
    from pytest_engagelab.doors.controls import EmulatorControls
    from pytest_engagelab.doors.mock import OTPMock
    from pytest_engagelab.doors.server import OTPServer
    from pytest_engagelab.doors.smpp import OTPSMPPServer
    from pytest_engagelab.emulator.settings import EngageLabSettings

# -- cassettes ---------------------------------------------------------------------------------

# Stash keys are typed by annotation, not by ``StashKey[T]()``: subscripting a generic
# class at run time costs about 40 function calls each, at every start-up (bench row 3).
_CASSETTES_KEY: pytest.StashKey[CassetteSettings] = pytest.StashKey()
#: ``pytest_engagelab.cassettes.settings.RECORD_MODES`` (a test keeps them equal), here so
#: that loading the plugin does not import the cassettes.
_RECORD_MODES: Final = ("none", "once", "new_episodes", "all", "rewrite")
#: The variables the cassette settings read (``pytest_engagelab.cassettes.credentials``).
_CASSETTE_ENVIRON: Final = ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET", "ENGAGELAB_BASE_URL")
_CALL_REPORT_KEY: pytest.StashKey[pytest.TestReport] = pytest.StashKey()
_ACTIVE_KEY: pytest.StashKey[ActiveCassette] = pytest.StashKey()
#: Under xdist: the tests that share a cassette with another, and the message for each.
_SHARED_KEY: pytest.StashKey[dict[str, str]] = pytest.StashKey()
_CASSETTE_MARKER = (
    "engagelab_cassette(name=None): run this test on a vcrpy cassette (YAML, under the ini "
    "option engagelab_cassette_dir): otp_client, otp_async_client and any httpx request go "
    "through it to the real EngageLab base URL; --engagelab-record-mode says whether it records."
)
# -- end cassettes -----------------------------------------------------------------------------

_SETTINGS_KEY: pytest.StashKey[EngageLabSettings] = pytest.StashKey()

# -- guard -------------------------------------------------------------------------------------
_GUARD_KEY: pytest.StashKey[_guard.Guard] = pytest.StashKey()
_COUNTS_KEY: pytest.StashKey[_guard.Counts] = pytest.StashKey()
_CONTROLS_KEY: pytest.StashKey[list[EmulatorControls]] = pytest.StashKey()
_SECTION_KEY: pytest.StashKey[bool] = pytest.StashKey()
_LIVE_MARKER = (
    "engagelab_live: let this test reach the real EngageLab (otp.api.engagelab.cc, the SMPP "
    "host, the configured base URL): without it, the pytest-engagelab guard stops every "
    "attempt before a name lookup or connection."
)
#: Most lines of the "EngageLab requests" report section.
_SECTION_LINES = 50
# -- end guard ---------------------------------------------------------------------------------

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
    for option in INI_OPTIONS:  # typed, so `pytest --help` says (bool), (int), (string)
        parser.addini(option.name, help=option.help, type=_ini_type(option.kind), default=None)
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
        type="bool",
        default=False,
    )
    parser.addini(
        "engagelab_extra_secrets",
        help="more secrets to scrub from cassettes, one per line; $NAME means the value of the "
        "environment variable NAME",
        type="linelist",
        default=[],
    )
    parser.addini(
        "engagelab_cassette_max_age",
        help="warn when a replayed cassette was recorded longer ago than this (90d, 12w, 36h; "
        "default off)",
        type="string",
        default="",
    )
    group.addoption(
        "--engagelab-review",
        dest="engagelab_review",
        metavar="PATH",
        default=None,
        help="also write the review of re-recorded cassettes (what changed in EngageLab's "
        "answers) to PATH as JSON",
    )
    # -- end cassettes -------------------------------------------------------------------------
    # -- guard ---------------------------------------------------------------------------------
    group.addoption(
        "--engagelab-guard",
        dest="engagelab_guard",
        choices=("on", "off"),
        default=None,
        help="on (default): stop every attempt to reach EngageLab from a test not marked "
        "engagelab_live; off: let them through for this run (real OTPs, real costs)",
    )
    parser.addini(
        "engagelab_guard",
        help="stop every attempt to reach EngageLab from a test not marked engagelab_live "
        "(default true; false lets real OTPs out)",
        type="bool",
        default=True,
    )
    parser.addini(
        "engagelab_guard_hosts",
        help="more hosts the guard stops, one per line: a host name, or *.domain for every "
        "subdomain",
        type="linelist",
        default=[],
    )
    # -- end guard -----------------------------------------------------------------------------


def _ini_type(kind: str) -> Literal["string", "bool", "int"]:
    """pytest's ini type for an ``engagelab_*`` option: ``int`` exists from pytest 8.4 on."""
    if kind == "bool":
        return "bool"
    if kind == "int" and pytest.version_tuple >= (8, 4):
        return "int"
    return "string"


_INI_KINDS: Final = {
    **{option.name: option.kind for option in INI_OPTIONS},
    "engagelab_redact_recipients": "bool",
    "engagelab_guard": "bool",
}
_WANTED: Final = {"bool": "a boolean (true or false)", "int": "an integer", "string": "a string"}


def _getini(config: pytest.Config, name: str) -> Any:
    """``config.getini(name)``, with pytest's complaint about a value of the wrong type
    turned into one line that names the option and what it takes."""
    try:
        return config.getini(name)
    except (ValueError, TypeError, pytest.UsageError) as error:  # pytest < 9: ValueError
        wanted = _WANTED[_INI_KINDS.get(name, "string")]
        raise pytest.UsageError(
            f"pytest-engagelab: ini option {name} must be {wanted}: {error}"
        ) from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _ENGAGELAB_MARKER)
    base_url = DEFAULT_BASE_URL
    if any(_ini_given(_getini(config, option.name)) for option in INI_OPTIONS):
        base_url = _settings(config).base_url  # checked now: a mistake stops the run
    # -- cassettes -----------------------------------------------------------------------------
    config.addinivalue_line("markers", _CASSETTE_MARKER)
    if _cassettes_configured(config):  # checked now: a mistake stops the run before any test
        cassettes = _cassette_settings(config)
        reviews = cassettes.records or config.getoption("engagelab_review", None)
        if reviews and not hasattr(config, "workerinput"):  # under xdist, the controller reviews
            config.pluginmanager.register(_Reviews(config), "engagelab-cassette-review")
    # -- end cassettes -------------------------------------------------------------------------
    # -- guard ---------------------------------------------------------------------------------
    config.addinivalue_line("markers", _LIVE_MARKER)
    try:
        guard = _guard.guard_from_options(
            option=config.getoption("engagelab_guard", None),
            ini="true" if _getini(config, "engagelab_guard") else "false",
            hosts=config.getini("engagelab_guard_hosts"),
            base_urls=(base_url, os.environ.get("ENGAGELAB_BASE_URL", "")),
        )
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    guard.on_stop = lambda: _watch_reports(config)  # a refusal is reported with its test
    config.stash[_GUARD_KEY] = guard
    config.stash[_COUNTS_KEY] = _guard.Counts()
    if guard.enabled:
        _guard.install(guard)
        config.add_cleanup(lambda: _guard.uninstall(guard))
    # -- end guard -----------------------------------------------------------------------------


def _ini_given(value: Any) -> bool:
    """Whether an ``engagelab_*`` ini value is set (as ``settings_from_ini`` reads them)."""
    return not (value is None or value == "" or value == [])


def _settings(config: pytest.Config) -> EngageLabSettings:
    """The session's emulator settings, from the ``engagelab_*`` ini options.

    Built on first use, so that a suite that never uses the kit does not import them
    (start-up cost, bench row 3); when an ini option is set, :func:`pytest_configure`
    builds them at once, and a mistake stops the run before any test.
    """
    settings = config.stash.get(_SETTINGS_KEY, None)
    if settings is not None:
        return settings
    from pytest_engagelab.emulator.settings import (
        EngageLabSettings,
        SettingsError,
        settings_from_ini,
    )

    def read(name: str) -> Any:
        return _getini(config, name)

    try:
        settings = settings_from_ini(read, EngageLabSettings())
    except SettingsError as error:
        raise pytest.UsageError(f"pytest-engagelab: {error}") from None
    config.stash[_SETTINGS_KEY] = settings
    return settings


def _cassettes_configured(config: pytest.Config) -> bool:
    """Whether any cassette option or variable is set.  When none is, the settings are the
    defaults, which cannot be wrong: they are read on first use, so a suite that never
    uses a cassette does not import them (start-up cost, bench row 3)."""
    return bool(
        config.getoption("engagelab_record_mode", None)
        or config.getoption("engagelab_check_drift", False)
        or config.getoption("engagelab_review", None)
        or str(config.getini("engagelab_record_mode")).strip()
        or _getini(config, "engagelab_redact_recipients")
        or config.getini("engagelab_extra_secrets")
        or str(config.getini("engagelab_cassette_max_age")).strip()
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
            redact="true" if _getini(config, "engagelab_redact_recipients") else "false",
            extra_secrets=config.getini("engagelab_extra_secrets"),
            environ=os.environ,
            default_base_url=_settings(config).base_url,
            max_age=str(config.getini("engagelab_cassette_max_age")),
        )
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[_CASSETTES_KEY] = settings
    return settings


# -- settings -----------------------------------------------------------------------------


def _marker_settings(node: pytest.Item, base: EngageLabSettings) -> EngageLabSettings:
    """``base`` with every ``engagelab`` marker applied, the closest to the test last."""
    __tracebackhide__ = True
    from pytest_engagelab.emulator.settings import MARKER_KEYWORDS, SettingsError

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
    _marker_settings(request.node, _settings(request.config))


# -- what a test of the kit costs: nothing for the others -----------------------------------
# No autouse fixture and no per-test hook at load: at collection, the fixtures below are
# added to the tests that carry a marker of ours or use otp_server_session, and the report
# hook is registered by the first fixture of ours that needs it.  A suite that never uses
# the kit runs the same function calls per test as with ``-p no:engagelab``.

_OUR_MARKERS: Final = frozenset({"engagelab", "engagelab_cassette", "engagelab_live"})
#: The fixtures a marked test gets first, each with the marker that asks for it.
_FIRST: Final = (
    ("_engagelab_live", "engagelab_live"),
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


@pytest.fixture(scope="session")
def engagelab_settings(request: pytest.FixtureRequest) -> EngageLabSettings:
    """Suite-wide emulator settings, from the ``engagelab_*`` ini options.

    Override this fixture in a conftest.py to set defaults in code (any scope);
    ``@pytest.mark.engagelab(...)`` still applies on top of what it returns.
    Session-scoped: the ini options do not change during a run, and a test using
    ``otp_mock`` then does not pay for setting it up and tearing it down again.
    """
    return _settings(request.config)


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
    mock = OTPMock(settings.build_emulator(), base_url=settings.base_url)
    # -- guard: what the mock cannot answer under its own host (another scheme or port) is
    # stopped, never sent
    guard = request.config.stash[_GUARD_KEY]
    host = _guard.host_of(mock.base_url) or ""
    guard.watch(host)
    _track(request, mock)
    try:
        with mock:
            yield mock
    finally:
        guard.unwatch(host)
        _count_answered(request, mock)
    _check_all_fired(request.node, mock, settings, "otp_mock")


# -- guard -------------------------------------------------------------------------------------


def _track(request: pytest.FixtureRequest, controls: EmulatorControls) -> None:
    """Remember the emulators a test used, for its "EngageLab requests" report section."""
    _watch_reports(request.config)
    _guard.patch_asyncio()  # asyncio may have been imported since the session started
    request.node.stash.setdefault(_CONTROLS_KEY, []).append(controls)


def _count_answered(request: pytest.FixtureRequest, controls: EmulatorControls) -> None:
    request.config.stash[_COUNTS_KEY].answered += controls.emulator.requests.total


@pytest.fixture
def _engagelab_live(request: pytest.FixtureRequest) -> Iterator[None]:
    """Let a test marked ``engagelab_live`` through the guard (given to those tests at
    collection, see :func:`_plan`)."""
    guard = request.config.stash.get(_GUARD_KEY, None)
    if guard is None:
        yield
        return
    _watch_reports(request.config)
    guard.begin_test(live=True)
    try:
        yield
    finally:
        guard.end_test()


def pytest_collection_finish(session: pytest.Session) -> None:
    """The guard covers asyncio's ``loop.getaddrinfo`` once asyncio is imported."""
    _guard.patch_asyncio()


def _guard_report(item: pytest.Item, report: pytest.TestReport, excinfo: Any) -> None:
    """A test whose code caught the guard's error fails anyway; a test that failed for
    another reason shows what the guard stopped.  The stopped requests' credentials are
    masked in the failure (``-l`` prints the clients' headers)."""
    guard = item.config.stash.get(_GUARD_KEY, None)
    if guard is None or not guard.attempts:
        return
    attempts = guard.take_attempts()
    text = _guard.attempts_text(attempts)
    if report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{text}\nThe code under test caught this error and carried on; the test fails "
            "anyway: a real OTP would have gone out."
        )
        return
    if not report.failed:
        return
    by_guard = _raised_by_guard(excinfo)
    if report.longrepr is not None:
        failure = str(report.longrepr)
        masked = _guard.mask_credentials(failure, attempts)
        if masked != failure:  # the short summary reads the first line: the guard's message
            report.longrepr = f"{attempts[0]!s}\n\n{masked}" if by_guard else masked
    if not by_guard:
        report.sections.append(("EngageLab guard", text))


def _raised_by_guard(excinfo: Any) -> bool:
    error = getattr(excinfo, "value", None)
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, _guard.EngageLabGuardError):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _requests_section(item: pytest.Item, report: pytest.TestReport) -> None:
    """The requests a failing test's emulators received, once per test."""
    controls = item.stash.get(_CONTROLS_KEY, None)
    if not controls or not report.failed or item.stash.get(_SECTION_KEY, False):
        return
    item.stash[_SECTION_KEY] = True
    lines: list[str] = []
    room, rest = _SECTION_LINES, 0
    for one in controls:
        if len(controls) > 1:  # say which door each block is
            lines.append(f"{type(one).__name__} at {one.base_url}:")
        kept = len(one.emulator.requests)
        lines.extend(one.requests_lines(limit=room))  # described only as far as shown
        rest += kept - min(kept, room)
        room -= min(kept, room)
    if not lines:
        lines = ["(none)"]
    if rest > 0:
        lines.append(f"... and {rest} more")
    report.sections.append(("EngageLab requests", "\n".join(lines)))


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Nobody records by accident: the header says so when cassettes record."""
    lines = []
    cassettes = config.stash.get(_CASSETTES_KEY, None)
    if cassettes is not None and cassettes.records:
        base_url = cassettes.recording.base_url if cassettes.recording else "EngageLab"
        host = _guard.host_of(base_url) or base_url
        lines.append(
            f"engagelab: recording cassettes against {host} (record mode {cassettes.record_mode}):"
            " requests a cassette lacks go to the real endpoint"
        )
    if not config.stash[_GUARD_KEY].enabled:
        lines.append("engagelab: guard off: tests can reach the real EngageLab")
    return lines


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    counts = config.stash[_COUNTS_KEY]
    counts.stopped += config.stash[_GUARD_KEY].stopped
    config.stash[_GUARD_KEY].stopped = 0
    cassettes = config.stash.get(_CASSETTES_KEY, None)
    mode = cassettes.record_mode if cassettes is not None else "none"
    if any(counts.as_dict().values()) or mode != "none":
        terminalreporter.write_line(counts.line(mode))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist, a worker hands its counts to the controller's summary line."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        counts = session.config.stash[_COUNTS_KEY]
        counts.stopped += session.config.stash[_GUARD_KEY].stopped
        session.config.stash[_GUARD_KEY].stopped = 0
        output["engagelab_counts"] = counts.as_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", None) or {}
    counts = output.get("engagelab_counts")
    if isinstance(counts, dict):
        node.config.stash[_COUNTS_KEY].add(counts)


# -- end guard ---------------------------------------------------------------------------------


def _check_all_fired(
    node: pytest.Item,
    controls: EmulatorControls,
    settings: EngageLabSettings,
    name: str,
) -> None:
    """Fail the test at teardown for injected failures that never fired.

    Only after a passing test: when the test already failed, the unfired
    injection is most likely a consequence, and one problem should read as one.
    """
    __tracebackhide__ = True
    call = node.stash.get(_CALL_REPORT_KEY, None)
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


class _Reports:
    """The report hook, registered by the first fixture of ours that needs it (or by the
    guard's first refusal), so that a suite that never uses the kit pays nothing per test."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        return _report(item, call, report)


_WATCHING_KEY: pytest.StashKey[bool] = pytest.StashKey()
_REPORTS_PLUGIN: Final = "engagelab-reports"


def _watch_reports(config: pytest.Config) -> None:
    """Start reading test reports (a passed call, a cassette miss or save, secrets to
    scrub, the guard's refusals, the requests section of a failing test)."""
    if not config.stash.get(_WATCHING_KEY, False):
        if not config.pluginmanager.has_plugin(_REPORTS_PLUGIN):
            config.pluginmanager.register(_Reports(), _REPORTS_PLUGIN)
        config.stash[_WATCHING_KEY] = True


def _report(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> pytest.TestReport:
    _guard_report(item, report, call.excinfo)  # -- guard --
    _requests_section(item, report)  # -- guard --
    if report.when == "call":
        item.stash[_CALL_REPORT_KEY] = report
    if call.excinfo is not None and report.failed:
        from pytest_engagelab.cassettes.errors import CassetteMiss
        from pytest_engagelab.cassettes.reports import miss_report

        if call.excinfo.errisinstance(CassetteMiss):
            report.longrepr = miss_report(call.excinfo, item.path)
    active = item.stash.get(_ACTIVE_KEY, None)
    if active is not None and report.when == "teardown":
        _save_cassette(item, active, report)
    if active is not None:  # real credentials may be about: keep them out of reports
        from pytest_engagelab.cassettes.reports import scrub_report

        scrub_report(report, active.scrubber)
    if report.when == "teardown" and _CONTROLS_KEY in item.stash:
        # The requests section is written: let go of the test's emulators (and their
        # journals), which the item, kept until the session ends, would otherwise hold.
        del item.stash[_CONTROLS_KEY]
    return report


def _save_cassette(item: pytest.Item, active: ActiveCassette, report: pytest.TestReport) -> None:
    """Write the cassette once the test passed and so did its whole teardown (every
    fixture's): a test that errors in teardown writes nothing.  The review of what
    changed rides on the teardown report, so it reaches the controller under xdist."""
    call = item.stash.get(_CALL_REPORT_KEY, None)
    written = False
    if not (report.passed and call is not None and call.passed):
        active.discard()
    else:
        try:
            review = active.save()
        except Exception as error:  # CassetteError: the file could not be written
            report.outcome = "failed"
            report.longrepr = str(error)
            review = None
        if review is not None:
            report.engagelab_review = review.as_json()  # type: ignore[attr-defined]
            written = review.status != "kept"
    counts = item.config.stash.get(_COUNTS_KEY, None)  # -- guard: the summary line
    if counts is not None and active.started:
        if written:
            counts.recorded += 1
        else:
            counts.replayed += 1


class _Reviews:
    """The review of every cassette recorded in this session (from this process or an
    xdist worker): printed at the end, written as JSON on request.  A plugin object, so
    its hooks see the config."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.reviews: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        review = getattr(report, "engagelab_review", None)
        if review is not None and report.when == "teardown":
            self.reviews.append(review)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.reviews:
            return
        from pytest_engagelab.cassettes.reports import CassetteReview, review_lines

        terminalreporter.section("engagelab cassette review")
        for line in review_lines([CassetteReview.from_json(r) for r in self.reviews]):
            terminalreporter.write_line(line)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """``--engagelab-review=PATH``: the same review as JSON (an empty one when nothing
        was recorded)."""
        target = self.config.getoption("engagelab_review", None)
        if not target:
            return
        from pathlib import Path

        from pytest_engagelab.cassettes.reports import CassetteReview, review_json

        path = Path(target)
        if not path.is_absolute():
            path = self.config.invocation_params.dir / path
        path.parent.mkdir(parents=True, exist_ok=True)
        reviews = [CassetteReview.from_json(r) for r in self.reviews]
        path.write_text(review_json(reviews), encoding="utf-8")


@pytest.hookimpl(trylast=True)  # after the hooks that add markers or deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the tests of the kit their fixtures (:func:`_plan`).  Recording: two tests on
    one cassette would overwrite each other; refuse at once.

    Under xdist a worker cannot stop the run with a usage error (the controller
    shows an INTERNALERROR), so there each such test fails at setup with the message.
    """
    _plan(items)
    settings = config.stash.get(_CASSETTES_KEY, None)  # read at configure when recording
    if settings is None or not settings.records:
        return
    from pytest_engagelab.cassettes.files import shared_cassettes

    problems = shared_cassettes(
        settings.directory, config.rootpath, items, secrets=settings.secrets
    )
    if not problems:
        return
    if hasattr(config, "workerinput"):
        config.stash[_SHARED_KEY] = problems
        return
    raise pytest.UsageError(next(iter(problems.values())))


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
    from pytest_engagelab.emulator.settings import api_root

    settings = _cassette_settings(request.config)
    node = request.node
    rootdir = request.config.rootpath
    problem = None
    try:
        path = cassette_path(
            settings.directory, rootdir, node.path, node.nodeid, marker, secrets=settings.secrets
        )
    except ValueError as error:
        problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        display = path.relative_to(rootdir).as_posix()
    except ValueError:
        display = str(path)
    emulator = _marker_settings(node, _settings(request.config))
    base_url = os.environ.get("ENGAGELAB_BASE_URL", "").strip() or emulator.base_url
    replay = Credentials(emulator.dev_key, emulator.dev_secret, api_root(base_url))
    return ActiveCassette(
        settings, path, nodeid=node.nodeid, replay_credentials=replay, display_path=display
    )


@pytest.fixture
def engagelab_cassette(request: pytest.FixtureRequest) -> Iterator[ActiveCassette | None]:
    """The vcrpy cassette of a test marked ``@pytest.mark.engagelab_cassette``, else ``None``.

    Active for the whole test: every httpx request (``otp_client``,
    ``otp_async_client``, the code under test) is replayed from the cassette, or
    recorded when ``--engagelab-record-mode`` allows it.  The cassette is written
    (atomically, scrubbed) only when the test, its setup and its whole teardown
    pass.  Its ``path``, ``record_mode`` and ``credentials`` are there to read.
    """
    marker = request.node.get_closest_marker("engagelab_cassette")
    if marker is None:
        yield None
        return
    shared = request.config.stash.get(_SHARED_KEY, {}).get(request.node.nodeid)
    if shared is not None:  # under xdist: another test records into the same cassette
        pytest.fail(shared, pytrace=False)
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
    guard = request.config.stash[_GUARD_KEY]  # -- guard: a recording cassette reaches its host
    host = _guard.host_of(active.credentials.base_url) if active.recording else None
    if host:
        guard.allow(host)
    try:  # from here on httpx is patched: whatever happens, stop() unpatches it
        stale = active.stale_message(_cassette_settings(request.config).max_age)
        if stale is not None:  # -W error::...StaleCassetteWarning raises here
            from pytest_engagelab.cassettes.errors import StaleCassetteWarning

            request.node.warn(StaleCassetteWarning(stale))
        yield active
    finally:
        if host:
            guard.disallow(host)
        active.stop()  # written, or not, by pytest_runtest_makereport after the teardown


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
    with OTPServer(settings.build_emulator()) as server:
        _track(request, server)  # -- guard --
        yield server
    _count_answered(request, server)  # -- guard --
    _check_all_fired(request.node, server, settings, "otp_server")


@pytest.fixture(scope="session")
def otp_server_session(request: pytest.FixtureRequest) -> Iterator[OTPServer]:
    """One ``OTPServer`` for the whole session, reset before each test that uses it.

    Session-scoped, so session fixtures (a service started once with its
    ``url``) can use it.  Before every test (whether it names it, reaches it
    through another fixture or ``request.getfixturevalue``) it is as a fresh
    ``otp_server`` would be: messages, codes, limits, injections, templates and
    callbacks (configuration and queue) forgotten, the clock started over.
    After the test, injected failures that never fired fail it.  Built from the
    ``engagelab_*`` ini options; an ``engagelab_settings`` override and
    ``@pytest.mark.engagelab(...)`` apply per test except ``dev_key``,
    ``dev_secret`` and ``journal_limit`` (use ``otp_server`` for those).
    """
    from pytest_engagelab.doors.server import OTPServer

    settings = _settings(request.config)
    with OTPServer(settings.build_emulator()) as server:
        request.config.stash[_SESSION_SERVER_KEY] = server
        _watch_reports(request.config)
        watch = _SessionServerWatch(request.config)
        request.config.pluginmanager.register(watch, "engagelab-session-server")
        try:
            yield server
        finally:
            request.config.pluginmanager.unregister(watch)
            del request.config.stash[_SESSION_SERVER_KEY]


_SESSION_SERVER_KEY: pytest.StashKey[OTPServer] = pytest.StashKey()


_PER_TEST_RESET: Final = "_engagelab_session_server_per_test"


@pytest.fixture
def _engagelab_session_server_per_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Give ``otp_server_session`` a fresh emulator before each test that uses it; check its
    injections after.  Given at collection to the tests that name it (see :func:`_plan`);
    a test that reaches it through ``request.getfixturevalue`` is served by
    :class:`_SessionServerWatch`."""
    built = _settings(request.config)  # what the session server was built with
    server: OTPServer = request.getfixturevalue("otp_server_session")
    base: EngageLabSettings = request.getfixturevalue("engagelab_settings")
    settings = _marker_settings(request.node, base)
    for source, given in (("engagelab_settings", base), ("@pytest.mark.engagelab", settings)):
        fixed = [name for name in _SESSION_FIXED if getattr(given, name) != getattr(built, name)]
        if fixed:
            pytest.fail(
                f"{source}({', '.join(fixed)}=...) cannot change otp_server_session, "
                "which is shared by the whole session; use the otp_server fixture for this "
                "test, or set it with the engagelab_* ini options",
                pytrace=False,
            )
    server.emulator = settings.build_emulator()  # nothing of the last test, callbacks included
    _track(request, server)  # -- guard --
    yield
    _count_answered(request, server)  # -- guard --
    _check_all_fired(request.node, server, settings, "otp_server_session")


class _SessionServerWatch:
    """Once ``otp_server_session`` exists: a test that did not name it (it may reach it
    through ``request.getfixturevalue``) still starts on a fresh emulator, built from the
    ini options, and fails for injections that never fired.  Registered by the fixture, so
    a suite without the session server pays nothing."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        server = self.config.stash.get(_SESSION_SERVER_KEY, None)
        if server is not None and _PER_TEST_RESET not in getattr(item, "fixturenames", ()):
            server.emulator = _settings(self.config).build_emulator()
            item.stash.setdefault(_CONTROLS_KEY, []).append(server)

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        __tracebackhide__ = True
        server = self.config.stash.get(_SESSION_SERVER_KEY, None)
        if server is not None and _PER_TEST_RESET not in getattr(item, "fixturenames", ()):
            counts = self.config.stash[_COUNTS_KEY]
            counts.answered += server.emulator.requests.total
            settings = _settings(self.config)
            _check_all_fired(item, server, settings, "otp_server_session")


# -- SMPP door -----------------------------------------------------------------------------


@pytest.fixture
def otp_smpp_server(
    request: pytest.FixtureRequest, engagelab_settings: EngageLabSettings
) -> Iterator[OTPSMPPServer]:
    """EngageLab's OTP API over SMPP (``otpsmpp.api.engagelab.cc``) on a loopback socket.

    An ``OTPSMPPServer`` on ``127.0.0.1`` and a free port, for this test: give
    ``host``, ``port``, ``system_id`` and ``password`` to the SMPP client under test
    (``bind_transceiver``).  A ``submit_sm`` is a send through the same emulator as
    ``otp_mock`` (MSG and MRKT as /v1/messages, CODE as /v1/codes), so the journal,
    assertions, ``last_code``, templates, magic numbers, injections and frequency
    limit apply; ``deliver_receipts()`` sends the queued delivery receipts
    (``deliver_sm``, stat DELIVRD or UNDELIV).  Configured by
    ``@pytest.mark.engagelab(...)``.  Needs smpplib: ``pip install
    pytest-engagelab[smpp]``.  An injected failure that never fired fails the test.
    """
    from pytest_engagelab.doors.smpp import OTPSMPPServer, SMPPUnavailable

    settings = _marker_settings(request.node, engagelab_settings)
    problem = None
    try:
        server = OTPSMPPServer(settings.build_emulator())
    except SMPPUnavailable as missing:
        problem = f"otp_smpp_server: {missing}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    _track(request, server)  # -- guard --
    with server:
        yield server
    _count_answered(request, server)  # -- guard --
    _check_all_fired(request.node, server, settings, "otp_smpp_server")


# -- what pytest reads of this module ------------------------------------------------------
# At start-up pytest looks at every name ``dir()`` gives for a plugin module, once for hooks
# and once for fixtures (about 30 function calls per name, bench row 3).  So ``dir()`` of
# this module lists what pytest needs, its hooks and fixtures, not its ~70 helpers,
# constants and imports; every name stays an attribute as before.


def _is_fixture(value: object) -> bool:
    """A function ``@pytest.fixture`` made (pytest >= 8.4: its own type; before: the
    function, marked)."""
    return type(value).__name__ == "FixtureFunctionDefinition" or hasattr(
        value, "_pytestfixturefunction"
    )


_FOR_PYTEST: Final = tuple(
    sorted(
        name
        for name, value in globals().items()
        if name.startswith("pytest_") or _is_fixture(value)
    )
)


def __dir__() -> list[str]:
    return list(_FOR_PYTEST)
