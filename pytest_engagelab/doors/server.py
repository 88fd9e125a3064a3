"""The loopback door: the emulator behind a real HTTP/1.1 server on a local socket.

For code under test that does not use httpx in the test process: the official
``engagelab-otp`` SDK (urllib), ``requests``, a service in another language or a
web app in a subprocess.  The same :class:`~pytest_engagelab.emulator.core.Emulator`
answers, so the journal, assertions, injection, templates and clock are those of
``otp_mock``.

This module holds the server's life (listening, accepting, stopping; one thread
serves every connection, see :mod:`pytest_engagelab.doors.listener`) and hands each
request to the emulator or to the control API.  HTTP itself is
:mod:`pytest_engagelab.doors.http` (on h11); the routes under ``/_emulator/`` are
:mod:`pytest_engagelab.doors.control_api`.

HTTP, as this server speaks it (parsing, framing and keep-alive are h11's):

* HTTP/1.1 with keep-alive (HTTP/1.0 requests are answered and the connection
  closed); every answer carries ``Content-Length``; an idle connection is closed
  after ``keep_alive_timeout`` seconds.
* Request bodies come with ``Content-Length`` or ``Transfer-Encoding: chunked``.
  A POST, PUT or PATCH with neither is answered 411 (code 3001; the control
  API reads it as an empty body); a body larger than ``max_body`` (1 MiB) 413;
  a request (head and body) that has not all arrived ``read_timeout`` seconds
  (2 s) after its first byte 400, or 408 while its head is still coming; a
  malformed one 400 (code 3001 each).  These answers close the connection.
  ``Expect: 100-continue`` is honoured.
* The path is percent-decoded before routing, as ``otp_mock`` sees it through httpx.
* Unknown paths are 404 (code 4001), known paths with another method 405
  (code 3002) with an ``Allow`` header, a wrong ``Content-Type`` 3001: the
  emulator's own answers.
* An injected exception (``fail_next(httpx.ConnectTimeout(...))``) closes the
  connection without an answer: the client sees the server hang up
  (``http.client.RemoteDisconnected``, ``requests.ConnectionError``...).
* Never a traceback on the wire: a bug answers 500 with code 1000.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from pytest_engagelab.doors.control_api import (
    CONTROL_PREFIX,
    ControlAPI,
    TemplateSpecError,
    load_templates,
    message_to_json,
)
from pytest_engagelab.doors.controls import EmulatorControls
from pytest_engagelab.doors.http import HTTPChannel, HTTPError, Limits, Request
from pytest_engagelab.doors.listener import Listener
from pytest_engagelab.emulator.clock import SEEDED_EPOCH, Clock
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.journal import register_request_builder
from pytest_engagelab.emulator.model import EmulatorResponse, Fault, error_body
from pytest_engagelab.errors import ErrorCode

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_MAX_BODY",
    "DEFAULT_READ_TIMEOUT",
    "OTPServer",
    "TemplateSpecError",
    "load_templates",
    "message_to_json",
]

#: Largest request body accepted, in bytes (1 MiB); larger ones are answered 413.
DEFAULT_MAX_BODY: Final = 1024 * 1024
#: Seconds a request may take to arrive whole, from its first byte.
DEFAULT_READ_TIMEOUT: Final = 2.0
#: Seconds an idle keep-alive connection stays open.
DEFAULT_KEEP_ALIVE_TIMEOUT: Final = 60.0
_CONTROL_ROOT: Final = CONTROL_PREFIX.rstrip("/")


def _rebuilt_request(method: str, url: str, body: bytes, *headers: str) -> httpx.Request:
    """The ``httpx.Request`` a request kept as atoms describes (see
    :meth:`OTPServer._recipe`), built when a test first reads ``sent[i].request`` or a
    request record's headers.  ``headers`` is name, value, name, value... as h11 gave
    them; the values were decoded as latin-1: httpx gets the same bytes back, so a UTF-8
    User-Agent is kept as sent instead of failing httpx's ASCII check."""
    raw = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in zip(headers[::2], headers[1::2], strict=True)
    ]
    return httpx.Request(method, url, headers=raw, content=body)


register_request_builder("otp_server", _rebuilt_request)
_chain: Final = itertools.chain.from_iterable


class OTPServer(EmulatorControls):
    """EngageLab's OTP API on a real HTTP socket, for clients outside httpx.

    Use it as the ``otp_server`` fixture, or by hand::

        with OTPServer() as server:
            sdk = engagelab_otp.OTPClient(server.dev_key, server.dev_secret)
            sdk.BASE_URL = server.url + "/v1"
            ...
            server.assert_sent_once(to="+6598765432")

    ``port=0`` picks a free port; ``url`` (and ``base_url``) is
    ``"http://127.0.0.1:PORT"`` once started.  One daemon thread accepts and serves
    every connection; :meth:`stop` closes the listening socket and every open
    connection and joins that thread.  ``log`` receives one line per request
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
        super().__init__(emulator if emulator is not None else Emulator(), self._url_for(port))
        self._listener = Listener(
            host,
            port,
            None,
            what="OTPServer",
            thread_name="otp-server",
            open_channel=self._open_channel,
        )
        self._limits = Limits(max_body, read_timeout, keep_alive_timeout)
        self._urls: dict[str, str] = {}
        self._control = ControlAPI(self)

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
        return self._listener.port

    @property
    def started(self) -> bool:
        """Whether the server is accepting connections."""
        return self._listener.started

    def __repr__(self) -> str:
        state = "started" if self.started else "stopped"
        return f"OTPServer(url={self.url!r}, dev_key={self.dev_key!r}, {state})"

    def start(self) -> None:
        """Bind, listen and serve in a background thread (no-op when started)."""
        if self.started:
            return
        self._limits = Limits(self.max_body, self.read_timeout, self.keep_alive_timeout)
        self.base_url = self._url_for(self._listener.start())
        self._urls.clear()

    def stop(self) -> None:
        """Stop serving: close the listening socket and every open connection, join
        every thread.  Nothing the server opened outlives this call."""
        self._listener.stop()

    def reset(self) -> None:
        """Forget everything sent, templates, limits, injections and queued callbacks,
        and rewind the clock to where a new server's starts: the state of a fresh server."""
        super().reset()
        emulator = self.emulator
        start = SEEDED_EPOCH if emulator.seed is not None else None
        emulator.clock = Clock(start, frozen=emulator.clock.frozen)

    # -- connections ----------------------------------------------------------------

    def _open_channel(self, conn: socket.socket, client: str) -> HTTPChannel:
        return HTTPChannel(conn, client, self._limits, self._dispatch, self._log)

    def _dispatch(self, request: Request) -> EmulatorResponse | Fault:
        """The answer to one well-formed request: the control API's or the emulator's."""
        path = request.path
        try:
            if path.startswith(CONTROL_PREFIX) or path == _CONTROL_ROOT:
                return self._control.handle(request)
            outcome = self.emulator.handle(
                request.method,
                path,
                request.headers,
                request.body,
                request_recipe=self._recipe(request),
            )
        except HTTPError as problem:
            return problem.answer()
        except Exception as bug:  # never a traceback on the wire
            return error_body(
                ErrorCode.INTERNAL_ERROR,
                f"pytest-engagelab server error ({type(bug).__name__}); please report it",
            )
        return outcome  # a 405 carries the core's Allow header

    def _recipe(self, request: Request) -> tuple[Any, ...] | None:
        """The request as atoms the journal keeps (a plain tuple: nothing for the garbage
        collector to track), from which ``SentMessage.request`` is built as an
        ``httpx.Request`` when a test reads it; ``None`` for a target httpx cannot read."""
        target = request.target
        url = self._urls.get(target)
        if url is None:
            try:
                url = str(httpx.URL(self.base_url + target))
            except httpx.InvalidURL:
                return None
            if len(self._urls) < 256:  # the few API paths, not every query string
                self._urls[target] = url
        return ("otp_server", request.method, url, request.body, *_chain(request.headers.items()))

    def _log(
        self,
        client: str,
        method: str,
        target: str,
        answer: EmulatorResponse | None,
        started: float,
        note: str,
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
        elapsed = (time.monotonic() - started) * 1000
        with contextlib.suppress(Exception):  # a log line never costs the client its answer
            self.log(f"{client} {method} {path[:200]} -> {outcome} ({elapsed:.1f} ms)")
