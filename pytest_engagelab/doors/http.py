"""HTTP/1.1 for the loopback door: one connection, served on its own thread, parsed by h11.

h11 does the protocol: the request line and headers, ``Content-Length`` and chunked
framing, keep-alive and the ``Connection`` header, ``Expect: 100-continue``.  This
module does what h11 leaves to its user: reading the socket against a deadline,
the body limit, the answers to malformed or stalled requests, and writing the
emulator's answers.

Every way a request can go wrong ends in a documented answer (status and code 3001)
or a clean close, never in an exception escaping the connection thread.

Why this module is long: one connection is one state machine (waiting, reading a
head, reading a body, answering, lingering after an early answer) with one deadline
and one socket mode threaded through every step; the table of h11's reasons in our
words and the limits' messages belong to it.  Split, each part would need the others.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import h11

from pytest_engagelab._version import __version__
from pytest_engagelab.emulator.model import EmulatorResponse, Fault, error_body
from pytest_engagelab.errors import ErrorCode

__all__ = ["HTTPError", "Limits", "Request", "serve_connection"]

#: The longest request line, in bytes (longer: 414).
MAX_LINE: Final = 8192
#: The longest request head (request line and headers), in bytes (longer: 431).
MAX_HEAD: Final = 16384
#: The most header lines a request may have.
MAX_HEADERS: Final = 100
_BODY_METHODS: Final = frozenset({b"POST", b"PUT", b"PATCH"})
_HOP_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_SERVER: Final = f"pytest-engagelab/{__version__}".encode()
_RECV: Final = 65536


@dataclass(slots=True)
class Request:
    """One request as the door hands it on: ``path`` is percent-decoded (as httpx
    decodes ``URL.path`` for ``otp_mock``), ``target`` is what the client sent."""

    method: str
    target: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Limits:
    """The bounds a connection enforces (see ``OTPServer``)."""

    max_body: int
    read_timeout: float
    keep_alive_timeout: float


class HTTPError(Exception):
    """Answer with this status and code, then close the connection."""

    def __init__(
        self,
        status: int,
        message: str,
        code: ErrorCode = ErrorCode.INVALID_FORMAT,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def answer(self) -> EmulatorResponse:
        plain = error_body(self.code, self.message, self.status)
        return EmulatorResponse(plain.status, plain.body, plain.headers + self.headers)


class _TimedOut(Exception):
    """The whole request did not arrive within ``read_timeout``."""


class _Closed(Exception):
    """The client closed the connection (or stop() did) between requests."""


Handler = Callable[[Request], EmulatorResponse | Fault]
#: ``log(client, method, target, answer or None when dropped, perf_counter at start, note)``
Log = Callable[[str, str, str, "EmulatorResponse | None", float, str], None]


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


_DATE: list[tuple[int, bytes]] = [(0, b"")]


def _http_date() -> bytes:
    now = int(time.time())
    cached_at, text = _DATE[0]
    if cached_at != now:
        text = email.utils.formatdate(now, usegmt=True).encode()
        _DATE[0] = (now, text)
    return text


_H11_REASONS: Final = (
    ("illegal request line", "malformed request line; expected 'METHOD /path HTTP/1.1'"),
    ("illegal header line", "malformed header line; expected 'Name: value'"),
    ("bad Content-Length", "Content-Length is not a number of at most 20 ASCII digits"),
    ("conflicting Content-Length", "the Content-Length headers disagree"),
    ("illegal chunk header", "malformed chunked request body: bad chunk size"),
    ("Missing mandatory Host", "an HTTP/1.1 request needs a Host header (RFC 9112, 3.2)"),
    (
        "peer closed connection without sending complete message body",
        "the connection closed before the request body ended",
    ),
    ("peer unexpectedly closed", "the connection closed before the request head ended"),
    (
        "Only Transfer-Encoding: chunked",
        "Transfer-Encoding other than chunked is not supported; send Content-Length",
    ),
)


@functools.lru_cache(maxsize=64)
def _header_lines(headers: tuple[tuple[str, str], ...]) -> bytes:
    """An answer's own headers as they go on the wire (the few kinds are cached)."""
    return b"".join(
        b"%s: %s\r\n" % (name.title().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers
        if name.lower() not in _HOP_HEADERS and "\n" not in value and "\r" not in value
    )


def _protocol_message(error: h11.ProtocolError) -> str:
    """What was wrong, in our words: h11's own message may quote the bytes it could not
    parse, and those can hold a header value such as the Authorization."""
    text = str(error)
    for prefix, message in _H11_REASONS:
        if text.startswith(prefix):
            return message
    text = text.split(": bytearray(", 1)[0].split(": b'", 1)[0].split(': b"', 1)[0]
    return f"malformed request: {text.rstrip(':')}"


class _Connection:
    """The state of one client connection."""

    def __init__(
        self,
        sock: socket.socket,
        client: str,
        limits: Limits,
        handler: Handler,
        log: Log,
        stopping: threading.Event,
    ) -> None:
        self.sock = sock
        self.client = client
        self.limits = limits
        self.handler = handler
        self.log = log
        self.stopping = stopping
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.deadline = 0.0
        self.timed = False  # whether the socket is in Python's timeout mode
        self.buffered = False  # whether h11 holds bytes of the next request already
        self.head = bytearray()  # the bytes of a head still arriving (to tell 414 from 431)

    # -- reading ------------------------------------------------------------------------

    def _receive(self, idle: bool) -> bool:
        """Read once from the socket into h11: up to ``keep_alive_timeout`` between
        requests, and only until the whole-request deadline once one has started.

        Between requests the socket blocks, bounded by ``SO_RCVTIMEO``: one system call
        per read.  Python's own socket timeout (a ``poll`` before every read and write)
        is used only for a request that arrives in pieces."""
        sock = self.sock
        if idle:
            if self.timed:
                sock.settimeout(None)
                self.timed = False
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _TimedOut
            sock.settimeout(left)
            self.timed = True
        try:
            data = sock.recv(_RECV)
        except TimeoutError:
            raise _TimedOut from None
        except OSError:  # idle too long (EAGAIN), reset by the client, or stop()
            raise _Closed from None
        if idle:
            if data.startswith(b"\r\n") or data.startswith(b"\n"):
                data = data.lstrip(b"\r\n")  # tolerated between requests (RFC 9112, 2.2)
                if not data:
                    return False
            self.deadline = time.monotonic() + self.limits.read_timeout
        if self.h11.their_state is h11.IDLE and len(self.head) <= MAX_HEAD:
            self.head += data[: MAX_HEAD + 1]
        self.h11.receive_data(data)
        return True

    def _next_event(self, idle: bool) -> h11.Event:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                raise self._protocol_error(error) from None
            except ValueError:  # an h11 older than 0.16 turning a huge number into int
                raise HTTPError(400, "malformed request: a number is too long") from None
            if event is h11.NEED_DATA:
                if idle and self.h11.trailing_data[0]:  # part of the next request is here
                    self.deadline = time.monotonic() + self.limits.read_timeout
                    idle = False
                self._receive(idle)
                idle = False
                continue
            assert not isinstance(event, type)  # PAUSED: never, we start the next cycle
            return event

    def _protocol_error(self, error: h11.ProtocolError) -> HTTPError:
        oversized = self._oversized_head()
        if oversized is not None:
            return oversized
        if error.error_status_hint == 431:  # h11's own bound on a head still arriving
            return HTTPError(431, f"the request head is longer than {MAX_HEAD} bytes")
        return HTTPError(400, _protocol_message(error))

    def _oversized_head(self) -> HTTPError | None:
        """414 or 431 for a head over the limits (h11 bounds only a head still arriving)."""
        head = self.head
        line_end = head.find(b"\n")
        if (line_end == -1 and len(head) > MAX_LINE) or line_end > MAX_LINE:
            return HTTPError(414, f"the request line is longer than {MAX_LINE} bytes")
        end = head.find(b"\n\r\n")
        if end == -1:
            end = head.find(b"\n\n")
        if end == -1 and len(head) > MAX_HEAD:
            return HTTPError(431, f"the request head is longer than {MAX_HEAD} bytes")
        if head.count(b"\n", 0, end if end != -1 else len(head)) > MAX_HEADERS:
            return HTTPError(431, f"more than {MAX_HEADERS} header lines")
        return None

    def _read_request(self) -> tuple[Request, bool] | None:
        """The next request and whether to keep the connection; ``None`` to close."""
        try:
            if not self.buffered:  # nothing of the next request yet: wait for it first
                while not self._receive(idle=True):
                    pass
            event = self._next_event(idle=self.buffered)
        except _Closed:
            return None
        if isinstance(event, h11.ConnectionClosed):
            return None
        oversized = self._oversized_head()
        if oversized is not None:
            raise oversized
        self.head.clear()
        if not isinstance(event, h11.Request):  # pragma: no cover - h11 guarantees it
            raise HTTPError(400, "malformed request")
        method = event.method.decode("ascii")
        target = event.target.decode("ascii")
        headers: dict[str, str] = {}
        for name, value in event.headers.raw_items():  # a list: faster than the Sequence
            key = name.decode("ascii").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        path, _, query = target.partition("?")
        if "%" in path:
            path = unquote(path)
        keep_alive = (
            event.http_version == b"1.1" and "close" not in headers.get("connection", "").lower()
        )
        body = self._read_body(event.method, path, headers)
        return Request(method, target, path, query, headers, body), keep_alive

    def _read_body(self, method: bytes, path: str, headers: dict[str, str]) -> bytes:
        length_text = headers.get("content-length")
        if length_text is None and "transfer-encoding" not in headers:
            if method in _BODY_METHODS and not path.startswith("/_emulator/"):
                raise HTTPError(411, f"{method.decode()} needs a Content-Length header")
            return self._body_of_nothing()
        limit = self.limits.max_body
        if length_text is not None and "transfer-encoding" in headers:
            raise HTTPError(
                400, "send Transfer-Encoding: chunked or Content-Length, not both (RFC 9112, 6.3)"
            )
        if length_text is not None:
            length = int(length_text)  # h11 checked it: at most 20 ASCII digits
            if length > limit:
                raise HTTPError(
                    413, f"the request body ({length} bytes) is larger than {limit} bytes"
                )
        if self.h11.they_are_waiting_for_100_continue:
            self._write(
                self.h11.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
            )
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                event = self._next_event(idle=False)
            except _TimedOut:
                if length_text is not None:
                    raise HTTPError(
                        400,
                        f"the request body is shorter than its Content-Length ({length_text} "
                        f"bytes): it did not all arrive within {self.limits.read_timeout:g} s",
                    ) from None
                raise HTTPError(
                    400,
                    "the chunked request body did not all arrive within "
                    f"{self.limits.read_timeout:g} s",
                ) from None
            except _Closed:
                raise HTTPError(
                    400, "the connection closed before the request body ended"
                ) from None
            if isinstance(event, h11.Data):
                total += len(event.data)
                if total > limit:
                    raise HTTPError(413, f"the request body is larger than {limit} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)

    def _body_of_nothing(self) -> bytes:
        event = self._next_event(idle=False)  # h11 has the EndOfMessage ready: no read
        if not isinstance(event, h11.EndOfMessage):  # pragma: no cover - h11 guarantees it
            raise HTTPError(400, "malformed request")
        return b""

    # -- writing ------------------------------------------------------------------------

    def _write(self, data: bytes | None) -> None:
        if data:
            self.sock.sendall(data)

    def _answer(self, method: str, answer: EmulatorResponse, *, keep_alive: bool) -> None:
        """Write the answer: always with ``Content-Length``; no body to ``HEAD``."""
        status = answer.status
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))]
        lines.append(_header_lines(answer.headers))
        lines.append(
            b"Content-Length: %d\r\nDate: %s\r\nServer: %s\r\nConnection: %s\r\n\r\n"
            % (len(answer.body), _http_date(), _SERVER, b"keep-alive" if keep_alive else b"close")
        )
        if method != "HEAD":
            lines.append(answer.body)
        self.sock.sendall(b"".join(lines))

    def _refuse(self, problem: HTTPError, method: str, target: str, started: float) -> None:
        """Answer a request that cannot be served, then close after a moment."""
        answer = problem.answer()
        self.log(self.client, method, target, answer, started, "")
        self._answer(method, answer, keep_alive=False)
        self._linger()

    def _linger(self) -> None:
        """After an early answer, read (and drop) what the client still sends for a
        moment, so that it reads the answer instead of a connection reset."""
        sock = self.sock
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.limits.read_timeout
            budget = 64 * self.limits.max_body + MAX_HEAD
            while budget > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                sock.settimeout(left)
                data = sock.recv(_RECV)
                if not data:
                    return
                budget -= len(data)

    # -- the loop -----------------------------------------------------------------------

    def serve(self) -> None:
        while not self.stopping.is_set():
            started = time.perf_counter()
            try:
                read = self._read_request()
            except HTTPError as problem:
                self._refuse(problem, "-", "-", started)
                return
            except _TimedOut:
                late = HTTPError(
                    408,
                    f"the request did not arrive within {self.limits.read_timeout:g} s "
                    "(read_timeout)",
                )
                self._refuse(late, "-", "-", started)
                return
            if read is None:
                return
            request, keep_alive = read
            outcome = self.handler(request)
            if isinstance(outcome, Fault):
                note = type(outcome.exception).__name__
                self.log(self.client, request.method, request.target, None, started, note)
                self.sock.shutdown(socket.SHUT_RDWR)
                return
            self.log(self.client, request.method, request.target, outcome, started, "")
            self._answer(request.method, outcome, keep_alive=keep_alive)
            if not keep_alive:
                return
            self._next_cycle()

    def _next_cycle(self) -> None:
        """A new h11 state machine for the next request, given what already arrived of it.

        h11 decided whether the connection stays open (``their_state`` after the request
        is ``DONE``, not ``MUST_CLOSE``).  Sending each answer through ``h11.send`` would
        only copy our fixed, well-formed head through its header validation: that cost
        as much as parsing the request (bench/bench_server.py), so answers are written
        directly and the next request gets a fresh ``h11.Connection``."""
        data, closed = self.h11.trailing_data
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.head.clear()
        data = data.lstrip(b"\r\n")  # empty lines between requests are tolerated
        self.buffered = bool(data) or closed
        if data:
            self.head += data[: MAX_HEAD + 1]
            self.h11.receive_data(data)
        if closed:
            self.h11.receive_data(b"")


def _timeval(seconds: float) -> bytes:
    """``seconds`` as ``SO_RCVTIMEO`` takes it: milliseconds on Windows, a timeval
    elsewhere; never zero, which would mean no limit."""
    if sys.platform == "win32":
        return struct.pack("I", max(1, int(seconds * 1000)))
    whole = int(seconds)
    micros = max(1, int((seconds - whole) * 1_000_000)) if whole == 0 else 0
    if whole:
        micros = int((seconds - whole) * 1_000_000)
    return struct.pack("ll", whole, micros)


def serve_connection(
    sock: socket.socket,
    client: str,
    limits: Limits,
    handler: Handler,
    log: Log,
    stopping: threading.Event,
) -> None:
    """Serve requests on ``sock`` until the client closes it, it stays idle too long,
    it must be closed, or ``stopping`` is set.  Never raises."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        idle = _timeval(limits.keep_alive_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, idle)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, idle)
        _Connection(sock, client, limits, handler, log, stopping).serve()
    except OSError:
        pass  # the client went away mid-answer
    except Exception as bug:  # a defect here must not kill the thread with a traceback
        with contextlib.suppress(Exception):
            answer = error_body(
                ErrorCode.INTERNAL_ERROR,
                f"pytest-engagelab server error ({type(bug).__name__}); please report it",
            )
            log(client, "-", "-", answer, time.perf_counter(), "")
    finally:
        sock.close()


def dumps(payload: object) -> bytes:
    """JSON as the control API writes it: never ``Infinity`` or ``NaN``."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", errors="backslashreplace")
