"""The typed client: the exact requests it sends, its validation and its failures.

Every behaviour is checked on both clients: the ``kind`` fixture runs a test once
through :class:`OTPClient` and once through :class:`AsyncOTPClient` (the tests are
async so the same body can await the async client; the sync client does no real
I/O under respx).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import httpx
import pytest
import respx

from pytest_engagelab import client as client_module
from pytest_engagelab._version import __version__
from pytest_engagelab.client import (
    LANGUAGES,
    AsyncOTPClient,
    OTPClient,
    SendResult,
    VerifyResult,
)
from pytest_engagelab.errors import (
    AuthenticationError,
    BadRequestError,
    EngageLabError,
    RequestTimeout,
    ServerError,
    TransportError,
)

BASE = "https://otp.api.engagelab.cc"
KEY = "dev-key-4711"
SECRET = "S3cr3t-never-leak-9f8e7d6c"
TOKEN = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
AUTHORIZATION = f"Basic {TOKEN}"
PHONE = "+6591234567"
SENT = {"message_id": "1725407449772531712", "send_channel": "sms"}

pytestmark = pytest.mark.anyio


async def call(kind: str, method: str, *args: Any, client_kwargs: Any = None, **kwargs: Any) -> Any:
    """Call ``method`` on a fresh client of ``kind`` and return (or raise) what it does."""
    options = dict(client_kwargs or {})
    if kind == "sync":
        with OTPClient(KEY, SECRET, **options) as sync_client:
            return getattr(sync_client, method)(*args, **kwargs)
    async with AsyncOTPClient(KEY, SECRET, **options) as async_client:
        return await getattr(async_client, method)(*args, **kwargs)


# --------------------------------------------------------------------------- requests

REQUESTS = [
    pytest.param(
        "send",
        ("+6591234567", "tpl"),
        {},
        "/v1/messages",
        {"to": "+6591234567", "template": {"id": "tpl"}},
        id="send-minimal",
    ),
    pytest.param(
        "send",
        ("+6591234567", "tpl"),
        {"language": "zh_HK", "params": {"name": "Bob", "from_id": "12345"}},
        "/v1/messages",
        {
            "to": "+6591234567",
            "template": {
                "id": "tpl",
                "language": "zh_HK",
                "params": {"name": "Bob", "from_id": "12345"},
            },
        },
        id="send-language-params",
    ),
    pytest.param(
        "send",
        ("support@engagelab.com", "mail-tpl"),
        {"language": "default"},
        "/v1/messages",
        {"to": "support@engagelab.com", "template": {"id": "mail-tpl", "language": "default"}},
        id="send-email-language-only",
    ),
    pytest.param(
        "send",
        ("+6591234567", "tpl"),
        {"params": {}},
        "/v1/messages",
        {"to": "+6591234567", "template": {"id": "tpl", "params": {}}},
        id="send-empty-params-kept",
    ),
    pytest.param(
        "send_code",
        ("+6591234567", "123456", "tpl"),
        {},
        "/v1/codes",
        {"to": "+6591234567", "code": "123456", "template": {"id": "tpl"}},
        id="send_code-minimal",
    ),
    pytest.param(
        "send_code",
        ("+6591234567", "A1b2C3", "tpl"),
        {"language": "ja", "params": {"brand": "Acme"}},
        "/v1/codes",
        {
            "to": "+6591234567",
            "code": "A1b2C3",
            "template": {"id": "tpl", "language": "ja", "params": {"brand": "Acme"}},
        },
        id="send_code-full",
    ),
    pytest.param(
        "send_custom_message",
        ("+6591234567", "promo"),
        {},
        "/v1/custom-messages",
        {"to": "+6591234567", "template": {"id": "promo"}},
        id="custom-str",
    ),
    pytest.param(
        "send_custom_message",
        (["+6591234567", "+6598765432"], "promo"),
        {"params": {"code": "998877"}},
        "/v1/custom-messages",
        {
            "to": ["+6591234567", "+6598765432"],
            "template": {"id": "promo", "params": {"code": "998877"}},
        },
        id="custom-list-params",
    ),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "path", "body"), REQUESTS)
async def test_send_endpoints_post_exactly_the_documented_request(
    router: respx.MockRouter,
    kind: str,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    path: str,
    body: dict[str, Any],
) -> None:
    route = router.post(path).respond(200, json=SENT)

    result = await call(kind, method, *args, **kwargs)

    assert result == SendResult(message_id="1725407449772531712", send_channel="sms")
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert str(request.url) == BASE + path
    assert request.headers["Authorization"] == AUTHORIZATION
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"pytest-engagelab/{__version__}"
    assert json.loads(request.content) == body


@pytest.mark.parametrize("verified", [True, False])
async def test_verify_posts_message_id_and_verify_code(
    router: respx.MockRouter, kind: str, verified: bool
) -> None:
    answer = {"message_id": "1725407449772531712", "verify_code": "123456", "verified": verified}
    route = router.post("/v1/verifications").respond(200, json=answer)

    result = await call(kind, "verify", "1725407449772531712", "123456")

    assert result == VerifyResult("1725407449772531712", "123456", verified)
    request = route.calls.last.request
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1/verifications"
    assert request.headers["Authorization"] == AUTHORIZATION
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"pytest-engagelab/{__version__}"
    assert json.loads(request.content) == {
        "message_id": "1725407449772531712",
        "verify_code": "123456",
    }


def test_authorization_is_basic_dev_key_colon_dev_secret() -> None:
    # The documented example: base64("jiguangdev:dev_secret").
    with respx.mock(base_url=BASE) as mock:
        route = mock.post("/v1/messages").respond(200, json=SENT)
        with OTPClient("jiguangdev", "dev_secret") as otp:
            otp.send("+6591234567", "tpl")
    assert route.calls.last.request.headers["Authorization"] == "Basic amlndWFuZ2RldjpkZXZfc2VjcmV0"


async def test_non_ascii_params_are_sent_as_utf8_json(router: respx.MockRouter, kind: str) -> None:
    route = router.post("/v1/messages").respond(200, json=SENT)

    await call(kind, "send", "+6591234567", "tpl", language="zh_CN", params={"name": "张三"})

    request = route.calls.last.request
    assert json.loads(request.content.decode("utf-8"))["template"]["params"] == {"name": "张三"}


async def test_extra_fields_in_a_success_answer_are_ignored(
    router: respx.MockRouter, kind: str
) -> None:
    router.post("/v1/messages").respond(200, json={**SENT, "send_channel": "whatsapp", "x": 1})

    result = await call(kind, "send", "+6591234567", "tpl")

    assert result == SendResult("1725407449772531712", "whatsapp")


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://localhost:8080", "http://localhost:8080/v1/messages"),
        ("http://localhost:8080/", "http://localhost:8080/v1/messages"),
        ("http://127.0.0.1:9/otp/", "http://127.0.0.1:9/otp/v1/messages"),
    ],
)
async def test_urls_are_base_url_plus_path(kind: str, base_url: str, expected: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(expected).respond(200, json=SENT)
        await call(kind, "send", "+6591234567", "tpl", client_kwargs={"base_url": base_url})
    assert route.call_count == 1
    assert str(route.calls.last.request.url) == expected


async def test_a_callers_http_client_gets_absolute_urls_from_base_url(
    router: respx.MockRouter, kind: str
) -> None:
    route = router.post("/v1/messages").respond(200, json=SENT)
    http: httpx.Client | httpx.AsyncClient
    if kind == "sync":
        http = httpx.Client(base_url="http://elsewhere.invalid")
        with OTPClient(KEY, SECRET, http_client=http) as otp:
            otp.send("+6591234567", "tpl")
        http.close()
    else:
        http = httpx.AsyncClient(base_url="http://elsewhere.invalid")
        async with AsyncOTPClient(KEY, SECRET, http_client=http) as aotp:
            await aotp.send("+6591234567", "tpl")
        await http.aclose()
    assert str(route.calls.last.request.url) == f"{BASE}/v1/messages"
    assert route.calls.last.request.headers["Authorization"] == AUTHORIZATION


async def test_timeout_applies_to_every_request(router: respx.MockRouter, kind: str) -> None:
    route = router.post("/v1/messages").respond(200, json=SENT)

    await call(kind, "send", "+6591234567", "tpl", client_kwargs={"timeout": 2.5})

    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 2.5,
        "read": 2.5,
        "write": 2.5,
        "pool": 2.5,
    }


async def test_timeout_applies_through_a_callers_http_client(
    router: respx.MockRouter, kind: str
) -> None:
    route = router.post("/v1/messages").respond(200, json=SENT)
    http: httpx.Client | httpx.AsyncClient
    if kind == "sync":
        http = httpx.Client(timeout=99.0)
        OTPClient(KEY, SECRET, timeout=1.5, http_client=http).send(PHONE, "tpl")
        http.close()
    else:
        http = httpx.AsyncClient(timeout=99.0)
        await AsyncOTPClient(KEY, SECRET, timeout=1.5, http_client=http).send(PHONE, "tpl")
        await http.aclose()
    assert route.calls.last.request.extensions["timeout"]["read"] == 1.5


def test_results_are_frozen_dataclasses() -> None:
    sent = SendResult("1", "sms")
    checked = VerifyResult("1", "123456", verified=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sent.message_id = "2"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.verified = False  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(SendResult)] == ["message_id", "send_channel"]
    assert [f.name for f in dataclasses.fields(VerifyResult)] == [
        "message_id",
        "verify_code",
        "verified",
    ]


def test_languages_are_the_documented_ones() -> None:
    assert frozenset({"default", "zh_CN", "zh_HK", "en", "ja", "th", "es"}) == LANGUAGES
    assert isinstance(LANGUAGES, frozenset)


def test_module_exports() -> None:
    assert set(client_module.__all__) >= {
        "AsyncOTPClient",
        "LANGUAGES",
        "OTPClient",
        "SendResult",
        "VerifyResult",
    }
    for name in client_module.__all__:
        assert hasattr(client_module, name), name


# --------------------------------------------------------------------------- validation

BAD_ARGUMENTS = [
    pytest.param("send", ("", "tpl"), {}, "to must be", id="send-to-empty"),
    pytest.param("send", ("   ", "tpl"), {}, "to must be", id="send-to-blank"),
    pytest.param("send", (None, "tpl"), {}, "to must be", id="send-to-none"),
    pytest.param("send", (6591234567, "tpl"), {}, "to must be", id="send-to-int"),
    pytest.param("send", ([PHONE], "tpl"), {}, "to must be", id="send-to-list"),
    pytest.param("send", (PHONE, ""), {}, "template_id must be", id="send-template-empty"),
    pytest.param("send", (PHONE, " \t"), {}, "template_id must be", id="send-template-blank"),
    pytest.param("send", (PHONE, None), {}, "template_id must be", id="send-template-none"),
    pytest.param(
        "send",
        (PHONE, "tpl"),
        {"language": "fr"},
        "language 'fr' is not one EngageLab supports; "
        "use one of: default, en, es, ja, th, zh_CN, zh_HK",
        id="send-language-fr",
    ),
    pytest.param("send", (PHONE, "tpl"), {"language": "EN"}, "language 'EN'", id="send-lang-case"),
    pytest.param("send", (PHONE, "tpl"), {"language": ""}, "language ''", id="send-lang-empty"),
    pytest.param("send", (PHONE, "tpl"), {"params": ["a"]}, "params must be", id="params-list"),
    pytest.param("send", (PHONE, "tpl"), {"params": "a=b"}, "params must be", id="params-str"),
    pytest.param("send", (PHONE, "tpl"), {"params": {"a": 1}}, "'a': 1", id="params-int-value"),
    pytest.param("send", (PHONE, "tpl"), {"params": {1: "a"}}, "1: 'a'", id="params-int-key"),
    pytest.param("send", (PHONE, "tpl"), {"params": {"a": None}}, "'a': None", id="params-none"),
    pytest.param("send_code", (PHONE, "", "tpl"), {}, "code must be", id="code-empty"),
    pytest.param("send_code", (PHONE, "  ", "tpl"), {}, "code must be", id="code-blank"),
    pytest.param("send_code", (PHONE, 123456, "tpl"), {}, "code must be", id="code-int"),
    pytest.param("send_code", ("", "123456", "tpl"), {}, "to must be", id="code-to-empty"),
    pytest.param("send_code", (PHONE, "123456", ""), {}, "template_id", id="code-template"),
    pytest.param(
        "send_code", (PHONE, "1", "tpl"), {"language": "de"}, "language 'de'", id="code-lang"
    ),
    pytest.param(
        "send_code", (PHONE, "1", "tpl"), {"params": {"a": 2}}, "params", id="code-params"
    ),
    pytest.param("send_custom_message", ("", "tpl"), {}, "to must be", id="custom-to-empty"),
    pytest.param("send_custom_message", ([], "tpl"), {}, "empty list", id="custom-to-empty-list"),
    pytest.param(
        "send_custom_message", ([PHONE, ""], "tpl"), {}, r"to\[1\] must", id="custom-to-item"
    ),
    pytest.param(
        "send_custom_message", ([PHONE, 5], "tpl"), {}, r"to\[1\] must", id="custom-to-int-item"
    ),
    pytest.param("send_custom_message", ((PHONE,), "tpl"), {}, "to must be", id="custom-tuple"),
    pytest.param("send_custom_message", (PHONE, ""), {}, "template_id", id="custom-template"),
    pytest.param(
        "send_custom_message", (PHONE, "tpl"), {"params": {"code": 1}}, "params", id="custom-params"
    ),
    pytest.param("verify", ("", "123456"), {}, "message_id must be", id="verify-id-empty"),
    pytest.param("verify", (" ", "123456"), {}, "message_id must be", id="verify-id-blank"),
    pytest.param("verify", (None, "123456"), {}, "message_id must be", id="verify-id-none"),
    pytest.param("verify", ("1725407449772531712", ""), {}, "code must be", id="verify-code"),
    pytest.param("verify", ("1725407449772531712", None), {}, "code must be", id="verify-none"),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "match"), BAD_ARGUMENTS)
async def test_bad_arguments_raise_value_error_before_any_request(
    router: respx.MockRouter,
    kind: str,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    match: str,
) -> None:
    catch_all = router.route().respond(200, json=SENT)

    with pytest.raises(ValueError, match=match):
        await call(kind, method, *args, **kwargs)

    assert catch_all.call_count == 0
    assert router.calls.call_count == 0


def test_custom_message_list_allows_several_recipients_but_send_code_does_not() -> None:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.route().respond(200, json=SENT)
        with OTPClient(KEY, SECRET) as otp:
            assert otp.send_custom_message([PHONE], "tpl").message_id == SENT["message_id"]
            with pytest.raises(ValueError, match="to must be a phone number or e-mail"):
                otp.send_code([PHONE], "123456", "tpl")  # type: ignore[arg-type]
        assert mock.calls.call_count == 1


# --------------------------------------------------------------------------- error answers


@pytest.mark.parametrize(
    ("status", "content", "headers", "error_class", "in_message"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"},
         ServerError, "HTTP 502 Bad Gateway: <html><body>Bad Gateway</body></html>"),
        (503, b"", {}, ServerError, "HTTP 503 Service Unavailable: (empty body)"),
        (401, b"Unauthorized", {"Content-Type": "text/plain"}, AuthenticationError,
         "HTTP 401 Unauthorized: Unauthorized"),
        (400, b'{"message": "template id too long"}', {"Content-Type": "application/json"},
         BadRequestError, "template id too long"),
        (500, b"\xff\xfe\x00garbage\x80", {}, ServerError, "garbage"),
    ],
)  # fmt: skip
async def test_non_json_error_answers_raise_by_status(
    router: respx.MockRouter,
    kind: str,
    status: int,
    content: bytes,
    headers: dict[str, str],
    error_class: type[EngageLabError],
    in_message: str,
) -> None:
    router.post("/v1/messages").respond(status, content=content, headers=headers)

    with pytest.raises(EngageLabError) as caught:
        await call(kind, "send", PHONE, "tpl")

    error = caught.value
    assert type(error) is error_class
    assert error.code is None
    assert error.http_status == status
    assert in_message in error.message
    assert error.retryable is (status >= 500)


async def test_documented_error_answer_raises_its_class(
    router: respx.MockRouter, kind: str
) -> None:
    router.post("/v1/verifications").respond(
        400, json={"code": 3003, "message": "verify code expired"}
    )

    with pytest.raises(BadRequestError) as caught:
        await call(kind, "verify", "1725407449772531712", "123456")

    assert int(caught.value.code or 0) == 3003
    assert caught.value.message == "verify code expired"
    assert caught.value.http_status == 400
    assert caught.value.retryable is False


MALFORMED = [
    pytest.param(200, b"ok", "the body is not JSON", id="not-json"),
    pytest.param(200, b"", "the body is not JSON", id="empty"),
    pytest.param(200, b"\xff\xfe\xfa", "the body is not JSON", id="bytes"),
    pytest.param(200, b"[1, 2]", "JSON list, not an object", id="list"),
    pytest.param(200, b'"sms"', "JSON str, not an object", id="string"),
    pytest.param(200, b'{"send_channel": "sms"}', "'message_id' is missing", id="no-id"),
    pytest.param(200, b'{"message_id": "1"}', "'send_channel' is missing", id="no-channel"),
    pytest.param(
        200,
        b'{"message_id": 1725407449772531712, "send_channel": "sms"}',
        "'message_id' should be str, not int",
        id="int-id",
    ),
    pytest.param(
        200, b'{"message_id": "1", "send_channel": null}', "should be str, not NoneType", id="null"
    ),
    pytest.param(201, b"{}", "'message_id' is missing", id="201-empty-object"),
    pytest.param(302, b"", "expected a 2xx answer, got HTTP 302", id="redirect"),
]


@pytest.mark.parametrize(("status", "content", "reason"), MALFORMED)
async def test_malformed_success_answers_raise_engagelab_error(
    router: respx.MockRouter, kind: str, status: int, content: bytes, reason: str
) -> None:
    router.post("/v1/messages").respond(status, content=content)

    with pytest.raises(EngageLabError) as caught:
        await call(kind, "send", PHONE, "tpl")

    error = caught.value
    assert type(error) is EngageLabError
    assert error.http_status == status
    assert error.code is None
    assert reason in error.message
    assert f"unexpected answer from POST {BASE}/v1/messages (HTTP {status})" in error.message


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"message_id": "1", "verify_code": "1"}, "'verified' is missing"),
        ({"message_id": "1", "verify_code": "1", "verified": "true"}, "should be bool, not str"),
        ({"message_id": "1", "verify_code": "1", "verified": 1}, "should be bool, not int"),
        ({"message_id": "1", "verified": True}, "'verify_code' is missing"),
    ],
)
async def test_malformed_verify_answers_raise_engagelab_error(
    router: respx.MockRouter, kind: str, answer: dict[str, Any], reason: str
) -> None:
    router.post("/v1/verifications").respond(200, json=answer)

    with pytest.raises(EngageLabError, match=reason) as caught:
        await call(kind, "verify", "1", "1")

    assert type(caught.value) is EngageLabError
    assert caught.value.http_status == 200


# --------------------------------------------------------------------------- no answer


@pytest.mark.parametrize(
    "timeout", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout]
)
async def test_timeouts_raise_request_timeout_from_the_httpx_exception(
    router: respx.MockRouter, kind: str, timeout: type[httpx.TimeoutException]
) -> None:
    router.post("/v1/messages").mock(side_effect=timeout)

    with pytest.raises(RequestTimeout) as caught:
        await call(kind, "send", PHONE, "tpl")

    error = caught.value
    assert isinstance(error, TransportError)
    assert isinstance(error.__cause__, timeout)
    assert error.http_status is None
    assert error.code is None
    assert error.message == f"timed out reaching {BASE}/v1/messages: {timeout.__name__}: Mock Error"
    # Only a request that never left is safe to repeat: the OTP may have gone out otherwise.
    assert error.retryable is (timeout in (httpx.ConnectTimeout, httpx.PoolTimeout))


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.ProxyError]
)
async def test_connection_failures_raise_transport_error_from_the_httpx_exception(
    router: respx.MockRouter, kind: str, failure: type[httpx.TransportError]
) -> None:
    router.post("/v1/codes").mock(side_effect=failure)

    with pytest.raises(TransportError) as caught:
        await call(kind, "send_code", PHONE, "123456", "tpl")

    error = caught.value
    assert type(error) is TransportError
    assert isinstance(error.__cause__, failure)
    assert error.message == f"could not reach {BASE}/v1/codes: {failure.__name__}: Mock Error"
    assert error.retryable is (failure is httpx.ConnectError)


async def test_other_httpx_request_errors_raise_engagelab_error(
    router: respx.MockRouter, kind: str
) -> None:
    router.post("/v1/messages").mock(side_effect=httpx.DecodingError)

    with pytest.raises(EngageLabError) as caught:
        await call(kind, "send", PHONE, "tpl")

    assert type(caught.value) is EngageLabError
    assert isinstance(caught.value.__cause__, httpx.DecodingError)
    assert caught.value.message.startswith(f"request to {BASE}/v1/messages failed: DecodingError")


# --------------------------------------------------------------------------- the secret

LEAKY_ANSWERS = [
    pytest.param(
        {"side_effect": httpx.ConnectError(f"refused for {KEY}:{SECRET} / {AUTHORIZATION}")},
        TransportError,
        id="connect-error-text",
    ),
    pytest.param(
        {"side_effect": httpx.ReadTimeout(f"slow {SECRET}")}, RequestTimeout, id="timeout-text"
    ),
    pytest.param(
        {"return_value": httpx.Response(401, json={"code": 2001, "message": f"bad {SECRET}"})},
        AuthenticationError,
        id="json-error-echo",
    ),
    pytest.param(
        {"return_value": httpx.Response(502, text=f"<pre>Authorization: {AUTHORIZATION}</pre>")},
        ServerError,
        id="html-error-echo",
    ),
    pytest.param(
        {"return_value": httpx.Response(200, text=f"echo {TOKEN} {SECRET}")},
        EngageLabError,
        id="malformed-success-echo",
    ),
]


@pytest.mark.parametrize(("mock", "error_class"), LEAKY_ANSWERS)
async def test_the_secret_never_appears_in_an_exception(
    router: respx.MockRouter,
    kind: str,
    mock: dict[str, Any],
    error_class: type[EngageLabError],
) -> None:
    router.post("/v1/messages").mock(**mock)

    with pytest.raises(EngageLabError) as caught:
        await call(kind, "send", PHONE, "tpl")

    error = caught.value
    assert type(error) is error_class
    for text in (str(error), repr(error), error.message, repr(error.args)):
        assert SECRET not in text
        assert TOKEN not in text
        assert "***" in text


async def test_the_secret_is_not_in_the_clients_repr(kind: str) -> None:
    otp: OTPClient | AsyncOTPClient
    if kind == "sync":
        otp = OTPClient(KEY, SECRET)
        name = "OTPClient"
    else:
        otp = AsyncOTPClient(KEY, SECRET)
        name = "AsyncOTPClient"
    assert repr(otp) == f"{name}(base_url='https://otp.api.engagelab.cc', dev_key='{KEY}')"
    for text in (repr(otp), str(otp), repr(vars(otp))):
        assert SECRET not in text
        assert TOKEN not in text
    assert otp.dev_key == KEY
    assert otp.base_url == BASE
    if isinstance(otp, OTPClient):
        otp.close()
    else:
        await otp.aclose()


def test_repr_shows_the_normalised_base_url() -> None:
    with OTPClient("abc", SECRET, base_url="http://localhost:8080/") as otp:
        assert repr(otp) == "OTPClient(base_url='http://localhost:8080', dev_key='abc')"


def test_a_short_secret_does_not_mangle_messages() -> None:
    with respx.mock(base_url=BASE) as mock:
        mock.post("/v1/messages").respond(400, json={"code": 5001, "message": "sms send fail"})
        with OTPClient("k", "s") as otp, pytest.raises(EngageLabError) as caught:
            otp.send(PHONE, "tpl")
    assert caught.value.message == "sms send fail"


# --------------------------------------------------------------------------- lifecycle


def test_sync_context_manager_closes_the_client_it_opened() -> None:
    with OTPClient(KEY, SECRET) as otp:
        inner = otp._http
        assert not inner.is_closed
    assert inner.is_closed


def test_sync_context_manager_leaves_a_callers_client_open() -> None:
    http = httpx.Client()
    with OTPClient(KEY, SECRET, http_client=http) as otp:
        assert otp._http is http
    assert not http.is_closed
    otp.close()
    assert not http.is_closed
    http.close()


def test_sync_close_closes_only_what_it_opened() -> None:
    owned = OTPClient(KEY, SECRET)
    owned.close()
    assert owned._http.is_closed
    http = httpx.Client()
    borrowed = OTPClient(KEY, SECRET, http_client=http)
    borrowed.close()
    assert not http.is_closed
    http.close()


async def test_async_context_manager_closes_the_client_it_opened() -> None:
    async with AsyncOTPClient(KEY, SECRET) as otp:
        inner = otp._http
        assert not inner.is_closed
    assert inner.is_closed


async def test_async_context_manager_leaves_a_callers_client_open() -> None:
    http = httpx.AsyncClient()
    async with AsyncOTPClient(KEY, SECRET, http_client=http) as otp:
        assert otp._http is http
    assert not http.is_closed
    await otp.aclose()
    assert not http.is_closed
    await http.aclose()
    assert http.is_closed


async def test_async_aclose_closes_the_client_it_opened() -> None:
    otp = AsyncOTPClient(KEY, SECRET)
    await otp.aclose()
    assert otp._http.is_closed


def test_context_managers_return_the_client_itself() -> None:
    otp = OTPClient(KEY, SECRET)
    with otp as entered:
        assert entered is otp


def test_a_long_traceback_with_locals_does_not_show_the_secret(pytester: pytest.Pytester) -> None:
    """pytest -l / --tb=long print every frame's locals, httpx's request headers among them.
    The credentials come from the ini file, so the test's own source does not hold them."""
    pytester.makeini(f"[pytest]\nengagelab_dev_key = {KEY}\nengagelab_dev_secret = {SECRET}\n")
    pytester.makepyfile(
        """
        import asyncio
        import httpx

        def test_no_answer(otp_mock, otp_client):
            otp_mock.fail_next(httpx.ConnectError("no route"))
            otp_client.send("+6591234567", "login")

        def test_no_answer_async(otp_mock, otp_async_client):
            otp_mock.fail_next(httpx.ReadTimeout("slow"))
            asyncio.run(otp_async_client.send("+6591234567", "login"))
        """
    )
    result = pytester.runpytest("--tb=long", "-l")
    result.assert_outcomes(failed=2)
    output = result.stdout.str() + result.stderr.str()
    assert "could not reach https://otp.api.engagelab.cc/v1/messages" in output
    for secret in (SECRET, f"{KEY}:{SECRET}", TOKEN):
        assert secret not in output
