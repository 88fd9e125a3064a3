"""The respx door: the emulator answers every httpx request to the EngageLab base URL."""

from __future__ import annotations

import functools
import itertools
import pkgutil
import threading
from collections.abc import Callable
from typing import Final

import httpx
import respx
from respx.mocks import Mocker
from respx.models import AllMockedAssertionError, PassThrough

from pytest_engagelab.doors.controls import EmulatorControls
from pytest_engagelab.emulator.core import DEFAULT_BASE_URL, Emulator
from pytest_engagelab.emulator.journal import register_request_builder
from pytest_engagelab.emulator.model import JSON_HEADERS, Fault

__all__ = ["OTPMock"]

(_JSON_HEADER,) = JSON_HEADERS
_chain: Final = itertools.chain.from_iterable


def _rebuilt_request(method: str, url: str, body: bytes, *headers: bytes) -> httpx.Request:
    """The ``httpx.Request`` a send kept as atoms (see :meth:`OTPMock._answer`): the same
    method, URL, headers (``headers`` is name, value, name, value...: as sent, in order)
    and body, read as the transport read it.  Only its ``extensions`` (the client's
    timeouts) are not kept."""
    pairs = list(zip(headers[::2], headers[1::2], strict=True))
    return httpx.Request(method, url, headers=pairs, content=body)


register_request_builder("httpx", _rebuilt_request)


class _UnrecordedRouter(respx.MockRouter):
    """A respx router that keeps no call history: the emulator's bounded journal is the
    record, and respx's own list would keep every request and response of a long test.

    It has no routes: ``dispatch`` answers each request (a response, or the request
    itself to pass it through), without respx's route matching.  So it takes no
    snapshots to roll back to either (respx builds a ``unittest.mock`` object for
    each, on every start), and has no call history to reset.
    """

    def __init__(self, dispatch: Callable[[httpx.Request], httpx.Response | httpx.Request]) -> None:
        super().__init__(assert_all_called=False, assert_all_mocked=True, using="httpx")
        self._dispatch = dispatch

    def _answer(self, request: httpx.Request) -> httpx.Response:
        answer = self._dispatch(request)
        if not isinstance(answer, httpx.Response):
            message = f"Request marked to pass through: {request!r}"
            raise PassThrough(message, request=request, origin=None)  # type: ignore[arg-type]
        return answer

    # What respx's own ``handler``/``async_handler`` do once a route answered.
    def handler(self, request: httpx.Request) -> httpx.Response:
        answer = self._answer(request)
        if isinstance(answer.stream, httpx.ByteStream):
            answer.read()
        return answer

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        answer = self._answer(request)
        if isinstance(answer.stream, httpx.ByteStream):
            await answer.aread()
        return answer

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

    def reset(self) -> None:
        return None


class _Doors:
    """The started mocks, behind one respx router that all of them share.

    Building a respx router costs more than a whole emulator (respx makes
    ``unittest.mock`` objects for its call lists), so the router is built once
    per process.  It is started when the first mock starts and stopped when
    the last one stops: nothing stays patched while no mock is started.  Each
    request goes to the first started mock whose base URL it is under.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._router: _UnrecordedRouter | None = None
        self._started: tuple[OTPMock, ...] = ()  # replaced, never mutated: read without lock

    def add(self, mock: OTPMock) -> None:
        with self._lock:
            router = self._router
            if router is None:
                router = self._router = _UnrecordedRouter(self._answer)
            first = not self._started
            self._started = (*self._started, mock)
            if first:
                _start(router)

    def remove(self, mock: OTPMock) -> None:
        with self._lock:
            self._started = tuple(m for m in self._started if m is not mock)
            if not self._started and self._router is not None:
                self._router.stop(quiet=True)

    def _answer(self, request: httpx.Request) -> httpx.Response | httpx.Request:
        url = request.url
        for mock in self._started:
            path = mock._path_if_ours(url)
            if path is not None:
                return mock._answer(request, path)
        router = self._router
        mocker = router.Mocker if router is not None else None
        if mocker is not None and any(r is not router for r in mocker.routers):
            # Another respx router is active: let it decide.
            raise AllMockedAssertionError(f"RESPX: {request!r} not mocked!")
        return request  # pass through, untouched


_DOORS: Final = _Doors()


class _Patch:
    """One method swapped on its class, as respx's mocker keeps it (it only ever calls
    ``stop()``): a plain attribute swap instead of ``unittest.mock.patch``, which looks
    its target up by name and inspects it on every start."""

    def __init__(self, owner: type, name: str, new: object) -> None:
        self._owner, self._name = owner, name
        self._original = vars(owner)[name]
        setattr(owner, name, new)

    def stop(self) -> None:
        setattr(self._owner, self._name, self._original)


@functools.cache
def _targets(targets: tuple[str, ...], methods: tuple[str, ...]) -> tuple[tuple[type, str], ...]:
    """The classes and methods respx's httpx mocker patches, or ``()`` when one is not
    a plain method of its class (then respx patches them itself)."""
    found = []
    for target in targets:
        owner = pkgutil.resolve_name(target)
        for method in methods:
            if not isinstance(owner, type) or not callable(vars(owner).get(method)):
                return ()
            found.append((owner, method))
    return tuple(found)


def _start(router: _UnrecordedRouter) -> None:
    """``router.start()``, with the patching done by :class:`_Patch`: what respx does,
    at a fraction of the cost, which every test using ``otp_mock`` pays.

    The patched ``_transport_for_url`` is the hot path of every request: a request
    to a started mock's base URL gets that mock's transport straight away (no
    ``MockTransport``/``TryTransport`` built per request, as respx's own patch
    does); any other request gets what it would have got without the mock, or,
    while another respx router is registered, what respx's patch gives it.
    """
    mocker = Mocker.registry.get("httpx")
    if mocker is None:
        router.start()
        return
    patches = getattr(mocker, "_patches", None)
    routers = getattr(mocker, "routers", None)
    targets = _targets(tuple(mocker.targets), tuple(mocker.target_methods))
    if not targets or not isinstance(patches, list) or patches or not isinstance(routers, list):
        router.start()  # patched already by another respx router (cheap), or unexpected
        return
    router.Mocker = mocker
    mocker.register(router)
    for owner, method in targets:
        patches.append(_Patch(owner, method, _fast_path(vars(owner)[method], mocker)))


@functools.lru_cache(maxsize=16)
def _fast_path(original: Callable[..., object], mocker: type[Mocker]) -> Callable[..., object]:
    """``_transport_for_url`` of httpx's clients while mocks are started (see :func:`_start`);
    the mock's transport answers sync and async clients alike.  Made once per original
    method, not on every start."""
    respx_patch = mocker.mock(original)  # type: ignore[no-untyped-call]
    routers = mocker.routers

    def _transport_for_url(self: object, url: httpx.URL) -> object:
        for mock in _DOORS._started:
            if mock._is_ours(url):
                return mock._transport
        if len(routers) > 1:  # another respx router is registered: respx's own way
            return respx_patch(self, url)
        return original(self, url)

    return _transport_for_url


class _Transport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A started mock's answer to every request under its base URL."""

    def __init__(self, mock: OTPMock) -> None:
        self._mock = mock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return self._mock._answer_url(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self._mock._answer_url(request)


@functools.lru_cache(maxsize=64)
def _parsed_base_url(base_url: str) -> tuple[tuple[str, str, int | None], str]:
    """(scheme, host, port) and path of a base URL: parsed once, not for every mock."""
    prefix = httpx.URL(base_url)
    return (prefix.scheme, prefix.host, prefix.port), prefix.path.rstrip("/")


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
        self._origin, self._base_path = _parsed_base_url(self.base_url)
        self._started = False
        # Made on start and dropped on stop: it refers back to this mock, and a stopped
        # mock (with its journal) must be freed as soon as the test lets go of it, not
        # at the next full garbage collection.
        self._transport: _Transport | None = None

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
            self._transport = _Transport(self)
            _DOORS.add(self)
            self._started = True

    def stop(self) -> None:
        """Stop intercepting; nothing stays patched once every mock has stopped."""
        if self._started:
            _DOORS.remove(self)
            self._started = False
            self._transport = None

    def _is_ours(self, url: httpx.URL) -> bool:
        """``_path_if_ours(url) is not None``, without decoding the path of a URL under a
        base URL that has none (the default): asked for every request."""
        if (url.scheme, url.host, url.port) != self._origin:
            return False
        return not self._base_path or self._path_if_ours(url) is not None

    def _path_if_ours(self, url: httpx.URL) -> str | None:
        if (url.scheme, url.host, url.port) != self._origin:
            return None
        base_path = self._base_path
        path = url.path
        if base_path and not (path == base_path or path.startswith(base_path + "/")):
            return None
        return path[len(base_path) :] or "/"

    def _answer_url(self, request: httpx.Request) -> httpx.Response:
        # The fast path gave this mock's transport for this URL only after _is_ours
        # checked its scheme, host and port: the path is all that is left to read.
        path = request.url.path
        base_path = self._base_path
        if base_path:
            if not (path == base_path or path.startswith(base_path + "/")):
                # not reached: the fast path picked this mock for this URL
                raise AllMockedAssertionError(f"RESPX: {request!r} not mocked!")
            path = path[len(base_path) :] or "/"
        return self._answer(request, path)

    def _answer(self, request: httpx.Request, path: str) -> httpx.Response:
        # The journal keeps the request as atoms, rebuilt by _rebuilt_request when a test
        # reads it: a kept httpx.Request is six objects the garbage collector tracks.
        method, asked, body = request.method, request.headers, request.read()
        recipe = ("httpx", method, str(request.url), body, *_chain(asked.raw))
        outcome = self.emulator.handle(method, path, asked, body, request_recipe=recipe)
        if isinstance(outcome, Fault):
            exception = outcome.exception
            if isinstance(exception, httpx.RequestError):
                exception.request = request
            raise exception
        # What ``httpx.Response(status, headers=..., content=body)`` builds, without
        # its content-header defaults pass (a KeyError per response).
        body = outcome.body
        if outcome.headers is JSON_HEADERS:  # most answers: a JSON body, no other header
            headers = [_JSON_HEADER, ("Content-Length", str(len(body)))]
        else:
            headers = list(outcome.headers)
            if not any(name == "content-length" for name, _ in headers):
                headers.append(("Content-Length", str(len(body))))
        response = httpx.Response(
            outcome.status, headers=headers, stream=httpx.ByteStream(body), request=request
        )
        response.read()
        return response
