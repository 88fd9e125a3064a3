"""The work behind the plugin's fixtures and its report hook: imported by the first fixture
of the kit a run uses (or the guard's first refusal), never at start-up.

:mod:`pytest_engagelab.plugin` keeps each fixture's name, scope and docstring (what
``pytest --fixtures`` shows); the body is here.  Nothing here is imported by
:mod:`pytest_engagelab._plugin_shared`, which this module builds on.

Why this module is long: it is what ``plugin.py`` held before it was made thin for
start-up: the fixtures' bodies, the report hook and the guard's and cassettes' reports
share the test's stash and the session's guard, and each door's fixture is a few lines
around that shared bookkeeping.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Final

import pytest

from pytest_engagelab import _plugin_shared as _shared
from pytest_engagelab._plugin_shared import (
    ACTIVE_KEY,
    CALL_REPORT_KEY,
    CONTROLS_KEY,
    COUNTS_KEY,
    GUARD_KEY,
    PER_TEST_RESET,
    SECTION_KEY,
    SESSION_SERVER_KEY,
    SHARED_KEY,
    WATCHING_KEY,
)
from pytest_engagelab.doors import guard as _guard

if TYPE_CHECKING:
    from pytest_engagelab.cassettes.credentials import Credentials
    from pytest_engagelab.cassettes.recorder import ActiveCassette
    from pytest_engagelab.client import AsyncOTPClient, OTPClient
    from pytest_engagelab.doors.controls import EmulatorControls
    from pytest_engagelab.doors.mock import OTPMock
    from pytest_engagelab.doors.server import OTPServer
    from pytest_engagelab.doors.smpp import OTPSMPPServer
    from pytest_engagelab.emulator.settings import EngageLabSettings

#: Most lines of the "EngageLab requests" report section.
_SECTION_LINES = 50
# Settings a test's marker cannot change on the shared server: its emulator was built with them.
_SESSION_FIXED = ("dev_key", "dev_secret", "journal_limit")
_REPORTS_PLUGIN: Final = "engagelab-reports"
_CASSETTE_AND_MOCK = (
    "pytest-engagelab: this test is marked @pytest.mark.engagelab_cassette and asks for otp_mock: "
    "respx (otp_mock) and vcrpy (the cassette) both patch httpx's transport, so one would "
    "silently answer the other's requests. Use otp_mock to test against the emulator, or the "
    "cassette to replay what EngageLab answered, not both in one test."
)


# -- settings -----------------------------------------------------------------------------


def marker_settings(node: pytest.Item, base: EngageLabSettings) -> EngageLabSettings:
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


def check_marker(request: pytest.FixtureRequest) -> None:
    """The ``_engagelab_marker_check`` fixture: ``@pytest.mark.engagelab`` checked."""
    marker_settings(request.node, _shared.settings(request.config))


# -- the doors ------------------------------------------------------------------------------


def otp_mock(request: pytest.FixtureRequest, base: EngageLabSettings) -> Iterator[OTPMock]:
    if request.node.get_closest_marker("engagelab_cassette") is not None:  # -- cassettes --
        pytest.fail(_CASSETTE_AND_MOCK, pytrace=False)
    from pytest_engagelab.doors.mock import OTPMock

    settings = marker_settings(request.node, base)
    mock = OTPMock(settings.build_emulator(), base_url=settings.base_url)
    # -- guard: what the mock cannot answer under its own host (another scheme or port) is
    # stopped, never sent
    guard = request.config.stash[GUARD_KEY]
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


def otp_server(request: pytest.FixtureRequest, base: EngageLabSettings) -> Iterator[OTPServer]:
    from pytest_engagelab.doors.server import OTPServer

    settings = marker_settings(request.node, base)
    with OTPServer(settings.build_emulator()) as server:
        _track(request, server)  # -- guard --
        yield server
    _count_answered(request, server)  # -- guard --
    _check_all_fired(request.node, server, settings, "otp_server")


def otp_server_session(request: pytest.FixtureRequest) -> Iterator[OTPServer]:
    from pytest_engagelab.doors.server import OTPServer

    settings = _shared.settings(request.config)
    with OTPServer(settings.build_emulator()) as server:
        request.config.stash[SESSION_SERVER_KEY] = server
        watch_reports(request.config)
        watch = _SessionServerWatch(request.config)
        request.config.pluginmanager.register(watch, "engagelab-session-server")
        try:
            yield server
        finally:
            request.config.pluginmanager.unregister(watch)
            del request.config.stash[SESSION_SERVER_KEY]


def session_server_per_test(request: pytest.FixtureRequest) -> Iterator[None]:
    built = _shared.settings(request.config)  # what the session server was built with
    server: OTPServer = request.getfixturevalue("otp_server_session")
    base: EngageLabSettings = request.getfixturevalue("engagelab_settings")
    settings = marker_settings(request.node, base)
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
        server = self.config.stash.get(SESSION_SERVER_KEY, None)
        if server is not None and PER_TEST_RESET not in getattr(item, "fixturenames", ()):
            server.emulator = _shared.settings(self.config).build_emulator()
            item.stash.setdefault(CONTROLS_KEY, []).append(server)

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        __tracebackhide__ = True
        server = self.config.stash.get(SESSION_SERVER_KEY, None)
        if server is not None and PER_TEST_RESET not in getattr(item, "fixturenames", ()):
            counts = self.config.stash[COUNTS_KEY]
            counts.answered += server.emulator.requests.total
            settings = _shared.settings(self.config)
            _check_all_fired(item, server, settings, "otp_server_session")


def otp_smpp_server(
    request: pytest.FixtureRequest, base: EngageLabSettings
) -> Iterator[OTPSMPPServer]:
    from pytest_engagelab.doors.smpp import OTPSMPPServer, SMPPUnavailable

    settings = marker_settings(request.node, base)
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
    call = node.stash.get(CALL_REPORT_KEY, None)
    if not settings.assert_all_fired or call is None or not call.passed:
        return
    report = controls.unfired_report()
    if report is not None:
        pytest.fail(f"{name}: {report}", pytrace=False)


# -- the clients ----------------------------------------------------------------------------


def _client_credentials(request: pytest.FixtureRequest) -> Credentials:  # -- cassettes --
    """The cassette's credentials on a marked test, otherwise ``otp_mock``'s."""
    active: ActiveCassette | None = request.getfixturevalue("engagelab_cassette")
    if active is not None:
        return active.credentials
    from pytest_engagelab.cassettes.credentials import Credentials

    mock: OTPMock = request.getfixturevalue("otp_mock")
    return Credentials(mock.dev_key, mock.dev_secret, mock.base_url)


def otp_client(request: pytest.FixtureRequest) -> Iterator[OTPClient]:
    from pytest_engagelab.client import OTPClient

    credentials = _client_credentials(request)
    with OTPClient(
        credentials.dev_key, credentials.dev_secret, base_url=credentials.base_url
    ) as client:
        yield client


def otp_async_client(request: pytest.FixtureRequest) -> Iterator[AsyncOTPClient]:
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


# -- guard -------------------------------------------------------------------------------------


def _track(request: pytest.FixtureRequest, controls: EmulatorControls) -> None:
    """Remember the emulators a test used, for its "EngageLab requests" report section."""
    watch_reports(request.config)
    _guard.patch_asyncio()  # asyncio may have been imported since the session started
    request.node.stash.setdefault(CONTROLS_KEY, []).append(controls)


def _count_answered(request: pytest.FixtureRequest, controls: EmulatorControls) -> None:
    request.config.stash[COUNTS_KEY].answered += controls.emulator.requests.total


def live(request: pytest.FixtureRequest) -> Iterator[None]:
    """The ``_engagelab_live`` fixture: the guard lets the test through."""
    guard = request.config.stash.get(GUARD_KEY, None)
    if guard is None:
        yield
        return
    watch_reports(request.config)
    guard.begin_test(live=True)
    try:
        yield
    finally:
        guard.end_test()


def _guard_report(item: pytest.Item, report: pytest.TestReport, excinfo: Any) -> None:
    """A test whose code caught the guard's error fails anyway; a test that failed for
    another reason shows what the guard stopped.  The stopped requests' credentials are
    masked in the failure (``-l`` prints the clients' headers)."""
    guard = item.config.stash.get(GUARD_KEY, None)
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
    controls = item.stash.get(CONTROLS_KEY, None)
    if not controls or not report.failed or item.stash.get(SECTION_KEY, False):
        return
    item.stash[SECTION_KEY] = True
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


# -- reports -----------------------------------------------------------------------------------


class _Reports:
    """The report hook, registered by the first fixture of ours that needs it (or by the
    guard's first refusal), so that a suite that never uses the kit pays nothing per test."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        return _report(item, call, report)


def watch_reports(config: pytest.Config) -> None:
    """Start reading test reports (a passed call, a cassette miss or save, secrets to
    scrub, the guard's refusals, the requests section of a failing test)."""
    if not config.stash.get(WATCHING_KEY, False):
        if not config.pluginmanager.has_plugin(_REPORTS_PLUGIN):
            config.pluginmanager.register(_Reports(), _REPORTS_PLUGIN)
        config.stash[WATCHING_KEY] = True


def _report(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> pytest.TestReport:
    _guard_report(item, report, call.excinfo)  # -- guard --
    _requests_section(item, report)  # -- guard --
    if report.when == "call":
        item.stash[CALL_REPORT_KEY] = report
    if call.excinfo is not None and report.failed:
        from pytest_engagelab.cassettes.errors import CassetteMiss
        from pytest_engagelab.cassettes.reports import miss_report

        if call.excinfo.errisinstance(CassetteMiss):
            report.longrepr = miss_report(call.excinfo, item.path)
    active = item.stash.get(ACTIVE_KEY, None)
    if active is not None and report.when == "teardown":
        _save_cassette(item, active, report)
    if active is not None:  # real credentials may be about: keep them out of reports
        from pytest_engagelab.cassettes.reports import scrub_report

        scrub_report(report, active.scrubber)
    if report.when == "teardown" and CONTROLS_KEY in item.stash:
        # The requests section is written: let go of the test's emulators (and their
        # journals), which the item, kept until the session ends, would otherwise hold.
        del item.stash[CONTROLS_KEY]
    return report


# -- cassettes ---------------------------------------------------------------------------------


def _save_cassette(item: pytest.Item, active: ActiveCassette, report: pytest.TestReport) -> None:
    """Write the cassette once the test passed and so did its whole teardown (every
    fixture's): a test that errors in teardown writes nothing.  The review of what
    changed rides on the teardown report, so it reaches the controller under xdist."""
    call = item.stash.get(CALL_REPORT_KEY, None)
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
    counts = item.config.stash.get(COUNTS_KEY, None)  # -- guard: the summary line
    if counts is not None and active.started:
        if written:
            counts.recorded += 1
        else:
            counts.replayed += 1


class Reviews:
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


def _cassette_for(request: pytest.FixtureRequest, marker: pytest.Mark) -> ActiveCassette:
    __tracebackhide__ = True
    from pytest_engagelab.cassettes.credentials import Credentials
    from pytest_engagelab.cassettes.files import cassette_path
    from pytest_engagelab.cassettes.recorder import ActiveCassette
    from pytest_engagelab.emulator.settings import api_root

    settings = _shared.cassette_settings(request.config)
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
    emulator = marker_settings(node, _shared.settings(request.config))
    base_url = os.environ.get("ENGAGELAB_BASE_URL", "").strip() or emulator.base_url
    replay = Credentials(emulator.dev_key, emulator.dev_secret, api_root(base_url))
    return ActiveCassette(
        settings, path, nodeid=node.nodeid, replay_credentials=replay, display_path=display
    )


def engagelab_cassette(
    request: pytest.FixtureRequest, marker: pytest.Mark
) -> Iterator[ActiveCassette]:
    """The ``engagelab_cassette`` fixture of a test that carries ``marker``."""
    shared = request.config.stash.get(SHARED_KEY, {}).get(request.node.nodeid)
    if shared is not None:  # under xdist: another test records into the same cassette
        pytest.fail(shared, pytrace=False)
    watch_reports(request.config)
    active = _cassette_for(request, marker)
    request.node.stash[ACTIVE_KEY] = active
    problem = None
    try:
        active.start()
    except Exception as error:  # an unreadable cassette: CassetteError names file and problem
        problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    guard = request.config.stash[GUARD_KEY]  # -- guard: a recording cassette reaches its host
    host = _guard.host_of(active.credentials.base_url) if active.recording else None
    if host:
        guard.allow(host)
    try:  # from here on httpx is patched: whatever happens, stop() unpatches it
        stale = active.stale_message(_shared.cassette_settings(request.config).max_age)
        if stale is not None:  # -W error::...StaleCassetteWarning raises here
            from pytest_engagelab.cassettes.errors import StaleCassetteWarning

            request.node.warn(StaleCassetteWarning(stale))
        yield active
    finally:
        if host:
            guard.disallow(host)
        active.stop()  # written, or not, by pytest_runtest_makereport after the teardown
