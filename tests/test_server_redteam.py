"""The loopback server's single-thread design, attacked as a hostile or clumsy client would.

One thread serves every connection (``doors/listener.py``, ``doors/http.py``): each test
here is a way a client could stall it, leak a descriptor, or make it skip an answer,
with real sockets and real clients against a real ``OTPServer``.  Every test is bounded
in time (socket timeouts), and none may let an exception escape a thread
(``threading.excepthook``).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
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
    answer carries Content-Length, but a 204 or 304)."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        found.append(status)
        if status >= 200 and status not in (204, 304):
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


# -- answers without content ---------------------------------------------------------------------


def send_body(to: str = PHONE) -> dict[str, Any]:
    return {"to": to, "template": {"id": "login", "params": {}}}


@pytest.mark.parametrize("status", [204, 304])
def test_an_injected_answer_without_content_keeps_the_connection_usable(status: int) -> None:
    """A 204 or 304 has no content (RFC 9112, 6.3): a client reads no body after its
    head, whatever Content-Length says.  The door wrote the injected body anyway, and the
    client read it as the start of its next answer: httpx failed the next request on the
    kept-alive connection with "illegal status line"."""
    with OTPServer() as server:
        server.fail_next(httpx.Response(status, json={"code": 1}))
        with httpx.Client(
            base_url=server.url, auth=(server.dev_key, server.dev_secret), timeout=5
        ) as client:
            first = client.post("/v1/messages", json=send_body())
            second = client.get("/_emulator/health")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            server.fail_next(httpx.Response(status, json={"code": 1}))
            sock.sendall(
                b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: {auth(server)}\r\n".encode()
                + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
            )
            raw, ending = read_until_closed(sock)
    assert (first.status_code, first.content) == (status, b"")
    assert second.status_code == 200
    head, _, body = raw.partition(b"\r\n\r\n")
    assert (statuses(raw), body, ending) == ([status], b"", "closed")
    assert b"content-length" not in head.lower()


@pytest.mark.parametrize("status", [100, 101, 199])
def test_an_injected_1xx_is_sent_without_content_and_the_connection_closed(status: int) -> None:
    """A 1xx is no final answer: the client waits for another after it.  The door wrote
    the injected body after it, and the client read the body as a status line
    ("BadStatusLine"), or waited out keep_alive_timeout for an answer that never came."""
    with OTPServer(keep_alive_timeout=30) as server:
        server.fail_next(httpx.Response(status, json={"code": 1}))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: {auth(server)}\r\n".encode()
                + b"Content-Length: 2\r\n\r\n{}"
            )
            started = time.monotonic()
            raw, ending = read_until_closed(sock)
            elapsed = time.monotonic() - started
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert (body, ending) == (b"", "closed")
    assert b"content-length" not in head.lower()
    assert elapsed < 2


def test_injected_headers_go_out_as_httpx_took_them_and_never_break_the_framing() -> None:
    """An injected answer's headers: a UTF-8 value, which httpx accepts, made the door
    raise while writing (no answer, "server error ... please report it" in the log); a
    name with CR LF split the answer in two (a header of the test's choosing), a NUL or a
    space in a name made the answer malformed.  Values are sent as httpx holds them and
    a header that cannot be written well-formed is left out."""
    lines: list[str] = []
    with OTPServer(log=lines.append) as server:
        server.fail_next(
            httpx.Response(
                503,
                headers=[
                    ("X-Reason", "Bad gateway €".encode()),
                    ("X-Evil\r\nSet-Cookie", "stolen"),
                    ("X Space", "1"),
                    ("X-Nul", "a\x00b"),
                    ("Retry-After", "7"),
                ],
                json={"code": 1},
            )
        )
        with httpx.Client(
            base_url=server.url, auth=(server.dev_key, server.dev_secret), timeout=5
        ) as client:
            first = client.post("/v1/messages", json=send_body())
            second = client.get("/_emulator/health")
    assert (first.status_code, first.json()) == (503, {"code": 1})
    assert first.headers["x-reason"] == "Bad gateway €"
    assert first.headers["retry-after"] == "7"
    assert not {"set-cookie", "x-nul", "x space", "x-evil"} & set(first.headers)
    assert second.status_code == 200
    assert not any("code=1000" in line for line in lines), lines


# -- user code in the serving thread ---------------------------------------------------------------


class Abort(BaseException):
    """Not an ``Exception``: as ``pytest.fail()``, ``pytest.skip()`` or ``sys.exit()`` raise."""


def post_send(server: OTPServer, to: str = PHONE) -> bytes:
    body = json.dumps(send_body(to)).encode()
    return (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: {auth(server)}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


@pytest.mark.parametrize("where", ["subscriber", "log"])
def test_a_base_exception_from_user_code_closes_one_connection_not_the_server(where: str) -> None:
    """An emulator subscriber or the ``log`` callback runs in the one serving thread; if it
    raised a BaseException (``pytest.fail()`` in a subscriber, say), the thread died with a
    traceback and every later client waited out its own timeout.  Now that connection is
    closed without an answer, one line says so, and the others are served."""
    lines: list[str] = []
    raised: list[str] = []

    def log(line: str) -> None:
        if where == "log" and not raised:
            raised.append(line)
            raise Abort("from the log callback")
        lines.append(line)

    def subscriber(event: object) -> None:
        if not raised:
            raised.append("subscriber")
            raise Abort("from a subscriber")

    with OTPServer(log=log) as server:
        if where == "subscriber":
            server.emulator.subscribe(subscriber)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as first:
            first.sendall(post_send(server))
            assert read_until_closed(first, limit=3) == (b"", "closed")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as second:
            second.sendall(post_send(server, "+6598765433") + HEALTH)
            second.shutdown(socket.SHUT_WR)
            raw, ending = read_until_closed(second, limit=3)
    assert (statuses(raw), ending) == ([200, 200], "closed")
    assert len(raised) == 1
    assert any(line.endswith("- -> 500 code=1000 (0.0 ms)") for line in lines), lines


# -- request targets -----------------------------------------------------------------------------


def test_a_client_using_the_server_as_its_http_proxy_is_served() -> None:
    """A server must accept a target in absolute form (RFC 9112, 3.2.2): a client that
    reaches the emulator as its HTTP proxy (``requests`` with ``proxies=``, httpx with
    ``proxy=``, code under test with ``HTTP_PROXY`` set) sends ``POST http://host/v1/...``.
    The door routed the whole URL and answered 404 "no such endpoint"."""
    import requests

    with OTPServer() as server:
        credentials = (server.dev_key, server.dev_secret)
        through_requests = requests.post(
            "http://otp.api.engagelab.cc/v1/messages",
            json=send_body(),
            auth=credentials,
            proxies={"http": server.url},
            timeout=5,
        )
        with httpx.Client(proxy=server.url, auth=credentials, timeout=5) as client:
            through_httpx = client.get("http://otp.api.engagelab.cc/_emulator/health?x=1")
            bare = client.get("http://otp.api.engagelab.cc")
        sent = server.sent
    assert through_requests.status_code == 200
    assert through_httpx.json()["status"] == "ok"
    assert (bare.status_code, bare.json()["message"]) == (404, "no such endpoint: GET /")
    assert [m.to for m in sent] == [PHONE]
    assert str(sent[0].request.url) == f"{server.url}/v1/messages"
