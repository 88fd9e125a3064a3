"""The guard: no test reaches EngageLab by accident, whichever client it uses.

Each test runs a small suite through ``pytester``, as a user would.  The inner
suite's conftest wraps ``socket.getaddrinfo``, ``gethostbyname(_ex)`` and
``socket.socket.connect(_ex)`` before the plugin installs its guard, so it sees
only what got past the guard: a name lookup or connect for an EngageLab host
there means the guard let one out.  For ``engagelab_live`` the same wrapper
resolves ``otp.api.engagelab.cc`` to an ``OTPServer`` on loopback, so the test
proves the request went through without touching the internet.
"""

from __future__ import annotations

import json

import hypothesis
import pytest

del hypothesis  # loaded once, not by every in-process run (see test_plugin.py)

WAYS_OUT = (
    "no test may reach EngageLab by accident. Use the otp_mock fixture, point the client at "
    "otp_server.base_url, or mark the test @pytest.mark.engagelab_live to reach the real "
    "EngageLab on purpose."
)

#: The inner suite's conftest: records what reaches the resolver and connect below the
#: guard; with FAKE_PORT set, resolves every EngageLab host to an OTPServer on loopback.
RECORDER = '''
import json, os, socket

import pytest

CALLS = []
_real = {
    "getaddrinfo": socket.getaddrinfo,
    "gethostbyname": socket.gethostbyname,
    "gethostbyname_ex": socket.gethostbyname_ex,
}
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
SERVER = None
if os.environ.get("INNER_LIVE"):
    from pytest_engagelab import OTPServer

    SERVER = OTPServer()
    SERVER.start()


def _target(host, port):
    """With INNER_LIVE, EngageLab's hosts (and the ports they would be reached on, for
    clients that connect to the resolved address themselves) lead to SERVER."""
    if SERVER is not None and ("engagelab" in str(host) or host == "127.0.0.1"):
        if "engagelab" in str(host) or port in (80, 443, 2775):
            return "127.0.0.1", SERVER.port
    return host, port


@pytest.fixture(autouse=True)
def _fresh_server():
    if SERVER is not None:
        SERVER.reset()


def getaddrinfo(host, port, *args, **kwargs):
    CALLS.append(["getaddrinfo", str(host)])
    return _real["getaddrinfo"](*_target(host, port), *args, **kwargs)


def gethostbyname(host):
    CALLS.append(["gethostbyname", str(host)])
    return _real["gethostbyname"](_target(host, 0)[0])


def gethostbyname_ex(host):
    CALLS.append(["gethostbyname_ex", str(host)])
    return _real["gethostbyname_ex"](_target(host, 0)[0])


def connect(self, address):
    CALLS.append(["connect", str(address[0]) if isinstance(address, tuple) else "?"])
    if isinstance(address, tuple):
        address = _target(*address[:2])
    return _real_connect(self, address)


def connect_ex(self, address):
    CALLS.append(["connect_ex", str(address[0]) if isinstance(address, tuple) else "?"])
    if isinstance(address, tuple):
        address = _target(*address[:2])
    return _real_connect_ex(self, address)


socket.getaddrinfo = getaddrinfo
socket.gethostbyname = gethostbyname
socket.gethostbyname_ex = gethostbyname_ex
socket.socket.connect = connect
socket.socket.connect_ex = connect_ex


def pytest_unconfigure(config):
    for name, function in _real.items():
        setattr(socket, name, function)
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex
    if SERVER is not None:
        SERVER.stop()
    with open("calls.json", "w") as out:
        json.dump(CALLS, out)
'''

#: One test per client, each reaching EngageLab as an app under test would.
CLIENTS = """
import asyncio
import http.client
import json
import socket
import urllib.request

import engagelab_otp
import httpx
import pytest
import requests

BODY = {"to": "+6598765432", "template": {"id": "login"}}
SCHEME = "SCHEME_HERE"


def test_httpx_sync():
    answer = httpx.post(f"{SCHEME}://otp.api.engagelab.cc/v1/messages", json=BODY, auth=AUTH)
    assert answer.json()["send_channel"] == "sms"


def test_httpx_async():
    async def send():
        async with httpx.AsyncClient() as client:
            url = f"{SCHEME}://otp.api.engagelab.cc/v1/messages"
            return await client.post(url, json=BODY, auth=AUTH)

    assert asyncio.run(send()).json()["send_channel"] == "sms"


def test_requests():
    answer = requests.post(
        f"{SCHEME}://otp.api.engagelab.cc/v1/messages", json=BODY, auth=AUTH, timeout=5
    )
    assert answer.json()["send_channel"] == "sms"


def test_urllib():
    request = urllib.request.Request(
        f"{SCHEME}://otp.api.engagelab.cc/v1/messages",
        data=json.dumps(BODY).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": BASIC},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.load(answer)["send_channel"] == "sms"


def test_http_client():
    kind = http.client.HTTPSConnection if SCHEME == "https" else http.client.HTTPConnection
    connection = kind("otp.api.engagelab.cc", timeout=5)
    headers = {"Content-Type": "application/json", "Authorization": BASIC}
    connection.request("POST", "/v1/messages", body=json.dumps(BODY), headers=headers)
    assert json.load(connection.getresponse())["send_channel"] == "sms"
    connection.close()


def test_official_sdk():
    sdk = engagelab_otp.OTPClient(*AUTH)
    sdk.BASE_URL = f"{SCHEME}://otp.api.engagelab.cc/v1"
    assert sdk.send("+6598765432", "login")["send_channel"] == "sms"


def test_raw_socket():
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.connect(("otp.api.engagelab.cc", 443 if SCHEME == "https" else 80))
        sock.sendall(b"GET /_emulator/health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        assert sock.recv(12) == b"HTTP/1.1 200"


def test_smpp_host():
    with socket.create_connection(("otpsmpp.api.engagelab.cc", 2775), timeout=5):
        pass
"""

AUTH_LINES = """
from pytest_engagelab import DEFAULT_DEV_KEY, DEFAULT_DEV_SECRET
import base64
AUTH = (DEFAULT_DEV_KEY, DEFAULT_DEV_SECRET)
BASIC = "Basic " + base64.b64encode(f"{DEFAULT_DEV_KEY}:{DEFAULT_DEV_SECRET}".encode()).decode()
"""

CLIENT_TESTS = (
    "test_httpx_sync",
    "test_httpx_async",
    "test_requests",
    "test_urllib",
    "test_http_client",
    "test_official_sdk",
    "test_raw_socket",
    "test_smpp_host",
)


def _suite(pytester: pytest.Pytester, scheme: str, *, marker: str = "") -> None:
    pytester.makeconftest(RECORDER)
    source = CLIENTS.replace("SCHEME_HERE", scheme) + AUTH_LINES
    if marker:
        source += f"\npytestmark = {marker}\n"
    pytester.makepyfile(test_clients=source)


def _calls(pytester: pytest.Pytester) -> list[list[str]]:
    calls: list[list[str]] = json.loads((pytester.path / "calls.json").read_text())
    return calls


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_every_client_is_stopped_before_any_lookup_or_connect(
    pytester: pytest.Pytester, scheme: str
) -> None:
    _suite(pytester, scheme)
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=short")
    result.assert_outcomes(failed=len(CLIENT_TESTS))
    port = 443 if scheme == "https" else 80
    recipient = "+15556318175"  # +6598765432, redacted as the cassettes redact it
    stopped = f"pytest-engagelab stopped POST /v1/messages to otp.api.engagelab.cc:{port} "
    guard_error = "E   pytest_engagelab.EngageLabGuardError: "
    request_line = f"{guard_error}{stopped}(recipient {recipient}) before it left"
    result.stdout.fnmatch_lines(
        [
            "*_ test_httpx_sync _*",
            f"E   httpx.ConnectError: {stopped}(recipient {recipient}) before it left the "
            f"test: {WAYS_OUT}",
            "*_ test_httpx_async _*",
            f"E   httpx.ConnectError: {stopped}(recipient {recipient}) before it left the "
            f"test: {WAYS_OUT}",
            "*_ test_requests _*",
            f"{request_line}*",
            "*_ test_urllib _*",
            f"{request_line}*",
            "*_ test_http_client _*",
            f"{request_line}*",
            "*_ test_official_sdk _*",
            f"{request_line}*",
            "*_ test_raw_socket _*",
            f"E   pytest_engagelab.EngageLabGuardError: pytest-engagelab stopped a connection to "
            f"otp.api.engagelab.cc:{port} before it left the test: {WAYS_OUT}",
            "*_ test_smpp_host _*",
            "E   pytest_engagelab.EngageLabGuardError: pytest-engagelab stopped a connection to "
            f"otpsmpp.api.engagelab.cc:2775 before it left the test: {WAYS_OUT}",
            "engagelab: 0 requests answered by the emulator, 8 stopped by the guard, "
            "0 cassettes replayed, 0 recorded (record mode none)",
        ]
    )
    reached = [call for call in _calls(pytester) if "engagelab" in call[1]]
    assert reached == []


def test_engagelab_live_lets_every_client_through(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marked engagelab_live, each client reaches "otp.api.engagelab.cc", which the
    inner conftest resolves to an OTPServer on loopback: each send is answered."""
    monkeypatch.setenv("INNER_LIVE", "1")
    _suite(pytester, "http", marker="pytest.mark.engagelab_live")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(CLIENT_TESTS))
    reached = {tuple(call) for call in _calls(pytester) if "engagelab" in call[1]}
    assert ("getaddrinfo", "otp.api.engagelab.cc") in reached
    assert ("connect", "otp.api.engagelab.cc") in reached  # the raw socket
    assert ("getaddrinfo", "otpsmpp.api.engagelab.cc") in reached
