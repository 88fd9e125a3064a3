"""The loopback server's single-thread design, attacked as a hostile or clumsy client would.

One thread serves every connection (``doors/listener.py``, ``doors/http.py``): each test
here is a way a client could stall it, leak a descriptor, or make it skip an answer,
with real sockets and real clients against a real ``OTPServer``.  Every test is bounded
in time (socket timeouts), and none may let an exception escape a thread
(``threading.excepthook``).
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pytest_engagelab.doors.server import OTPServer

PHONE = "+6598765432"
HEALTH = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(autouse=True)
def thread_tracebacks() -> Iterator[list[str]]:
    """Every exception that escapes a thread during the test; none may."""
    caught: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        caught.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}")

    threading.excepthook = hook
    try:
        yield caught
    finally:
        threading.excepthook = previous
    assert caught == []


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def auth(server: OTPServer) -> str:
    token = base64.b64encode(f"{server.dev_key}:{server.dev_secret}".encode()).decode()
    return f"Basic {token}"


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> tuple[bytes, str]:
    """Everything the server sends, and how it ended: "closed", "reset" or "open" (still
    open after ``limit`` seconds)."""
    sock.settimeout(limit)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        return b"".join(chunks), "open"
    except ConnectionResetError:
        return b"".join(chunks), "reset"
    return b"".join(chunks), "closed"


def statuses(raw: bytes) -> list[int]:
    """The status of every answer in ``raw``, in order (a 1xx has no body; every other
    answer carries Content-Length)."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        found.append(status)
        if status >= 200:
            fields = dict(line.lower().split(b":", 1) for line in lines[1:])
            raw = raw[int(fields[b"content-length"]) :]
    return found


# -- deadlines -----------------------------------------------------------------------------------


def test_a_client_that_connects_and_sends_nothing_is_closed_after_keep_alive_timeout() -> None:
    """A connection that never sends a byte has no event to report its deadline: it was
    kept open for ever (one descriptor each, however many clients abandoned theirs),
    unless another connection's deadline happened to make the thread look."""
    with (
        OTPServer(keep_alive_timeout=0.3) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent,
    ):
        started = time.monotonic()
        data, ending = read_until_closed(silent, limit=3)
        elapsed = time.monotonic() - started
    assert (data, ending) == (b"", "closed")
    assert 0.2 < elapsed < 2
