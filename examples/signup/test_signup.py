"""Signing up with a phone code: what the user sees, for every way it can go."""

from __future__ import annotations

import logging

import httpx
import pytest

from pytest_engagelab import OTPMock, errors
from pytest_engagelab.errors import ErrorCode
from pytest_engagelab.magic import WHATSAPP_FALLBACK_NUMBER, number_for
from signup.app import Outcome, Reply, SignupService

# Fail if the app ever uses a template the conftest did not register.
pytestmark = pytest.mark.engagelab(strict_templates=True)

PHONE = "+6591234567"
WRONG = "12345"  # five digits: never the six-digit code


def test_the_user_signs_up_with_the_code_they_received(
    signup: SignupService, otp_mock: OTPMock
) -> None:
    reply = signup.request_code(PHONE, language="es")

    assert reply.text == (
        f"We sent a code to {PHONE} on WhatsApp (or by text message if you don't use WhatsApp)."
    )
    otp_mock.assert_sent_once(to=PHONE, template_id="signup-code", language="es")
    assert signup.confirm(PHONE, otp_mock.last_code(PHONE)).outcome is Outcome.SIGNED_UP
    assert PHONE in signup.users


# -- numbers that cannot get a code ----------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "91234567",
        number_for(ErrorCode.INVALID_PHONE_NUMBER),
        number_for(ErrorCode.NUMBER_NOT_REGISTERED),
    ],
)
def test_an_invalid_number_asks_the_user_to_check_it(
    signup: SignupService, otp_mock: OTPMock, phone: str
) -> None:
    reply = signup.request_code(phone)

    assert reply == Reply(Outcome.INVALID_NUMBER, "That doesn't look like a mobile number.")
    otp_mock.assert_not_sent()


@pytest.mark.parametrize(
    "error",
    [
        ErrorCode.BLACKLISTED,
        ErrorCode.TARGET_UNREACHABLE,
        ErrorCode.UNSUBSCRIBED,
        ErrorCode.PHONE_UNAVAILABLE,
    ],
    ids=lambda code: code.name,
)
def test_a_number_we_cannot_reach_asks_for_another(signup: SignupService, error: ErrorCode) -> None:
    reply = signup.request_code(number_for(error))

    assert reply.outcome is Outcome.UNDELIVERABLE
    assert reply.text == "We can't send a code to this number. Try another one."


def test_whatsapp_failure_falls_back_to_a_text_message(
    signup: SignupService, otp_mock: OTPMock
) -> None:
    phone = WHATSAPP_FALLBACK_NUMBER  # WhatsApp delivery to it fails

    assert signup.request_code(phone).outcome is Outcome.CODE_SENT
    message = otp_mock.assert_sent_once(to=phone)
    assert (message.send_channel, message.delivery_channel) == ("whatsapp", "sms")
    assert signup.confirm(phone, otp_mock.last_code(phone)).outcome is Outcome.SIGNED_UP


# -- asking again ----------------------------------------------------------------------


def test_asking_again_too_soon_says_wait_and_the_first_code_still_works(
    signup: SignupService, otp_mock: OTPMock
) -> None:
    signup.request_code(PHONE)

    reply = signup.request_code(PHONE)

    assert reply.text == "We sent you a code a moment ago. Wait before asking again."
    otp_mock.assert_sent_once(to=PHONE)
    assert signup.confirm(PHONE, otp_mock.last_code(PHONE)).outcome is Outcome.SIGNED_UP


def test_the_user_can_ask_again_once_the_code_has_expired(
    signup: SignupService, otp_mock: OTPMock
) -> None:
    signup.request_code(PHONE)
    otp_mock.advance(300)  # the template's ttl: the frequency limit ends with the code

    assert signup.request_code(PHONE).outcome is Outcome.CODE_SENT
    otp_mock.assert_sent_count(2, to=PHONE)


# -- typing the code -------------------------------------------------------------------


def test_a_wrong_code_lets_the_user_try_again(signup: SignupService, otp_mock: OTPMock) -> None:
    signup.request_code(PHONE)

    reply = signup.confirm(PHONE, WRONG)

    assert reply == Reply(Outcome.WRONG_CODE, "That code is not right. You have 2 more tries.")
    assert signup.confirm(PHONE, otp_mock.last_code(PHONE)).outcome is Outcome.SIGNED_UP


def test_three_wrong_codes_and_the_user_must_ask_for_a_new_one(
    signup: SignupService, otp_mock: OTPMock
) -> None:
    signup.request_code(PHONE)
    signup.confirm(PHONE, WRONG)
    signup.confirm(PHONE, WRONG)

    reply = signup.confirm(PHONE, WRONG)

    assert reply.text == "Too many wrong codes. Ask for a new code."
    assert signup.confirm(PHONE, otp_mock.last_code(PHONE)).outcome is Outcome.NO_CODE_REQUESTED
    assert PHONE not in signup.users


def test_an_expired_code_sends_a_fresh_one(signup: SignupService, otp_mock: OTPMock) -> None:
    signup.request_code(PHONE)
    old_code = otp_mock.last_code(PHONE)
    otp_mock.advance(301)

    reply = signup.confirm(PHONE, old_code)

    assert reply == Reply(Outcome.CODE_EXPIRED, "That code has expired. We sent you a new one.")
    otp_mock.assert_sent_count(2, to=PHONE)
    assert signup.confirm(PHONE, otp_mock.last_code(PHONE)).outcome is Outcome.SIGNED_UP


# -- when EngageLab is not there -------------------------------------------------------

TRY_LATER = "We can't send codes right now. Please try again later."


def test_an_engagelab_outage_says_try_later(signup: SignupService, otp_mock: OTPMock) -> None:
    otp_mock.fail_next(errors.internal_error())  # HTTP 500, code 1000

    assert signup.request_code(PHONE).text == TRY_LATER
    otp_mock.assert_not_sent()
    assert signup.request_code(PHONE).outcome is Outcome.CODE_SENT  # once it is back


def test_a_connect_timeout_is_retried_once(signup: SignupService, otp_mock: OTPMock) -> None:
    otp_mock.fail_next(httpx.ConnectTimeout("timed out connecting"))

    assert signup.request_code(PHONE).outcome is Outcome.CODE_SENT
    otp_mock.assert_sent_once(to=PHONE)


def test_engagelab_unreachable_says_try_later(signup: SignupService, otp_mock: OTPMock) -> None:
    otp_mock.fail_next(httpx.ConnectError("connection refused"), times=2)

    assert signup.request_code(PHONE).text == TRY_LATER


def test_a_read_timeout_is_not_retried(signup: SignupService, otp_mock: OTPMock) -> None:
    # EngageLab may have sent the code already: a retry could text the user twice.
    otp_mock.fail_next(httpx.ReadTimeout("timed out waiting for the answer"))

    assert signup.request_code(PHONE).text == TRY_LATER
    otp_mock.assert_not_sent()  # a retry would have gone through and sent one


def test_a_verification_outage_keeps_the_code_valid(
    signup: SignupService, otp_mock: OTPMock
) -> None:
    signup.request_code(PHONE)
    code = otp_mock.last_code(PHONE)
    otp_mock.fail_next(ErrorCode.INTERNAL_ERROR, endpoint="/v1/verifications")

    assert signup.confirm(PHONE, code).text == TRY_LATER
    assert signup.confirm(PHONE, code).outcome is Outcome.SIGNED_UP


@pytest.mark.engagelab(key_status="expired")
def test_an_expired_api_key_is_logged_and_users_see_try_later(
    signup: SignupService, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="signup"):
        reply = signup.request_code(PHONE)

    assert reply.text == TRY_LATER
    assert "EngageLab refused to send a code to +6591234567: code 2002" in caplog.text
