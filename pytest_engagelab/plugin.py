"""The pytest plugin: its hooks and fixtures, nothing else.  Registered through ``pytest11``.

Thin on purpose (start-up cost, bench row 3): at every start-up pytest looks at each name
of a plugin module for hooks and fixtures, and reads the module through its assertion
rewriter.  So each hook here calls :mod:`pytest_engagelab._plugin_shared` (options,
settings, the guard's set-up, collection, the session's header and summary), and each
fixture keeps its name, scope and docstring (what ``pytest --fixtures`` shows) while its
work is in :mod:`pytest_engagelab._plugin_impl`, imported by the first fixture of the kit
a run uses.  The three private fixtures that collection gives to marked tests are in
:mod:`pytest_engagelab._plugin_fixtures`, registered only when a test needs one.  The
emulator, its doors, httpx, respx and vcrpy are imported by the fixtures that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_engagelab import _plugin_shared as _shared

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pytest_engagelab.cassettes.recorder import ActiveCassette
    from pytest_engagelab.client import AsyncOTPClient, OTPClient
    from pytest_engagelab.doors.mock import OTPMock
    from pytest_engagelab.doors.server import OTPServer
    from pytest_engagelab.doors.smpp import OTPSMPPServer
    from pytest_engagelab.emulator.settings import EngageLabSettings


# -- hooks --------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    _shared.addoption(parser)


def pytest_configure(config: pytest.Config) -> None:
    def on_stop() -> None:  # the guard's first refusal: its report goes with its test
        from pytest_engagelab._plugin_impl import watch_reports

        watch_reports(config)

    if _shared.configure(config, on_stop):  # cassettes record, or --engagelab-review
        from pytest_engagelab._plugin_impl import Reviews

        config.pluginmanager.register(Reviews(config), "engagelab-cassette-review")


@pytest.hookimpl(trylast=True)  # after the hooks that add markers or deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the tests of the kit their fixtures; refuse two recordings into one cassette."""
    if _shared.collection_modifyitems(config, items):  # a test needs a private fixture
        from pytest_engagelab import _plugin_fixtures

        if not config.pluginmanager.has_plugin(_plugin_fixtures.NAME):
            config.pluginmanager.register(_plugin_fixtures, _plugin_fixtures.NAME)


def pytest_collection(session: pytest.Session) -> bool | None:
    """Under ``--engagelab-check-drift``, the items are the recorded interactions."""
    return _shared.collection(session)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The guard covers asyncio's ``loop.getaddrinfo`` once asyncio is imported."""
    _shared.collection_finish()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Nobody records by accident: the header says so when cassettes record."""
    return _shared.report_header(config)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    _shared.terminal_summary(terminalreporter, config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist, a worker hands its counts to the controller's summary line."""
    _shared.sessionfinish(session)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    _shared.testnodedown(node)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def engagelab_settings(request: pytest.FixtureRequest) -> EngageLabSettings:
    """Suite-wide emulator settings, from the ``engagelab_*`` ini options.

    Override this fixture in a conftest.py to set defaults in code (any scope);
    ``@pytest.mark.engagelab(...)`` still applies on top of what it returns.
    Session-scoped: the ini options do not change during a run, and a test using
    ``otp_mock`` then does not pay for setting it up and tearing it down again.
    """
    return _shared.settings(request.config)


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
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.otp_mock(request, engagelab_settings)


@pytest.fixture
def otp_client(request: pytest.FixtureRequest) -> Iterator[OTPClient]:
    """An ``OTPClient`` wired to ``otp_mock``'s base URL and credentials.

    On a test marked ``@pytest.mark.engagelab_cassette`` it talks to the real base
    URL through the cassette instead (no ``otp_mock``): with the credentials from
    ``ENGAGELAB_DEV_KEY``/``ENGAGELAB_DEV_SECRET`` when recording, with the
    emulator's placeholder credentials when replaying.
    """
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.otp_client(request)


@pytest.fixture
def otp_async_client(request: pytest.FixtureRequest) -> Iterator[AsyncOTPClient]:
    """An ``AsyncOTPClient`` wired to ``otp_mock``'s base URL and credentials.

    Use it in async tests (anyio, pytest-asyncio); it is closed after the test.
    On a test marked ``@pytest.mark.engagelab_cassette`` it talks through the
    cassette, like ``otp_client``.
    """
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.otp_async_client(request)


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
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.otp_server(request, engagelab_settings)


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
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.otp_server_session(request)


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
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.otp_smpp_server(request, engagelab_settings)


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
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.engagelab_cassette(request, marker)
