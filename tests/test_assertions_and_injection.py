"""What a new user reaches for first (issue 16): ``fail_next(5001)``, matching part of
``params``, matching on ``send_channel`` and ``message_id``, and the one line a misuse
gets.  Through both doors' shared controls, and through ``pytester`` for the lines a
user reads."""

from __future__ import annotations

import httpx
import hypothesis
import pytest

from pytest_engagelab import ErrorCode, OTPClient
from pytest_engagelab.doors.mock import OTPMock
from pytest_engagelab.emulator.core import Emulator

# pytester unloads what an in-process run imported: kept loaded, hypothesis's plugin does
# not import it anew in each run's summary.
del hypothesis

PHONE = "+6591234567"
OTHER = "+6591234568"
DOCUMENTED = (
    "1000, 2001, 2002, 2004, 3001, 3002, 3003, 3004, 4001, 5001, 5011, 5012, 5013, 5014, "
    "5015, 5016, 5017, 5018, 5019, 5020"
)


@pytest.fixture
def otp() -> OTPMock:
    with OTPMock(Emulator()) as mock:
        yield mock  # type: ignore[misc]


def client_for(otp: OTPMock) -> OTPClient:
    return OTPClient(otp.dev_key, otp.dev_secret, base_url=otp.base_url)


# -- fail_next / fail_for with a code's number -------------------------------------------


@pytest.mark.parametrize("code", [5001, 1000, 3004, 5020])
def test_fail_next_takes_the_number_of_a_documented_code(otp: OTPMock, code: int) -> None:
    injection = otp.fail_next(code)
    assert injection.error is ErrorCode(code)
    answer = httpx.post(
        otp.base_url + "/v1/messages",
        json={"to": PHONE, "template": {"id": "login"}},
        auth=(otp.dev_key, otp.dev_secret),
    )
    assert answer.status_code == ErrorCode(code).http_status
    assert answer.json()["code"] == code
    name = ErrorCode(code).name
    assert injection.describe() == f"fail_next(ErrorCode.{name}, times=1) (fired 1 of 1)"


def test_fail_for_takes_the_number_of_a_documented_code(otp: OTPMock) -> None:
    otp.fail_for(PHONE, 5012)
    with client_for(otp) as client:
        client.send(OTHER, "login")
        with pytest.raises(Exception) as caught:
            client.send(PHONE, "login")
    assert caught.value.code is ErrorCode.TARGET_UNREACHABLE  # type: ignore[attr-defined]
    otp.assert_not_sent(to=PHONE)


@pytest.mark.parametrize("method", ["fail_next", "fail_for"])
def test_a_number_that_is_no_documented_code_is_refused_listing_the_codes(
    otp: OTPMock, method: str
) -> None:
    args = (503,) if method == "fail_next" else (PHONE, 503)
    with pytest.raises(ValueError) as caught:
        getattr(otp, method)(*args)
    assert str(caught.value) == (
        f"{method}(503): 503 is not an error code EngageLab documents; use one of "
        f"{DOCUMENTED} (the members of ErrorCode), or an httpx.Response for any other answer"
    )
    assert otp.emulator.injections == []


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("5001", "ErrorCode.SEND_FAILED (or 5001)"),
        ("send_failed", "ErrorCode.SEND_FAILED (or 5001)"),
        ("ErrorCode.BLACKLISTED", "ErrorCode.BLACKLISTED (or 5013)"),
        ("oops", "an ErrorCode member"),
    ],
)
def test_a_string_is_refused_naming_the_member_it_means(
    otp: OTPMock, given: str, hint: str
) -> None:
    with pytest.raises(TypeError) as caught:
        otp.fail_next(given)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"fail_next({given!r}): a string is not an injectable error; use {hint}, "
        "an httpx.Response or an exception instance"
    )


def test_a_bool_is_not_taken_for_a_code(otp: OTPMock) -> None:
    with pytest.raises(TypeError, match="not bool"):
        otp.fail_next(True)


# -- params_include, send_channel, message_id ---------------------------------------------


def test_params_include_matches_the_keys_it_names(otp: OTPMock) -> None:
    otp.add_template("login", strategy="whatsapp|sms")
    with client_for(otp) as client:
        sent = client.send(PHONE, "login", params={"name": "Bob", "shop": "Acme"})
        other = client.send(OTHER, "login", params={"name": "Ann"})
    found = otp.assert_sent(
        params_include={"name": "Bob"}, send_channel="whatsapp", message_id=sent.message_id
    )
    assert found.to == PHONE
    otp.assert_sent_count(2, params_include={})  # an empty subset matches any message
    otp.assert_sent_once(message_id=other.message_id, to=OTHER)
    otp.assert_not_sent(params_include={"name": "Bob", "shop": "Other"})
    otp.assert_not_sent(send_channel="sms")


def test_a_params_include_miss_says_which_key_differs_or_is_absent(otp: OTPMock) -> None:
    with client_for(otp) as client:
        client.send(PHONE, "login", params={"name": "Bob"})
    with pytest.raises(AssertionError) as caught:
        otp.assert_sent(params_include={"name": "Ann", "shop": "Acme"})
    lines = str(caught.value).splitlines()
    assert lines[0] == "assert_sent: no message matched."
    assert lines[1] == "Expected: params_include={'name': 'Ann', 'shop': 'Acme'}"
    assert lines[-3:] == [
        "Closest: #1, which differs in",
        "  params_include: expected params['name'] == 'Ann', got 'Bob'",
        "  params_include: expected params['shop'] == 'Acme', but it is absent",
    ]


def test_send_channel_and_message_id_misses_name_what_was_sent(otp: OTPMock) -> None:
    with client_for(otp) as client:
        sent = client.send(PHONE, "login")
    with pytest.raises(AssertionError) as caught:
        otp.assert_sent_once(send_channel="whatsapp", message_id="1")
    assert str(caught.value).splitlines()[-2:] == [
        "  send_channel: expected 'whatsapp', got 'sms'",
        f"  message_id: expected '1', got '{sent.message_id}'",
    ]


@pytest.mark.parametrize("bad", [["name"], {"name": 1}, "name=Bob"])
def test_params_include_must_be_a_dict_of_strings(otp: OTPMock, bad: object) -> None:
    with pytest.raises(TypeError) as caught:
        otp.assert_sent(params_include=bad)  # type: ignore[typeddict-item]
    assert str(caught.value) == (
        "assert_sent(params_include=...) takes a dict of strings such as "
        f"{{'code': '123456'}}, not {bad!r}"
    )


# -- as a user reads them ---------------------------------------------------------------


def test_the_new_forms_read_as_the_user_expects(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest


        def test_int_code(otp_mock, otp_client):
            otp_mock.fail_next(5001)
            with pytest.raises(Exception) as caught:
                otp_client.send("+6591234567", "login")
            assert caught.value.code == 5001

        def test_subset(otp_mock, otp_client):
            sent = otp_client.send("+6591234567", "login", params={"name": "Bob", "x": "1"})
            otp_mock.assert_sent(params_include={"name": "Bob"}, send_channel="sms",
                                 message_id=sent.message_id)

        def test_undocumented_code(otp_mock):
            otp_mock.fail_next(5099)

        def test_subset_misses(otp_mock, otp_client):
            otp_client.send("+6591234567", "login", params={"name": "Bob"})
            otp_mock.assert_sent(params_include={"name": "Ann"})

        def test_misspelt_field(otp_mock):
            otp_mock.assert_sent(phone="+6591234567")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "E       ValueError: fail_next(5099): 5099 is not an error code EngageLab "
            f"documents; use one of {DOCUMENTED} (the members of ErrorCode), or an "
            "httpx.Response for any other answer",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: assert_sent: no message matched.",
            "E       Expected: params_include={'name': 'Ann'}",
            "E       Sent (1):",
            "E         1. to='+6591234567', template_id='login', language='default', "
            "params={'name': 'Bob'} (/v1/messages, send_channel='sms', message_id='*')",
            "E       Closest: #1, which differs in",
            "E         params_include: expected params['name'] == 'Ann', got 'Bob'",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E       TypeError: assert_sent() got unknown field(s) phone; match on: endpoint, "
            "language, message_id, params, params_include, send_channel, template_id, to",
        ]
    )
