"""The pytest plugin: options, markers and fixtures.  Registered through ``pytest11``.

Nothing here imports vcrpy: only a test that records or replays a cassette pays
for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_engagelab._settings import (
    INI_OPTIONS,
    MARKER_KEYWORDS,
    EngageLabSettings,
    SettingsError,
    settings_from_ini,
)
from pytest_engagelab.client import AsyncOTPClient, OTPClient
from pytest_engagelab.mock import OTPMock

_SETTINGS_KEY = pytest.StashKey[EngageLabSettings]()

_ENGAGELAB_MARKER = (
    "engagelab(*, dev_key=..., dev_secret=..., base_url=..., strict_templates=False, "
    "seed=None, journal_limit=10000, assert_all_fired=True, key_status='active', "
    "forbidden_endpoints=(), rate_limit=True, max_verify_attempts=None): configure the "
    "EngageLab emulator behind otp_mock and otp_client for this test (keyword-only; "
    "overrides the engagelab_* ini options)."
)


# -- options ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("engagelab", "EngageLab OTP emulator and cassettes (pytest-engagelab)")
    del group  # command-line options join this group as features add them
    for option in INI_OPTIONS:
        parser.addini(option.name, help=option.help, type="string", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _ENGAGELAB_MARKER)

    def read(name: str) -> Any:
        return config.getini(name)

    try:
        settings = settings_from_ini(read, EngageLabSettings())
    except SettingsError as error:
        raise pytest.UsageError(f"pytest-engagelab: {error}") from None
    config.stash[_SETTINGS_KEY] = settings


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
def engagelab_settings(request: pytest.FixtureRequest) -> EngageLabSettings:
    """Suite-wide emulator settings, from the ``engagelab_*`` ini options.

    Override this fixture in a conftest.py to set defaults in code;
    ``@pytest.mark.engagelab(...)`` still applies on top of what it returns.
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
    settings = _marker_settings(request.node, engagelab_settings)
    mock = OTPMock(settings.build_emulator(), base_url=settings.base_url)
    with mock:
        yield mock
    report = mock.unfired_report() if settings.assert_all_fired else None
    if report is not None:
        pytest.fail(f"otp_mock: {report}", pytrace=False)


@pytest.fixture
def otp_client(otp_mock: OTPMock) -> Iterator[OTPClient]:
    """An ``OTPClient`` wired to ``otp_mock``'s base URL and credentials."""
    with OTPClient(otp_mock.dev_key, otp_mock.dev_secret, base_url=otp_mock.base_url) as client:
        yield client


@pytest.fixture
def otp_async_client(otp_mock: OTPMock) -> Iterator[AsyncOTPClient]:
    """An ``AsyncOTPClient`` wired to ``otp_mock``'s base URL and credentials.

    Use it in async tests (anyio, pytest-asyncio); it is closed after the test.
    """
    client = AsyncOTPClient(otp_mock.dev_key, otp_mock.dev_secret, base_url=otp_mock.base_url)
    yield client
    asyncio.run(client.aclose())
