"""The loopback server: real sockets, the official SDK, urllib, requests, a subprocess."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import engagelab_otp  # type: ignore[import-untyped]
import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_engagelab.doors.server import (
    CONTROL_PREFIX,
    OTPServer,
    TemplateSpecError,
    load_templates,
)
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.errors import ErrorCode

pytest_plugins = ["pytester"]

PHONE = "+6598765432"


def auth_header(server: OTPServer) -> str:
    token = base64.b64encode(f"{server.dev_key}:{server.dev_secret}".encode()).decode()
    return f"Basic {token}"


def api_headers(server: OTPServer) -> dict[str, str]:
    return {"Authorization": auth_header(server), "Content-Type": "application/json"}


def send_body(to: str = PHONE, template_id: str = "login") -> str:
    return json.dumps({"to": to, "template": {"id": template_id}})


def exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, Any]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    return response, json.loads(data) if data else None


def raw_exchange(server: OTPServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes; read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


@pytest.fixture
def server() -> Iterator[OTPServer]:
    with OTPServer(read_timeout=0.3) as started:
        yield started


@pytest.fixture
def conn(server: OTPServer) -> Iterator[http.client.HTTPConnection]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    yield connection
    connection.close()


@pytest.fixture
def sdk(otp_server: OTPServer) -> engagelab_otp.OTPClient:
    client = engagelab_otp.OTPClient(otp_server.dev_key, otp_server.dev_secret, timeout=5)
    client.BASE_URL = otp_server.url + "/v1"  # the only change: where it sends
    return client


# -- the official SDK ----------------------------------------------------------------------


def test_sdk_send_and_verify_against_otp_server(
    otp_server: OTPServer, sdk: engagelab_otp.OTPClient
) -> None:
    otp_server.add_template("login", strategy="whatsapp|sms")
    sent = sdk.send(PHONE, "login", params={"name": "Ada"}, language="en")
    assert sent == {"message_id": sent["message_id"], "send_channel": "whatsapp"}
    message = otp_server.assert_sent_once(to=PHONE, template_id="login", language="en")
    assert message.params == {"name": "Ada"}
    assert message.request is not None
    assert message.request.headers["user-agent"] == "engagelab-otp-python/1.0.1"
    wrong = sdk.verify(sent["message_id"], "000000" if message.code != "000000" else "111111")
    assert wrong["verified"] is False
    right = sdk.verify(sent["message_id"], otp_server.last_code(PHONE))
    assert right == {
        "message_id": sent["message_id"],
        "verify_code": message.code,
        "verified": True,
    }


def test_sdk_send_custom_to_several_recipients(
    otp_server: OTPServer, sdk: engagelab_otp.OTPClient
) -> None:
    answer = sdk.send_custom(["+6591111111", "+6592222222"], "promo", params={"code": "4321"})
    assert answer["send_channel"] == "sms"
    sent = otp_server.assert_sent_count(2, template_id="promo", endpoint="/v1/custom-messages")
    assert [m.code for m in sent] == ["4321", "4321"]
    assert otp_server.last_code("+6592222222") == "4321"


@pytest.mark.parametrize(
    ("inject", "code", "status", "retryable"),
    [
        (ErrorCode.SEND_FAILED, 5001, 400, True),
        (ErrorCode.INTERNAL_ERROR, 1000, 500, True),
        (ErrorCode.PERMISSION_DENIED, 2004, 403, False),
    ],
)
def test_sdk_gets_injected_errors_as_its_own_engagelab_error(
    otp_server: OTPServer,
    sdk: engagelab_otp.OTPClient,
    inject: ErrorCode,
    code: int,
    status: int,
    retryable: bool,
) -> None:
    otp_server.fail_next(inject)
    with pytest.raises(engagelab_otp.EngagelabError) as caught:
        sdk.send(PHONE, "login")
    assert (caught.value.code, caught.value.http_status) == (code, status)
    assert caught.value.retryable is retryable
    otp_server.assert_not_sent()


def test_sdk_errors_from_validation_arrive_with_code_and_status(
    otp_server: OTPServer, sdk: engagelab_otp.OTPClient
) -> None:
    sdk.send(PHONE, "login")
    with pytest.raises(engagelab_otp.EngagelabError) as limited:
        sdk.send(PHONE, "login")
    assert (limited.value.code, limited.value.http_status) == (3004, 400)
    with pytest.raises(engagelab_otp.EngagelabError) as bad_number:
        sdk.send("98765432", "login")
    assert (bad_number.value.code, bad_number.value.http_status) == (5011, 400)
    with pytest.raises(engagelab_otp.EngagelabError) as unknown:
        sdk.verify("1725407449772531712", "123456")
    assert unknown.value.code == 4001
    otp_server.advance(301)
    with pytest.raises(engagelab_otp.EngagelabError) as expired:
        sdk.verify(otp_server.sent[0].message_id, otp_server.last_code(PHONE))
    assert (expired.value.code, str(expired.value)) == (3003, expired.value.args[0])
    assert "expired" in str(expired.value)


def test_sdk_with_the_wrong_secret_gets_2001(otp_server: OTPServer) -> None:
    client = engagelab_otp.OTPClient(otp_server.dev_key, "not-the-secret", timeout=5)
    client.BASE_URL = otp_server.url + "/v1"
    with pytest.raises(engagelab_otp.EngagelabError) as caught:
        client.send(PHONE, "login")
    assert (caught.value.code, caught.value.http_status) == (2001, 401)


def test_sdk_sees_an_injected_exception_as_a_dropped_connection(
    otp_server: OTPServer, sdk: engagelab_otp.OTPClient
) -> None:
    otp_server.fail_next(httpx.ConnectTimeout("boom"))
    with pytest.raises(http.client.RemoteDisconnected):  # urllib lets it through as is
        sdk.send(PHONE, "login")
    assert sdk.send(PHONE, "login")["send_channel"] == "sms"  # the next one goes through


# -- urllib, requests and a subprocess -------------------------------------------------


def test_plain_urllib_post(otp_server: OTPServer) -> None:
    request = urllib.request.Request(
        otp_server.url + "/v1/codes",
        data=json.dumps({"to": PHONE, "code": "8642", "template": {"id": "t"}}).encode(),
        headers=api_headers(otp_server),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        answer = json.loads(response.read())
    assert answer["send_channel"] == "sms"
    assert otp_server.assert_sent_once(endpoint="/v1/codes").code == "8642"


def test_requests_session_reuses_one_connection(otp_server: OTPServer) -> None:
    with requests.Session() as session:
        session.headers.update(api_headers(otp_server))
        first = session.post(otp_server.url + "/v1/messages", data=send_body("+6591000001"))
        second = session.post(otp_server.url + "/v1/messages", data=send_body("+6591000002"))
        bad = session.post(otp_server.url + "/v1/messages", data="{not json")
    assert (first.status_code, second.status_code) == (200, 200)
    assert bad.status_code == 400
    assert bad.json() == {"code": 3001, "message": "the request body is not valid JSON"}
    assert first.headers["Connection"] == "keep-alive"
    peers = {m.request.headers.get("host") for m in otp_server.sent if m.request is not None}
    assert peers == {f"127.0.0.1:{otp_server.port}"}
    assert otp_server.assert_sent_count(2) != []


def test_requests_sees_an_injected_exception_as_a_connection_error(otp_server: OTPServer) -> None:
    otp_server.fail_next(httpx.ReadTimeout("slow"), endpoint="/v1/messages")
    url = otp_server.url + "/v1/messages"
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data=send_body(), headers=api_headers(otp_server), timeout=5)
    answer = requests.post(url, data=send_body(), headers=api_headers(otp_server), timeout=5)
    assert answer.json()["send_channel"] == "sms"


def test_client_in_a_subprocess(otp_server: OTPServer) -> None:
    script = textwrap.dedent(
        """
        import json, os, sys, urllib.request
        base, auth = os.environ["OTP_URL"], os.environ["OTP_AUTH"]
        body = json.dumps({"to": sys.argv[1], "template": {"id": "signup"}}).encode()
        request = urllib.request.Request(base + "/v1/messages", data=body, method="POST",
            headers={"Authorization": auth, "Content-Type": "application/json"})
        sent = json.load(urllib.request.urlopen(request, timeout=5))
        code = json.load(urllib.request.urlopen(
            base + "/_emulator/last-code?to=" + sys.argv[1].replace("+", "%2B"), timeout=5))
        body = json.dumps({"message_id": sent["message_id"], "verify_code": code["code"]})
        request = urllib.request.Request(base + "/v1/verifications", data=body.encode(),
            method="POST", headers={"Authorization": auth, "Content-Type": "application/json"})
        print(json.load(urllib.request.urlopen(request, timeout=5))["verified"])
        """
    )
    env = {**os.environ, "OTP_URL": otp_server.url, "OTP_AUTH": auth_header(otp_server)}
    done = subprocess.run(
        [sys.executable, "-c", script, "+6593333333"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "True", "")
    otp_server.assert_sent_once(to="+6593333333", template_id="signup")


# -- HTTP done right -----------------------------------------------------------------------


def test_keep_alive_serves_two_requests_on_one_connection(
    server: OTPServer, conn: http.client.HTTPConnection
) -> None:
    first, answer = exchange(
        conn, "POST", "/v1/messages", send_body("+6591000001"), api_headers(server)
    )
    local = conn.sock.getsockname()
    second, _ = exchange(
        conn, "POST", "/v1/messages", send_body("+6591000002"), api_headers(server)
    )
    assert conn.sock.getsockname() == local  # the same socket: not reopened
    assert (first.status, second.status) == (200, 200)
    assert first.getheader("Connection") == "keep-alive"
    assert first.getheader("Content-Length") == str(len(json.dumps(answer, separators=(",", ":"))))
    assert first.getheader("Content-Type") == "application/json"
    assert first.getheader("Date", "").endswith(" GMT")
    server.assert_sent_count(2)


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "message"),
    [
        ("GET", "/v2/anything", 404, 4001, "no such endpoint: GET /v2/anything"),
        ("DELETE", "/v1/messages", 405, 3002, "DELETE /v1/messages: use POST"),
        ("PUT", "/v1/verifications", 405, 3002, "PUT /v1/verifications: use POST"),
    ],
)
def test_unknown_paths_and_methods_get_json_errors(
    server: OTPServer,
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    status: int,
    code: int,
    message: str,
) -> None:
    response, answer = exchange(conn, method, path, b"" if method == "PUT" else None)
    assert response.status == status
    assert answer == {"code": code, "message": message}
    assert response.getheader("Content-Type") == "application/json"
    assert exchange(conn, "GET", "/_emulator/health")[0].status == 200  # still open


def test_wrong_content_type_is_3001(server: OTPServer, conn: http.client.HTTPConnection) -> None:
    headers = {**api_headers(server), "Content-Type": "text/plain"}
    response, answer = exchange(conn, "POST", "/v1/messages", send_body(), headers)
    assert (response.status, answer["code"]) == (400, 3001)
    assert "Content-Type must be application/json, not 'text/plain'" in answer["message"]
    server.assert_not_sent()


def test_oversized_body_is_413_with_a_json_error(server: OTPServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    big = b'{"to": "' + b"9" * (2 * 1024 * 1024) + b'"}'
    response, answer = exchange(conn, "POST", "/v1/messages", big, api_headers(server))
    conn.close()
    assert response.status == 413
    assert answer == {
        "code": 3001,
        "message": f"the request body ({len(big)} bytes) is larger than 1048576 bytes",
    }
    assert response.getheader("Connection") == "close"


def test_oversized_chunked_body_is_413(server: OTPServer) -> None:
    chunk = b"x" * 600_000
    piece = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    raw = raw_exchange(
        server,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + piece * 2
        + b"0\r\n\r\n",
    )
    status, _, answer = split_response(raw)
    assert (status, answer["code"]) == (413, 3001)


def test_chunked_body_is_read(server: OTPServer) -> None:
    body = send_body().encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: {auth_header(server)}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:]))
    status, headers, answer = split_response(
        raw_exchange(server, head.encode() + chunks + b"0\r\nTrailer: y\r\n\r\n")
    )
    assert (status, answer["send_channel"], headers["connection"]) == (200, "sms", "close")
    server.assert_sent_once(to=PHONE)


def test_short_body_is_answered_not_hung_on(server: OTPServer) -> None:
    head = "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    started = time.monotonic()
    raw = raw_exchange(server, head.encode() + b"Content-Length: 100\r\n\r\n" + b'{"to": "+65')
    elapsed = time.monotonic() - started
    status, headers, answer = split_response(raw)
    assert status == 400
    assert answer == {
        "code": 3001,
        "message": "the request body is shorter than its Content-Length (100 bytes): "
        "it did not all arrive within 0.3 s",
    }
    assert headers["connection"] == "close"
    assert 0.25 < elapsed < 3


def test_body_cut_off_by_the_client_is_answered(server: OTPServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{}")
        sock.shutdown(socket.SHUT_WR)
        status, _, answer = split_response(sock.recv(65536))
    assert (status, answer["code"]) == (400, 3001)


def test_post_without_content_length_is_411(server: OTPServer) -> None:
    status, headers, answer = split_response(
        raw_exchange(server, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n\r\n")
    )
    assert (status, answer) == (
        411,
        {"code": 3001, "message": "POST needs a Content-Length header"},
    )
    assert headers["content-length"] == str(len(json.dumps(answer, separators=(",", ":"))))


@pytest.mark.parametrize(
    ("request_head", "status", "fragment"),
    [
        (b"NONSENSE\r\n\r\n", 400, "malformed request line"),
        (b"GET / SPDY/3\r\n\r\n", 400, "malformed request line"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "request line is longer"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header line"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 101 + b"\r\n",
            431,
            "more than 100 header",
        ),
        (b"POST /v1/messages HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400, "is not a number"),
        (b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "not supported"),
        (
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "chunked",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "needs a Host header"),
    ],
)
def test_malformed_requests_get_json_errors(
    server: OTPServer, request_head: bytes, status: int, fragment: str
) -> None:
    got, headers, answer = split_response(raw_exchange(server, request_head))
    assert (got, answer["code"]) == (status, 3001)
    assert fragment in answer["message"]
    assert headers["content-type"] == "application/json"


def test_expect_100_continue(server: OTPServer) -> None:
    body = send_body().encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: {auth_header(server)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, _, answer = split_response(sock.recv(65536))
    assert (status, answer["send_channel"]) == (200, "sms")


def test_head_has_content_length_and_no_body(server: OTPServer) -> None:
    raw = raw_exchange(server, b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 Not Found")
    assert body == b""
    would_be = b'{"code":4001,"message":"no such endpoint: HEAD /nowhere"}'
    assert b"\r\nContent-Length: %d\r\n" % len(would_be) in head + b"\r\n"
    assert b"\r\nContent-Type: application/json\r\n" in head


@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n"])
def test_http_1_0_is_answered_then_closed(server: OTPServer, connection: bytes) -> None:
    # h11 keeps only HTTP/1.1 connections alive; a 1.0 client is answered and closed.
    raw = raw_exchange(server, b"GET /_emulator/health HTTP/1.0\r\n" + connection + b"\r\n")
    status, headers, answer = split_response(raw)
    assert (status, headers["connection"], answer["status"]) == (200, "close", "ok")


def test_idle_keep_alive_connection_is_closed_after_its_timeout() -> None:
    with OTPServer(keep_alive_timeout=0.2) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        exchange(conn, "GET", "/_emulator/health")
        time.sleep(0.5)
        assert conn.sock.recv(10) == b""  # closed by the server
        conn.close()


def test_32_concurrent_clients(otp_server: OTPServer) -> None:
    # http.client sends the head and the body in two writes: with 64 threads sharing the
    # GIL the body can come later than the 0.3 s of the ``server`` fixture; 2 s is the default.
    server = otp_server
    per_client, errors = 10, list[tuple[str, object]]()
    headers = api_headers(server)

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            for n in range(per_client):
                to = f"+659{index:03d}{n:04d}"
                response, answer = exchange(conn, "POST", "/v1/messages", send_body(to), headers)
                if response.status != 200:
                    errors.append((to, answer))
        except Exception as error:
            errors.append(("exception", error))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    sent = server.sent
    assert len(sent) == 32 * per_client
    assert len({m.message_id for m in sent}) == len(sent)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stop_leaves_no_thread_socket_or_port_behind() -> None:
    threads, fds = threading.active_count(), _open_fds()
    server = OTPServer()
    server.start()
    port = server.port
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(5)]
    for client in clients:
        exchange(client, "GET", "/_emulator/health")  # keep-alive: each stays open
    # One thread accepts and serves every connection; each connection holds a socket on
    # both ends (the clients' five, the server's five) besides the listener's own.
    assert threading.active_count() == threads + 1
    assert _open_fds() >= fds + 10
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5  # idle connections are closed, not waited out (60 s)
    assert threading.active_count() == threads
    for client in clients:
        assert client.sock.recv(10) == b""
        client.close()
    assert _open_fds() == fds
    with socket.socket() as probe:  # the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    server.stop()  # a second stop is harmless


def test_start_twice_and_restart() -> None:
    server = OTPServer()
    assert not server.started
    with server:
        port = server.port
        server.start()
        assert server.port == port
        assert (
            repr(server)
            == f"OTPServer(url='http://127.0.0.1:{port}', dev_key='test-dev-key', started)"
        )
    assert "test-dev-secret" not in repr(server)
    assert not server.started


def test_emulator_bug_is_a_500_json_not_a_traceback(
    server: OTPServer, conn: http.client.HTTPConnection
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    server.emulator.subscribe(broken)
    response, answer = exchange(conn, "POST", "/v1/messages", send_body(), api_headers(server))
    assert (response.status, answer["code"]) == (500, 1000)
    assert "Traceback" not in answer["message"]


def test_log_has_one_line_per_request_and_no_secrets() -> None:
    lines: list[str] = []
    with OTPServer(log=lines.append) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        exchange(conn, "POST", "/v1/messages", send_body(), api_headers(server))
        exchange(conn, "GET", f"{CONTROL_PREFIX}last-code?to=%2B6598765432")
        server.fail_next(ConnectionResetError("x"))
        with pytest.raises(http.client.RemoteDisconnected):
            exchange(conn, "POST", "/v1/messages", send_body("+6590000000"), api_headers(server))
        conn.close()
        code = server.last_code(PHONE)
    assert len(lines) == 3
    assert lines[0].endswith(" ms)")
    assert " POST /v1/messages -> 200 (" in lines[0]
    assert " GET /_emulator/last-code -> 200 (" in lines[1]
    assert " POST /v1/messages -> dropped (injected ConnectionResetError)" in lines[2]
    text = "\n".join(lines)
    for secret in (auth_header(server), server.dev_secret, code, "6598765432"):
        assert secret not in text


def test_a_failing_log_never_costs_the_answer() -> None:
    def broken_log(line: str) -> None:
        raise BrokenPipeError("stderr is gone")

    with OTPServer(log=broken_log) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        response, answer = exchange(conn, "POST", "/v1/messages", send_body(), api_headers(server))
        conn.close()
    assert (response.status, answer["send_channel"]) == (200, "sms")


# -- the control API ----------------------------------------------------------------------


def control(
    conn: http.client.HTTPConnection, method: str, name: str, payload: Any = None
) -> tuple[int, Any]:
    body = None if payload is None else json.dumps(payload)
    response, answer = exchange(conn, method, CONTROL_PREFIX + name, body)
    return response.status, answer


def test_control_api_sent_and_last_code(
    server: OTPServer, conn: http.client.HTTPConnection
) -> None:
    assert control(conn, "GET", "last-code?to=%2B6598765432") == (
        404,
        {"code": 4001, "message": "no code was delivered to '+6598765432'"},
    )
    for to in (PHONE, "+6591234567"):
        exchange(conn, "POST", "/v1/messages", send_body(to), api_headers(server))
    status, answer = control(conn, "GET", "sent")
    assert status == 200
    assert [m["to"] for m in answer["sent"]] == [PHONE, "+6591234567"]
    first = answer["sent"][0]
    assert set(first) >= {"to", "template_id", "code", "message_id", "text", "failed_channels"}
    assert "request" not in first
    assert control(conn, "GET", "sent?to=%2B6591234567")[1]["sent"][0]["to"] == "+6591234567"
    assert control(conn, "GET", "last-code?to=%2B6598765432") == (
        200,
        {"to": PHONE, "code": server.last_code(PHONE)},
    )
    assert control(conn, "GET", "last-code")[0] == 400


def test_control_api_injections(server: OTPServer, conn: http.client.HTTPConnection) -> None:
    headers = api_headers(server)
    assert control(conn, "POST", "fail-next", {"code": 5012, "times": 2}) == (
        200,
        {"injected": "fail_next(ErrorCode.TARGET_UNREACHABLE, times=2) (fired 0 of 2)"},
    )
    for _ in range(2):
        response, answer = exchange(conn, "POST", "/v1/messages", send_body(), headers)
        assert (response.status, answer["code"]) == (400, 5012)
    injected = {"code": 3003, "endpoint": "/v1/verifications"}
    assert control(conn, "POST", "fail-next", injected)[0] == 200
    assert (
        exchange(conn, "POST", "/v1/messages", send_body("+6595555555"), headers)[0].status == 200
    )
    verify = json.dumps({"message_id": "1", "verify_code": "1"})
    assert exchange(conn, "POST", "/v1/verifications", verify, headers)[1]["code"] == 3003
    assert control(conn, "POST", "fail-next", {"status": 503, "body": {"oops": 1}})[0] == 200
    response, answer = exchange(conn, "POST", "/v1/messages", send_body(), headers)
    assert (response.status, answer) == (503, {"oops": 1})
    assert control(conn, "POST", "fail-for", {"to": "+6590000001", "code": 5013})[0] == 200
    response, answer = exchange(conn, "POST", "/v1/messages", send_body("+6590000001"), headers)
    assert answer["code"] == 5013
    assert control(conn, "POST", "fail-next", {"drop": True})[0] == 200
    with pytest.raises(http.client.RemoteDisconnected):
        exchange(conn, "POST", "/v1/messages", send_body(), headers)
    conn.close()
    assert exchange(conn, "POST", "/v1/messages", send_body(), headers)[0].status == 200


@pytest.mark.parametrize(
    ("name", "payload", "status", "fragment"),
    [
        ("fail-next", {"code": 1234}, 400, "documented EngageLab error code"),
        ("fail-next", {"code": 5001, "times": 0}, 400, "times must be an integer >= 1"),
        ("fail-next", {"status": 42}, 400, "status must be an HTTP status"),
        ("fail-for", {"code": 5001}, 400, "to is required"),
        ("advance", {"seconds": -1}, 400, "the clock only moves forward"),
        ("advance", ["x"], 400, "must be a JSON object"),
        ("templates", {"template_id": "x", "colour": "red"}, 400, "unknown field(s) colour"),
        ("nothing-here", {}, 404, "no such control endpoint"),
    ],
)
def test_control_api_bad_input_gets_json_errors(
    conn: http.client.HTTPConnection, name: str, payload: Any, status: int, fragment: str
) -> None:
    got, answer = control(conn, "POST", name, payload)
    assert got == status
    assert fragment in answer["message"]


def test_control_api_wrong_method_and_bad_json(conn: http.client.HTTPConnection) -> None:
    assert control(conn, "GET", "reset") == (
        405,
        {"code": 3002, "message": "GET /_emulator/reset: use POST"},
    )
    response, answer = exchange(conn, "POST", CONTROL_PREFIX + "advance", b"{nope")
    assert (response.status, answer["code"]) == (400, 3001)


def test_control_api_advance_expires_codes_and_reset_forgets(
    server: OTPServer, conn: http.client.HTTPConnection
) -> None:
    headers = api_headers(server)
    _, sent = exchange(conn, "POST", "/v1/messages", send_body(), headers)
    before = server.emulator.clock.now()
    assert control(conn, "POST", "advance", {"seconds": 300}) == (200, {"now": before + 300})
    verify = json.dumps({"message_id": sent["message_id"], "verify_code": server.last_code(PHONE)})
    response, answer = exchange(conn, "POST", "/v1/verifications", verify, headers)
    assert (response.status, answer["code"]) == (400, 3003)
    server.add_template("login")
    assert control(conn, "POST", "reset") == (200, {"reset": True})
    assert server.sent == []
    assert server.emulator.templates == {}
    assert control(conn, "GET", "health")[1]["now"] == pytest.approx(before, abs=5)


#: template.json requires verify_code_config for a template that carries a code.
MAIL_CODE = {"verify_code_type": 1, "verify_code_len": 6, "verify_code_ttl": 5}


def test_control_api_templates_in_both_shapes(
    server: OTPServer, conn: http.client.HTTPConnection
) -> None:
    status, answer = control(
        conn,
        "POST",
        "templates",
        [
            {"template_id": "login", "strategy": "whatsapp|sms", "ttl": 60, "code_length": 4},
            {
                "template_id": "mail",
                "send_channel_strategy": "email",
                "brand_name": "Acme",
                "email_config": {"template_name": "otp"},
                "verify_code_config": MAIL_CODE,
            },
        ],
    )
    assert (status, answer) == (200, {"templates": ["login", "mail"]})
    listed = control(conn, "GET", "templates")[1]["templates"]
    assert [(t["template_id"], t["send_channel_strategy"]) for t in listed] == [
        ("login", "whatsapp|sms"),
        ("mail", "email"),
    ]
    exchange(conn, "POST", "/v1/messages", send_body(), api_headers(server))
    assert len(server.last_code(PHONE)) == 4
    status, answer = control(conn, "POST", "templates", {"template_id": "x", "code_length": 99})
    assert status == 400
    assert answer["message"] == "template #1 ('x'): code_length must be 4 to 10, not 99"


def test_registering_templates_touches_no_injection_and_needs_no_active_key(
    server: OTPServer, conn: http.client.HTTPConnection
) -> None:
    server.emulator.key_status = "expired"
    injection = server.fail_next(ErrorCode.SEND_FAILED)
    definition = {
        "template_id": "mail",
        "send_channel_strategy": "email",
        "brand_name": "Acme",
        "email_config": {"template_name": "otp"},
        "verify_code_config": MAIL_CODE,
    }
    assert control(conn, "POST", "templates", definition) == (200, {"templates": ["mail"]})
    assert injection.fired == 0
    assert server.emulator.templates["mail"].brand_name == "Acme"
    server.emulator.key_status = "active"
    response, answer = exchange(conn, "GET", "/v1/template-configs/mail", None, api_headers(server))
    assert (response.status, answer["code"]) == (400, 5001)  # the injection, still waiting
    response, answer = exchange(conn, "GET", "/v1/template-configs/mail", None, api_headers(server))
    assert answer["brand_name"] == "Acme"


def test_load_templates_reports_what_is_wrong() -> None:
    server = OTPServer(Emulator())
    with pytest.raises(TemplateSpecError, match=r"template #2 must be a JSON object, not str"):
        load_templates(server, [{"template_id": "a"}, "b"])
    with pytest.raises(TemplateSpecError, match=r"template #1: template_id is required"):
        load_templates(server, {"ttl": 60})
    with pytest.raises(TemplateSpecError, match=r"template #1: ttl must be a int, not '60'"):
        load_templates(server, {"template_id": "a", "ttl": "60"})
    with pytest.raises(TemplateSpecError, match=r"template #1: .*unknown channel 'pigeon'"):
        load_templates(server, {"template_id": "a", "send_channel_strategy": "pigeon"})


# -- the fixtures, as users meet them ------------------------------------------------------

SDK_CONFTEST = """
import engagelab_otp, pytest

def sdk_for(server):
    client = engagelab_otp.OTPClient(server.dev_key, server.dev_secret, timeout=5)
    client.BASE_URL = server.url + "/v1"
    return client
"""


def test_otp_server_fixture_in_a_users_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SDK_CONFTEST)
    pytester.makepyfile(
        """
        import engagelab_otp, pytest
        from conftest import sdk_for

        @pytest.mark.engagelab(dev_secret="from-the-marker", strict_templates=True)
        def test_login(otp_server):
            assert otp_server.url == f"http://127.0.0.1:{otp_server.port}"
            assert otp_server.dev_secret == "from-the-marker"
            sdk = sdk_for(otp_server)
            with pytest.raises(engagelab_otp.EngagelabError) as caught:
                sdk.send("+6598765432", "login")
            assert caught.value.code == 4001
            otp_server.add_template("login")
            sent = sdk.send("+6598765432", "login")
            assert sdk.verify(sent["message_id"], otp_server.last_code("+6598765432"))["verified"]
            otp_server.assert_sent_once(to="+6598765432")

        def test_a_fresh_server_per_test(otp_server):
            assert otp_server.sent == []
        """
    )
    threads = threading.active_count()
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert threading.active_count() == threads


def test_otp_server_fails_a_test_whose_injection_never_fired(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_engagelab.errors import ErrorCode

        def test_forgot(otp_server):
            otp_server.fail_next(ErrorCode.SEND_FAILED)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*otp_server: 1 injected failure(s) never fired:",
            "*  fail_next(ErrorCode.SEND_FAILED, times=1) (fired 0 of 1)",
            "*The code under test never made the request they were waiting for.*",
        ]
    )


def test_otp_server_session_is_shared_and_reset_between_tests(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        SDK_CONFTEST
        + """
urls = []

@pytest.fixture(scope="session")
def service(otp_server_session):
    # a service started once for the session, pointed at the shared server
    urls.append(otp_server_session.url)
    return sdk_for(otp_server_session)
"""
    )
    pytester.makepyfile(
        """
        import engagelab_otp, pytest
        from pytest_engagelab.errors import ErrorCode
        import conftest

        @pytest.mark.engagelab(assert_all_fired=False)  # the fail_for is there to be reset
        def test_first(service, otp_server_session):
            otp_server_session.add_template("login", strategy="whatsapp")
            otp_server_session.fail_for("+6590000000", ErrorCode.SEND_FAILED)
            assert service.send("+6598765432", "login")["send_channel"] == "whatsapp"
            otp_server_session.advance(1000)

        def test_second_starts_fresh(service, otp_server_session):
            assert conftest.urls == [otp_server_session.url]
            assert otp_server_session.sent == []
            assert otp_server_session.emulator.templates == {}
            assert service.send("+6598765432", "login")["send_channel"] == "sms"  # no 3004

        @pytest.mark.engagelab(key_status="expired")
        def test_marker_applies_per_test(service):
            with pytest.raises(engagelab_otp.EngagelabError) as caught:
                service.send("+6598765432", "login")
            assert caught.value.code == 2002

        def test_and_is_undone_after(service, otp_server_session):
            assert service.send("+6598765432", "login")["send_channel"] == "sms"

        @pytest.mark.engagelab(dev_key="another")
        def test_fixed_settings_cannot_change(otp_server_session):
            pass

        def test_unfired(otp_server_session):
            otp_server_session.fail_next(ErrorCode.SEND_FAILED)
        """
    )
    threads = threading.active_count()
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.engagelab(dev_key=...) cannot change otp_server_session, which is "
            "shared by the whole session; use the otp_server fixture for this test, or set it "
            "with the engagelab_* ini options",
            "*otp_server_session: 1 injected failure(s) never fired:",
            "*  fail_next(ErrorCode.SEND_FAILED, times=1) (fired 0 of 1)",
        ]
    )
    assert threading.active_count() == threads


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "otp_server -- *",
            "*EngageLab's OTP API on a real HTTP socket, for clients that do not use httpx.",
            "otp_server_session [[]session scope[]] -- *",
            "*One ``OTPServer`` for the whole session, reset before each test that uses it.",
        ]
    )


# -- whatever arrives ----------------------------------------------------------------------

_PREFIXES = [b"", b"POST /v1/messages HTTP/1.1\r\n", b"GET /_emulator/sent HTTP/1.1\r\nA: b\r\n"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(_PREFIXES), noise=st.binary(max_size=300))
def test_any_bytes_get_a_json_answer_or_a_close_never_a_traceback(
    prefix: bytes, noise: bytes
) -> None:
    with OTPServer(read_timeout=0.05) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(prefix + noise)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        raw = b"".join(chunks)
        while raw:
            head, _, rest = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 "), raw
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            answer = json.loads(rest[:length])
            assert isinstance(answer, dict)
            assert head.startswith(b"HTTP/1.1 200 ") or set(answer) == {"code", "message"}
            assert b"Traceback" not in rest[:length]
            raw = rest[length:]
        health = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        assert exchange(health, "GET", "/_emulator/health")[0].status == 200
        health.close()


# -- review fixes ------------------------------------------------------------------------------


def test_a_utf8_header_value_is_served_not_answered_1000(server: OTPServer) -> None:
    body = send_body().encode()
    head = (
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: {auth_header(server)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    ).encode() + "User-Agent: café-client/1.0\r\n\r\n".encode()
    status, _, answer = split_response(raw_exchange(server, head + body))

    assert status == 200, answer
    request = server.assert_sent_once(to=PHONE).request
    assert request is not None
    assert request.headers.raw[-1][1] == "café-client/1.0".encode()


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), -1, "10", True])
def test_advance_refuses_what_is_not_a_finite_number_of_seconds(
    server: OTPServer, seconds: object
) -> None:
    with pytest.raises(ValueError, match=r"advance\(\) takes a finite number of seconds >= 0"):
        server.advance(seconds)  # type: ignore[arg-type]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    response, answer = exchange(conn, "POST", "/v1/messages", send_body(), api_headers(server))
    assert response.status == 200, answer  # the clock is still usable


def test_control_advance_refuses_infinity(server: OTPServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    response, answer = exchange(conn, "POST", f"{CONTROL_PREFIX}advance", '{"seconds": 1e400}')
    assert response.status == 400
    assert answer["code"] == 3002
    assert "finite number" in answer["message"]


def test_control_fail_next_refuses_an_endpoint_that_never_matches(server: OTPServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    payload = '{"code": 5001, "endpoint": "messages"}'
    response, answer = exchange(conn, "POST", f"{CONTROL_PREFIX}fail-next", payload)
    assert response.status == 400
    assert answer["message"].startswith("fail_next(endpoint='messages') would never fire")


@pytest.mark.parametrize("port", [-1, 65536, "80", True])
def test_a_bad_port_is_refused_with_the_range(port: object) -> None:
    with pytest.raises(ValueError, match="port must be an integer from 0"):
        OTPServer(port=port)  # type: ignore[arg-type]


def test_a_busy_port_names_the_address() -> None:
    with OTPServer() as first:
        second = OTPServer(port=first.port)
        with pytest.raises(OSError, match=rf"OTPServer cannot listen on 127\.0\.0\.1:{first.port}"):
            second.start()
