"""The plugin's private fixtures, which collection gives to the tests that need them: a
test marked ``engagelab`` or ``engagelab_live``, or one using ``otp_server_session``.

Registered (``config.pluginmanager.register``) by the plugin's
``pytest_collection_modifyitems`` only when a collected test needs one of them, so that
a run that never uses the kit does not pay for pytest's look at three more fixtures at
start-up (bench row 3).  Their work is in :mod:`pytest_engagelab._plugin_impl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The name this module is registered under.
NAME = "engagelab-private-fixtures"


@pytest.fixture
def _engagelab_session_server_per_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Give ``otp_server_session`` a fresh emulator before each test that uses it; check its
    injections after.  Given at collection to the tests that name it; a test that reaches it
    through ``request.getfixturevalue`` is served by a hook the session server registers."""
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.session_server_per_test(request)


@pytest.fixture
def _engagelab_marker_check(request: pytest.FixtureRequest) -> None:
    """Check ``@pytest.mark.engagelab`` on a test that carries it, fixture of ours or not.

    Given at collection to the marked tests only, not run as a hook for every test.
    """
    from pytest_engagelab import _plugin_impl

    _plugin_impl.check_marker(request)


@pytest.fixture
def _engagelab_live(request: pytest.FixtureRequest) -> Iterator[None]:
    """Let a test marked ``engagelab_live`` through the guard (given to those tests at
    collection)."""
    from pytest_engagelab import _plugin_impl

    yield from _plugin_impl.live(request)
