"""The loopback listener both socket doors (HTTP and SMPP) stand on.

It binds and accepts in one background thread, and serves each connection in one of
two ways:

* ``serve(conn, client)``: in a thread of its own, with a blocking socket (the SMPP
  door, whose sessions block on their own reads);
* ``open_channel(conn, client)``: a :class:`Channel` served by the accepting thread
  itself, with a non-blocking socket in the same selector as the listening socket
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
"""

from __future__ import annotations

import contextlib
import errno
import math
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
        selector = selectors.DefaultSelector()
        selector.register(listener, READ)
        selector.register(waker[0], READ)
        channels: dict[socket.socket, Channel] = {}
        next_check = math.inf  # no channel's deadline is earlier than this
        backoff = 0.0
        resume_accept = math.inf  # out of descriptors: accept again at this time
        monotonic = time.monotonic
        try:
            while not self.stopping.is_set():
                wake = min(next_check, resume_accept)
                timeout = None if wake == math.inf else max(0.0, wake - monotonic())
                for key, mask in selector.select(timeout):
                    channel: Channel | None = key.data
                    if channel is None:
                        if key.fileobj is not listener or self.stopping.is_set():
                            continue
                        backoff, first = self._accept_channels(
                            listener, selector, channels, backoff
                        )
                        # A client that connects and sends nothing has no event to report
                        # its deadline: it must count now, or it is never closed.
                        next_check = min(next_check, first)
                        if backoff:
                            selector.unregister(listener)  # wait: retrying would spin
                            resume_accept = monotonic() + backoff
                        continue
                    try:
                        if mask & READ and channel.interest & READ:
                            channel.readable()
                        elif mask & WRITE and channel.interest & WRITE:
                            channel.writable()
                    # A defect, or user code (a log callback, an emulator subscriber) raising
                    # even a BaseException such as pytest.fail(), must not stop the others.
                    except BaseException as bug:
                        self._crash(channel, bug)
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    self._settle(selector, channels, sock, channel, key.events)
                    if channel.deadline < next_check:
                        next_check = channel.deadline
                now = monotonic()
                if now >= resume_accept:
                    resume_accept = math.inf
                    selector.register(listener, READ)
                if now >= next_check:
                    next_check = math.inf
                    for sock, channel in list(channels.items()):
                        if channel.deadline <= now:
                            events = channel.interest
                            try:
                                channel.expired(now)
                            except BaseException as bug:
                                self._crash(channel, bug)
                            self._settle(selector, channels, sock, channel, events)
                        if channel.interest and channel.deadline < next_check:
                            next_check = channel.deadline
        finally:
            for sock in channels:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            selector.close()

    def _accept_channels(
        self,
        listener: socket.socket,
        selector: selectors.BaseSelector,
        channels: dict[socket.socket, Channel],
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
            try:
                channel = self._open_channel(conn, client)
                selector.register(conn, channel.interest, channel)
            except BaseException:  # the client is already gone, or a defect: drop this one
                conn.close()
                continue
            channels[conn] = channel
            first = min(first, channel.deadline)

    @staticmethod
    def _crash(channel: Channel, bug: BaseException) -> None:
        with contextlib.suppress(BaseException):
            channel.crashed(bug)
        channel.interest = 0

    @staticmethod
    def _settle(
        selector: selectors.BaseSelector,
        channels: dict[socket.socket, Channel],
        sock: socket.socket,
        channel: Channel,
        registered: int,
    ) -> None:
        """Close a channel that is done; follow a change of what it waits for."""
        interest = channel.interest
        if interest == registered:
            return
        if interest == 0:
            if channels.pop(sock, None) is not None:
                selector.unregister(sock)
                sock.close()
        else:
            selector.modify(sock, interest, channel)

    # -- threads: a connection per thread ---------------------------------------------------

    def _run(self, conn: socket.socket, client: str) -> None:
        assert self._serve is not None
        try:
            self._serve(conn, client)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
