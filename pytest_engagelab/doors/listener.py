"""The loopback listener both socket doors (HTTP and SMPP) stand on.

It binds, accepts in a background thread and hands each connection to the door's
``serve(conn, client)`` in a thread of its own.  When ``accept()`` fails for want of
file descriptors or buffers, the queued connection stays queued and the listener
readable, so retrying at once would spin at 100% CPU: it waits instead, 5 ms and
doubling up to 0.5 s, and serves the connection once a descriptor is free.
:meth:`Listener.stop` closes the listening socket and every open connection and joins
every thread: nothing it opened outlives the call.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["Listener"]

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
        serve: Callable[[socket.socket, str], None],
        *,
        what: str,
        thread_name: str,
    ) -> None:
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self._serve = serve
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
            target=self._accept_loop, name=f"{self._thread_name}:{self.port}", daemon=True
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

    def _run(self, conn: socket.socket, client: str) -> None:
        try:
            self._serve(conn, client)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
