"""HTTP/1.1 for the loopback door: one connection as a non-blocking channel, parsed by h11.

h11 does the protocol: the request line and headers, ``Content-Length`` and chunked
framing, keep-alive and the ``Connection`` header, ``Expect: 100-continue``.  This
module does what h11 leaves to its user: feeding it what the socket delivers, the
whole-request deadline, the body limit, the answers to malformed or stalled
requests, and writing the emulator's answers.  The listener's thread
(:class:`~pytest_engagelab.doors.listener.Listener`) serves every connection: it calls
:meth:`HTTPChannel.readable` when bytes arrive, :meth:`~HTTPChannel.writable` when an
answer that did not fit the socket's buffer can go on, and
:meth:`~HTTPChannel.expired` when the channel's deadline passes.

Every way a request can go wrong ends in a documented answer (status and code 3001)
or a clean close, never in an exception escaping to the listener.

Why this module is long: one connection is one state machine (waiting, reading a
head, reading a body, answering, lingering after an early answer) with one deadline
threaded through every step; the table of h11's reasons in our words and the limits'
messages belong to it.  Split, each part would need the others.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import h11

from pytest_engagelab._version import __version__
from pytest_engagelab.emulator.model import EmulatorResponse, Fault, error_body
from pytest_engagelab.errors import ErrorCode

__all__ = ["HTTPChannel", "HTTPError", "Limits", "Request"]

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
_LINGER_FLOOR: Final = 1024 * 1024


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


Handler = Callable[[Request], EmulatorResponse | Fault]
#: ``log(client, method, target, answer or None when dropped, monotonic() at start, note)``
Log = Callable[[str, str, str, "EmulatorResponse | None", float, str], None]


@functools.lru_cache(maxsize=64)
def _status_line(status: int) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b"Unknown"
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


#: The second and its ``Date`` value, as the last answer wrote them.
_DATE: list[int | bytes] = [0, b""]
_KEEP_ALIVE: Final = b"Server: %s\r\nConnection: keep-alive\r\n\r\n" % _SERVER
_CLOSE: Final = b"Server: %s\r\nConnection: close\r\n\r\n" % _SERVER
_time: Final = time.time
_monotonic: Final = time.monotonic
# h11's names, looked up once instead of on every event.
_Connection: Final = h11.Connection
_SERVER_ROLE: Final = h11.SERVER
_Data: Final = h11.Data
_Request: Final = h11.Request
_EndOfMessage: Final = h11.EndOfMessage
_NEED_DATA: Final = h11.NEED_DATA


def _http_date(second: int) -> bytes:
    return email.utils.formatdate(second, usegmt=True).encode()


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


_TOKEN: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _header_value(value: str) -> bytes:
    """A header value as the client sent it: httpx reads UTF-8 beside latin-1 bytes."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace")  # a lone surrogate: escaped


@functools.lru_cache(maxsize=64)
def _header_lines(headers: tuple[tuple[str, str], ...]) -> bytes:
    """An answer's own headers as they go on the wire (the few kinds are cached).  A
    header of an injected answer that cannot go out well-formed (a name that is no
    token, a control character or line break in the value) is left out."""
    return b"".join(
        b"%s: %s\r\n" % (name.title().encode("ascii"), _header_value(value))
        for name, value in headers
        if name.lower() not in _HOP_HEADERS
        and _TOKEN.fullmatch(name)
        and not _CONTROL.search(value)
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


def _origin_form(target: str) -> str:
    """``http://host/path?query`` as ``/path?query``: a server accepts the absolute form
    (RFC 9112, 3.2.2), which a client sends to the emulator as its HTTP proxy."""
    rest = target.partition("://")[2]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    rest = rest[end:]
    return rest if rest.startswith("/") else "/" + rest


# The phases of a connection.
_IDLE: Final = 0  # between requests: closed quietly after keep_alive_timeout
_READING: Final = 1  # a request has begun: it must be whole within read_timeout
_LINGER: Final = 2  # after an early answer: reading and dropping, then closing
_READ: Final = 1  # selectors.EVENT_READ
_WRITE: Final = 2  # selectors.EVENT_WRITE


class HTTPChannel:
    """One client connection, served by the listener's thread (a
    :class:`~pytest_engagelab.doors.listener.Channel`)."""

    def __init__(
        self,
        sock: socket.socket,
        client: str,
        limits: Limits,
        handler: Handler,
        log: Log,
    ) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.client = client
        self.limits = limits
        self.handler = handler
        self.log = log
        self.interest = _READ
        self.deadline = time.monotonic() + limits.keep_alive_timeout
        self.phase = _IDLE
        self.request_deadline = 0.0  # set when a request's first byte arrives
        self.started = 0.0  # monotonic() at the request's first byte, for the log
        self.h11 = _Connection(_SERVER_ROLE, max_incomplete_event_size=MAX_HEAD)
        self.head = bytearray()  # the bytes of a head still arriving (to tell 414 from 431)
        self.request: Request | None = None  # the request whose body is arriving
        self.keep_alive = False  # whether the connection stays open after it
        self.length_text: str | None = None  # its Content-Length header
        self.chunks: list[bytes] = []
        self.total = 0
        self.out = b""  # output the socket did not take yet
        self.close_after_output = False
        self.budget = 0  # bytes still dropped while lingering

    # -- the listener's callbacks -------------------------------------------------------

    def readable(self) -> None:
        try:
            data = self.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the client
            self.interest = 0
            return
        phase = self.phase
        if phase == _IDLE:
            if not data:
                self.interest = 0  # the client closed between requests
                return
            if data[0] in b"\r\n":
                data = data.lstrip(b"\r\n")  # tolerated between requests (RFC 9112, 2.2)
                if not data:
                    return
            # The first byte of a request: from now it must be whole within read_timeout.
            self.phase = _READING
            self.started = now = _monotonic()
            self.deadline = self.request_deadline = now + self.limits.read_timeout
        elif phase == _LINGER:
            self.budget -= len(data)
            if not data or self.budget <= 0:
                self.interest = 0
            return
        if self.request is None and len(self.head) <= MAX_HEAD:
            self.head += data[: MAX_HEAD + 1]
        self.h11.receive_data(data)
        self._advance()

    def writable(self) -> None:
        if self._flush():
            self._advance()

    def expired(self, now: float) -> None:
        if now < self.deadline:
            return
        if self.out or self.phase != _READING:  # idle, lingering, or the client reads no more
            self.interest = 0
            return
        timeout = self.limits.read_timeout
        if self.request is None:
            self._refuse(
                HTTPError(408, f"the request did not arrive within {timeout:g} s (read_timeout)")
            )
        elif self.length_text is not None:
            self._refuse(
                HTTPError(
                    400,
                    f"the request body is shorter than its Content-Length ({self.length_text} "
                    f"bytes): it did not all arrive within {timeout:g} s",
                )
            )
        else:
            self._refuse(
                HTTPError(400, f"the chunked request body did not all arrive within {timeout:g} s")
            )

    def crashed(self, error: BaseException) -> None:
        answer = error_body(
            ErrorCode.INTERNAL_ERROR,
            f"pytest-engagelab server error ({type(error).__name__}); please report it",
        )
        self.log(self.client, "-", "-", answer, _monotonic(), "")

    # -- reading ------------------------------------------------------------------------

    def _begin(self) -> None:
        """The first byte of a request: from now it must be whole within read_timeout."""
        self.phase = _READING
        self.started = now = _monotonic()
        self.deadline = self.request_deadline = now + self.limits.read_timeout

    def _advance(self) -> None:
        """Take h11's events until it needs more bytes, answering each whole request."""
        h11_conn = self.h11
        while self.phase == _READING and not self.out:
            try:
                event = h11_conn.next_event()
            except h11.RemoteProtocolError as error:
                self._refuse(self._protocol_error(error))
                return
            except ValueError:  # an h11 older than 0.16 turning a huge number into int
                self._refuse(HTTPError(400, "malformed request: a number is too long"))
                return
            if isinstance(event, _Data):
                self.total += len(event.data)
                if self.total > self.limits.max_body:
                    self._refuse(
                        HTTPError(
                            413, f"the request body is larger than {self.limits.max_body} bytes"
                        )
                    )
                    return
                self.chunks.append(bytes(event.data))
            elif isinstance(event, _Request):
                try:
                    self._head(event)
                except HTTPError as problem:
                    self._refuse(problem)
                    return
            elif isinstance(event, _EndOfMessage):
                self._complete()
                h11_conn = self.h11  # the next request's
            elif event is _NEED_DATA:
                return
            else:  # ConnectionClosed: the client closed before a request began
                self.interest = 0
                return

    def _head(self, event: h11.Request) -> None:
        head = self.head
        # Only a head this long, or with this many lines, can be over the limits.
        if len(head) > MAX_LINE or head.count(b"\n") > MAX_HEADERS:
            oversized = self._oversized_head()
            if oversized is not None:
                raise oversized
        head.clear()
        method = event.method.decode("ascii")
        target = event.target.decode("ascii")
        if target[0] != "/" and "://" in target:
            target = _origin_form(target)
        raw = event.headers.raw_items()  # a list: faster than the Sequence
        headers = {name.decode("ascii").lower(): value.decode("latin-1") for name, value in raw}
        if len(headers) != len(raw):  # a repeated header: its values joined, in order
            headers = {}
            for name, value in raw:
                key = name.decode("ascii").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
        path, _, query = target.partition("?")
        if "%" in path:
            path = unquote(path)
        connection = headers.get("connection")
        keep_alive = event.http_version == b"1.1" and (
            connection is None or "close" not in connection.lower()
        )
        length_text = headers.get("content-length")
        limit = self.limits.max_body
        if length_text is None and "transfer-encoding" not in headers:
            if event.method in _BODY_METHODS and not path.startswith("/_emulator/"):
                raise HTTPError(411, f"{method} needs a Content-Length header")
        elif length_text is not None:
            if "transfer-encoding" in headers:
                raise HTTPError(
                    400,
                    "send Transfer-Encoding: chunked or Content-Length, not both (RFC 9112, 6.3)",
                )
            length = int(length_text)  # h11 checked it: at most 20 ASCII digits
            if length > limit:
                raise HTTPError(
                    413, f"the request body ({length} bytes) is larger than {limit} bytes"
                )
        self.request = Request(method, target, path, query, headers, b"")
        self.keep_alive = keep_alive
        self.length_text = length_text
        self.chunks = []
        self.total = 0
        if "expect" in headers and self.h11.they_are_waiting_for_100_continue:
            self._send(
                self.h11.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
                or b""
            )

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

    # -- answering ------------------------------------------------------------------------

    def _complete(self) -> None:
        """The request is whole: answer it, then get ready for the next one."""
        request = self.request
        assert request is not None
        chunks = self.chunks
        if chunks:
            request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        outcome = self.handler(request)
        if isinstance(outcome, Fault):
            note = type(outcome.exception).__name__
            self.log(self.client, request.method, request.target, None, self.started, note)
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.interest = 0
            self.phase = _IDLE
            return
        if not 100 <= outcome.status <= 999:  # injected: no status line can carry it
            outcome = error_body(
                ErrorCode.INTERNAL_ERROR,
                f"the injected answer's status {outcome.status} is no HTTP status "
                "(three digits, 100 to 999)",
            )
        self.log(self.client, request.method, request.target, outcome, self.started, "")
        # A 1xx (injected) is no final answer: the client would wait for another.
        keep_alive = self.keep_alive and outcome.status >= 200
        answer = _answer_bytes(request.method, outcome, keep_alive)
        if not keep_alive:
            self.close_after_output = True
            self.phase = _IDLE
            self._send(answer)
            return
        self._next_cycle()
        self._send(answer)

    def _next_cycle(self) -> None:
        """A new h11 state machine for the next request, given what already arrived of it.

        Sending each answer through ``h11.send`` would only copy our fixed, well-formed
        head through its header validation: that cost as much as parsing the request
        (bench/bench_server.py), so answers are written directly and the next request
        gets a fresh ``h11.Connection``."""
        data, closed = self.h11.trailing_data
        self.h11 = _Connection(_SERVER_ROLE, max_incomplete_event_size=MAX_HEAD)
        self.request = None  # (the head was cleared when it was read)
        if data:
            data = data.lstrip(b"\r\n")  # empty lines between requests are tolerated
        if data or closed:  # the next request (or the end) is here already
            self._begin()
            if data:
                self.head += data[: MAX_HEAD + 1]
                self.h11.receive_data(data)
            if closed:
                self.h11.receive_data(b"")
        else:
            self.phase = _IDLE
            self.deadline = _monotonic() + self.limits.keep_alive_timeout

    def _refuse(self, problem: HTTPError) -> None:
        """Answer a request that cannot be served, then linger: read (and drop) what the
        client still sends for a moment, so that it reads the answer instead of a
        connection reset; then close."""
        answer = problem.answer()
        self.log(self.client, "-", "-", answer, self.started or _monotonic(), "")
        self.phase = _LINGER
        # As much as a client may write before it reads (at least 64 MiB, as with the
        # default max_body): past it, the close resets the client's write.
        self.budget = 64 * max(self.limits.max_body, _LINGER_FLOOR) + MAX_HEAD
        self._send(_answer_bytes("-", answer, False))
        if not self.out:
            self._linger()

    def _linger(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.interest = 0
            return
        self.deadline = time.monotonic() + self.limits.read_timeout

    # -- writing ------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Write ``data``; what the socket does not take now waits for writable()."""
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the client went away mid-answer
            self.interest = 0
            self.out = b""
            return
        if sent == len(data):
            if self.close_after_output:
                self.interest = 0
            return
        self.out = data[sent:]
        self.interest = _WRITE
        self.deadline = time.monotonic() + self.limits.keep_alive_timeout

    def _flush(self) -> bool:
        """Write what waits; whether all of it is out and reading can go on."""
        data = self.out
        self.out = b""
        self._send(data)
        if self.out or not self.interest:
            return False
        self.interest = _READ
        if self.phase == _LINGER:
            self._linger()
            return False
        if self.phase == _IDLE:
            self.deadline = time.monotonic() + self.limits.keep_alive_timeout
        else:  # the next request, begun while this answer waited: its own deadline holds
            self.deadline = self.request_deadline
        return True


@functools.lru_cache(maxsize=64)
def _head_of(status: int, headers: tuple[tuple[str, str], ...]) -> bytes:
    """The status line and an answer's own headers (the few kinds are cached)."""
    return _status_line(status) + _header_lines(headers)


def _answer_bytes(method: str, answer: EmulatorResponse, keep_alive: bool) -> bytes:
    """An answer as it goes on the wire, in one piece: always with ``Content-Length``; no
    body to ``HEAD``.

    A 1xx, 204 or 304 (injected) has no content (RFC 9112, 6.3): neither its body nor a
    ``Content-Length`` is sent (RFC 9110, 8.6), or the client would read the body as the
    start of its next answer."""
    status = answer.status
    now = int(_time())
    if now != _DATE[0]:
        _DATE[:] = [now, _http_date(now)]
    ending = _KEEP_ALIVE if keep_alive else _CLOSE
    if status < 200 or status == 204 or status == 304:
        return b"%sDate: %s\r\n%s" % (_head_of(status, answer.headers), _DATE[1], ending)
    body = answer.body
    return b"%sContent-Length: %d\r\nDate: %s\r\n%s%s" % (
        _head_of(status, answer.headers),
        len(body),
        _DATE[1],
        ending,
        b"" if method == "HEAD" else body,
    )


def dumps(payload: object) -> bytes:
    """JSON as the control API writes it: never ``Infinity`` or ``NaN``."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", errors="backslashreplace")
