"""The loopback server's single-thread design, attacked as a hostile or clumsy client would.

One thread serves every connection (``doors/listener.py``, ``doors/http.py``): each test
here is a way a client could stall it, leak a descriptor, or make it skip an answer,
with real sockets and real clients against a real ``OTPServer``.  Every test is bounded
in time (socket timeouts), and none may let an exception escape a thread
(``threading.excepthook``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import socket
import struct
import threading
import time
from typing import Any

import httpx
import pytest

from pytest_engagelab.doors.server import OTPServer

PHONE = "+6598765432"
HEALTH = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"


#: No connection may end in a thread's traceback (see conftest).
pytestmark = pytest.mark.usefixtures("thread_tracebacks")


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


def statuses(raw: bytes, heads: list[bool] | None = None) -> list[int]:
    """The status of every answer in ``raw``, in order (a 1xx has no body; every other
    answer carries Content-Length, but a 204 or 304).  ``heads``, when given, says which
    final answers are to a HEAD (no body either)."""
    pending = list(heads or [])
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        found.append(status)
        if status < 200:
            continue
        to_head = pending.pop(0) if heads is not None else False
        if not to_head and status not in (204, 304):
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


def injected_then_health(
    server: OTPServer, injected: httpx.Response
) -> tuple[httpx.Response, httpx.Response]:
    """Inject ``injected``, send once through httpx, then ask for health on the same
    kept-alive connection: (the send's answer, the health answer)."""
    server.fail_next(injected)
    auth_pair = (server.dev_key, server.dev_secret)
    with httpx.Client(base_url=server.url, auth=auth_pair, timeout=5) as client:
        first = client.post("/v1/messages", json=send_body())
        second = client.get("/_emulator/health")
    return first, second


@pytest.mark.parametrize("status", [204, 304])
def test_an_injected_answer_without_content_keeps_the_connection_usable(status: int) -> None:
    """A 204 or 304 has no content (RFC 9112, 6.3): a client reads no body after its
    head, whatever Content-Length says.  The door wrote the injected body anyway, and the
    client read it as the start of its next answer: httpx failed the next request on the
    kept-alive connection with "illegal status line"."""
    with OTPServer() as server:
        first, second = injected_then_health(server, httpx.Response(status, json={"code": 1}))
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
        first, second = injected_then_health(
            server,
            httpx.Response(
                503,
                headers=[
                    (b"X-Reason", "Bad gateway €".encode()),
                    (b"X-Evil\r\nSet-Cookie", b"stolen"),
                    (b"X Space", b"1"),
                    (b"X-Nul", b"a\x00b"),
                    (b"Retry-After", b"7"),
                ],
                json={"code": 1},
            ),
        )
    assert (first.status_code, first.json()) == (503, {"code": 1})
    assert first.headers["x-reason"] == "Bad gateway €"
    assert first.headers["retry-after"] == "7"
    assert not {"set-cookie", "x-nul", "x space", "x-evil"} & set(first.headers)
    assert second.status_code == 200
    assert not any("code=1000" in line for line in lines), lines


@pytest.mark.parametrize("status", [0, 42, 1000, -1])
def test_an_injected_status_that_is_no_http_status_is_a_500_naming_it(status: int) -> None:
    """``httpx.Response(42)`` can be injected (``otp_mock`` hands it to the client as it
    is), but a status line needs three digits: the door wrote ``HTTP/1.1 42 Unknown``
    and the client failed on an illegal status line.  It now answers 500, code 1000,
    naming the status, and the connection stays usable."""
    with OTPServer() as server:
        first, second = injected_then_health(server, httpx.Response(status, json={"code": 1}))
    assert (first.status_code, first.json()["code"]) == (500, 1000)
    assert f"status {status} " in first.json()["message"]
    assert second.status_code == 200


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
    # The time is the clock's, not ours to pin: 0.0 ms on a quiet machine, 0.1 ms in CI.
    crashed = re.compile(r"127\.0\.0\.1:\d+ - - -> 500 code=1000 \(\d+\.\d ms\)")
    assert any(crashed.fullmatch(line) for line in lines), lines


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


# -- regression probes: what held up ---------------------------------------------------------------
#
# Each of these found nothing wrong in the new design; they stay as regression tests.

_ADVANCE = b'{"seconds": 1}'
#: name: (bytes on the wire, the statuses it answers, whether it ends the connection, HEAD)
_PIECES: dict[str, tuple[bytes, list[int], bool, bool]] = {
    "get": (HEALTH, [200], False, False),
    "head": (b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n", [404], False, True),
    "length": (
        b"POST /_emulator/advance HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n" + _ADVANCE,
        [200],
        False,
        False,
    ),
    "chunked": (
        b"POST /_emulator/advance HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n"
        + _ADVANCE[:5]
        + b"\r\n9;ext=1\r\n"
        + _ADVANCE[5:]
        + b"\r\n0\r\nX-Trailer: y\r\n\r\n",
        [200],
        False,
        False,
    ),
    "expect": (
        b"POST /_emulator/advance HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 14\r\n\r\n" + _ADVANCE,
        [100, 200],
        False,
        False,
    ),
    "empty-line": (b"\r\n", [], False, False),
    "malformed": (b"BAD\r\n\r\n", [400], True, False),
    "no-host": (b"GET /_emulator/health HTTP/1.1\r\n\r\n", [400], True, False),
    "too-large": (
        b"POST /_emulator/advance HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
        [413],
        True,
        False,
    ),
    "http/1.0": (b"GET /_emulator/health HTTP/1.0\r\n\r\n", [200], True, False),
    "close": (
        b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        [200],
        True,
        False,
    ),
}


def _read_into(
    sock: socket.socket, received: list[bytes], sizes: list[int], rng: random.Random
) -> None:
    try:
        while chunk := sock.recv(rng.choice(sizes)):
            received.append(chunk)
    except ConnectionResetError:  # more was sent after a closing answer
        pass


@pytest.mark.parametrize("seed", range(3))
def test_pipelined_mixes_split_anywhere_are_answered_in_order_then_closed(seed: int) -> None:
    """Random runs of good, malformed, chunked, 100-continue, HEAD, HTTP/1.0 and closing
    requests, pipelined on one connection, cut at random places, written with pauses, read
    in random small pieces, sometimes half-closed after the last: every request before
    the first that ends the connection is answered, in order, then that one, then a
    close; never a crash (no code 1000 line)."""
    rng = random.Random(seed)
    lines: list[str] = []
    with OTPServer(read_timeout=2, max_body=1024, log=lines.append) as server:
        for _ in range(40):
            names = [rng.choice(list(_PIECES)) for _ in range(rng.randint(1, 8))] + ["close"]
            stream, expected, heads, ended = b"", list[int](), list[bool](), False
            for name in names:
                data, codes, closes, head = _PIECES[name]
                stream += data
                if not ended:
                    expected += codes
                    heads += [head] * sum(code >= 200 for code in codes)
                    ended = closes
            cuts = sorted(
                rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 6)))
            )
            pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
            received: list[bytes] = []
            sizes = [1, 7, 100, 65536] if rng.random() < 0.3 else [65536]
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                reader = threading.Thread(
                    target=_read_into, args=(sock, received, sizes, random.Random(rng.random()))
                )
                reader.start()
                try:
                    for piece in pieces:
                        sock.sendall(piece)
                        if rng.random() < 0.3:
                            time.sleep(rng.random() * 0.01)
                    if rng.random() < 0.3:
                        sock.shutdown(socket.SHUT_WR)
                except OSError:  # the server closed after an early answer: fine
                    pass
                reader.join(10)
                assert not reader.is_alive(), f"{names}: the connection was never closed"
            assert statuses(b"".join(received), heads) == expected, names
    assert not [line for line in lines if "code=1000" in line]


def test_64_clients_of_four_kinds_with_the_control_api_under_load() -> None:
    """64 concurrent clients (httpx, requests, http.client and raw pipelining sockets)
    send and read the control API at once on the one thread: every answer right."""
    import http.client

    import requests

    per_client = 8
    errors: list[object] = []
    with OTPServer() as server:
        credentials = (server.dev_key, server.dev_secret)
        headers = {"Authorization": auth(server), "Content-Type": "application/json"}

        def phone(index: int, n: int) -> str:
            return f"+659{index:03d}{n:04d}"

        def client(index: int) -> None:
            kind = index % 4
            try:
                if kind == 0:
                    with httpx.Client(base_url=server.url, auth=credentials, timeout=10) as c:
                        for n in range(per_client):
                            sent = c.post("/v1/messages", json=send_body(phone(index, n)))
                            mine = c.get("/_emulator/sent", params={"to": phone(index, n)})
                            ids = [m["message_id"] for m in mine.json()["sent"]]
                            if sent.status_code != 200 or ids != [sent.json()["message_id"]]:
                                errors.append((index, n, sent.text, mine.text))
                elif kind == 1:
                    with requests.Session() as s:
                        for n in range(per_client):
                            answer = s.post(
                                server.url + "/v1/messages",
                                json=send_body(phone(index, n)),
                                auth=credentials,
                                timeout=10,
                            )
                            code = s.get(
                                server.url + "/_emulator/last-code",
                                params={"to": phone(index, n)},
                                timeout=10,
                            )
                            if answer.status_code != 200 or code.status_code != 200:
                                errors.append((index, n, answer.text, code.text))
                elif kind == 2:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                    for n in range(per_client):
                        conn.request(
                            "POST", "/v1/messages", json.dumps(send_body(phone(index, n))), headers
                        )
                        response = conn.getresponse()
                        if response.status != 200:
                            errors.append((index, n, response.read()))
                        response.read()
                    conn.close()
                else:
                    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                        sock.sendall(
                            b"".join(post_send(server, phone(index, n)) for n in range(per_client))
                            + HEALTH
                        )
                        sock.shutdown(socket.SHUT_WR)
                        raw, ending = read_until_closed(sock, limit=10)
                        if (statuses(raw), ending) != ([200] * (per_client + 1), "closed"):
                            errors.append((index, raw[-300:], ending))
            except Exception as error:
                errors.append((index, repr(error)))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        sent = server.sent
    assert errors == []
    assert len(sent) == 64 * per_client
    assert len({m.message_id for m in sent}) == len(sent)
    assert {m.to for m in sent} == {f"+659{i:03d}{n:04d}" for i in range(64) for n in range(8)}


@pytest.mark.anyio
async def test_an_async_test_drives_the_server_with_httpx_async_client() -> None:
    import anyio

    with OTPServer() as server:
        async with httpx.AsyncClient(
            base_url=server.url, auth=(server.dev_key, server.dev_secret), timeout=10
        ) as client:
            results: dict[str, int] = {}

            async def send(to: str) -> None:
                results[to] = (await client.post("/v1/messages", json=send_body(to))).status_code

            async with anyio.create_task_group() as group:
                for n in range(50):
                    group.start_soon(send, f"+65988{n:05d}")
            health = await client.get("/_emulator/health")
        sent = server.sent
    assert set(results.values()) == {200}
    assert len(results) == 50
    assert health.json()["sent"] == 50
    assert sorted(m.to for m in sent) == sorted(results)


def test_stalled_half_closed_and_reset_clients_never_hold_up_the_others() -> None:
    """Clients that stop mid-head, mid-body, after a request without reading, that
    half-close after a partial request or reset mid-answer: a client meanwhile is
    answered at once every time, and each of them ends as documented."""
    big = b"GET /v1/" + b"x" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with OTPServer(read_timeout=1.0) as server:
        address = ("127.0.0.1", server.port)
        stalled = []
        for data in (
            HEALTH[:10],
            b"POST /_emulator/advance HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n{",
            big * 400,
        ):
            for _ in range(10):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(address)
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.send(data)
                stalled.append(sock)
        half_closed = socket.create_connection(address, timeout=5)
        half_closed.sendall(HEALTH[:20])
        half_closed.shutdown(socket.SHUT_WR)
        for _ in range(5):
            reset = socket.socket()
            reset.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reset.connect(address)
            reset.sendall(big * 50)
            reset.recv(100)
            reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            reset.close()  # RST while the server still holds answers for it
        for _ in range(20):
            started = time.monotonic()
            with socket.create_connection(address, timeout=5) as other:
                other.sendall(HEALTH)
                assert statuses(other.recv(65536)) == [200]
            assert time.monotonic() - started < 0.9  # before read_timeout cuts anyone off
        raw, ending = read_until_closed(half_closed)
        assert (statuses(raw), ending) == ([400], "closed")
        assert b"the connection closed before the request head ended" in raw
        for sock in stalled[:20]:  # cut off at read_timeout: 408, then 400 for the body
            raw, ending = read_until_closed(sock)
            assert statuses(raw) in ([408], [400])
            assert ending == "closed"
        for sock in stalled:
            sock.close()
        half_closed.close()


def test_abandoned_connections_restarts_and_stops_leave_no_descriptor_or_thread() -> None:
    """1,000 connections opened and dropped (silent, mid-head, mid-answer, reset), then
    ``stop()`` with connections mid-request and with output held back, then ``start()``
    and ``stop()`` 200 times: each stop quick, and the process's descriptors and
    threads what they were before."""
    threads, fds = threading.active_count(), open_fds()
    big = b"GET /v1/" + b"x" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    server = OTPServer(keep_alive_timeout=0.5, read_timeout=0.5)
    server.start()
    address = ("127.0.0.1", server.port)
    dropped = []
    for index in range(1000):
        sock = socket.create_connection(address, timeout=5)
        if index % 4 == 1:
            sock.sendall(HEALTH[:15])
        elif index % 4 == 2:
            sock.sendall(HEALTH * 3)
        elif index % 4 == 3:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        dropped.append(sock)
    for sock in dropped:
        sock.close()
    deadline = time.monotonic() + 5
    while open_fds() > fds + 4 and time.monotonic() < deadline:  # listener, waker, selector
        time.sleep(0.05)
    assert open_fds() == fds + 4
    # stop() with clients mid-request, lingering after an early answer, held output.
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    held.connect(address)
    held.setblocking(False)
    with contextlib.suppress(BlockingIOError):  # until the socket's buffers are full
        while True:
            held.send(big * 100)
    waiting = [socket.create_connection(address, timeout=5) for _ in range(20)]
    for index, sock in enumerate(waiting):
        sock.sendall(HEALTH[:20] if index % 2 else b"BAD\r\n\r\n")
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2  # closes them; it waits for none of them
    for index, sock in enumerate(waiting):
        raw, ending = read_until_closed(sock, limit=2)
        assert (statuses(raw), ending) == ([] if index % 2 else [400], "closed")
        sock.close()
    held.close()
    for _ in range(200):
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(HEALTH)
            assert statuses(sock.recv(65536)) == [200]
        server.stop()
    assert (threading.active_count(), open_fds()) == (threads, fds)


def test_a_small_max_body_still_lets_http_client_read_its_413() -> None:
    """After an early answer the door reads and drops what the client still sends, so
    that the client, which writes its whole body before it reads, gets the answer and
    no broken pipe.  It dropped at most 64 times ``max_body``: with ``max_body=1024`` a
    16 MB body (more than the sockets' buffers hold) ended in a reset, and
    ``http.client`` (urllib, the official SDK) raised BrokenPipeError instead of
    returning the 413."""
    import http.client

    with OTPServer(max_body=1024) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        body = b"{" + b" " * (16 << 20) + b"}"
        conn.request("POST", "/v1/messages", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        conn.close()
    assert (response.status, answer["code"]) == (413, 3001)


@pytest.mark.parametrize(
    ("length", "expected", "message"),
    [
        (14, [100, 400], "the request body is shorter than its Content-Length (14 bytes)"),
        (5000, [413], "the request body (5000 bytes) is larger than 1024 bytes"),
    ],
    ids=["body-never-sent", "too-large"],
)
def test_expect_100_continue_without_the_body(
    length: int, expected: list[int], message: str
) -> None:
    """A client that asks ``Expect: 100-continue`` and then never sends its body gets the
    100, then at read_timeout a 400; one whose body is too large gets the 413 at once and
    no 100, so it need not send the body at all."""
    with (
        OTPServer(read_timeout=0.3, max_body=1024) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(
            b"POST /_emulator/advance HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % length
        )
        started = time.monotonic()
        raw, ending = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert (statuses(raw), ending) == (expected, "closed")
    assert message in raw.decode()
    assert elapsed < 1.5  # at read_timeout (0.3 s) for the 400, at once for the 413


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        pytest.param(b"\x00" * 100, 400, "malformed request line", id="NUL bytes"),
        pytest.param(
            bytes.fromhex("16030100c4010000c00303") + bytes(range(256)) * 4,
            400,
            "malformed request line",
            id="a TLS ClientHello (https:// against http)",
        ),
        pytest.param(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 404, "no such endpoint: PRI *", id="HTTP/2 preface"
        ),
        pytest.param(b"A" * 200_000, 414, "request line is longer than 8192", id="200 KB line"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"\xff\xfe\x00" * 10 + b"\r\n\r\n",
            400,
            "malformed header line",
            id="binary header value",
        ),
    ],
)
def test_garbage_gets_one_documented_answer_and_a_close(
    data: bytes, status: int, message: str
) -> None:
    lines: list[str] = []
    with (
        OTPServer(read_timeout=0.5, log=lines.append) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
        raw, ending = read_until_closed(sock)
        elapsed = time.monotonic() - started
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as after:
            after.sendall(HEALTH)
            healthy = statuses(after.recv(65536))
    assert (statuses(raw), ending) == ([status], "closed")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert message in json.loads(body)["message"]
    assert b"connection: close" in head.lower()
    assert elapsed < 1
    assert healthy == [200]
    assert not [line for line in lines if "code=1000" in line]
