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

import base64
import json

import hypothesis
import pytest
import yaml

# Loaded once here, not by each in-process run: pytester unloads the modules an inner run
# imported (hypothesis would cost a second a run; yaml, unloaded between recording and
# replaying, cannot read the cassette back).
del hypothesis, yaml

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
import base64
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


def test_a_subprocess_and_xdist_workers_are_guarded_too(pytester: pytest.Pytester) -> None:
    """``sys.executable -m pytest`` (runpytest_subprocess) with two xdist workers: the
    plugin loads through its entry point in each; the summary adds up the workers."""
    _suite(pytester, "https")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--tb=line")
    result.assert_outcomes(failed=len(CLIENT_TESTS))
    result.stdout.fnmatch_lines(
        [
            "engagelab: 0 requests answered by the emulator, 8 stopped by the guard, "
            "0 cassettes replayed, 0 recorded (record mode none)"
        ]
    )


SWALLOWED = """
import httpx

def test_app_retries_later():
    try:
        httpx.post("https://otp.api.engagelab.cc/v1/messages", json={"to": "+6598765432"})
    except httpx.HTTPError:
        pass  # the app would retry later: the test sees nothing
"""


def test_a_test_whose_code_swallows_the_error_fails_anyway(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SWALLOWED)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_app_retries_later _*",
            "pytest-engagelab stopped POST /v1/messages to otp.api.engagelab.cc:443 "
            f"(recipient +15556318175) before it left the test: {WAYS_OUT}",
            "The code under test caught this error and carried on; the test fails anyway: a "
            "real OTP would have gone out.",
        ]
    )


def test_a_test_failing_for_another_reason_shows_what_the_guard_stopped(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import socket

        def test_other_failure():
            for _ in range(2):
                try:
                    socket.create_connection(("otpsmpp.api.engagelab.cc", 2775))
                except OSError:
                    pass
            assert 1 == 2
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       assert 1 == 2",
            "*- EngageLab guard -*",
            "pytest-engagelab stopped a connection to otpsmpp.api.engagelab.cc:2775 before it "
            f"left the test: {WAYS_OUT} (2 times)",
        ]
    )


def test_otp_mock_lets_its_base_url_in_and_stops_its_host_on_another_scheme_or_port(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import httpx
        import pytest

        BODY = {"to": "+6598765432", "template": {"id": "login"}}

        def test_https_is_answered(otp_mock):
            answer = httpx.post(
                "https://otp.api.engagelab.cc/v1/messages",
                json=BODY,
                auth=(otp_mock.dev_key, otp_mock.dev_secret),
            )
            assert answer.status_code == 200

        def test_http_is_stopped(otp_mock):
            httpx.post("http://otp.api.engagelab.cc/v1/messages", json=BODY)

        @pytest.mark.engagelab(base_url="https://otp.sandbox.example")
        def test_another_port_of_the_mock_host_is_stopped(otp_mock):
            httpx.post("https://otp.sandbox.example:8443/v1/codes", json=BODY)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=line")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*httpx.ConnectError: pytest-engagelab stopped POST /v1/messages to "
            "otp.api.engagelab.cc:80 (recipient +15556318175) before it left the test: *",
            "*httpx.ConnectError: pytest-engagelab stopped POST /v1/codes to "
            "otp.sandbox.example:8443 (recipient +15556318175) before it left the test: *",
        ]
    )


RAW_CONNECT = """
import socket

def test_connect():
    with socket.create_connection(("otp.api.engagelab.cc", 80), timeout=5):
        pass
"""


@pytest.mark.parametrize(
    ("ini", "args"),
    [
        ("engagelab_guard = false", ()),
        ("engagelab_guard = true", ("--engagelab-guard=off",)),
    ],
    ids=["ini", "option"],
)
def test_the_guard_can_be_turned_off_and_says_so_in_the_header(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    ini: str,
    args: tuple[str, ...],
) -> None:
    monkeypatch.setenv("INNER_LIVE", "1")  # otp.api.engagelab.cc is an OTPServer on loopback
    pytester.makeconftest(RECORDER)
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(RAW_CONNECT)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["engagelab: guard off: tests can reach the real EngageLab"])
    assert ["getaddrinfo", "otp.api.engagelab.cc"] in _calls(pytester)


@pytest.mark.parametrize(
    ("ini", "error"),
    [
        (
            "engagelab_guard = maybe",
            "ERROR: pytest-engagelab: ini option engagelab_guard = 'maybe': not a boolean; use "
            "true (the default: no test reaches EngageLab unless marked engagelab_live) or false",
        ),
        (
            "engagelab_guard_hosts =\n    https://sms.example.com/v1",
            "ERROR: pytest-engagelab: ini option engagelab_guard_hosts = "
            "'https://sms.example.com/v1': not a host name; give one host per line, such as "
            "api.engagelab.cc, or "
            "*.engagelab.cc for every subdomain (no scheme, port or path)",
        ),
    ],
    ids=["guard", "hosts"],
)
def test_a_bad_guard_setting_is_one_line_saying_how_to_fix_it(
    pytester: pytest.Pytester, ini: str, error: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == error


def test_more_hosts_the_configured_base_url_and_patterns_are_guarded(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        "[pytest]\n"
        "engagelab_base_url = https://otp-staging.example.com\n"
        "engagelab_guard_hosts =\n    sms.example.com\n    *.engagelab.com\n"
    )
    pytester.makepyfile(
        """
        import socket
        import pytest

        @pytest.mark.parametrize(
            "host", ["otp-staging.example.com", "SMS.example.com.", "push.api.engagelab.com"]
        )
        def test_connect(host):
            socket.getaddrinfo(host, 443)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=line")
    result.assert_outcomes(failed=3)
    for host in ("otp-staging.example.com", "sms.example.com", "push.api.engagelab.com"):
        result.stdout.fnmatch_lines(
            [f"*EngageLabGuardError: pytest-engagelab stopped a connection to {host}:443 *"]
        )


def test_a_recording_cassette_reaches_its_endpoint_and_nothing_else_does(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording against "http://otp.api.engagelab.cc" (an OTPServer on loopback here):
    the cassette's test goes through, the next test without a cassette is stopped."""
    monkeypatch.setenv("INNER_LIVE", "1")
    monkeypatch.setenv("ENGAGELAB_BASE_URL", "http://otp.api.engagelab.cc")
    monkeypatch.setenv("ENGAGELAB_DEV_KEY", "test-dev-key")
    monkeypatch.setenv("ENGAGELAB_DEV_SECRET", "test-dev-secret")
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(
        """
        import httpx
        import pytest

        @pytest.mark.engagelab_cassette
        def test_records(otp_client):
            assert otp_client.send("+6598765432", "login").send_channel == "sms"

        def test_without_cassette():
            httpx.post("http://otp.api.engagelab.cc/v1/messages")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--engagelab-record-mode=once")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "engagelab: recording cassettes against otp.api.engagelab.cc (record mode once): "
            "requests a cassette lacks go to the real endpoint",
            "*httpx.ConnectError: pytest-engagelab stopped POST /v1/messages to "
            "otp.api.engagelab.cc:80 before it left the test: *",
            "engagelab: 0 requests answered by the emulator, 1 stopped by the guard, "
            "0 cassettes replayed, 1 recorded (record mode once)",
        ]
    )
    monkeypatch.delenv("INNER_LIVE")  # offline now: the cassette answers
    replay = pytester.runpytest("-p", "no:cacheprovider", "-k", "test_records")
    replay.assert_outcomes(passed=1, deselected=1)
    replay.stdout.fnmatch_lines(
        [
            "engagelab: 0 requests answered by the emulator, 0 stopped by the guard, "
            "1 cassette replayed, 0 recorded (record mode none)"
        ]
    )
    assert "recording cassettes" not in replay.stdout.str()


# -- the parts -------------------------------------------------------------------------------


def test_host_patterns_match_exact_hosts_and_subdomains_whatever_the_case() -> None:
    from pytest_engagelab.doors.guard import HostPatterns

    patterns = HostPatterns.parse(
        ["sms.example.com", "", "# a comment", "*.engagelab.com"], source="x"
    )
    assert "SMS.Example.com." in patterns
    assert "a.b.engagelab.com" in patterns
    assert "engagelab.com" not in patterns  # *.domain is its subdomains
    assert "sms.example.com.evil" not in patterns
    assert b"sms.example.com" not in patterns  # not a str: the guard decodes bytes first


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]", "api.localhost"]
)
def test_loopback_hosts_are_never_guarded(host: str) -> None:
    from pytest_engagelab.doors.guard import guard_from_options, is_loopback

    assert is_loopback(host)
    guard = guard_from_options(option=None, ini="", hosts=(), base_urls=(f"http://{host}:8080",))
    guard.watch(host)
    assert not guard.blocks(host)


def test_the_guard_decides_by_host_marker_and_allowance() -> None:
    from pytest_engagelab.doors.guard import guard_from_options

    guard = guard_from_options(
        option=None, ini="", hosts=(), base_urls=("https://otp-eu.example.com/v1",)
    )
    assert guard.blocks("otp.api.engagelab.cc")
    assert guard.blocks(b"otpsmpp.api.engagelab.cc")
    assert guard.blocks("otp-eu.example.com")
    assert not guard.blocks("example.com")
    assert not guard.blocks(None)
    guard.allow("otp.api.engagelab.cc")
    assert not guard.blocks("otp.api.engagelab.cc")
    guard.disallow("otp.api.engagelab.cc")
    assert guard.blocks("otp.api.engagelab.cc")
    guard.begin_test(live=True)
    assert not guard.blocks("otp.api.engagelab.cc")
    guard.end_test()
    assert guard.blocks("otp.api.engagelab.cc")
    off = guard_from_options(option="off", ini="true", hosts=(), base_urls=())
    assert not off.enabled


def test_the_error_is_a_connection_error_that_survives_pickling() -> None:
    import pickle

    from pytest_engagelab import EngageLabGuardError

    error = EngageLabGuardError("stopped", host="otp.api.engagelab.cc", port=443, method="POST")
    assert isinstance(error, ConnectionError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.host, copy.port, copy.method, copy.path) == (
        "stopped",
        "otp.api.engagelab.cc",
        443,
        "POST",
        None,
    )


def test_uninstalling_restores_the_socket_functions_it_found() -> None:
    import socket

    from pytest_engagelab.doors import guard as guard_module

    before = (socket.getaddrinfo, socket.gethostbyname, vars(socket.socket).get("connect"))
    guard = guard_module.guard_from_options(option=None, ini="", hosts=(), base_urls=())
    guard_module.install(guard)
    try:
        assert socket.getaddrinfo is not before[0]
        with pytest.raises(guard_module.EngageLabGuardError):
            socket.getaddrinfo("otp.api.engagelab.cc", 443)
        assert guard.take_attempts()[0].host == "otp.api.engagelab.cc"
        assert guard.take_attempts() == []
    finally:
        guard_module.uninstall(guard)
    after = (socket.getaddrinfo, socket.gethostbyname, vars(socket.socket).get("connect"))
    assert after == before


def test_with_locals_shown_the_stopped_requests_credentials_are_masked(
    pytester: pytest.Pytester,
) -> None:
    """``pytest -l`` prints every frame's locals: requests' header dicts, the SDK's
    Authorization, the ``auth=`` tuple.  None of the credentials may show."""
    key, secret = "live-key-0451", "live-secret-8812"
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    pytester.makepyfile(
        test_leak=f"""
        import engagelab_otp
        import httpx
        import requests

        URL = "https://otp.api.engagelab.cc/v1/messages"
        AUTH = ({key!r}, {secret!r})

        def test_requests():
            requests.post(URL, json={{"to": "+6598765432"}}, auth=AUTH)

        def test_sdk():
            engagelab_otp.OTPClient(*AUTH).send("+6598765432", "login")

        def test_httpx():
            httpx.post(URL, json={{"to": "+6598765432"}}, auth=AUTH)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=long", "-l", "-rf")
    result.assert_outcomes(failed=3)
    output = result.stdout.str() + result.stderr.str()
    for form in (secret, f"{key}:{secret}", token):
        assert form not in output
    result.stdout.fnmatch_lines(
        [
            f"FAILED test_leak.py::{name} - pytest-engagelab stopped*"
            for name in ("test_requests", "test_sdk", "test_httpx")
        ]
    )


PROXIED = """
import json
import urllib.request

import httpx
import requests

BODY = {"to": "+6598765432", "template": {"id": "login"}}
URL = "https://otp.api.engagelab.cc/v1/messages"


def test_httpx_through_a_proxy():
    httpx.post(URL, json=BODY)


def test_requests_through_a_proxy():
    requests.post(URL, json=BODY, timeout=5)


def test_urllib_through_a_proxy():
    request = urllib.request.Request(URL, data=json.dumps(BODY).encode(), method="POST")
    # a new opener reads the proxy from the environment (urlopen's is built once per process)
    urllib.request.build_opener().open(request, timeout=5)


def test_httpx_to_another_host_through_the_proxy_is_left_alone():
    try:
        httpx.get("https://example.org/")
    except httpx.HTTPError:
        pass  # nothing listens at the proxy: only the guard's silence matters here
"""


def test_a_proxy_does_not_carry_a_request_past_the_guard(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTPS_PROXY set, clients connect to the proxy, not to EngageLab: the guard
    reads the request's own host from the clients' frames and stops it before the proxy."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(test_proxied=PROXIED)
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=short")
    result.assert_outcomes(failed=3, passed=1)
    stopped = (
        "pytest-engagelab stopped POST /v1/messages to otp.api.engagelab.cc (recipient "
        "+15556318175) through the proxy 127.0.0.1:9 before it left the test: "
    )
    for name, error in (
        ("httpx", "httpx.ConnectError"),
        ("requests", "requests.exceptions.ProxyError"),
        ("urllib", "urllib.error.URLError"),
    ):
        result.stdout.fnmatch_lines(
            [f"*_ test_{name}_through_a_proxy _*", f"E   {error}: *{stopped}*"]
        )
    # Only the test to another host reached the proxy (its one lookup and connect).
    assert _calls(pytester) == [["getaddrinfo", "127.0.0.1"], ["connect", "127.0.0.1"]]


def test_the_marker_and_the_options_are_documented_in_pytest(pytester: pytest.Pytester) -> None:
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(
        [
            "@pytest.mark.engagelab_live: let this test reach the real EngageLab "
            "(otp.api.engagelab.cc, the SMPP host, the configured base URL): without it, the "
            "pytest-engagelab guard stops every attempt before a name lookup or connection."
        ]
    )
    usage = pytester.runpytest("--help")
    usage.stdout.fnmatch_lines(
        [
            "  --engagelab-guard={on,off}",
            "*on (default): stop every attempt to reach EngageLab*",
        ]
    )
    usage.stdout.fnmatch_lines(
        [
            "  engagelab_guard (string):",
            "*stop every attempt to reach EngageLab from a test not*",
            "  engagelab_guard_hosts (linelist):",
            "*more hosts the guard stops, one per line*",
        ]
    )
