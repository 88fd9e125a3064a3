"""Every request the emulator received, in order: ``requests``, ``assert_requested``,
``assert_verified``, the control API, and what a failing test shows."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import hypothesis
import pytest

from pytest_engagelab import Emulator, ErrorCode, OTPMock, OTPServer

del hypothesis  # loaded once, not by every in-process run (see test_plugin.py)

BASE = "https://otp.api.engagelab.cc"
TO = "+6598765432"
SEND = {"to": TO, "template": {"id": "login"}}


@pytest.fixture
def mock() -> Iterator[OTPMock]:
    with OTPMock(Emulator(seed=7)) as started:
        yield started


@pytest.fixture
def client(mock: OTPMock) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=BASE, auth=(mock.dev_key, mock.dev_secret)) as http:
        yield http


def _send_twice_and_verify(mock: OTPMock, client: httpx.Client) -> str:
    """A send, a refused resend (3004), a wrong and a right code; returns the message id."""
    message_id = str(client.post("/v1/messages", json=SEND).json()["message_id"])
    client.post("/v1/messages", json=SEND)
    client.post("/v1/verifications", json={"message_id": message_id, "verify_code": "000000"})
    code = mock.last_code(TO)
    client.post("/v1/verifications", json={"message_id": message_id, "verify_code": code})
    return message_id


def test_every_request_is_recorded_in_order_answered_or_refused(
    mock: OTPMock, client: httpx.Client
) -> None:
    message_id = _send_twice_and_verify(mock, client)
    httpx.post(f"{BASE}/v1/messages", json=SEND, auth=("someone", "else"))
    client.get("/v2/nothing")
    mock.fail_next(httpx.ConnectTimeout("slow"))
    with pytest.raises(httpx.ConnectTimeout):
        client.post("/v1/codes", json={})
    seen = [(r.method, r.path, r.endpoint, r.status, r.code) for r in mock.requests]
    assert seen == [
        ("POST", "/v1/messages", "/v1/messages", 200, None),
        ("POST", "/v1/messages", "/v1/messages", 400, ErrorCode.FREQUENCY_LIMITED),
        ("POST", "/v1/verifications", "/v1/verifications", 200, None),
        ("POST", "/v1/verifications", "/v1/verifications", 200, None),
        ("POST", "/v1/messages", "/v1/messages", 401, ErrorCode.AUTH_FAILED),
        ("GET", "/v2/nothing", None, 404, ErrorCode.NOT_FOUND),
        ("POST", "/v1/codes", "/v1/codes", None, None),
    ]
    first, _, wrong = mock.requests[:3]
    assert first.json == SEND
    assert first.answer == {"message_id": message_id, "send_channel": "sms"}
    assert wrong.answer == {"message_id": message_id, "verify_code": "000000", "verified": False}
    assert first.headers["authorization"] == "Basic ***"
    assert first.headers["content-type"] == "application/json"
    assert first.at == mock.emulator.clock.now()
    dropped = mock.requests[-1]
    assert (dropped.answer, dropped.raised) == (None, "ConnectTimeout('slow')")


def test_a_record_holds_no_credential_in_any_form(mock: OTPMock, client: httpx.Client) -> None:
    client.post("/v1/messages", json=SEND)
    entry = mock.requests[0]
    text = " ".join([repr(entry), entry.describe(), repr(entry.to_json())])
    authorization = base64.b64encode(f"{mock.dev_key}:{mock.dev_secret}".encode()).decode()
    for secret in (mock.dev_secret, authorization):
        assert secret not in text


def test_assert_requested_returns_the_matches(mock: OTPMock, client: httpx.Client) -> None:
    _send_twice_and_verify(mock, client)
    refused = mock.assert_requested(endpoint="/v1/messages", code=ErrorCode.FREQUENCY_LIMITED)
    assert [r.status for r in refused] == [400]
    assert len(mock.assert_requested(endpoint="/v1/verifications", code=None, times=2)) == 2
    assert mock.assert_requested(endpoint="/v1/codes", times=0) == []
    assert len(mock.assert_requested(status=200)) == 3


def test_assert_requested_says_what_was_expected_what_arrived_and_the_closest(
    mock: OTPMock, client: httpx.Client
) -> None:
    client.post("/v1/messages", json=SEND)
    client.post("/v1/messages", json=SEND)
    with pytest.raises(AssertionError) as failure:
        mock.assert_requested(endpoint="/v1/codes", code=3004)
    message_id = mock.requests[0].answer["message_id"]
    assert str(failure.value).splitlines() == [
        "assert_requested: no request matched.",
        "Expected: endpoint='/v1/codes', code=3004",
        "Requests (2):",
        '  1. POST /v1/messages {"to":"+6598765432","template":{"id":"login"}} -> 200 '
        f'{{"message_id":"{message_id}","send_channel":"sms"}}',
        '  2. POST /v1/messages {"to":"+6598765432","template":{"id":"login"}} -> 400 '
        '{"code":3004,"message":"frequency limit: template \'login\' was sent to '
        "'+6598765432' 0s ago; wait until the code expires (300s)\"}",
        "Closest: #2, which differs in",
        "  endpoint: expected '/v1/codes', got '/v1/messages'",
    ]


def test_assert_requested_with_times_counts_exactly(mock: OTPMock, client: httpx.Client) -> None:
    client.post("/v1/messages", json=SEND)
    with pytest.raises(AssertionError) as failure:
        mock.assert_requested(endpoint="/v1/messages", times=2)
    assert str(failure.value).splitlines()[:3] == [
        "assert_requested: expected 2 matching request(s), found 1.",
        "Expected: endpoint='/v1/messages'",
        "Requests (1):",
    ]


def test_nothing_requested_says_so(mock: OTPMock) -> None:
    with pytest.raises(AssertionError) as failure:
        mock.assert_requested(endpoint="/v1/messages")
    assert str(failure.value).splitlines() == [
        "assert_requested: no request matched.",
        "Expected: endpoint='/v1/messages'",
        "Requests: none",
    ]


def test_assert_verified_finds_the_accepted_code(mock: OTPMock, client: httpx.Client) -> None:
    message_id = _send_twice_and_verify(mock, client)
    code = mock.last_code(TO)
    verified = mock.assert_verified(message_id=message_id, to=TO, code=code)
    assert verified.answer == {"message_id": message_id, "verify_code": code, "verified": True}
    assert mock.assert_verified() is verified


def test_assert_verified_shows_every_verification_and_the_closest(
    mock: OTPMock, client: httpx.Client
) -> None:
    message_id = str(client.post("/v1/messages", json=SEND).json()["message_id"])
    client.post("/v1/verifications", json={"message_id": message_id, "verify_code": "000000"})
    with pytest.raises(AssertionError) as failure:
        mock.assert_verified(to=TO)
    assert str(failure.value).splitlines() == [
        "assert_verified: no verification was answered verified: true for these fields.",
        "Expected: to='+6598765432', verified=True",
        "Verifications (1):",
        f'  1. POST /v1/verifications {{"message_id":"{message_id}","verify_code":"000000"}} '
        f'-> 200 {{"message_id":"{message_id}","verify_code":"000000","verified":false}}',
        "Closest: #1, which differs in",
        "  verified: expected True, got False",
    ]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            lambda m: m.assert_requested(ednpoint="/v1/messages"),
            "assert_requested() got unknown keyword(s) ednpoint; "
            "allowed: code, endpoint, method, path, status",
        ),
        (
            lambda m: m.assert_verified(verify_code="123456"),
            "assert_verified() got unknown keyword(s) verify_code; allowed: code, message_id, to",
        ),
        (
            lambda m: m.assert_requested(times=-1),
            "assert_requested() needs times >= 0 or None, not -1",
        ),
    ],
    ids=["assert_requested", "assert_verified", "times"],
)
def test_a_misspelt_keyword_names_the_allowed_ones(mock: OTPMock, call: object, error: str) -> None:
    with pytest.raises(TypeError) as failure:
        call(mock)  # type: ignore[operator]
    assert str(failure.value) == error


def test_the_log_is_bounded_like_the_journal() -> None:
    with OTPMock(Emulator(journal_limit=2)) as small, httpx.Client(base_url=BASE) as client:
        for n in range(3):
            client.post("/v1/messages", json={"to": f"+659876543{n}", "template": {"id": "x"}})
        assert [r.json["to"] for r in small.requests] == ["+6598765431", "+6598765432"]
        with pytest.raises(AssertionError) as failure:
            small.assert_requested(status=500)
        assert str(failure.value).splitlines()[-1] == (
            "(1 older requests were dropped: the log keeps the last 2; raise journal_limit to "
            "keep more)"
        )
        small.reset()
        assert small.requests == []


def test_the_control_api_lists_the_requests() -> None:
    with OTPServer(Emulator(seed=7)) as server:
        auth = (server.dev_key, server.dev_secret)
        with httpx.Client(base_url=server.url, auth=auth) as http:
            sent = http.post("/v1/messages", json=SEND).json()
            http.post("/v1/messages", json=SEND)
            listed = http.get("/_emulator/requests").json()["requests"]
    assert [(r["status"], r["code"]) for r in listed] == [(200, None), (400, 3004)]
    first = listed[0]
    assert first["method"] == "POST"
    assert first["path"] == first["endpoint"] == "/v1/messages"
    assert first["json"] == SEND
    assert first["answer"] == sent
    assert first["headers"]["authorization"] == "Basic ***"
    assert first["raised"] is None
    assert isinstance(first["at"], float)


# -- what a user reads -------------------------------------------------------------------------


def test_a_failing_test_shows_its_requests_in_a_report_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx

        def test_login(otp_mock):
            http = httpx.Client(auth=(otp_mock.dev_key, otp_mock.dev_secret))
            body = {"to": "+6598765432", "template": {"id": "login"}}
            http.post("https://otp.api.engagelab.cc/v1/messages", json=body)
            http.post("https://otp.api.engagelab.cc/v1/messages", json=body)
            otp_mock.assert_requested(code=None, times=2)

        def test_passes(otp_mock):
            httpx.get("https://otp.api.engagelab.cc/v1/template-configs")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=short")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_login _*",
            "*- EngageLab requests -*",
            '1. POST /v1/messages {"to":"+6598765432","template":{"id":"login"}} -> 200 '
            '{"message_id":"*","send_channel":"sms"}',
            '2. POST /v1/messages {"to":"+6598765432","template":{"id":"login"}} -> 400 '
            '{"code":3004,"message":"frequency limit: *"}',
            "engagelab: 3 requests answered by the emulator, 0 stopped by the guard, "
            "0 cassettes replayed, 0 recorded (record mode none)",
        ]
    )
    assert "Basic" not in result.stdout.str()
    assert result.stdout.str().count("EngageLab requests") == 1  # the passing test has none


def test_the_report_section_stops_at_fifty_lines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx

        def test_many(otp_server):
            for _ in range(53):
                httpx.get(otp_server.url + "/v1/nothing")
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=short")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- EngageLab requests -*",
            '1. GET /v1/nothing -> 404 {"code":4001,"message":"no such endpoint: GET /v1/nothing"}',
            "50. GET /v1/nothing -> 404 *",
            "... and 3 more",
        ]
    )
    assert "51. GET" not in result.stdout.str()


def test_no_summary_line_when_the_kit_was_not_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "engagelab:" not in result.stdout.str()


def test_with_both_doors_the_section_says_which_answered_what(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx

        def test_both(otp_mock, otp_server):
            httpx.get("https://otp.api.engagelab.cc/v1/template-configs")
            httpx.get(otp_server.url + "/v1/nothing")
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=short")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- EngageLab requests -*",
            "OTPMock at https://otp.api.engagelab.cc:",
            '1. GET /v1/template-configs -> 401 {"code":2001,"message":"authentication failed: *',
            "OTPServer at http://127.0.0.1:*:",
            '1. GET /v1/nothing -> 404 {"code":4001,"message":"no such endpoint: GET /v1/nothing"}',
        ]
    )
