"""The loopback listener both socket doors (HTTP and SMPP) stand on.

It binds and accepts in one background thread, and serves each connection in one of
two ways:

* ``serve(conn, client)``: in a thread of its own, with a blocking socket (the SMPP
  door, whose sessions block on their own reads);
* ``open_channel(conn, client)``: a :class:`Channel` served by the accepting thread
  itself, with a non-blocking socket in the same poller (epoll) as the listening socket
  (the HTTP door).  One thread serves every connection: no thread per client, no
  hand-over of the GIL between them, and one ``select`` can answer several
  clients.  The channel says what it waits for (``interest``) and until when
  (``deadline``); the loop calls it back when its socket is ready or its deadline has
  passed, and closes its socket once ``interest`` is 0.

When ``accept()`` fails for want of file descriptors or buffers, the queued connection
stays queued and the listener readable, so retrying at once would spin at 100% CPU: it
waits instead, 5 ms and doubling up to 0.5 s, and serves the connection once a
descriptor is free.  :meth:`Listener.stop` closes the listening socket and every open
connection and joins every thread: nothing it opened outlives the call.

Why this module is long: the two ways of serving share binding, accepting, the back-off
and stopping, and the channel loop carries its own small poller layer (``select.epoll``
itself where there is one, the same calls on ``selectors`` elsewhere), because the
``selectors`` wrapper cost a lookup and a translation per event on every request.
"""

from __future__ import annotations

import contextlib
import errno
import math
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

__all__ = ["Channel", "Listener"]

READ: Final = selectors.EVENT_READ
WRITE: Final = selectors.EVENT_WRITE


class Channel(Protocol):
    """A connection served by the listener's own thread (see the module docstring)."""

    #: what the channel waits for: ``READ``, ``WRITE``, or 0 to be closed.
    interest: int
    #: ``time.monotonic()`` after which :meth:`expired` is called (``math.inf``: never).
    deadline: float

    def readable(self) -> None:
        """The socket has data, or the peer closed it."""

    def writable(self) -> None:
        """The socket takes more output."""

    def expired(self, now: float) -> None:
        """The deadline passed (``now`` is at or after it)."""

    def crashed(self, error: BaseException) -> None:
        """A callback raised ``error`` (a defect): the channel is closed after this."""


#: accept() errors that mean "no resources now", not "that client gave up".
_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BACKOFF_FIRST: Final = 0.005
_BACKOFF_MAX: Final = 0.5

# The channel loop waits on ``select.epoll`` itself where there is one (Linux): the
# ``selectors`` wrapper costs a key lookup, a tuple and a mask translation per event, on
# every request.  Elsewhere the same calls go through ``selectors``.
_EPOLL: Final = hasattr(select, "epoll")
_IN: Final[int] = select.EPOLLIN if _EPOLL else 1
_OUT: Final[int] = select.EPOLLOUT if _EPOLL else 4
#: Any event but "writable" lets a reader see its data or the end (as ``selectors`` reads
#: epoll's HUP and ERR); any but "readable" lets a writer see its error.
_NOT_OUT: Final = ~_OUT
_NOT_IN: Final = ~_IN
#: A channel's interest as the poller's event mask.
_EVENTS: Final = {READ: _IN, WRITE: _OUT, READ | WRITE: _IN | _OUT}


class _Poller(Protocol):
    """What the channel loop uses of ``select.epoll``."""

    def register(self, fd: int, eventmask: int, /) -> None: ...

    def modify(self, fd: int, eventmask: int, /) -> None: ...

    def unregister(self, fd: int, /) -> None: ...

    def poll(self, timeout: float, /) -> list[tuple[int, int]]: ...

    def close(self) -> None: ...


class _SelectorPoller:
    """``select.epoll``'s calls on ``selectors``, where there is no epoll."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    @staticmethod
    def _events(mask: int) -> int:
        return (READ if mask & _IN else 0) | (WRITE if mask & _OUT else 0)

    def register(self, fd: int, eventmask: int, /) -> None:
        self._selector.register(fd, self._events(eventmask))

    def modify(self, fd: int, eventmask: int, /) -> None:
        self._selector.modify(fd, self._events(eventmask))

    def unregister(self, fd: int, /) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float, /) -> list[tuple[int, int]]:
        return [
            (key.fd, (_IN if events & READ else 0) | (_OUT if events & WRITE else 0))
            for key, events in self._selector.select(None if timeout < 0 else timeout)
        ]

    def close(self) -> None:
        self._selector.close()


def _poller() -> _Poller:
    return select.epoll() if _EPOLL else _SelectorPoller()


def _settle(
    poller: _Poller,
    channels: dict[int, Channel],
    socks: dict[int, socket.socket],
    fd: int,
    channel: Channel,
) -> None:
    """Close a channel that is done; follow a change of what it waits for."""
    interest = channel.interest
    if interest == 0:
        if channels.pop(fd, None) is not None:
            poller.unregister(fd)
            socks.pop(fd).close()
    else:
        poller.modify(fd, _EVENTS[interest])


class Listener:
    """One listening socket on ``host``:``port`` (0: the system picks) and its threads.

    ``serve(conn, client)`` runs in the connection's own thread with a blocking socket;
    ``client`` is ``"HOST:PORT"``.  ``what`` names the door in errors ("OTPServer") and
    ``thread_name`` prefixes its threads.  ``stopping`` is set while the listener stops,
    so a door's connection loops can end.
    """

    def __init__(
        self,
        host: str,
        port: int,
        serve: Callable[[socket.socket, str], None] | None,
        *,
        what: str,
        thread_name: str,
        open_channel: Callable[[socket.socket, str], Channel] | None = None,
    ) -> None:
        if (serve is None) == (open_channel is None):
            raise TypeError("give Listener either serve or open_channel")
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self._serve = serve
        self._open_channel = open_channel
        self._what = what
        self._thread_name = thread_name
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._listener: socket.socket | None = None
        self._waker: tuple[socket.socket, socket.socket] | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._acceptor is not None

    def start(self) -> int:
        """Bind, listen and accept in a background thread; return the port served."""
        if self._acceptor is not None:
            return self.port
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(socket.SOMAXCONN)
            listener.setblocking(False)
        except OSError as error:
            listener.close()
            raise OSError(
                error.errno,
                f"{self._what} cannot listen on {self.host}:{self.port}: {error.strerror}",
            ) from error
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._waker = socket.socketpair()
        self.stopping.clear()
        self._acceptor = threading.Thread(
            target=self._accept_loop if self._serve is not None else self._channel_loop,
            name=f"{self._thread_name}:{self.port}",
            daemon=True,
        )
        self._acceptor.start()
        return self.port

    def stop(self) -> None:
        """Close the listening socket and every connection; join every thread."""
        acceptor = self._acceptor
        if acceptor is None:
            return
        self.stopping.set()
        assert self._waker is not None
        assert self._listener is not None
        self._waker[1].send(b"x")
        acceptor.join()
        for end in self._waker:
            end.close()
        self._listener.close()
        with self._lock:
            connections = list(self._connections.items())
        for conn, _thread in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _conn, thread in connections:
            thread.join()
        self._acceptor = self._listener = self._waker = None

    def _accept_loop(self) -> None:
        listener, waker = self._listener, self._waker
        assert listener is not None
        assert waker is not None
        backoff = 0.0
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(waker[0], selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is not listener or self.stopping.is_set():
                        continue
                    try:
                        conn, peer = listener.accept()
                    except OSError as error:
                        if error.errno in _OUT_OF_RESOURCES:
                            # The connection stays queued and the listener readable: retrying
                            # at once would spin.  Wait, longer each time, until one is free.
                            backoff = min(max(backoff * 2, _BACKOFF_FIRST), _BACKOFF_MAX)
                            self.stopping.wait(backoff)
                        continue  # otherwise the client gave up before we accepted it
                    backoff = 0.0
                    conn.setblocking(True)
                    client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
                    thread = threading.Thread(
                        target=self._run,
                        args=(conn, client),
                        name=f"{self._thread_name}:{self.port}:conn",
                        daemon=True,
                    )
                    with self._lock:
                        self._connections[conn] = thread
                    thread.start()

    # -- channels: every connection served by this thread ---------------------------------

    def _channel_loop(self) -> None:
        listener, waker, open_channel = self._listener, self._waker, self._open_channel
        assert listener is not None
        assert waker is not None
        assert open_channel is not None
        poller = _poller()
        listen_fd, waker_fd = listener.fileno(), waker[0].fileno()
        poller.register(listen_fd, _IN)
        poller.register(waker_fd, _IN)
        channels: dict[int, Channel] = {}
        socks: dict[int, socket.socket] = {}
        next_check = math.inf  # no channel's deadline is earlier than this
        backoff = 0.0
        resume_accept = math.inf  # out of descriptors: accept again at this time
        monotonic = time.monotonic
        poll = poller.poll
        get = channels.get
        try:
            while True:
                wake = next_check if next_check < resume_accept else resume_accept
                if wake == math.inf:
                    timeout = -1.0  # no deadline: wait for an event
                else:
                    timeout = wake - monotonic()
                    if timeout < 0.0:
                        timeout = 0.0
                for fd, mask in poll(timeout):
                    channel = get(fd)
                    if channel is None:
                        if self.stopping.is_set():
                            return
                        if fd != listen_fd:
                            continue
                        backoff, first = self._accept_channels(
                            listener, poller, channels, socks, backoff
                        )
                        # A client that connects and sends nothing has no event to report
                        # its deadline: it must count now, or it is never closed.
                        if first < next_check:
                            next_check = first
                        if backoff:
                            poller.unregister(listen_fd)  # wait: retrying would spin
                            resume_accept = monotonic() + backoff
                        continue
                    interest = channel.interest  # what the poller waits for on fd
                    try:
                        if mask & _NOT_OUT and interest & READ:
                            channel.readable()
                        elif mask & _NOT_IN and interest & WRITE:
                            channel.writable()
                    # A defect, or user code (a log callback, an emulator subscriber) raising
                    # even a BaseException such as pytest.fail(), must not stop the others.
                    except BaseException as bug:
                        self._crash(channel, bug)
                    if channel.interest != interest:
                        _settle(poller, channels, socks, fd, channel)
                    if channel.deadline < next_check:
                        next_check = channel.deadline
                if next_check == math.inf and resume_accept == math.inf:
                    continue
                now = monotonic()
                if now >= resume_accept:
                    resume_accept = math.inf
                    poller.register(listen_fd, _IN)
                if now >= next_check:
                    next_check = math.inf
                    for fd, channel in list(channels.items()):
                        if channel.deadline <= now:
                            interest = channel.interest
                            try:
                                channel.expired(now)
                            except BaseException as bug:
                                self._crash(channel, bug)
                            if channel.interest != interest:
                                _settle(poller, channels, socks, fd, channel)
                        if channel.interest and channel.deadline < next_check:
                            next_check = channel.deadline
        finally:
            for sock in socks.values():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            poller.close()

    def _accept_channels(
        self,
        listener: socket.socket,
        poller: _Poller,
        channels: dict[int, Channel],
        socks: dict[int, socket.socket],
        backoff: float,
    ) -> tuple[float, float]:
        """Accept every queued connection; the back-off to wait if out of descriptors, and
        the earliest deadline of the channels opened."""
        assert self._open_channel is not None
        first = math.inf
        while True:
            try:
                conn, peer = listener.accept()
            except BlockingIOError:
                return 0.0, first
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    return min(max(backoff * 2, _BACKOFF_FIRST), _BACKOFF_MAX), first
                continue  # the client gave up before we accepted it
            conn.setblocking(False)
            client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
            fd = conn.fileno()
            try:
                channel = self._open_channel(conn, client)
                poller.register(fd, _EVENTS[channel.interest])
            except BaseException:  # the client is already gone, or a defect: drop this one
                conn.close()
                continue
            channels[fd] = channel
            socks[fd] = conn
            first = min(first, channel.deadline)

    @staticmethod
    def _crash(channel: Channel, bug: BaseException) -> None:
        with contextlib.suppress(BaseException):
            channel.crashed(bug)
        channel.interest = 0

    # -- threads: a connection per thread ---------------------------------------------------

    def _run(self, conn: socket.socket, client: str) -> None:
        assert self._serve is not None
        try:
            self._serve(conn, client)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
