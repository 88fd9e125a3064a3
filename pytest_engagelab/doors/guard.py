"""The guard: no test reaches EngageLab unless a door answers it or the test means it.

The plugin installs it when pytest starts.  It wraps the few functions every Python
client ends up in -- name resolution (``socket.getaddrinfo``, ``gethostbyname``,
``gethostbyname_ex``, asyncio's ``loop.getaddrinfo``) and connect
(``socket.socket.connect``/``connect_ex``) -- and refuses an EngageLab host there,
before any DNS query or connection.  httpx (sync and async), requests/urllib3,
``urllib.request``, ``http.client``, the official SDK and raw sockets all pass
through these, so one guard covers them all.  A loopback host costs a few set
lookups per name lookup or connect; any other host also a look at the caller's frames
(for a request that a proxy would carry to EngageLab); nothing is checked per request
on an open connection.

The refusal is :class:`EngageLabGuardError`, a :class:`ConnectionError`: every client
reports it the way it reports an unreachable host (``httpx.ConnectError``,
``requests.ConnectionError``, ``urllib.error.URLError``...), with the guard's message.
The plugin remembers each refusal, so a test whose code caught the error fails anyway.

This module imports nothing beyond what pytest has already imported.  What a refusal
says (the request read from the caller's frames, the message, the credentials to mask)
lives in :mod:`pytest_engagelab.doors._guard_text`, loaded on the first refusal, lookup of
a host that is not loopback, or report: start-up loads only the patches (bench row 3).

Why this module is long: the guard is one installation over a handful of process-wide
functions, and the patches, the host matching, the per-test allowances (``otp_mock``'s
base URL, a recording cassette, ``engagelab_live``), the stack of nested pytest
sessions and the message all share that one state; apart, each piece would reach
into the others.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "ENGAGELAB_HOSTS",
    "Counts",
    "EngageLabGuardError",
    "Guard",
    "HostPatterns",
    "attempts_text",
    "guard_from_options",
    "host_of",
    "install",
    "is_loopback",
    "mask_credentials",
    "patch_asyncio",
    "uninstall",
]

#: EngageLab's OTP API host and its SMPP host: always guarded.  The hosts of
#: ``pytest_engagelab.emulator.defaults.DEFAULT_BASE_URL`` and ``DEFAULT_SMPP_HOST``,
#: written out so that start-up does not import the emulator (tests/test_plugin.py keeps
#: them equal).
ENGAGELAB_HOSTS: Final = ("otp.api.engagelab.cc", "otpsmpp.api.engagelab.cc")


class EngageLabGuardError(ConnectionError):
    """pytest-engagelab stopped a test from reaching EngageLab, before any connection.

    A :class:`ConnectionError` (so an :class:`OSError`): each client reports it as it
    reports an unreachable host, with this message.  ``host`` and ``port`` are what
    the code tried to reach; ``method``, ``path`` and ``recipient`` (redacted) are
    filled in when the guard could tell, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str,
        port: int | None = None,
        method: str | None = None,
        path: str | None = None,
        recipient: str | None = None,
    ) -> None:
        super().__init__(message)
        self._secrets: frozenset[str] = frozenset()
        self.host = host
        self.port = port
        self.method = method
        self.path = path
        self.recipient = recipient

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, for xdist and multiprocessing
        return (_rebuild, (str(self), self.host, self.port, self.method, self.path, self.recipient))


EngageLabGuardError.__module__ = "pytest_engagelab"  # as users import it


def _rebuild(
    message: str,
    host: str,
    port: int | None,
    method: str | None,
    path: str | None,
    recipient: str | None,
) -> EngageLabGuardError:
    return EngageLabGuardError(
        message, host=host, port=port, method=method, path=path, recipient=recipient
    )


def _normal(host: str) -> str:
    return host.lower().rstrip(".")


@functools.lru_cache(maxsize=256)  # asked on every lookup and connect: hosts repeat
def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (never guarded)."""
    host = _normal(host).strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress  # here, not at plugin load: most suites never ask

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HostPatterns:
    """Host names, exact (``otp.api.engagelab.cc``) or every subdomain (``*.engagelab.cc``)."""

    # Plain classes here, not dataclasses: this module loads with the plugin, and each
    # dataclass costs a millisecond or two of start-up to build.
    __slots__ = ("exact", "suffixes")

    def __init__(self, exact: frozenset[str] = frozenset(), suffixes: tuple[str, ...] = ()):
        self.exact = exact
        self.suffixes = suffixes

    def __repr__(self) -> str:
        return f"HostPatterns(exact={sorted(self.exact)!r}, suffixes={self.suffixes!r})"

    @classmethod
    def parse(cls, lines: Iterable[str], *, source: str) -> HostPatterns:
        """Check and parse ``lines``; a bad one raises ``ValueError`` saying how to fix it."""
        exact: set[str] = set()
        suffixes: list[str] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            host = _normal(line)
            bare = host[2:] if host.startswith("*.") else host
            if (
                "://" in host
                or "/" in host
                or ":" in bare
                or "*" in bare
                or not bare
                or bare.startswith(".")
                or any(c.isspace() for c in bare)
            ):
                raise ValueError(
                    f"{source} = {line!r}: not a host name; give one host per line, such as "
                    "api.engagelab.cc, or *.engagelab.cc for every subdomain (no scheme, port "
                    "or path)"
                )
            if host.startswith("*."):
                suffixes.append("." + bare)
            else:
                exact.add(host)
        return cls(frozenset(exact), tuple(suffixes))

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        host = _normal(host)
        return host in self.exact or any(host.endswith(s) for s in self.suffixes)

    def __or__(self, other: HostPatterns) -> HostPatterns:
        return HostPatterns(self.exact | other.exact, self.suffixes + other.suffixes)


class Guard:
    """The guard of one pytest session: what it guards, what the current test allows,
    and what it stopped.

    ``live`` is set for a test marked ``engagelab_live``; :meth:`allow` lets a host
    through (a cassette that records); :meth:`watch` guards one more host (the base
    URL of an ``otp_mock``).  ``attempts`` are the refusals of the current test, not
    yet reported; ``stopped`` counts every refusal of the session.
    """

    def __init__(self, hosts: HostPatterns, *, enabled: bool = True) -> None:
        self.hosts = hosts
        self.enabled = enabled
        self.live = False
        self.attempts: list[EngageLabGuardError] = []
        self.stopped = 0
        self._allowed: dict[str, int] = {}
        self._watched: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Called after each refusal (the plugin starts reading reports then).
        self.on_stop: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"Guard(hosts={self.hosts!r}, enabled={self.enabled}, stopped={self.stopped})"

    def blocks(self, host: object) -> bool:
        """Whether a connection to ``host`` must be stopped now."""
        if not self.enabled or self.live:
            return False
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str):
            return False
        host = _normal(host)
        if host in self._allowed:
            return False
        return host in self.hosts or host in self._watched

    def refusal(self, host: object, port: object, frame: FrameType) -> EngageLabGuardError | None:
        """The error to raise for a lookup of or connect to ``host`` from ``frame``, or ``None``.

        A guarded ``host`` is refused.  So is any other host when the request being made
        (seen in the caller's frames) is for a guarded one: a proxy would carry it to
        EngageLab.  Loopback is looked at only while a proxy is configured in the
        environment, so a test's own servers cost nothing.
        """
        if not self.enabled or self.live:
            return None
        if self.blocks(host):
            return self.stop(host, port, frame)
        if not (isinstance(host, str) and is_loopback(host)) or _proxy_configured():
            from pytest_engagelab.doors._guard_text import _requested_host, _text

            target = _requested_host(frame, self)
            if target is not None:
                return self.stop(target, None, frame, via=f"{_text(host) or host}:{port}")
        return None

    def begin_test(self, *, live: bool) -> None:
        """A test starts: forget the last test's allowances and refusals."""
        with self._lock:
            self.live = live
            self.attempts = []
            self._allowed.clear()
            self._watched.clear()

    def end_test(self) -> None:
        self.begin_test(live=False)

    def allow(self, host: str) -> None:
        """Let ``host`` through until :meth:`disallow` (or the test ends)."""
        host = _normal(host)
        with self._lock:
            self._allowed[host] = self._allowed.get(host, 0) + 1

    def disallow(self, host: str) -> None:
        _drop(self._allowed, _normal(host), self._lock)

    def watch(self, host: str) -> None:
        """Guard ``host`` too, until :meth:`unwatch` (a loopback host never is)."""
        if is_loopback(host):
            return
        host = _normal(host)
        with self._lock:
            self._watched[host] = self._watched.get(host, 0) + 1

    def unwatch(self, host: str) -> None:
        _drop(self._watched, _normal(host), self._lock)

    def take_attempts(self) -> list[EngageLabGuardError]:
        """The refusals not yet reported, oldest first; they are reported now."""
        with self._lock:
            attempts, self.attempts = self.attempts, []
        return attempts

    def stop(
        self, host: object, port: object, frame: FrameType | None, *, via: str | None = None
    ) -> EngageLabGuardError:
        """Remember a refusal and return the exception to raise in the caller; ``via`` is
        the proxy the request would have gone through."""
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        name = _normal(str(host))
        number = port if isinstance(port, int) and not isinstance(port, bool) else None
        if number is None and isinstance(port, str | bytes) and port.isdigit():
            number = int(port)
        from pytest_engagelab.doors._guard_text import _message, _request_context

        method, path, recipient, secrets = _request_context(frame)
        error = EngageLabGuardError(
            _message(name, number, method, path, recipient, via),
            host=name,
            port=number,
            method=method,
            path=path,
            recipient=recipient,
        )
        error._secrets = secrets  # never in its message, repr or pickle
        with self._lock:
            self.attempts.append(error)
            self.stopped += 1
        if self.on_stop is not None:
            self.on_stop()
        return error


def _drop(counts: dict[str, int], host: str, lock: threading.Lock) -> None:
    with lock:
        left = counts.get(host, 0) - 1
        if left > 0:
            counts[host] = left
        else:
            counts.pop(host, None)


_PROXY_VARIABLES: Final = ("https_proxy", "http_proxy", "all_proxy")


def _proxy_configured() -> bool:
    """Whether the environment sends clients through a proxy (any case of the names)."""
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES)


# -- the patches ----------------------------------------------------------------------------

_STACK: list[Guard] = []  # the innermost session last (pytester runs pytest in pytest)
_PATCH_LOCK: Final = threading.Lock()
_Restore = Callable[[], None]
_RESTORES: list[list[_Restore]] = []  # per install, what uninstall undoes
_ASYNCIO_PATCHED: list[bool] = [False]


def _active() -> Guard | None:
    stack = _STACK
    return stack[-1] if stack else None


def _swap(owner: Any, name: str, make: Callable[[Any], Any]) -> _Restore:
    had = name in vars(owner)
    original = getattr(owner, name)
    replacement = make(original)
    setattr(owner, name, replacement)

    def restore() -> None:
        if getattr(owner, name) is replacement:  # else someone patched on top: leave it
            if had:
                setattr(owner, name, original)
            else:
                delattr(owner, name)

    return restore


def _guarded_getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        __tracebackhide__ = True
        guard = _active()
        if guard is not None and host is not None:
            error = guard.refusal(host, port, sys._getframe(1))
            if error is not None:
                raise error
        return original(host, port, family, type, proto, flags)

    return getaddrinfo


def _guarded_by_name(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def resolve(hostname: Any) -> Any:
        __tracebackhide__ = True
        guard = _active()
        if guard is not None:
            error = guard.refusal(hostname, None, sys._getframe(1))
            if error is not None:
                raise error
        return original(hostname)

    resolve.__name__ = getattr(original, "__name__", "resolve")
    return resolve


def _guarded_connect(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def connect(self: Any, address: Any) -> Any:
        __tracebackhide__ = True
        guard = _active()
        if guard is not None and type(address) is tuple and address:
            port = address[1] if len(address) > 1 else None
            error = guard.refusal(address[0], port, sys._getframe(1))
            if error is not None:
                raise error
        return original(self, address)

    connect.__name__ = getattr(original, "__name__", "connect")
    return connect


def _guarded_loop_getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    async def getaddrinfo(
        self: Any,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Any:
        # Checked here, in the event loop, where the awaiting coroutines (httpx's among
        # them) are on the stack; the executor thread that resolves would not see them.
        __tracebackhide__ = True
        guard = _active()
        if guard is not None and host is not None:
            error = guard.refusal(host, port, sys._getframe(1))
            if error is not None:
                raise error
        return await original(self, host, port, family=family, type=type, proto=proto, flags=flags)

    return getaddrinfo


def patch_asyncio() -> None:
    """Guard asyncio's ``loop.getaddrinfo`` too, once asyncio is imported (cheap to call)."""
    if _ASYNCIO_PATCHED[0] or not _STACK:
        return
    base_events = sys.modules.get("asyncio.base_events")
    if base_events is None:
        return
    with _PATCH_LOCK:
        if _ASYNCIO_PATCHED[0] or not _RESTORES:
            return
        loop = base_events.BaseEventLoop
        _RESTORES[0].append(_swap(loop, "getaddrinfo", _guarded_loop_getaddrinfo))
        _ASYNCIO_PATCHED[0] = True


def install(guard: Guard) -> None:
    """Make ``guard`` the active one; patch the socket functions (again, if someone
    wrapped them since: the guard must run before any wrapper that could resolve)."""
    with _PATCH_LOCK:
        restores = [
            _swap(socket, "getaddrinfo", _guarded_getaddrinfo),
            _swap(socket, "gethostbyname", _guarded_by_name),
            _swap(socket, "gethostbyname_ex", _guarded_by_name),
            _swap(socket.socket, "connect", _guarded_connect),
            _swap(socket.socket, "connect_ex", _guarded_connect),
        ]
        _RESTORES.append(restores)
        _STACK.append(guard)
    patch_asyncio()


def uninstall(guard: Guard) -> None:
    """Undo :func:`install` of ``guard``."""
    with _PATCH_LOCK:
        if guard not in _STACK:
            return
        index = _STACK.index(guard)
        del _STACK[index]
        restores = _RESTORES.pop(index)
        if index == 0 and _ASYNCIO_PATCHED[0]:
            _ASYNCIO_PATCHED[0] = False
        for restore in reversed(restores):
            restore()


# -- from the pytest configuration ----------------------------------------------------------

_SWITCH: Final = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def guard_from_options(
    *, option: str | None, ini: str, hosts: Iterable[str], base_urls: Iterable[str]
) -> Guard:
    """The session's guard, from ``--engagelab-guard``, the ``engagelab_guard`` and
    ``engagelab_guard_hosts`` ini options and the configured base URLs (whose hosts are
    guarded unless they are loopback).  A bad value raises ``ValueError`` saying how to fix it."""
    word = (option or ini).strip().lower() or "true"
    if word not in _SWITCH:
        raise ValueError(
            f"pytest-engagelab: ini option engagelab_guard = {ini!r}: not a boolean; use true "
            "(the default: no test reaches EngageLab unless marked engagelab_live) or false"
        )
    patterns = HostPatterns(frozenset(ENGAGELAB_HOSTS)) | HostPatterns.parse(
        hosts, source="pytest-engagelab: ini option engagelab_guard_hosts"
    )
    configured = set()
    for url in base_urls:
        host = host_of(url)
        if host and not is_loopback(host):
            configured.add(host)
    return Guard(patterns | HostPatterns(frozenset(configured)), enabled=_SWITCH[word])


def host_of(url: str) -> str | None:
    """The host name of ``url``, lower-case, or ``None``."""
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return _normal(host) if host else None


class Counts:
    """What the session's emulators answered and its cassettes did, for the summary line."""

    def __init__(self) -> None:
        self.answered = 0
        self.stopped = 0
        self.replayed = 0
        self.recorded = 0

    def add(self, other: Mapping[str, int]) -> None:
        for name in ("answered", "stopped", "replayed", "recorded"):
            value = other.get(name, 0)
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {
            "answered": self.answered,
            "stopped": self.stopped,
            "replayed": self.replayed,
            "recorded": self.recorded,
        }

    def line(self, record_mode: str) -> str:
        def plural(count: int, word: str) -> str:
            return f"{count} {word}" + ("" if count == 1 else "s")

        return (
            f"engagelab: {plural(self.answered, 'request')} answered by the emulator, "
            f"{self.stopped} stopped by the guard, {plural(self.replayed, 'cassette')} replayed, "
            f"{self.recorded} recorded (record mode {record_mode})"
        )


def attempts_text(attempts: list[EngageLabGuardError]) -> str:
    """The refusals of one test, each once with how often it happened."""
    from pytest_engagelab.doors._guard_text import attempts_text

    return attempts_text(attempts)


def mask_credentials(text: str, attempts: Iterable[EngageLabGuardError] = ()) -> str:
    """``text`` with the credentials of the stopped requests masked, and every Basic
    credential it shows (see :func:`pytest_engagelab.doors._guard_text.mask_credentials`)."""
    from pytest_engagelab.doors._guard_text import mask_credentials

    return mask_credentials(text, attempts)
