"""The loopback server on h11: each defect of the hand-written parser, on a raw socket.

Every test is bounded in time (socket timeouts, measured elapsed time), and every
test checks that no connection thread died with a traceback (``threading.excepthook``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pytest_engagelab.doors.mock import OTPMock
from pytest_engagelab.doors.server import OTPServer
from pytest_engagelab.emulator.clock import MAX_TIME
from pytest_engagelab.emulator.templates import MAX_TTL, TemplateConfigError

pytest_plugins = ["pytester"]

PHONE = "+6598765432"


#: No connection may end in a thread's traceback (see conftest).
pytestmark = pytest.mark.usefixtures("thread_tracebacks")


@pytest.fixture
def server() -> Iterator[OTPServer]:
    with OTPServer(read_timeout=0.5, max_body=1024) as started:
        yield started


def auth(server: OTPServer) -> str:
    token = base64.b64encode(f"{server.dev_key}:{server.dev_secret}".encode()).decode()
    return f"Basic {token}"


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(server: OTPServer, data: bytes) -> tuple[int, dict[str, str], Any, float]:
    """Send raw bytes; read until the server closes; (status, headers, JSON, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        raw = read_all(sock)
    return (*parse(raw), time.monotonic() - started)


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    return int(lines[0].split()[1]), headers, json.loads(body[:length]) if length else None


def api_head(server: OTPServer, method: str, path: str, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth(server)}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


# -- Content-Length ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length",
    [pytest.param("²".encode(), id="superscript-two"), pytest.param(b"9" * 5000, id="5000-digits")],
)
def test_a_content_length_that_is_no_ascii_number_is_400(server: OTPServer, length: bytes) -> None:
    data = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n{}"
    status, headers, answer, elapsed = exchange(server, data)
    assert (status, answer) == (
        400,
        {"code": 3001, "message": "Content-Length is not a number of at most 20 ASCII digits"},
    )
    assert headers["connection"] == "close"
    assert elapsed < 3
    assert server.sent == []


def test_content_length_and_chunked_together_is_400(server: OTPServer) -> None:
    data = api_head(
        server, "POST", "/v1/messages", "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"
    )
    status, _, answer, _ = exchange(server, data + b"2\r\n{}\r\n0\r\n\r\n")
    assert (status, answer["code"]) == (400, 3001)
    assert answer["message"].startswith("send Transfer-Encoding: chunked or Content-Length")


# -- chunked bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [b"-2", b"-400", b"-1", b"0x10", b"1" * 21])
def test_a_bad_chunk_size_is_400(server: OTPServer, size: bytes) -> None:
    head = api_head(server, "POST", "/v1/messages", "Transfer-Encoding: chunked\r\n")
    status, _, answer, elapsed = exchange(server, head + size + b"\r\n{}\r\n0\r\n\r\n")
    assert (status, answer) == (
        400,
        {"code": 3001, "message": "malformed chunked request body: bad chunk size"},
    )
    assert elapsed < 3
    assert server.sent == []


def test_chunk_size_minus_one_with_a_body_limit_is_answered_not_swallowed(
    server: OTPServer,
) -> None:
    # Before h11: int("-1", 16) read "everything", and 4 MiB went in past max_body=1024.
    head = api_head(server, "POST", "/v1/messages", "Transfer-Encoding: chunked\r\n")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b"-1\r\n")

        def flood() -> None:
            with contextlib.suppress(OSError):  # the server closed: what the test wants
                sock.sendall(b"x" * (4 * 1024 * 1024))

        sender = threading.Thread(target=flood)
        sender.start()
        raw = read_all(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # stop the flood if it is still sending
        sender.join(5)
    status, _, answer = parse(raw)
    assert (status, answer["code"]) == (400, 3001)
    assert time.monotonic() - started < 5
    assert not sender.is_alive()
    assert server.sent == []


def test_chunks_past_max_body_are_413(server: OTPServer) -> None:
    head = api_head(server, "POST", "/v1/messages", "Transfer-Encoding: chunked\r\n")
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    status, _, answer, _ = exchange(server, head + chunk * 2 + b"0\r\n\r\n")
    assert (status, answer) == (
        413,
        {"code": 3001, "message": "the request body is larger than 1024 bytes"},
    )


# -- a whole-request deadline ------------------------------------------------------------------


def trickle(server: OTPServer, data: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """Send ``data`` one byte every ``every`` seconds until the server answers or
    closes (or ``limit`` seconds pass); return what it sent back and when."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for byte in data:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], every)
            if readable or time.monotonic() - started > limit:
                break
        answered = time.monotonic() - started
        return read_all(sock), answered


def test_a_trickled_head_is_cut_off_at_read_timeout_not_kept_open(server: OTPServer) -> None:
    # One byte every 0.3 s: each read comes within read_timeout=0.5 s, the whole never does.
    head = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100 + b"\r\n\r\n"
    raw, answered = trickle(server, head, every=0.3, limit=6)
    status, headers, answer = parse(raw)
    assert (status, answer) == (
        408,
        {"code": 3001, "message": "the request did not arrive within 0.5 s (read_timeout)"},
    )
    assert headers["connection"] == "close"
    assert 0.45 < answered < 1.5


def test_a_trickled_body_is_cut_off_at_read_timeout(server: OTPServer) -> None:
    head = api_head(server, "POST", "/v1/messages", "Content-Length: 100\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        raw, answered = b"", 0.0
        started = time.monotonic()
        for _ in range(20):
            try:
                sock.sendall(b" ")
            except OSError:
                break
            if select.select([sock], [], [], 0.3)[0]:
                break
        answered = time.monotonic() - started
        raw = read_all(sock)
    status, _, answer = parse(raw)
    assert (status, answer["code"]) == (400, 3001)
    assert answer["message"] == (
        "the request body is shorter than its Content-Length (100 bytes): "
        "it did not all arrive within 0.5 s"
    )
    assert answered < 1.5


def test_an_idle_connection_between_requests_waits_for_keep_alive_not_read_timeout() -> None:
    with (
        OTPServer(read_timeout=0.2, keep_alive_timeout=5) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        ask = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(ask)
        first = sock.recv(65536)
        time.sleep(0.5)  # idle longer than read_timeout: still open
        sock.sendall(ask)
        second = sock.recv(65536)
    assert parse(first)[0] == parse(second)[0] == 200


# -- out of file descriptors -------------------------------------------------------------------


def test_accept_out_of_file_descriptors_backs_off_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch, accept_out_of_fds: Callable[[float], list[float]]
) -> None:
    failing_for = 0.6
    with OTPServer() as server:
        calls = accept_out_of_fds(failing_for)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = read_all(sock)
        elapsed = time.monotonic() - started
        monkeypatch.undo()
    failing = [t for t in calls if t - calls[0] < failing_for]
    # Spinning made tens of thousands of calls in 0.6 s; backing off (5 ms doubling up to
    # 0.5 s) makes about seven, and the queued connection is served once accept works.
    assert 3 <= len(failing) <= 12, len(failing)
    assert parse(raw)[0] == 200
    assert failing_for < elapsed < 2.5


# -- paths ---------------------------------------------------------------------------------


def test_a_percent_escaped_path_is_decoded_as_otp_mock_decodes_it(server: OTPServer) -> None:
    path = "/v1/template-configs/oas%20probe%20%C3%BC"
    server.add_template("oas probe ü", description="d")
    status, _, answer, _ = exchange(server, api_head(server, "GET", path, "Connection: close\r\n"))
    with OTPMock() as mock:
        mock.add_template("oas probe ü", description="d")
        with httpx.Client() as client:
            through_mock = client.get(mock.base_url + path, headers={"Authorization": auth(server)})
    assert status == through_mock.status_code == 200
    assert answer == through_mock.json()
    assert answer["template_id"] == "oas probe ü"


# -- 405 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/messages", {"POST"}),
        ("GET", "/v1/verifications", {"POST"}),
        ("PATCH", "/v1/template-configs", {"GET", "POST"}),
        ("GET", "/_emulator/reset", {"POST"}),
        ("DELETE", "/_emulator/templates", {"GET", "POST"}),
    ],
)
def test_a_405_names_the_allowed_methods(
    server: OTPServer, method: str, path: str, allowed: set[str]
) -> None:
    data = api_head(server, method, path, "Content-Length: 0\r\nConnection: close\r\n")
    status, headers, answer, _ = exchange(server, data)
    assert (status, answer["code"]) == (405, 3002)
    assert set(headers["allow"].split(", ")) == allowed


def test_a_405_on_a_template_item_allows_at_least_get_and_delete(server: OTPServer) -> None:
    data = api_head(
        server, "POST", "/v1/template-configs/x", "Content-Length: 0\r\nConnection: close\r\n"
    )
    status, headers, _, _ = exchange(server, data)
    assert status == 405
    assert {"GET", "DELETE"} <= set(headers["allow"].split(", "))
    assert "POST" not in headers["allow"]


# -- the control API's bounds ------------------------------------------------------------------


def control(server: OTPServer, method: str, name: str, payload: bytes = b"") -> tuple[int, Any]:
    data = (
        f"{method} /_emulator/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + payload
    status, _, answer, _ = exchange(server, data)
    return status, answer


def send(server: OTPServer) -> tuple[int, Any]:
    body = json.dumps({"to": PHONE, "template": {"id": "login"}}).encode()
    extra = f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    status, _, answer, _ = exchange(server, api_head(server, "POST", "/v1/messages", extra) + body)
    return status, answer


def finite_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "seconds",
    [b"1e308", b"1" + b"0" * 400, str(int(MAX_TIME)).encode()],
    ids=["1e308", "401-digits", "max-time"],
)
def test_advance_past_year_9999_is_400_naming_the_limit(server: OTPServer, seconds: bytes) -> None:
    status, answer = control(server, "POST", "advance", b'{"seconds": ' + seconds + b"}")
    assert (status, answer["code"]) == (400, 3002)
    assert "past 9999-12-31T23:59:59Z (253402300799)" in answer["message"]
    assert len(answer["message"]) < 300  # the 401 digits are not echoed
    assert send(server)[0] == 200  # not 1000: the clock did not move


def test_the_clock_can_reach_the_limit_and_the_api_still_answers(server: OTPServer) -> None:
    now = server.emulator.clock.now()
    status, answer = control(server, "POST", "advance", b'{"seconds": %r}' % (MAX_TIME - now))
    assert status == 200
    assert math.isclose(answer["now"], MAX_TIME)
    assert send(server)[0] == 200
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = read_all(sock)
    body = raw.partition(b"\r\n\r\n")[2].decode()
    assert finite_json(body)["now"] == pytest.approx(MAX_TIME)
    assert "Infinity" not in body


def test_a_template_ttl_past_the_limit_is_400(server: OTPServer) -> None:
    payload = b'{"template_id": "t", "ttl": 1' + b"0" * 400 + b"}"
    status, answer = control(server, "POST", "templates", payload)
    assert (status, answer["code"]) == (400, 3002)
    assert answer["message"] == (
        "template #1 ('t'): ttl must be a positive number of seconds up to "
        f"{MAX_TTL} (366 days), not 401 digits"
    )
    with pytest.raises(TemplateConfigError, match=r"up to 31622400 \(366 days\)"):
        server.add_template("t", ttl=MAX_TTL + 1)
    server.add_template("t", ttl=MAX_TTL)
    assert send(server)[0] == 200


def test_health_is_always_json(server: OTPServer) -> None:
    for seconds in (b"1e308", b"NaN", b"Infinity", b"-Infinity"):
        assert control(server, "POST", "advance", b'{"seconds": ' + seconds + b"}")[0] == 400
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = read_all(sock).partition(b"\r\n\r\n")[2].decode()
    assert math.isfinite(finite_json(body)["now"])


def test_an_injected_answer_with_infinity_is_400(server: OTPServer) -> None:
    status, answer = control(
        server, "POST", "fail-next", b'{"status": 503, "body": {"x": Infinity}}'
    )
    assert (status, answer) == (
        400,
        {"code": 3002, "message": "body must be JSON without Infinity or NaN"},
    )


# -- isolation -----------------------------------------------------------------------------------


def _wsgi_ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def test_reset_empties_the_callback_queue_as_otp_mock_reset_does(server: OTPServer) -> None:
    server.configure_callbacks(app=_wsgi_ok)
    assert send(server)[0] == 200
    assert server.pending_callbacks != []
    server.reset()
    assert server.pending_callbacks == []
    with OTPMock() as mock:  # the same for the other door
        mock.configure_callbacks(app=_wsgi_ok)
        with httpx.Client() as client:
            client.post(
                mock.base_url + "/v1/messages",
                json={"to": PHONE, "template": {"id": "login"}},
                headers={"Authorization": auth(server)},
            )
        assert mock.pending_callbacks != []
        mock.reset()
        assert mock.pending_callbacks == []


SESSION_TESTS = """
import pytest
from pytest_engagelab.errors import ErrorCode


def wsgi_ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def send(server):
    import base64, http.client, json
    token = base64.b64encode(f"{server.dev_key}:{server.dev_secret}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"to": "+6598765432", "template": {"id": "login"}})
    headers = {"Authorization": "Basic " + token, "Content-Type": "application/json"}
    conn.request("POST", "/v1/messages", body, headers)
    answer = conn.getresponse()
    body = json.loads(answer.read())
    conn.close()
    return answer.status, body


def test_1_leaves_callbacks_templates_and_messages(otp_server_session):
    otp_server_session.configure_callbacks(app=wsgi_ok)
    otp_server_session.add_template("login", strategy="whatsapp")
    assert send(otp_server_session)[0] == 200
    assert otp_server_session.pending_callbacks != []


def test_2_reached_through_getfixturevalue_is_fresh(request):
    server = request.getfixturevalue("otp_server_session")
    assert server.sent == []
    assert server.emulator.templates == {}
    assert server.pending_callbacks == []
    status, answer = send(server)
    assert (status, answer["send_channel"]) == (200, "sms")  # no 3004, no whatsapp template
    assert server.pending_callbacks == []  # callbacks are no longer configured


def test_3_named_again_is_fresh(otp_server_session):
    assert otp_server_session.sent == []
    assert otp_server_session.pending_callbacks == []


def test_4_unfired_through_getfixturevalue_still_fails(request):
    request.getfixturevalue("otp_server_session").fail_next(ErrorCode.SEND_FAILED)
"""


def test_otp_server_session_forgets_callbacks_and_resets_for_getfixturevalue(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SESSION_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_4_unfired_through_getfixturevalue_still_fails*",
            "*otp_server_session: 1 injected failure(s) never fired:",
        ]
    )


def test_otp_server_session_honours_an_engagelab_settings_override(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import dataclasses, pytest

        @pytest.fixture
        def engagelab_settings(engagelab_settings):
            return dataclasses.replace(engagelab_settings, strict_templates=True, seed=7)
        """
    )
    pytester.makepyfile(
        SESSION_TESTS.split("def test_1")[0]
        + """
CODES = []


def test_strict_from_the_override(otp_server_session):
    assert otp_server_session.emulator.strict_templates is True
    status, answer = send(otp_server_session)
    assert (status, answer["code"]) == (400, 4001)


@pytest.mark.engagelab(strict_templates=False)
def test_the_marker_still_wins(otp_server_session):
    assert send(otp_server_session)[0] == 200


@pytest.mark.parametrize("run", [1, 2])
def test_seeded_by_the_override_afresh_each_test(otp_server_session, run):
    otp_server_session.add_template("login")
    assert send(otp_server_session)[0] == 200
    assert otp_server_session.emulator.seed == 7
    CODES.append(otp_server_session.last_code("+6598765432"))
    assert len(set(CODES)) == 1, CODES
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_an_override_cannot_change_the_session_servers_credentials(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import dataclasses, pytest

        @pytest.fixture
        def engagelab_settings(engagelab_settings):
            return dataclasses.replace(engagelab_settings, dev_secret="from-the-override")
        """
    )
    pytester.makepyfile(
        """
        def test_session(otp_server_session):
            pass

        def test_per_test_server_takes_it(otp_server):
            assert otp_server.dev_secret == "from-the-override"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*engagelab_settings(dev_secret=...) cannot change otp_server_session, which is "
            "shared by the whole session; use the otp_server fixture for this test, or set it "
            "with the engagelab_* ini options",
        ]
    )
    assert "from-the-override" not in result.stdout.str().replace(
        'assert otp_server.dev_secret == "from-the-override"', ""
    )


# -- keep-alive as h11 frames it ---------------------------------------------------------------


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, Any]]:
    """Read ``count`` answers off a keep-alive connection."""
    buffer, answers = b"", []

    def more() -> bytes:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(answers)} answer(s): {buffer!r}"
        return chunk

    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            buffer += more()
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += more()
        answers.append((int(head.split()[1]), json.loads(rest[:length])))
        buffer = rest[length:]
    return answers


def test_pipelined_requests_are_answered_in_order(server: OTPServer) -> None:
    body = json.dumps({"to": PHONE, "template": {"id": "login"}}).encode()
    post = api_head(server, "POST", "/v1/messages", f"Content-Length: {len(body)}\r\n") + body
    health = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(post + b"\r\n" + health + post)  # a stray CRLF between is tolerated
        answers = read_answers(sock, 3)
    assert [status for status, _ in answers] == [200, 200, 400]
    assert answers[1][1]["sent"] == 1
    assert answers[2][1]["code"] == 3004  # the second send: the frequency limit


def test_a_next_request_split_across_reads_is_assembled(server: OTPServer) -> None:
    health = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(health + health[:10])
        time.sleep(0.2)  # within read_timeout (0.5 s) of the second request's first byte
        sock.sendall(health[10:])
        answers = read_answers(sock, 2)
    assert [status for status, _ in answers] == [200, 200]


def test_a_head_over_16_kib_is_431_whether_it_arrives_whole_or_in_pieces(
    server: OTPServer,
) -> None:
    head = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 17000 + b"\r\n"
    status, _, answer, _ = exchange(server, head + b"\r\n")
    assert (status, answer["message"]) == (431, "the request head is longer than 16384 bytes")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for start in range(0, len(head), 4096):  # never the blank line: h11 sees it growing
            with contextlib.suppress(OSError):
                sock.sendall(head[start : start + 4096])
        status, _, answer = parse(read_all(sock))
    assert (status, answer["code"]) == (431, 3001)


@pytest.mark.parametrize("door", ["otp_mock", "otp_server"])
def test_a_decoded_question_mark_stays_part_of_the_template_id(
    door: str, request: pytest.FixtureRequest
) -> None:
    """``%3F`` in a path decodes to ``?`` after the query is split off: the id is
    ``a?b`` (unknown: 4001), never the list route (schemathesis found this)."""
    controls = request.getfixturevalue(door)
    auth = (controls.dev_key, controls.dev_secret)
    with httpx.Client(base_url=controls.base_url, auth=auth, timeout=10) as client:
        answer = client.get("/v1/template-configs/a%3Fb")
        listed = client.get("/v1/template-configs")
    assert isinstance(listed.json(), list)
    assert answer.json()["code"] == 4001
    assert answer.status_code == 400


# -- one thread serves every connection ----------------------------------------------------------


def test_a_client_that_reads_no_answers_does_not_hold_up_the_others() -> None:
    """One thread serves every connection, so it must never wait on one client: a client
    that pipelines requests and reads none of the answers fills its socket's buffers; the
    server keeps the rest of its output, stops answering that client, and answers a second
    client meanwhile.  The first client then gets every answer, in order."""
    answered: list[str] = []
    health = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"
    # An unknown path is named in its 404: 2 KB answers, 16 MB in all, more than the
    # sockets' buffers hold (the server's send buffer grows to 4 MB here).
    missing = b"GET /v1/" + b"x" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    count = 8_000
    with OTPServer(log=answered.append) as server, socket.socket() as greedy:
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no autotuning to 32 MB
        greedy.connect(("127.0.0.1", server.port))
        greedy.settimeout(5)
        sender = threading.Thread(target=greedy.sendall, args=(missing * count,), daemon=True)
        sender.start()
        time.sleep(0.5)
        stuck_at = len(answered)
        assert 0 < stuck_at < count, "the server answered every request although none was read"
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as other:
            other.sendall(health)
            assert read_answers(other, 1)[0][0] == 200
        assert time.monotonic() - started < 1
        statuses: dict[bytes, int] = {}
        tail = b""
        while sum(statuses.values()) < count:
            chunk = greedy.recv(1 << 20)
            assert chunk, f"closed after {sum(statuses.values())} answers"
            window = tail + chunk
            for status in (b"200", b"400", b"404", b"408", b"500"):
                found = window.count(b"HTTP/1.1 " + status + b" ")
                if found:
                    statuses[status] = statuses.get(status, 0) + found
            tail = window[-12:]
        sender.join(5)
    assert statuses == {b"404": count}
    assert len(answered) == count + 1


def test_a_defect_while_serving_one_connection_closes_it_and_spares_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the door itself (here: answering a request raises) closes that connection,
    writes one log line with code 1000, and the thread goes on serving everybody else."""
    from pytest_engagelab.doors import http as door

    lines: list[str] = []
    original = door.HTTPChannel._complete

    def complete(self: door.HTTPChannel) -> None:
        assert self.request is not None
        if self.request.path == "/_emulator/health" and self.request.query == "boom":
            raise RuntimeError("a defect")
        original(self)

    monkeypatch.setattr(door.HTTPChannel, "_complete", complete)
    with OTPServer(log=lines.append) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as bad:
            bad.sendall(b"GET /_emulator/health?boom HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_all(bad) == b""  # closed without an answer
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as good:
            good.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answers(good, 1)[0][0] == 200
    # The time is the clock's, not ours to pin: 0.0 ms on a quiet machine, 0.1 ms in CI.
    crashed = re.compile(r"127\.0\.0\.1:\d+ - - -> 500 code=1000 \(\d+\.\d ms\)")
    assert any(crashed.fullmatch(line) for line in lines), lines


def test_where_there_is_no_epoll_the_loop_serves_through_selectors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop waits on ``select.epoll`` where there is one, elsewhere on ``selectors``
    through the same calls: pipelined keep-alive, output held for a client that reads
    late, an idle connection closed at its deadline, all on the fallback."""
    from pytest_engagelab.doors import listener

    made: list[object] = []

    def selector_poller() -> listener._Poller:
        poller = listener._SelectorPoller()
        made.append(poller)
        return poller

    monkeypatch.setattr(listener, "_poller", selector_poller)
    health = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"
    missing = b"GET /v1/" + b"x" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    count = 3_000  # 2 KB answers, 6 MB in all: more than the sockets' buffers hold
    with OTPServer(keep_alive_timeout=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(health * 3)
            assert [status for status, _ in read_answers(sock, 3)] == [200, 200, 200]
            assert sock.recv(1) == b""  # idle past keep_alive_timeout: closed
        with socket.socket() as late:
            late.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            late.connect(("127.0.0.1", server.port))
            late.settimeout(5)
            sender = threading.Thread(target=late.sendall, args=(missing * count,), daemon=True)
            sender.start()
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as other:
                other.sendall(health)
                assert read_answers(other, 1)[0][0] == 200
            answers = read_answers(late, count)
            sender.join(5)
    assert {status for status, _ in answers} == {404}
    assert len(made) == 1
