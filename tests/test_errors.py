"""The error catalogue: codes, factories, ``from_response`` and how the clients raise them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from pytest_engagelab import errors
from pytest_engagelab.client import AsyncOTPClient, OTPClient
from pytest_engagelab.errors import (
    AuthenticationError,
    BadRequestError,
    DeliveryError,
    EngageLabError,
    ErrorCode,
    ErrorFactory,
    NotFoundError,
    RateLimitedError,
    RequestTimeout,
    ServerError,
    TransportError,
    error_response,
)

BASE = "https://otp.api.engagelab.cc"
PHONE = "+6591234567"

pytestmark = pytest.mark.anyio

# The error-code table of the OTP Delivery page, written out literally:
# (member name, code, HTTP status, exception class).
CATALOGUE: list[tuple[str, int, int, type[EngageLabError]]] = [
    ("INTERNAL_ERROR", 1000, 500, ServerError),
    ("AUTH_FAILED", 2001, 401, AuthenticationError),
    ("AUTH_EXPIRED", 2002, 401, AuthenticationError),
    ("PERMISSION_DENIED", 2004, 403, AuthenticationError),
    ("INVALID_FORMAT", 3001, 400, BadRequestError),
    ("INVALID_PARAMS", 3002, 400, BadRequestError),
    ("VALIDATION_FAILED", 3003, 400, BadRequestError),
    ("FREQUENCY_LIMITED", 3004, 400, RateLimitedError),
    ("NOT_FOUND", 4001, 400, NotFoundError),
    ("SEND_FAILED", 5001, 400, DeliveryError),
    ("INVALID_PHONE_NUMBER", 5011, 400, DeliveryError),
    ("TARGET_UNREACHABLE", 5012, 400, DeliveryError),
    ("BLACKLISTED", 5013, 400, DeliveryError),
    ("CONTENT_REJECTED", 5014, 400, DeliveryError),
    ("MESSAGE_INTERCEPTED", 5015, 400, DeliveryError),
    ("INTERNAL_SEND_ERROR", 5016, 400, DeliveryError),
    ("CHINA_MAINLAND_FORBIDDEN", 5017, 400, DeliveryError),
    ("PHONE_UNAVAILABLE", 5018, 400, DeliveryError),
    ("UNSUBSCRIBED", 5019, 400, DeliveryError),
    ("NUMBER_NOT_REGISTERED", 5020, 400, DeliveryError),
]
EXPECTED_CLASS = {code: cls for _, code, _, cls in CATALOGUE}
RETRYABLE = {1000, 5001, 5016}


async def send(kind: str) -> Any:
    """One ``send`` through a fresh client of ``kind``."""
    if kind == "sync":
        with OTPClient("key", "secret-value") as sync_client:
            return sync_client.send(PHONE, "tpl")
    async with AsyncOTPClient("key", "secret-value") as async_client:
        return await async_client.send(PHONE, "tpl")


# --------------------------------------------------------------------------- the catalogue


def test_error_code_has_exactly_the_documented_members() -> None:
    assert [(member.name, int(member), member.http_status) for member in ErrorCode] == [
        (name, code, status) for name, code, status, _ in CATALOGUE
    ]
    assert len(ErrorCode) == 20


def test_retryable_codes_are_1000_5001_5016() -> None:
    assert {int(member) for member in ErrorCode if member.retryable} == RETRYABLE


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.name)
def test_every_code_has_text_and_an_exported_factory(code: ErrorCode) -> None:
    assert code.description
    assert code.default_message
    assert ErrorCode.lookup(int(code)) is code
    factory = getattr(errors, code.name.lower())
    assert isinstance(factory, ErrorFactory)
    assert factory.code is code
    assert code.name.lower() in errors.__all__
    response = factory()
    assert response.status_code == code.http_status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"code": int(code), "message": code.default_message}
    assert factory(message="custom").json() == {"code": int(code), "message": "custom"}


def test_exception_classes_cover_every_code_once() -> None:
    classes = [
        AuthenticationError,
        BadRequestError,
        RateLimitedError,
        NotFoundError,
        DeliveryError,
        ServerError,
    ]
    covered = [code for cls in classes for code in cls.codes]
    assert sorted(covered) == sorted(int(member) for member in ErrorCode)
    for code, cls in EXPECTED_CLASS.items():
        assert code in cls.codes


def test_exception_hierarchy() -> None:
    for cls in (*set(EXPECTED_CLASS.values()), TransportError):
        assert issubclass(cls, EngageLabError)
    assert issubclass(RequestTimeout, TransportError)
    assert issubclass(EngageLabError, Exception)


def test_lookup_returns_an_undocumented_int_unchanged() -> None:
    assert ErrorCode.lookup(4242) == 4242
    assert not isinstance(ErrorCode.lookup(4242), ErrorCode)


# --------------------------------------------------------------------------- through the clients


@pytest.mark.parametrize("message", [None, "a custom message, 自定义"])
@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.name)
async def test_each_factory_answer_raises_its_class_from_both_clients(
    router: respx.MockRouter, kind: str, code: ErrorCode, message: str | None
) -> None:
    factory = getattr(errors, code.name.lower())
    response = factory() if message is None else factory(message=message)
    router.post("/v1/messages").mock(return_value=response)

    with pytest.raises(EngageLabError) as caught:
        await send(kind)

    error = caught.value
    assert type(error) is EXPECTED_CLASS[int(code)]
    assert error.code is code
    assert error.http_status == code.http_status
    assert error.message == (code.default_message if message is None else message)
    assert error.retryable is (int(code) in RETRYABLE)


@pytest.mark.parametrize(
    "factory", [errors.send_failed, errors.auth_expired, errors.internal_error], ids=repr
)
async def test_factories_work_as_side_effect(
    router: respx.MockRouter, kind: str, factory: ErrorFactory
) -> None:
    route = router.post("/v1/messages").mock(side_effect=factory)

    with pytest.raises(EngageLabError) as caught:
        await send(kind)

    assert caught.value.code is factory.code
    assert caught.value.message == factory.code.default_message
    assert route.call_count == 1


async def test_factories_work_as_return_value_more_than_once(
    router: respx.MockRouter, kind: str
) -> None:
    route = router.post("/v1/messages").mock(return_value=errors.frequency_limited())

    for _ in range(2):
        with pytest.raises(RateLimitedError) as caught:
            await send(kind)
        assert caught.value.code is ErrorCode.FREQUENCY_LIMITED
        assert caught.value.retryable is False
    assert route.call_count == 2


async def test_side_effect_sequence_of_error_then_success(
    router: respx.MockRouter, kind: str
) -> None:
    success = httpx.Response(200, json={"message_id": "1", "send_channel": "sms"})
    router.post("/v1/messages").mock(side_effect=[errors.internal_send_error(), success])

    with pytest.raises(DeliveryError) as caught:
        await send(kind)
    assert caught.value.retryable is True
    assert (await send(kind)).message_id == "1"


def test_factory_called_with_a_request_attaches_it() -> None:
    request = httpx.Request("POST", f"{BASE}/v1/messages")
    response = errors.not_found(request)
    assert response.request is request
    assert response.status_code == 400
    assert response.json() == {"code": 4001, "message": "resource does not exist"}
    assert errors.not_found(request, message="template not exist").json()["message"] == (
        "template not exist"
    )


def test_factory_repr_name_and_doc() -> None:
    assert repr(errors.send_failed) == "<error factory send_failed (5001, HTTP 400)>"
    assert errors.send_failed.__name__ == "send_failed"
    assert errors.send_failed.__doc__ is not None
    assert "Sending failed (general/other)" in errors.send_failed.__doc__
    assert "'sms send fail'" in errors.send_failed.__doc__


# --------------------------------------------------------------------------- error_response


def test_error_response_for_an_undocumented_int() -> None:
    response = error_response(4242)
    assert response.status_code == 400
    assert response.json() == {"code": 4242, "message": "error"}
    assert error_response(4242, "odd").json() == {"code": 4242, "message": "odd"}

    error = EngageLabError.from_response(response)
    assert type(error) is BadRequestError
    assert error.code == 4242
    assert not isinstance(error.code, ErrorCode)
    assert error.http_status == 400
    assert error.retryable is False
    assert str(error) == "[code 4242, HTTP 400] error"
    assert repr(error) == (
        "BadRequestError(message='error', code=4242, http_status=400, retryable=False)"
    )


async def test_undocumented_code_through_the_clients(router: respx.MockRouter, kind: str) -> None:
    router.post("/v1/messages").mock(return_value=error_response(7777, "brand new failure"))

    with pytest.raises(BadRequestError) as caught:
        await send(kind)

    assert caught.value.code == 7777
    assert caught.value.message == "brand new failure"


def test_error_response_accepts_a_member_or_its_int() -> None:
    by_member = error_response(ErrorCode.BLACKLISTED)
    by_int = error_response(5013, "custom")
    assert by_member.status_code == by_int.status_code == 400
    assert json.loads(by_member.content) == {"code": 5013, "message": "number is blacklisted"}
    assert json.loads(by_int.content) == {"code": 5013, "message": "custom"}


# --------------------------------------------------------------------------- from_response


def test_from_response_html_502() -> None:
    html = "<html>\n  <head><title>502 Bad Gateway</title></head>\n</html>"
    error = EngageLabError.from_response(
        httpx.Response(502, text=html, headers={"Content-Type": "text/html"})
    )
    assert type(error) is ServerError
    assert error.code is None
    assert error.http_status == 502
    assert error.retryable is True
    assert error.message == (
        "HTTP 502 Bad Gateway: <html> <head><title>502 Bad Gateway</title></head> </html>"
    )


def test_from_response_truncates_a_long_body() -> None:
    error = EngageLabError.from_response(httpx.Response(500, text="x" * 1000))
    assert error.message == "HTTP 500 Internal Server Error: " + "x" * 197 + "..."


def test_from_response_empty_body() -> None:
    error = EngageLabError.from_response(httpx.Response(503))
    assert type(error) is ServerError
    assert error.message == "HTTP 503 Service Unavailable: (empty body)"
    assert error.retryable is True


def test_from_response_garbage_bytes() -> None:
    error = EngageLabError.from_response(httpx.Response(500, content=b"\xff\xfe\x00\x80junk\xc3"))
    assert type(error) is ServerError
    assert error.code is None
    assert error.message.startswith("HTTP 500 Internal Server Error: ")
    assert "junk" in error.message


def test_from_response_json_without_code() -> None:
    error = EngageLabError.from_response(httpx.Response(400, json={"message": "bad thing"}))
    assert type(error) is BadRequestError
    assert error.code is None
    assert error.message == "bad thing"
    assert error.retryable is False


def test_from_response_json_code_without_message() -> None:
    error = EngageLabError.from_response(httpx.Response(400, json={"code": 3002}))
    assert type(error) is BadRequestError
    assert error.code is ErrorCode.INVALID_PARAMS
    assert error.message == 'HTTP 400 Bad Request: {"code":3002}'


@pytest.mark.parametrize("raw_code", [True, "5001", 5001.0, None, [5001]])
def test_from_response_ignores_a_code_that_is_not_an_int(raw_code: object) -> None:
    error = EngageLabError.from_response(
        httpx.Response(400, json={"code": raw_code, "message": "m"})
    )
    assert error.code is None
    assert type(error) is BadRequestError
    assert error.message == "m"


def test_from_response_429_is_rate_limited_and_retryable() -> None:
    error = EngageLabError.from_response(httpx.Response(429, text="slow down"))
    assert type(error) is RateLimitedError
    assert error.code is None
    assert error.http_status == 429
    assert error.retryable is True
    assert error.message == "HTTP 429 Too Many Requests: slow down"


@pytest.mark.parametrize(
    ("status", "error_class", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (404, NotFoundError, False),
        (409, BadRequestError, False),
        (500, ServerError, True),
        (504, ServerError, True),
    ],
)
def test_from_response_without_a_code_picks_the_class_by_status(
    status: int, error_class: type[EngageLabError], retryable: bool
) -> None:
    error = EngageLabError.from_response(httpx.Response(status, text="nope"))
    assert type(error) is error_class
    assert error.retryable is retryable


def test_a_documented_code_wins_over_the_status() -> None:
    error = EngageLabError.from_response(
        httpx.Response(500, json={"code": 5001, "message": "sms send fail"})
    )
    assert type(error) is DeliveryError
    assert error.code is ErrorCode.SEND_FAILED
    assert error.http_status == 500


# --------------------------------------------------------------------------- str and repr


def test_str_and_repr_of_a_documented_error() -> None:
    error = EngageLabError.from_response(errors.send_failed())
    assert str(error) == "[code 5001, HTTP 400] sms send fail"
    assert repr(error) == (
        "DeliveryError(message='sms send fail', code=ErrorCode.SEND_FAILED, "
        "http_status=400, retryable=True)"
    )


def test_str_and_repr_without_code_or_status() -> None:
    error = TransportError("could not reach x")
    assert str(error) == "could not reach x"
    assert repr(error) == (
        "TransportError(message='could not reach x', code=None, http_status=None, retryable=False)"
    )
    timeout = RequestTimeout("too slow")
    assert repr(timeout).startswith("RequestTimeout(message='too slow'")


def test_str_with_status_only_and_explicit_retryable() -> None:
    error = ServerError("HTTP 502 Bad Gateway: (empty body)", http_status=502, retryable=False)
    assert str(error) == "[HTTP 502] HTTP 502 Bad Gateway: (empty body)"
    assert error.retryable is False
    assert error.args == ("HTTP 502 Bad Gateway: (empty body)",)


def test_code_given_as_int_becomes_the_member() -> None:
    error = DeliveryError("x", code=5016, http_status=400)
    assert error.code is ErrorCode.INTERNAL_SEND_ERROR
    assert error.retryable is True
    assert str(error) == "[code 5016, HTTP 400] x"
