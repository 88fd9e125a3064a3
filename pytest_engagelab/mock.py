"""The respx door: the emulator answers every httpx request to the EngageLab base URL."""

from __future__ import annotations

from types import TracebackType

import httpx
import respx
from respx.models import AllMockedAssertionError

from pytest_engagelab._controls import EmulatorControls
from pytest_engagelab._emulator import DEFAULT_BASE_URL, Emulator, Fault

__all__ = ["OTPMock"]


class _UnrecordedRouter(respx.MockRouter):
    """A respx router that keeps no call history: the emulator's bounded journal is the
    record, and respx's own list would keep every request and response of a long test.

    Its one route never changes, so it takes no snapshots to roll back to either
    (respx builds a ``unittest.mock`` object for each, on every start).
    """

    def record(
        self,
        request: httpx.Request,
        *,
        response: httpx.Response | None = None,
        route: respx.Route | None = None,
    ) -> None:
        return None

    def snapshot(self) -> None:
        return None

    def rollback(self) -> None:
        return None


class OTPMock(EmulatorControls):
    """EngageLab's OTP API, in-process, for every httpx client the code under test builds.

    While started, each httpx request (sync or async, from any ``httpx.Client``
    or ``httpx.AsyncClient``) whose URL starts with ``base_url`` is answered by
    the emulator.  Requests to other URLs are left alone: they go wherever they
    would have gone without it (another active mock such as ``respx_mock`` or
    pytest-httpx's ``httpx_mock``, or the network).

    Use it as the ``otp_mock`` fixture, or by hand::

        with OTPMock() as otp:
            ...
    """

    def __init__(
        self, emulator: Emulator | None = None, *, base_url: str = DEFAULT_BASE_URL
    ) -> None:
        super().__init__(emulator if emulator is not None else Emulator(), base_url)
        self._router = _UnrecordedRouter(
            assert_all_called=False, assert_all_mocked=True, using="httpx"
        )
        self._router.route().mock(side_effect=self._answer)
        self._prefix = httpx.URL(self.base_url)
        self._started = False

    def __repr__(self) -> str:
        sent = len(self.emulator.journal)
        return f"OTPMock(base_url={self.base_url!r}, dev_key={self.dev_key!r}, sent={sent})"

    @property
    def started(self) -> bool:
        """Whether requests are being intercepted now."""
        return self._started

    def start(self) -> None:
        """Start intercepting httpx requests to ``base_url``."""
        if not self._started:
            self._router.start()
            self._started = True

    def stop(self) -> None:
        """Stop intercepting; nothing stays patched once every mock has stopped."""
        if self._started:
            self._router.stop(quiet=True)
            self._started = False

    def __enter__(self) -> OTPMock:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _path_if_ours(self, url: httpx.URL) -> str | None:
        prefix = self._prefix
        if (url.scheme, url.host, url.port) != (prefix.scheme, prefix.host, prefix.port):
            return None
        base_path = prefix.path.rstrip("/")
        path = url.path
        if base_path and not (path == base_path or path.startswith(base_path + "/")):
            return None
        return path[len(base_path) :] or "/"

    def _answer(self, request: httpx.Request) -> httpx.Response | httpx.Request:
        path = self._path_if_ours(request.url)
        if path is None:
            mocker = self._router.Mocker
            if mocker is not None and any(r is not self._router for r in mocker.routers):
                # Another respx router is active: let it decide.
                raise AllMockedAssertionError(f"RESPX: {request!r} not mocked!")
            return request  # pass through, untouched
        outcome = self.emulator.handle(
            request.method, path, request.headers, request.read(), request=request
        )
        if isinstance(outcome, Fault):
            exception = outcome.exception
            if isinstance(exception, httpx.RequestError):
                exception.request = request
            raise exception
        return httpx.Response(
            outcome.status, headers=list(outcome.headers), content=outcome.body, request=request
        )
