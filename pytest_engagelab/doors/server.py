"""The loopback door: the emulator behind a real HTTP/1.1 server on a local socket.

For code under test that does not use httpx in the test process: the official
``engagelab-otp`` SDK (urllib), ``requests``, a service in another language or a
web app in a subprocess.  The same :class:`~pytest_engagelab.emulator.core.Emulator`
answers, so the journal, assertions, injection, templates and clock are those of
``otp_mock``.

HTTP, as this server speaks it:

* HTTP/1.1 with keep-alive (HTTP/1.0 clients get it with ``Connection:
  keep-alive``); every answer carries ``Content-Length``; an idle connection is
  closed after ``keep_alive_timeout`` seconds.
* Request bodies come with ``Content-Length`` or ``Transfer-Encoding: chunked``.
  A POST, PUT or PATCH with neither is answered 411 (code 3001; the control
  API reads it as an empty body); a body larger than ``max_body`` (1 MiB) 413
  (code 3001); a body that stops short of its ``Content-Length`` for
  ``read_timeout`` seconds (2 s) 400 (code 3001).  These answers close the
  connection.  ``Expect: 100-continue`` is honoured.
* Unknown paths are 404 (code 4001), known paths with another method 405
  (code 3002), a wrong ``Content-Type`` 3001: the emulator's own answers.
* An injected exception (``fail_next(httpx.ConnectTimeout(...))``) closes the
  connection without an answer: the client sees the server hang up
  (``http.client.RemoteDisconnected``, ``requests.ConnectionError``...).
* Never a traceback on the wire: a bug answers 500 with code 1000.

The control API under ``/_emulator/`` (no ``Authorization`` needed) lets clients
in other processes and languages do what a Python test does with the methods:
see :data:`CONTROL_PREFIX` and the README.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import http
import json
import math
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs

import httpx

from pytest_engagelab._version import __version__
from pytest_engagelab.doors.controls import EmulatorControls, review_from_json
from pytest_engagelab.emulator.clock import SEEDED_EPOCH, Clock
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.journal import SentMessage
from pytest_engagelab.emulator.model import EmulatorResponse, Fault, InjectedError, error_body
from pytest_engagelab.emulator.templates import TemplateConfigError, template_from_config
from pytest_engagelab.errors import ErrorCode

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_MAX_BODY",
    "DEFAULT_READ_TIMEOUT",
    "OTPServer",
    "TemplateSpecError",
    "load_templates",
]

#: The reserved path prefix of the control API.
CONTROL_PREFIX: Final = "/_emulator/"
#: Largest request body accepted, in bytes (1 MiB); larger ones are answered 413.
DEFAULT_MAX_BODY: Final = 1024 * 1024
#: Seconds to wait for the rest of a request once it has started arriving.
DEFAULT_READ_TIMEOUT: Final = 2.0
#: Seconds an idle keep-alive connection stays open.
DEFAULT_KEEP_ALIVE_TIMEOUT: Final = 60.0

_MAX_LINE: Final = 8192
_MAX_HEADERS: Final = 100
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_HOP_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_SERVER_HEADER: Final = f"pytest-engagelab/{__version__}"
_JSON: Final = (("content-type", "application/json"),)
_ERROR_CODES: Final = {int(code): code for code in ErrorCode}
_ADD_TEMPLATE_FIELDS: Final = {
    "template_id": str,
    "strategy": str,
    "code_length": int,
    "ttl": int,
    "code_type": int,
    "content": str,
    "brand_name": str,
    "from_id": str,
    "description": str,
    "verification": bool,
}


class TemplateSpecError(ValueError):
    """A template given to ``load_templates`` (or ``--templates``) is malformed."""


class _HTTPError(Exception):
    """Internal: answer with this status and code, then close the connection."""

    def __init__(self, status: int, message: str, code: ErrorCode = ErrorCode.INVALID_FORMAT):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _dumps(payload: Any) -> bytes:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", errors="backslashreplace")


def _ok(payload: Any) -> EmulatorResponse:
    return EmulatorResponse(200, _dumps(payload))


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def message_to_json(message: SentMessage) -> dict[str, Any]:
    """A journal entry as the control API lists it (everything but the request)."""
    return {
        f.name: list(value) if isinstance(value := getattr(message, f.name), tuple) else value
        for f in dataclasses.fields(message)
        if f.name != "request"
    }


def load_templates(controls: EmulatorControls, spec: Any) -> list[str]:
    """Register templates from JSON data; return their ids.

    ``spec`` is one object or a list of them.  An object with
    ``send_channel_strategy`` is a template definition as ``POST
    /v1/template-configs`` takes it (checked by the same rules); any other
    object holds the keywords of ``add_template``.  A template replaces one of
    the same id.  The keywords of ``add_template`` are ``template_id`` (required),
    ``strategy``, ``code_length``, ``ttl``, ``code_type``, ``content``,
    ``brand_name``, ``from_id``, ``description``, ``verification``.
    """
    items = spec if isinstance(spec, list) else [spec]
    ids: list[str] = []
    for number, item in enumerate(items, 1):
        where = f"template #{number}"
        if not isinstance(item, dict):
            raise TemplateSpecError(f"{where} must be a JSON object, not {type(item).__name__}")
        if "send_channel_strategy" in item:
            ids.append(_register_config(controls, item, where))
            continue
        unknown = sorted(set(item) - set(_ADD_TEMPLATE_FIELDS))
        if unknown:
            raise TemplateSpecError(
                f"{where}: unknown field(s) {', '.join(unknown)}; use "
                f"{', '.join(_ADD_TEMPLATE_FIELDS)} (or a template-configs definition with "
                "send_channel_strategy)"
            )
        for name, value in item.items():
            kind = _ADD_TEMPLATE_FIELDS[name]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise TemplateSpecError(f"{where}: {name} must be a {kind.__name__}, not {value!r}")
        if "template_id" not in item:
            raise TemplateSpecError(f"{where}: template_id is required")
        kwargs = dict(item)
        template_id = kwargs.pop("template_id")
        try:
            controls.add_template(template_id, **kwargs)
        except ValueError as error:
            raise TemplateSpecError(f"{where} ({template_id!r}): {error}") from None
        ids.append(template_id)
    return ids


def _register_config(controls: EmulatorControls, config: dict[str, Any], where: str) -> str:
    try:
        parsed = template_from_config(config)
    except TemplateConfigError as error:
        raise TemplateSpecError(f"{where}: {error}") from None
    stored = controls.add_template(parsed.template_id)  # then made exactly the parsed one
    for spec in dataclasses.fields(parsed):
        setattr(stored, spec.name, getattr(parsed, spec.name))
    return parsed.template_id


def _injected_error(payload: dict[str, Any]) -> InjectedError:
    """``{"code": 5001}``, ``{"status": 503, "body": {...}}`` or ``{"drop": true}``."""
    if payload.get("drop") is True:
        return ConnectionResetError("dropped by the emulator (injected)")
    if "status" in payload:
        status = payload["status"]
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise _HTTPError(
                400, "status must be an HTTP status 100..599", ErrorCode.INVALID_PARAMS
            )
        return httpx.Response(status, json=payload.get("body", {}))
    code = payload.get("code")
    known = _ERROR_CODES.get(code) if isinstance(code, int) else None
    if known is None:
        raise _HTTPError(
            400,
            f"code must be a documented EngageLab error code such as 5001, not {code!r} "
            '(or give {"status": ..., "body": ...} or {"drop": true})',
            ErrorCode.INVALID_PARAMS,
        )
    return known


class OTPServer(EmulatorControls):
    """EngageLab's OTP API on a real HTTP socket, for clients outside httpx.

    Use it as the ``otp_server`` fixture, or by hand::

        with OTPServer() as server:
            sdk = engagelab_otp.OTPClient(server.dev_key, server.dev_secret)
            sdk.BASE_URL = server.url + "/v1"
            ...
            server.assert_sent_once(to="+6598765432")

    ``port=0`` picks a free port; ``url`` (and ``base_url``) is
    ``"http://127.0.0.1:PORT"`` once started.  Each connection is served by a
    daemon thread; :meth:`stop` closes the listening socket and every open
    connection and joins all threads.  ``log`` receives one line per request
    (no headers, no bodies, no query strings).
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if max_body < 0 or read_timeout <= 0 or keep_alive_timeout <= 0:
            raise ValueError("max_body must be >= 0 and the timeouts positive")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(
                f"port must be an integer from 0 (any free port) to 65535, not {port!r}"
            )
        self.host = host
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.log = log
        self._port = port
        super().__init__(emulator if emulator is not None else Emulator(), self._url_for(port))
        self._listener: socket.socket | None = None
        self._waker: tuple[socket.socket, socket.socket] | None = None
        self._acceptor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._date = (0, "")
        self._urls: dict[str, httpx.URL] = {}

    # -- lifecycle ------------------------------------------------------------------

    def _url_for(self, port: int) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, the base URL to give clients (same as ``base_url``)."""
        return self.base_url

    @property
    def port(self) -> int:
        """The port served (the one chosen by the system once started with ``port=0``)."""
        return self._port

    @property
    def started(self) -> bool:
        """Whether the server is accepting connections."""
        return self._acceptor is not None

    def __repr__(self) -> str:
        state = "started" if self.started else "stopped"
        return f"OTPServer(url={self.url!r}, dev_key={self.dev_key!r}, {state})"

    def start(self) -> None:
        """Bind, listen and serve in a background thread (no-op when started)."""
        if self.started:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self._port))
            listener.listen(socket.SOMAXCONN)
            listener.setblocking(False)
        except OSError as error:
            listener.close()
            raise OSError(
                error.errno,
                f"OTPServer cannot listen on {self.host}:{self._port}: {error.strerror}",
            ) from error
        self._listener = listener
        self._port = listener.getsockname()[1]
        self.base_url = self._url_for(self._port)
        self._urls.clear()
        self._waker = socket.socketpair()
        self._stopping.clear()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"otp-server:{self._port}", daemon=True
        )
        self._acceptor.start()

    def stop(self) -> None:
        """Stop serving: close the listening socket and every open connection, join
        every thread.  Nothing the server opened outlives this call."""
        acceptor = self._acceptor
        if acceptor is None:
            return
        self._stopping.set()
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

    def reset(self) -> None:
        """Forget everything sent, templates, limits and injections, and rewind the
        clock to where a new server's starts: the state of a fresh server."""
        emulator = self.emulator
        emulator.reset()
        start = SEEDED_EPOCH if emulator.seed is not None else None
        emulator.clock = Clock(start, frozen=emulator.clock.frozen)

    # -- connections ----------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        assert self._waker is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._waker[0], selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is not self._listener or self._stopping.is_set():
                        continue
                    try:
                        conn, peer = self._listener.accept()
                    except OSError:  # the client gave up, or too many open files
                        continue
                    conn.setblocking(True)
                    thread = threading.Thread(
                        target=self._serve_connection,
                        args=(conn, peer),
                        name=f"otp-server:{self._port}:conn",
                        daemon=True,
                    )
                    with self._lock:
                        self._connections[conn] = thread
                    thread.start()

    def _serve_connection(self, conn: socket.socket, peer: Any) -> None:
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn.makefile("rb") as rfile:
                while not self._stopping.is_set():
                    conn.settimeout(self.keep_alive_timeout)
                    try:
                        line = rfile.readline(_MAX_LINE + 1)
                    except OSError:  # idle too long, or stop() closed it
                        return
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        continue  # tolerated between requests (RFC 9112, 2.2)
                    conn.settimeout(self.read_timeout)
                    if not self._serve_request(conn, rfile, line, client):
                        return
        except OSError:
            pass  # the client went away mid-answer
        finally:
            try:
                conn.close()
            finally:
                with self._lock:
                    self._connections.pop(conn, None)

    def _serve_request(self, conn: socket.socket, rfile: Any, line: bytes, client: str) -> bool:
        """Read one request from ``rfile``, answer it; whether to keep the connection."""
        started = time.perf_counter()
        method, target = "-", "-"
        try:
            method, target, version, headers = self._read_head(rfile, line)
            keep_alive = self._keep_alive(version, headers)
            body = self._read_body(conn, rfile, method, target, headers)
        except _HTTPError as problem:
            answer = error_body(problem.code, problem.message, problem.status)
            self._log(client, method, target, answer, started)
            self._send(conn, method, answer, keep_alive=False)
            self._linger(conn, rfile)
            return False
        except OSError:
            return False
        try:
            if target.startswith(CONTROL_PREFIX) or target + "/" == CONTROL_PREFIX:
                outcome: EmulatorResponse | Fault = self._control(method, target, body)
            else:
                outcome = self.emulator.handle(
                    method,
                    target,
                    headers,
                    body,
                    request=self._request(method, target, headers, body),
                )
        except _HTTPError as problem:
            outcome = error_body(problem.code, problem.message, problem.status)
        except Exception as bug:  # never a traceback on the wire
            outcome = error_body(
                ErrorCode.INTERNAL_ERROR,
                f"pytest-engagelab server error ({type(bug).__name__}); please report it",
            )
        if isinstance(outcome, Fault):
            self._log(client, method, target, None, started, note=type(outcome.exception).__name__)
            conn.shutdown(socket.SHUT_RDWR)
            return False
        self._log(client, method, target, outcome, started)  # before the client can go on
        self._send(conn, method, outcome, keep_alive=keep_alive)
        return keep_alive

    def _request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> httpx.Request | None:
        """The request as an ``httpx.Request``, for ``SentMessage.request``."""
        url = self._urls.get(target)
        if url is None:
            try:
                url = httpx.URL(self.base_url + target)
            except httpx.InvalidURL:
                return None
            if len(self._urls) < 256:  # the few API paths, not every query string
                self._urls[target] = url
        # The header values were decoded as latin-1: hand httpx the same bytes back, so
        # a UTF-8 User-Agent is kept as sent instead of failing httpx's ASCII check.
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        return httpx.Request(method, url, headers=raw, content=body)

    # -- parsing --------------------------------------------------------------------

    @staticmethod
    def _read_head(rfile: Any, line: bytes) -> tuple[str, str, str, dict[str, str]]:
        if len(line) > _MAX_LINE or not line.endswith(b"\n"):
            raise _HTTPError(414, f"the request line is longer than {_MAX_LINE} bytes")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _HTTPError(400, "malformed request line; expected 'METHOD /path HTTP/1.1'")
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n"):
                return method.upper(), target, version, headers
            if not raw:
                raise _HTTPError(400, "the connection closed before the headers ended")
            if len(raw) > _MAX_LINE:
                raise _HTTPError(431, f"a header line is longer than {_MAX_LINE} bytes")
            name, colon, value = raw.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise _HTTPError(400, f"malformed header line {name[:40]!r}")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise _HTTPError(431, f"more than {_MAX_HEADERS} header lines")

    @staticmethod
    def _keep_alive(version: str, headers: Mapping[str, str]) -> bool:
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def _read_body(
        self,
        conn: socket.socket,
        rfile: Any,
        method: str,
        target: str,
        headers: Mapping[str, str],
    ) -> bytes:
        encoding = headers.get("transfer-encoding")
        length_text = headers.get("content-length")
        if encoding is not None:
            if encoding.lower() != "chunked" or length_text is not None:
                raise _HTTPError(
                    400, f"Transfer-Encoding {encoding!r} is not supported; send Content-Length"
                )
            self._continue(conn, headers)
            return self._read_chunked(rfile)
        if length_text is None:
            if method in _BODY_METHODS and not target.startswith(CONTROL_PREFIX):
                raise _HTTPError(411, f"{method} needs a Content-Length header")
            return b""
        if not length_text.isdigit():
            raise _HTTPError(400, f"Content-Length {length_text[:40]!r} is not a number")
        length = int(length_text)
        if length > self.max_body:
            raise _HTTPError(
                413, f"the request body ({length} bytes) is larger than {self.max_body} bytes"
            )
        if length == 0:
            return b""
        self._continue(conn, headers)
        try:
            body: bytes = rfile.read(length)
        except TimeoutError:
            body = b""
        if len(body) < length:
            raise _HTTPError(
                400,
                f"the request body is shorter than its Content-Length ({length} bytes): "
                f"nothing more arrived within {self.read_timeout:g} s",
            )
        return body

    def _read_chunked(self, rfile: Any) -> bytes:
        chunks: list[bytes] = []
        total = 0
        try:
            while True:
                size_line = rfile.readline(_MAX_LINE + 1)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _HTTPError(400, "malformed chunked request body") from None
                if size == 0:
                    while rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > self.max_body:
                    raise _HTTPError(413, f"the request body is larger than {self.max_body} bytes")
                chunk = rfile.read(size)
                if len(chunk) < size or rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n"):
                    raise _HTTPError(400, "the chunked request body ended early")
                chunks.append(chunk)
        except TimeoutError:
            raise _HTTPError(
                400, f"the chunked request body stopped for {self.read_timeout:g} s"
            ) from None

    @staticmethod
    def _continue(conn: socket.socket, headers: Mapping[str, str]) -> None:
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _linger(self, conn: socket.socket, rfile: Any) -> None:
        """After an early answer, read (and drop) what the client still sends for a
        moment, so that it reads the answer instead of a connection reset."""
        try:
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.read_timeout
            drained = 0
            while drained < 64 * self.max_body + _MAX_LINE:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                conn.settimeout(left)
                data = rfile.read1(65536)
                if not data:
                    return
                drained += len(data)
        except OSError:
            pass

    # -- answering ------------------------------------------------------------------

    def _http_date(self) -> str:
        now = int(time.time())
        cached_at, text = self._date
        if cached_at != now:
            text = email.utils.formatdate(now, usegmt=True)
            self._date = (now, text)
        return text

    def _send(
        self, conn: socket.socket, method: str, answer: EmulatorResponse, *, keep_alive: bool
    ) -> None:
        lines = [f"HTTP/1.1 {answer.status} {_reason(answer.status)}"]
        lines.extend(
            f"{k.title()}: {v}" for k, v in answer.headers if k.lower() not in _HOP_HEADERS
        )
        lines.append(f"Content-Length: {len(answer.body)}")
        lines.append(f"Date: {self._http_date()}")
        lines.append(f"Server: {_SERVER_HEADER}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn.sendall(head if method == "HEAD" else head + answer.body)

    def _log(
        self,
        client: str,
        method: str,
        target: str,
        answer: EmulatorResponse | None,
        started: float,
        note: str = "",
    ) -> None:
        if self.log is None:
            return
        path = target.split("?", 1)[0]
        if answer is None:
            outcome = f"dropped (injected {note})"
        else:
            outcome = str(answer.status)
            if answer.status >= 400:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    outcome += f" code={int(json.loads(answer.body)['code'])}"
        elapsed = (time.perf_counter() - started) * 1000
        with contextlib.suppress(Exception):  # a log line never costs the client its answer
            self.log(f"{client} {method} {path[:200]} -> {outcome} ({elapsed:.1f} ms)")

    # -- the control API ------------------------------------------------------------

    def _control(self, method: str, target: str, body: bytes) -> EmulatorResponse:
        path, _, query = target.partition("?")
        name = path[len(CONTROL_PREFIX) :].strip("/")
        routes: dict[tuple[str, str], Callable[[Any, dict[str, list[str]]], Any]] = {
            ("GET", "health"): self._c_health,
            ("GET", "sent"): self._c_sent,
            ("GET", "last-code"): self._c_last_code,
            ("GET", "templates"): self._c_list_templates,
            ("POST", "templates"): self._c_templates,
            ("POST", "fail-next"): self._c_fail_next,
            ("POST", "fail-for"): self._c_fail_for,
            ("POST", "advance"): self._c_advance,
            ("POST", "reset"): self._c_reset,
            ("POST", "review-template"): self._c_review_template,
        }
        handler = routes.get((method, name))
        if handler is None:
            allowed = [m for m, n in routes if n == name]
            if allowed:
                raise _HTTPError(
                    405, f"{method} {path}: use {' or '.join(allowed)}", ErrorCode.INVALID_PARAMS
                )
            raise _HTTPError(
                404,
                f"no such control endpoint: {method} {path}; there are: "
                + ", ".join(f"{m} {CONTROL_PREFIX}{n}" for m, n in routes),
                ErrorCode.NOT_FOUND,
            )
        payload: Any = {}
        if body.strip():
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise _HTTPError(400, "the control request body is not valid JSON") from None
        if name != "templates" and not isinstance(payload, dict):
            raise _HTTPError(400, "the control request body must be a JSON object")
        return _ok(handler(payload, parse_qs(query)))

    def _c_health(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        return {
            "status": "ok",
            "url": self.url,
            "sent": len(self.emulator.journal),
            "now": self.emulator.clock.now(),
        }

    def _c_sent(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        wanted = {k: v[-1] for k, v in query.items() if k in ("to", "template_id", "endpoint")}
        return {
            "sent": [
                message_to_json(m)
                for m in self.sent
                if all(getattr(m, k) == v for k, v in wanted.items())
            ]
        }

    def _c_last_code(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        to = query.get("to", [""])[-1]
        if not to:
            raise _HTTPError(400, "give the recipient: ?to=%2B6598765432", ErrorCode.INVALID_PARAMS)
        code = self.emulator.last_code(to)
        if code is None:
            raise _HTTPError(404, f"no code was delivered to {to!r}", ErrorCode.NOT_FOUND)
        return {"to": to, "code": code}

    def _c_list_templates(self, payload: Any, query: dict[str, list[str]]) -> Any:
        return {"templates": [t.summary() for t in self.emulator.templates.values()]}

    def _c_templates(self, payload: Any, query: dict[str, list[str]]) -> Any:
        try:
            return {"templates": load_templates(self, payload)}
        except TemplateSpecError as error:
            raise _HTTPError(400, str(error), ErrorCode.INVALID_PARAMS) from None

    def _c_fail_next(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        times = payload.get("times", 1)
        endpoint = payload.get("endpoint")
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise _HTTPError(400, "times must be an integer >= 1", ErrorCode.INVALID_PARAMS)
        if endpoint is not None and not isinstance(endpoint, str):
            raise _HTTPError(400, "endpoint must be a path such as /v1/messages")
        try:
            injection = self.fail_next(_injected_error(payload), times=times, endpoint=endpoint)
        except ValueError as error:
            raise _HTTPError(400, str(error), ErrorCode.INVALID_PARAMS) from None
        return {"injected": injection.describe()}

    def _c_fail_for(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        to = payload.get("to")
        if not isinstance(to, str) or not to:
            raise _HTTPError(400, "to is required: the recipient to fail", ErrorCode.INVALID_PARAMS)
        return {"injected": self.fail_for(to, _injected_error(payload)).describe()}

    def _c_advance(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        seconds = payload.get("seconds")
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise _HTTPError(
                400,
                "seconds must be a finite number >= 0 (the clock only moves forward)",
                ErrorCode.INVALID_PARAMS,
            )
        return {"now": self.advance(seconds)}

    def _c_review_template(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        try:
            return review_from_json(self, payload)
        except LookupError as error:
            raise _HTTPError(400, str(error), ErrorCode.NOT_FOUND) from None
        except ValueError as error:
            raise _HTTPError(400, str(error), ErrorCode.INVALID_PARAMS) from None

    def _c_reset(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        self.reset()
        return {"reset": True}
