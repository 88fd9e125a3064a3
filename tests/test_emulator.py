"""The emulator core, request by request, through :meth:`Emulator.handle`.

Every answer is checked as a client sees it: HTTP status, JSON body and error
code.  The end-to-end path through real httpx clients is in ``test_mock.py``.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_engagelab import errors
from pytest_engagelab.doors.controls import EmulatorControls
from pytest_engagelab.doors.mock import OTPMock
from pytest_engagelab.emulator.core import (
    DEFAULT_BASE_URL,
    DEFAULT_DEV_KEY,
    DEFAULT_DEV_SECRET,
    Emulator,
    EmulatorEvent,
    EmulatorResponse,
    Fault,
)
from pytest_engagelab.emulator.templates import DEFAULT_CONTENT, TemplateConfigError
from pytest_engagelab.errors import ErrorCode
from pytest_engagelab.magic import DELIVERY_ERROR_NUMBERS, WHATSAPP_FALLBACK_NUMBER, number_for

AUTH = "Basic " + base64.b64encode(f"{DEFAULT_DEV_KEY}:{DEFAULT_DEV_SECRET}".encode()).decode()
HEADERS = {"authorization": AUTH, "content-type": "application/json"}
PHONE = "+6591234567"
OTHER_PHONE = "+6598765432"
EMAIL = "user@example.com"
SEND_PATHS = ("/v1/messages", "/v1/codes", "/v1/custom-messages")


def call(
    emulator: Emulator,
    path: str,
    payload: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> EmulatorResponse:
    """One request; ``payload`` is JSON-encoded unless ``raw`` bytes are given."""
    body = raw if raw is not None else b"" if payload is None else json.dumps(payload).encode()
    answer = emulator.handle(method, path, HEADERS if headers is None else headers, body)
    assert isinstance(answer, EmulatorResponse), answer
    return answer


def send_payload(path: str, to: Any = PHONE, template: str = "tpl", **extra: Any) -> dict[str, Any]:
    """A valid body for the send endpoint ``path``."""
    payload: dict[str, Any] = {"to": to, "template": {"id": template, **extra}}
    if path == "/v1/codes":
        payload["code"] = "424242"
    if path == "/v1/custom-messages":
        payload["template"].setdefault("params", {"code": "424242"})
    return payload


def send(
    emulator: Emulator, to: Any = PHONE, template: str = "tpl", **extra: Any
) -> dict[str, Any]:
    """POST /v1/messages, expecting success; returns the JSON answer."""
    answer = post_message(emulator, to, template, **extra)
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.json()
    return result


def post_message(
    emulator: Emulator, to: Any = PHONE, template: str = "tpl", **extra: Any
) -> EmulatorResponse:
    """POST /v1/messages, whatever it answers."""
    return call(emulator, "/v1/messages", send_payload("/v1/messages", to, template, **extra))


def verify(emulator: Emulator, message_id: str, code: str) -> EmulatorResponse:
    return call(emulator, "/v1/verifications", {"message_id": message_id, "verify_code": code})


def error_of(answer: EmulatorResponse) -> tuple[int, ErrorCode, str]:
    """(HTTP status, code, message) of an error answer, checking its documented shape."""
    body = answer.json()
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["message"], str)
    code = ErrorCode.lookup(body["code"])
    assert isinstance(code, ErrorCode), body
    return answer.status, code, body["message"]


def assert_error(answer: EmulatorResponse, code: ErrorCode, *words: str) -> str:
    """The answer is ``code`` with its documented status; its message names ``words``."""
    status, got, message = error_of(answer)
    assert (status, got) == (code.http_status, code), message
    for word in words:
        assert word in message
    return message


# --------------------------------------------------------------------------- endpoints


def test_messages_answers_the_documented_success_shape() -> None:
    emulator = Emulator()
    answer = post_message(emulator)
    assert answer.status == 200
    assert ("content-type", "application/json") in answer.headers
    body = answer.json()
    assert set(body) == {"message_id", "send_channel"}
    assert body["send_channel"] == "sms"
    assert isinstance(body["message_id"], str)
    assert len(body["message_id"]) == 19
    assert body["message_id"].isdigit()


@pytest.mark.parametrize("path", SEND_PATHS)
def test_each_send_endpoint_journals_its_message(path: str) -> None:
    emulator = Emulator()
    answer = call(emulator, path, send_payload(path, params={"code": "424242", "name": "Bob"}))
    assert answer.status == 200, answer.body
    (message,) = emulator.journal.snapshot()
    assert message.endpoint == path
    assert message.message_id == answer.json()["message_id"]
    assert (message.to, message.template_id, message.language) == (PHONE, "tpl", "default")
    assert message.params == {"code": "424242", "name": "Bob"}
    assert (message.send_channel, message.delivery_channel, message.failed_channels) == (
        "sms",
        "sms",
        (),
    )


def test_codes_delivers_the_callers_code() -> None:
    emulator = Emulator()
    payload = send_payload("/v1/codes")
    payload["code"] = "AbC123"
    assert call(emulator, "/v1/codes", payload).status == 200
    assert emulator.journal.snapshot()[0].code == "AbC123"
    assert emulator.last_code(PHONE) == "AbC123"


def test_custom_messages_delivers_params_code_to_every_recipient() -> None:
    emulator = Emulator()
    payload: dict[str, Any] = {
        "to": [PHONE, OTHER_PHONE],
        "template": {"id": "tpl", "params": {"code": "9876"}},
    }
    answer = call(emulator, "/v1/custom-messages", payload)
    assert answer.status == 200
    sent = emulator.journal.snapshot()
    assert [(m.to, m.code) for m in sent] == [(PHONE, "9876"), (OTHER_PHONE, "9876")]
    assert {m.message_id for m in sent} == {answer.json()["message_id"]}


def test_custom_messages_needs_params_code_for_a_verification_template() -> None:
    emulator = Emulator()
    emulator.add_template("notice", verification=False)
    payload: dict[str, Any] = {"to": PHONE, "template": {"id": "tpl", "params": {"name": "Bob"}}}
    assert_error(call(emulator, "/v1/custom-messages", payload), ErrorCode.INVALID_PARAMS, "code")
    payload["template"]["id"] = "notice"
    assert call(emulator, "/v1/custom-messages", payload).status == 200


def test_messages_ignores_a_params_code_and_makes_its_own() -> None:
    emulator = Emulator(seed=1)
    send(emulator, params={"code": "1111"})
    (message,) = emulator.journal.snapshot()
    assert message.code != "1111"
    assert len(message.code) == 6
    assert message.code in message.text


def test_verifications_answers_the_documented_success_shape() -> None:
    emulator = Emulator()
    message_id = send(emulator)["message_id"]
    answer = verify(emulator, message_id, emulator.last_code(PHONE) or "")
    assert answer.status == 200
    assert answer.json() == {
        "message_id": message_id,
        "verify_code": emulator.last_code(PHONE),
        "verified": True,
    }


def test_a_trailing_slash_reaches_the_same_endpoint() -> None:
    emulator = Emulator()
    payload = send_payload("/v1/messages")
    assert call(emulator, "/v1/messages/", payload).status == 200


def test_the_core_takes_the_path_without_its_query_so_a_decoded_question_mark_is_data() -> None:
    """The doors split the query off before decoding; what reaches the core is path only."""
    emulator = Emulator()
    answer = call(emulator, "/v1/template-configs/a?b", None, method="GET")
    assert (answer.status, answer.json()["code"]) == (400, ErrorCode.NOT_FOUND)


def test_a_query_string_through_a_door_reaches_the_same_endpoint(otp_mock: OTPMock) -> None:
    auth = (otp_mock.dev_key, otp_mock.dev_secret)
    with httpx.Client(base_url=otp_mock.base_url, auth=auth) as client:
        answer = client.post("/v1/messages/?lang=en", json=send_payload("/v1/messages"))
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/v1/nothing", 404, ErrorCode.NOT_FOUND),
        ("POST", "/", 404, ErrorCode.NOT_FOUND),
        ("GET", "/v2/messages", 404, ErrorCode.NOT_FOUND),
        ("POST", "/v1/template-configs/a/b", 404, ErrorCode.NOT_FOUND),
        ("GET", "/v1/messages", 405, ErrorCode.INVALID_PARAMS),
        ("PUT", "/v1/verifications", 405, ErrorCode.INVALID_PARAMS),
        ("DELETE", "/v1/template-configs", 405, ErrorCode.INVALID_PARAMS),
        ("POST", "/v1/template-configs/tpl", 405, ErrorCode.INVALID_PARAMS),
    ],
)
def test_unknown_paths_and_methods_get_a_json_error(
    method: str, path: str, status: int, code: ErrorCode
) -> None:
    # EngageLab documents neither; 404/4001 and 405/3002 are our documented choice.
    answer = call(Emulator(), path, method=method, headers={})
    assert error_of(answer)[:2] == (status, code)
    assert method in error_of(answer)[2]


# --------------------------------------------------------------------------- template configs

CONFIG = {
    "template_id": "login",
    "description": "log in",
    "send_channel_strategy": "whatsapp|sms",
    "brand_name": "Acme",
    "verify_code_config": {"verify_code_type": 4, "verify_code_len": 8, "verify_code_ttl": 10},
    "whatsapp_config": {"template_type": 1},
    "sms_config": {"template_type": 1},
}
SMS_CUSTOM = {
    "template_type": 2,
    "template_custom_config": {
        "custom_sub_type": "authentication",
        "custom_content": "Code {{code}}",
    },
}


def sms_custom(content: str, sub_type: str = "authentication") -> dict[str, Any]:
    """A documented custom SMS config (template.json)."""
    return {
        "template_type": 2,
        "template_custom_config": {"custom_sub_type": sub_type, "custom_content": content},
    }


def post_config(emulator: Emulator, **changes: Any) -> EmulatorResponse:
    return call(emulator, "/v1/template-configs", {**CONFIG, **changes})


def test_template_configs_create_list_read_and_delete() -> None:
    emulator = Emulator(strict_templates=True)
    answer = post_config(emulator)
    assert (answer.status, answer.json()) == (200, {"code": 0, "message": "success"})

    listed = call(emulator, "/v1/template-configs", method="GET")
    item = call(emulator, "/v1/template-configs/login", method="GET").json()
    assert listed.json() == [item]
    assert item == {
        "template_id": "login",
        "description": "log in",
        "send_channel_strategy": "whatsapp|sms",
        "brand_name": "Acme",
        "verify_code_config": CONFIG["verify_code_config"],
        "whatsapp_config": {"template_type": 1},
        "sms_config": {
            "template_type": 1,
            "template_parts": [
                {"language": "default", "content": DEFAULT_CONTENT},
            ],
        },
        "created_time": int(emulator.clock.now()),
        "status": 2,
        "audit_remark": "",
    }

    deleted = call(emulator, "/v1/template-configs/login", method="DELETE")
    assert (deleted.status, deleted.json()) == (200, {"code": 0, "message": "success"})
    gone = call(emulator, "/v1/template-configs/login", method="GET")
    assert assert_error(gone, ErrorCode.NOT_FOUND) == "config not exist"
    again = call(emulator, "/v1/template-configs/login", method="DELETE")
    assert assert_error(again, ErrorCode.NOT_FOUND) == "config not exist"
    assert call(emulator, "/v1/template-configs", method="GET").json() == []


def test_a_template_config_governs_the_codes_sent_with_it() -> None:
    emulator = Emulator(strict_templates=True)
    post_config(emulator)
    assert send(emulator, template="login")["send_channel"] == "whatsapp"
    (message,) = emulator.journal.snapshot()
    assert len(message.code) == 8
    assert set(message.code) <= set(string.ascii_uppercase)
    assert message.expires_at - message.sent_at == 600


def test_templates_added_in_code_are_read_and_deleted_through_the_endpoints() -> None:
    emulator = Emulator(strict_templates=True)
    emulator.add_template(
        "login", strategy="voice|sms", code_length=8, ttl=600, code_type=3, description="d"
    )
    item = call(emulator, "/v1/template-configs/login", method="GET").json()
    assert item == {
        "template_id": "login",
        "description": "d",
        "send_channel_strategy": "voice|sms",
        "brand_name": "EngageLab",
        "verify_code_config": {"verify_code_type": 3, "verify_code_len": 8, "verify_code_ttl": 10},
        "sms_config": {
            "template_type": 1,
            "template_default_config": {},
            "template_parts": [{"language": "default", "content": DEFAULT_CONTENT}],
        },
        "voice_config": {"template_type": 1, "template_default_config": {}},
        "created_time": int(emulator.clock.now()),
        "status": 2,
        "audit_remark": "",
    }
    assert call(emulator, "/v1/template-configs/login", method="DELETE").status == 200
    assert_error(post_message(emulator, template="login"), ErrorCode.NOT_FOUND, "'login'")


def test_creating_an_existing_template_config_is_3003() -> None:
    emulator = Emulator()
    post_config(emulator)
    assert_error(post_config(emulator), ErrorCode.VALIDATION_FAILED, "'login'", "already exists")


def code_config(**values: int) -> dict[str, int]:
    return {**CONFIG["verify_code_config"], **values}  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"brand_name": "A"}, "brand_name"),
        ({"brand_name": "A" * 11}, "brand_name"),
        ({"brand_name": 7}, "brand_name"),
        ({"verify_code_config": code_config(verify_code_len=3)}, "verify_code_len"),
        ({"verify_code_config": code_config(verify_code_len=11)}, "verify_code_len"),
        ({"verify_code_config": code_config(verify_code_type=0)}, "verify_code_type"),
        ({"verify_code_config": code_config(verify_code_type=8)}, "verify_code_type"),
        ({"verify_code_config": code_config(verify_code_ttl=0)}, "verify_code_ttl"),
        ({"verify_code_config": code_config(verify_code_ttl=11)}, "verify_code_ttl"),
        ({"verify_code_config": code_config(verify_code_ttl=2)}, "verify_code_ttl"),
        ({"verify_code_config": "six"}, "verify_code_config"),
        ({"send_channel_strategy": "email|sms"}, "email"),
        ({"send_channel_strategy": "sms|email"}, "email"),
        ({"send_channel_strategy": "pigeon"}, "pigeon"),
        ({"send_channel_strategy": "sms|sms"}, "repeats"),
        ({"send_channel_strategy": None}, "send_channel_strategy"),
        ({"template_id": ""}, "template_id"),
        ({"template_id": "x" * 129}, "template_id"),
        ({"description": "d" * 256}, "description"),
        ({"sms_config": sms_custom("no code here")}, "{{code}}"),
        ({"sms_config": {"template_type": 2}}, "sms_config.template_custom_config"),
        (
            {"sms_config": {"template_type": 2, "custom_content": "{{code}}"}},
            "custom_sub_type and custom_content go inside it",
        ),
    ],
)
def test_template_config_rules_answer_3002_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    emulator = Emulator()
    assert_error(post_config(emulator, **changes), ErrorCode.INVALID_PARAMS, field)
    assert emulator.templates == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"brand_name": "AB"},
        {"brand_name": "A" * 10},
        {"verify_code_config": code_config(verify_code_len=4)},
        {"verify_code_config": code_config(verify_code_len=10)},
        {"verify_code_config": code_config(verify_code_ttl=1)},
        {"verify_code_config": code_config(verify_code_ttl=5)},
        {"send_channel_strategy": "sms", "verify_code_config": code_config(verify_code_ttl=2)},
        {"send_channel_strategy": "email", "email_config": {"template_name": "otp"}},
        {"send_channel_strategy": "whatsapp|sms|voice", "voice_config": {"template_type": 1}},
        {"sms_config": SMS_CUSTOM},
    ],
)
def test_template_config_limits_are_inclusive(changes: dict[str, Any]) -> None:
    answer = post_config(Emulator(), **changes)
    assert answer.status == 200, answer.body


def test_custom_sms_content_is_what_is_delivered() -> None:
    emulator = Emulator()
    post_config(
        emulator,
        send_channel_strategy="sms",
        sms_config=sms_custom("Hi {{name}}, {{code}} ({{x}})"),
    )
    send(emulator, template="login", params={"name": "Bob"})
    message = emulator.journal.snapshot()[0]
    assert message.text == f"Hi Bob, {message.code} ({{{{x}}}})"


# --------------------------------------------------------------------------- add_template


@pytest.mark.parametrize(
    ("strategy", "channel"),
    [("sms", "sms"), ("voice", "voice"), ("whatsapp|sms", "whatsapp"), ("sms|voice", "sms")],
)
def test_send_channel_is_the_first_channel_of_the_strategy(strategy: str, channel: str) -> None:
    emulator = Emulator(strict_templates=True)
    emulator.add_template("tpl", strategy=strategy)
    assert send(emulator)["send_channel"] == channel


@pytest.mark.parametrize(
    ("code_type", "alphabet"),
    [
        (1, string.digits),
        (2, string.ascii_lowercase),
        (4, string.ascii_uppercase),
        (3, string.digits + string.ascii_lowercase),
        (7, string.digits + string.ascii_letters),
    ],
)
@pytest.mark.parametrize("code_length", [4, 7, 10])
def test_generated_codes_have_the_templates_length_and_alphabet(
    code_type: int, alphabet: str, code_length: int
) -> None:
    emulator = Emulator(seed=3, rate_limit=False)
    emulator.add_template("tpl", code_length=code_length, code_type=code_type)
    codes = set()
    for _ in range(40):
        send(emulator)
        code = emulator.last_code(PHONE) or ""
        assert len(code) == code_length
        assert set(code) <= set(alphabet)
        codes.add(code)
    assert len(codes) > 30  # random, not one code over and over


def test_the_default_template_is_sms_six_digits_five_minutes() -> None:
    emulator = Emulator()
    assert send(emulator, template="never-registered")["send_channel"] == "sms"
    message = emulator.journal.snapshot()[0]
    assert len(message.code) == 6
    assert message.code.isdigit()
    assert message.expires_at - message.sent_at == 300


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"strategy": "email|sms"}, "email"),
        ({"strategy": "fax"}, "fax"),
        ({"code_length": 3}, "code_length"),
        ({"code_length": 11}, "code_length"),
        ({"ttl": 0}, "ttl"),
        ({"code_type": 8}, "code_type"),
    ],
)
def test_add_template_rejects_what_engagelab_rejects(arguments: dict[str, Any], words: str) -> None:
    with pytest.raises(TemplateConfigError, match=words):
        Emulator().add_template("tpl", **arguments)


def test_add_template_replaces_a_template_of_the_same_id() -> None:
    emulator = Emulator()
    emulator.add_template("tpl", code_length=4)
    emulator.add_template("tpl", code_length=9, strategy="voice")
    assert send(emulator)["send_channel"] == "voice"
    assert len(emulator.last_code(PHONE) or "") == 9


# --------------------------------------------------------------------------- authentication


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic(DEFAULT_DEV_KEY, "wrong"),
        basic("other-key", DEFAULT_DEV_SECRET),
        "Bearer " + AUTH[6:],
        "Basic not-base64!!",
        AUTH[6:],
        "basic " + AUTH[6:],
    ],
)
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/verifications", "/v1/template-configs"])
def test_missing_or_wrong_authorization_is_2001(authorization: str | None, path: str) -> None:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    emulator = Emulator()
    answer = call(emulator, path, send_payload("/v1/messages"), headers=headers)
    message = assert_error(answer, ErrorCode.AUTH_FAILED, "authentication failed")
    assert DEFAULT_DEV_SECRET not in message
    assert len(emulator.journal) == 0


def test_header_names_are_case_insensitive_with_httpx_headers() -> None:
    headers = httpx.Headers({"Authorization": AUTH, "Content-Type": "application/json"})
    answer = Emulator().handle(
        "POST", "/v1/messages", headers, b'{"to":"+6591234567","template":{"id":"t"}}'
    )
    assert isinstance(answer, EmulatorResponse)
    assert answer.status == 200


@pytest.mark.parametrize("key_status", ["expired", "disabled"])
def test_an_expired_or_disabled_key_is_2002(key_status: Any) -> None:
    emulator = Emulator(key_status=key_status)
    answer = post_message(emulator)
    assert_error(answer, ErrorCode.AUTH_EXPIRED, key_status)
    wrong = call(emulator, "/v1/messages", {}, headers={"authorization": basic("a", "b")})
    assert_error(wrong, ErrorCode.AUTH_FAILED)  # a wrong key is still 2001


def test_a_forbidden_endpoint_is_2004_and_only_that_endpoint() -> None:
    emulator = Emulator(forbidden_endpoints=("/v1/verifications", "/v1/template-configs/{id}"))
    message_id = send(emulator)["message_id"]
    answer = verify(emulator, message_id, "000000")
    assert_error(answer, ErrorCode.PERMISSION_DENIED, "/v1/verifications")
    forbidden_item = call(emulator, "/v1/template-configs/x", method="GET")
    assert_error(forbidden_item, ErrorCode.PERMISSION_DENIED)
    assert call(emulator, "/v1/template-configs", method="GET").status == 200


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/json", b"not json"),
        ("application/json", b""),
        ("application/json", b'{"to": "+6591234567",'),
        ("application/json", b"\xff\xfe\xfa"),
        ("application/json", b'["to", "+6591234567"]'),
        ("application/json", b'"a string"'),
        ("application/json", b"null"),
        ("application/json", b"42"),
        ("application/json", b"[" * 50_000 + b"]" * 50_000),
        ("text/plain", b'{"to": "+6591234567", "template": {"id": "t"}}'),
        ("application/x-www-form-urlencoded", b"to=%2B6591234567"),
        (None, b'{"to": "+6591234567", "template": {"id": "t"}}'),
    ],
)
@pytest.mark.parametrize("path", [*SEND_PATHS, "/v1/verifications", "/v1/template-configs"])
def test_bodies_that_are_not_a_json_object_are_3001(
    content_type: str | None, raw: bytes, path: str
) -> None:
    headers = {"authorization": AUTH}
    if content_type is not None:
        headers["content-type"] = content_type
    assert_error(call(Emulator(), path, headers=headers, raw=raw), ErrorCode.INVALID_FORMAT)


def test_a_json_charset_content_type_is_accepted() -> None:
    headers = {**HEADERS, "content-type": "application/json; charset=utf-8"}
    assert call(Emulator(), "/v1/messages", MESSAGE, headers=headers).status == 200


def without(payload: dict[str, Any], *path: str) -> dict[str, Any]:
    """``payload`` (deep-copied) without the field at ``path``."""
    copied: dict[str, Any] = json.loads(json.dumps(payload))
    target = copied
    for name in path[:-1]:
        target = target[name]
    del target[path[-1]]
    return copied


def replaced(payload: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(payload))
    target = copied
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return copied


MESSAGE = send_payload("/v1/messages", language="en", params={"name": "Bob"})
CODES = send_payload("/v1/codes")
VERIFY = {"message_id": "1874244142495207425", "verify_code": "123456"}

PARAMETER_ERRORS = [
    ("/v1/messages", without(MESSAGE, "to"), "to"),
    ("/v1/messages", replaced(MESSAGE, 6591234567, "to"), "to"),
    ("/v1/messages", replaced(MESSAGE, "  ", "to"), "to"),
    ("/v1/messages", replaced(MESSAGE, [PHONE], "to"), "to"),
    ("/v1/messages", without(MESSAGE, "template"), "template"),
    ("/v1/messages", replaced(MESSAGE, "tpl", "template"), "template"),
    ("/v1/messages", replaced(MESSAGE, None, "template"), "template"),
    ("/v1/messages", without(MESSAGE, "template", "id"), "template.id"),
    ("/v1/messages", replaced(MESSAGE, 7, "template", "id"), "template.id"),
    ("/v1/messages", replaced(MESSAGE, "", "template", "id"), "template.id"),
    ("/v1/messages", replaced(MESSAGE, "t" * 129, "template", "id"), "template.id"),
    ("/v1/messages", replaced(MESSAGE, "fr", "template", "language"), "template.language"),
    ("/v1/messages", replaced(MESSAGE, 1, "template", "language"), "template.language"),
    ("/v1/messages", replaced(MESSAGE, ["a"], "template", "params"), "template.params"),
    ("/v1/messages", replaced(MESSAGE, "a=b", "template", "params"), "template.params"),
    ("/v1/messages", replaced(MESSAGE, 1, "template", "params", "name"), "template.params.name"),
    ("/v1/messages", replaced(MESSAGE, None, "template", "params", "x"), "template.params.x"),
    ("/v1/codes", without(CODES, "code"), "code"),
    ("/v1/codes", replaced(CODES, 424242, "code"), "code"),
    ("/v1/codes", replaced(CODES, "", "code"), "code"),
    ("/v1/custom-messages", replaced(MESSAGE, [], "to"), "to"),
    ("/v1/custom-messages", replaced(MESSAGE, [PHONE, 5], "to"), "to"),
    ("/v1/verifications", without(VERIFY, "message_id"), "message_id"),
    ("/v1/verifications", replaced(VERIFY, 1874244142495207425, "message_id"), "message_id"),
    ("/v1/verifications", without(VERIFY, "verify_code"), "verify_code"),
    ("/v1/verifications", replaced(VERIFY, 123456, "verify_code"), "verify_code"),
    ("/v1/verifications", replaced(VERIFY, None, "verify_code"), "verify_code"),
]


@pytest.mark.parametrize(("path", "payload", "field"), PARAMETER_ERRORS)
def test_missing_or_wrongly_typed_fields_are_3002_naming_the_field(
    path: str, payload: dict[str, Any], field: str
) -> None:
    emulator = Emulator()
    message = assert_error(call(emulator, path, payload), ErrorCode.INVALID_PARAMS)
    assert message.startswith(field + " ")
    assert len(emulator.journal) == 0


@pytest.mark.parametrize("language", ["default", "zh_CN", "zh_HK", "en", "ja", "th", "es"])
def test_every_documented_language_is_accepted_and_journaled(language: str) -> None:
    emulator = Emulator()
    send(emulator, language=language)
    assert emulator.journal.snapshot()[0].language == language


def test_an_unregistered_template_is_4001_in_strict_mode_only() -> None:
    strict = Emulator(strict_templates=True)
    answer = post_message(strict, template="ghost")
    assert_error(answer, ErrorCode.NOT_FOUND, "'ghost'")
    strict.add_template("ghost")
    assert post_message(strict, template="ghost").status == 200
    assert send(Emulator(), template="ghost")["send_channel"] == "sms"


@pytest.mark.parametrize(
    "to",
    [
        "6591234567",
        "+0591234567",
        "+65",
        "+65 9123 4567",
        "+6591234567x",
        "user@",
        "@x.com",
        "user@host",
        "a b@c.de",
        "+1234567890123456",
    ],
)
@pytest.mark.parametrize("path", SEND_PATHS)
def test_a_recipient_neither_e164_nor_email_is_5011(to: str, path: str) -> None:
    emulator = Emulator()
    assert_error(call(emulator, path, send_payload(path, to=to)), ErrorCode.INVALID_PHONE_NUMBER)
    assert len(emulator.journal) == 0


@pytest.mark.parametrize("to", ["+1234567", "+123456789012345", "a.b+c@mail.example.org"])
def test_boundary_recipients_are_accepted(to: str) -> None:
    emulator = Emulator()
    emulator.add_template("tpl", strategy="email" if "@" in to else "sms")
    assert send(emulator, to=to)["send_channel"] in ("email", "sms")


def test_a_phone_for_an_email_template_and_an_address_for_a_phone_template_are_3003() -> None:
    emulator = Emulator()
    emulator.add_template("mail", strategy="email")
    emulator.add_template("text", strategy="whatsapp|sms")
    to_phone = post_message(emulator, PHONE, "mail")
    assert_error(to_phone, ErrorCode.VALIDATION_FAILED, "e-mail", PHONE)
    to_email = post_message(emulator, EMAIL, "text")
    assert_error(to_email, ErrorCode.VALIDATION_FAILED, "whatsapp|sms", EMAIL)
    assert send(emulator, EMAIL, "mail")["send_channel"] == "email"


def test_custom_messages_checks_every_recipient_before_sending_any() -> None:
    emulator = Emulator()
    payload = send_payload("/v1/custom-messages", to=[PHONE, "nope"])
    assert_error(call(emulator, "/v1/custom-messages", payload), ErrorCode.INVALID_PHONE_NUMBER)
    assert len(emulator.journal) == 0


# --------------------------------------------------------------------------- validation order

BAD_JSON = b"{not json"


@pytest.mark.parametrize(
    ("emulator_options", "headers", "raw", "expected"),
    [
        # unauthenticated and malformed: authentication answers first
        ({}, {"content-type": "text/plain"}, BAD_JSON, ErrorCode.AUTH_FAILED),
        (
            {"key_status": "expired"},
            {**HEADERS, "content-type": "text/plain"},
            BAD_JSON,
            ErrorCode.AUTH_EXPIRED,
        ),
        (
            {"forbidden_endpoints": ("/v1/messages",)},
            HEADERS,
            BAD_JSON,
            ErrorCode.PERMISSION_DENIED,
        ),
        # a wrong Content-Type is 3001 even for a body that would be fine
        (
            {},
            {**HEADERS, "content-type": "text/plain"},
            json.dumps(send_payload("/v1/messages")).encode(),
            ErrorCode.INVALID_FORMAT,
        ),
        # 3002 before 4001: a bad language with an unregistered template, strict
        (
            {"strict_templates": True},
            HEADERS,
            json.dumps(send_payload("/v1/messages", template="ghost", language="xx")).encode(),
            ErrorCode.INVALID_PARAMS,
        ),
        # 4001 before 5011
        (
            {"strict_templates": True},
            HEADERS,
            json.dumps(send_payload("/v1/messages", to="bad", template="ghost")).encode(),
            ErrorCode.NOT_FOUND,
        ),
        # 3002 (missing template) before 5011
        ({}, HEADERS, json.dumps({"to": "bad"}).encode(), ErrorCode.INVALID_PARAMS),
    ],
)
def test_validation_answers_in_the_documented_order(
    emulator_options: dict[str, Any], headers: dict[str, str], raw: bytes, expected: ErrorCode
) -> None:
    emulator = Emulator(**emulator_options)
    assert_error(call(emulator, "/v1/messages", headers=headers, raw=raw), expected)


def test_route_comes_before_authentication_and_injections() -> None:
    emulator = Emulator()
    injection = emulator.fail_next(ErrorCode.SEND_FAILED)
    assert error_of(call(emulator, "/v1/nothing", headers={}))[:2] == (404, ErrorCode.NOT_FOUND)
    assert injection.fired == 0


def test_an_injected_failure_comes_before_authentication() -> None:
    emulator = Emulator()
    emulator.fail_next(ErrorCode.SEND_FAILED)
    assert_error(call(emulator, "/v1/messages", headers={}, raw=BAD_JSON), ErrorCode.SEND_FAILED)
    assert_error(call(emulator, "/v1/messages", headers={}, raw=BAD_JSON), ErrorCode.AUTH_FAILED)


def test_recipient_format_comes_before_magic_numbers_and_the_frequency_limit() -> None:
    emulator = Emulator()
    emulator.add_template("mail", strategy="email")
    magic = number_for(ErrorCode.BLACKLISTED)
    answer = post_message(emulator, magic, "mail")
    assert_error(answer, ErrorCode.VALIDATION_FAILED)


def test_an_injected_recipient_failure_comes_before_the_frequency_limit() -> None:
    emulator = Emulator()
    send(emulator)
    emulator.fail_for(PHONE, ErrorCode.UNSUBSCRIBED)
    assert_error(post_message(emulator), ErrorCode.UNSUBSCRIBED)


# --------------------------------------------------------------------------- verification


def sent_code(emulator: Emulator, **extra: Any) -> tuple[str, str]:
    """Send to PHONE; return (message_id, code)."""
    message_id = send(emulator, **extra)["message_id"]
    return message_id, emulator.last_code(PHONE) or ""


def verified(answer: EmulatorResponse) -> bool:
    assert answer.status == 200, answer.body
    result: bool = answer.json()["verified"]
    return result


def test_the_right_code_verifies_once_then_3003() -> None:
    emulator = Emulator()
    message_id, code = sent_code(emulator)
    assert verified(verify(emulator, message_id, code)) is True
    assert_error(
        verify(emulator, message_id, code), ErrorCode.VALIDATION_FAILED, "already verified"
    )


def test_a_wrong_code_is_200_verified_false_and_the_right_one_still_works() -> None:
    emulator = Emulator()
    message_id, code = sent_code(emulator)
    wrong = "000000" if code != "000000" else "111111"
    answer = verify(emulator, message_id, wrong)
    assert answer.json() == {"message_id": message_id, "verify_code": wrong, "verified": False}
    assert verified(verify(emulator, message_id, code)) is True


def test_a_code_verifies_until_its_ttl_and_not_after() -> None:
    emulator = Emulator()
    emulator.add_template("tpl", ttl=120)
    message_id, code = sent_code(emulator)
    other_id = send(emulator, to=OTHER_PHONE)["message_id"]
    emulator.advance(119.5)
    assert verified(verify(emulator, message_id, code)) is True
    emulator.advance(0.5)
    other_code = emulator.last_code(OTHER_PHONE) or ""
    assert_error(verify(emulator, other_id, other_code), ErrorCode.VALIDATION_FAILED, "expired")


def test_verifying_an_unknown_message_id_is_4001() -> None:
    answer = verify(Emulator(), "1874244142495207425", "123456")
    assert_error(answer, ErrorCode.NOT_FOUND, "'1874244142495207425'")


@pytest.mark.parametrize("path", ["/v1/codes", "/v1/custom-messages"])
def test_messages_with_the_callers_own_code_cannot_be_verified(path: str) -> None:
    # Our documented choice: the caller that made the code verifies it itself.
    emulator = Emulator()
    message_id = call(emulator, path, send_payload(path)).json()["message_id"]
    assert_error(verify(emulator, message_id, "424242"), ErrorCode.VALIDATION_FAILED, path)


def test_max_verify_attempts_locks_the_message_after_that_many_wrong_codes() -> None:
    emulator = Emulator(max_verify_attempts=2)
    message_id, code = sent_code(emulator)
    wrong = "x"
    assert verified(verify(emulator, message_id, wrong)) is False
    assert verified(verify(emulator, message_id, wrong)) is False
    assert_error(verify(emulator, message_id, code), ErrorCode.VALIDATION_FAILED, "2 allowed")


def test_without_max_verify_attempts_wrong_codes_are_unlimited() -> None:
    emulator = Emulator()
    message_id, code = sent_code(emulator)
    for _ in range(50):
        assert verified(verify(emulator, message_id, "x")) is False
    assert verified(verify(emulator, message_id, code)) is True


# --------------------------------------------------------------------------- frequency limit


def test_the_same_template_and_recipient_within_the_ttl_is_3004() -> None:
    emulator = Emulator()
    emulator.add_template("tpl", ttl=60)
    send(emulator)
    emulator.advance(59)
    again = post_message(emulator)
    assert_error(again, ErrorCode.FREQUENCY_LIMITED, "'tpl'", PHONE)
    assert len(emulator.journal) == 1
    emulator.advance(1)
    send(emulator)
    assert len(emulator.journal) == 2


def test_another_template_or_recipient_is_not_limited() -> None:
    emulator = Emulator()
    send(emulator)
    send(emulator, template="other")
    send(emulator, to=OTHER_PHONE)
    assert len(emulator.journal) == 3


def test_codes_share_the_frequency_limit_and_custom_messages_do_not() -> None:
    emulator = Emulator()
    send(emulator)
    codes = call(emulator, "/v1/codes", send_payload("/v1/codes"))
    assert_error(codes, ErrorCode.FREQUENCY_LIMITED)
    for _ in range(3):
        custom = call(emulator, "/v1/custom-messages", send_payload("/v1/custom-messages"))
        assert custom.status == 200


def test_rate_limit_false_disables_the_frequency_limit() -> None:
    emulator = Emulator(rate_limit=False)
    for _ in range(5):
        send(emulator)
    assert len(emulator.journal) == 5


def test_a_failed_send_does_not_start_the_frequency_limit() -> None:
    emulator = Emulator()
    emulator.fail_next(ErrorCode.SEND_FAILED)
    assert_error(post_message(emulator), ErrorCode.SEND_FAILED)
    send(emulator)


# --------------------------------------------------------------------------- message ids


def run_script(emulator: Emulator) -> list[tuple[str, str]]:
    """A fixed series of sends; (message_id, code) of each."""
    out = []
    for index in range(20):
        to = f"+659100{index:04d}"
        message_id = send(emulator, to=to, template=f"t{index % 3}")["message_id"]
        out.append((message_id, emulator.last_code(to) or ""))
    return out


def test_message_ids_are_unique_nineteen_digit_strings() -> None:
    emulator = Emulator(rate_limit=False)
    ids = [send(emulator)["message_id"] for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(len(i) == 19 and i.isdigit() for i in ids)
    assert ids == sorted(ids, key=int)


def test_a_seed_makes_ids_and_codes_reproducible() -> None:
    first = run_script(Emulator(seed=7))
    assert run_script(Emulator(seed=7)) == first
    assert run_script(Emulator(seed=8)) != first
    emulator = Emulator(seed=7)
    run_script(emulator)
    emulator.reset()
    assert run_script(emulator) == first


def test_without_a_seed_codes_differ_between_emulators() -> None:
    first = [code for _, code in run_script(Emulator())]
    second = [code for _, code in run_script(Emulator())]
    assert first != second
    seeded_ids = [i for i, _ in run_script(Emulator(seed=7))]
    assert not set(seeded_ids) & {i for i, _ in run_script(Emulator())}


# --------------------------------------------------------------------------- magic recipients


@pytest.mark.parametrize(("number", "code"), sorted(DELIVERY_ERROR_NUMBERS.items()))
@pytest.mark.parametrize("path", SEND_PATHS)
def test_each_magic_number_answers_its_delivery_error(
    number: str, code: ErrorCode, path: str
) -> None:
    emulator = Emulator()
    events: list[EmulatorEvent] = []
    emulator.subscribe(events.append)
    answer = call(emulator, path, send_payload(path, to=number))
    assert answer.json() == {"code": int(code), "message": code.default_message}
    assert answer.status == code.http_status == 400
    assert len(emulator.journal) == 0
    assert [(e.kind, e.to, e.error) for e in events] == [("send_failed", number, code)]
    assert number_for(code) == number


def test_the_magic_numbers_cover_5001_and_5011_to_5020() -> None:
    assert sorted(DELIVERY_ERROR_NUMBERS.values()) == [5001, *range(5011, 5021)]
    with pytest.raises(ValueError, match="FREQUENCY_LIMITED"):
        number_for(ErrorCode.FREQUENCY_LIMITED)


def test_the_whatsapp_fallback_number_is_delivered_by_the_next_channel() -> None:
    emulator = Emulator()
    emulator.add_template("tpl", strategy="whatsapp|sms")
    emulator.add_template("wa", strategy="whatsapp")
    emulator.add_template("text", strategy="sms|voice")
    assert send(emulator, to=WHATSAPP_FALLBACK_NUMBER)["send_channel"] == "whatsapp"
    assert send(emulator, to=WHATSAPP_FALLBACK_NUMBER, template="wa")["send_channel"] == "whatsapp"
    assert send(emulator, to=WHATSAPP_FALLBACK_NUMBER, template="text")["send_channel"] == "sms"
    fallback, whatsapp_only, sms_first = emulator.journal.snapshot()
    assert (fallback.send_channel, fallback.delivery_channel, fallback.failed_channels) == (
        "whatsapp",
        "sms",
        ("whatsapp",),
    )
    assert (whatsapp_only.delivery_channel, whatsapp_only.failed_channels) == ("whatsapp", ())
    assert (sms_first.delivery_channel, sms_first.failed_channels) == ("sms", ())


def test_ordinary_numbers_deliver_on_the_first_channel() -> None:
    emulator = Emulator()
    emulator.add_template("tpl", strategy="whatsapp|sms")
    send(emulator)
    (message,) = emulator.journal.snapshot()
    assert (message.delivery_channel, message.failed_channels) == ("whatsapp", ())


MAGIC = {*DELIVERY_ERROR_NUMBERS, WHATSAPP_FALLBACK_NUMBER}
E164 = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True).filter(lambda n: n not in MAGIC)


@settings(max_examples=200, deadline=None)
@given(number=E164, strategy=st.sampled_from(["sms", "whatsapp|sms", "voice|sms"]))
def test_ordinary_numbers_never_trigger_magic(number: str, strategy: str) -> None:
    emulator = Emulator(rate_limit=False)
    emulator.add_template("tpl", strategy=strategy)
    for path in SEND_PATHS:
        answer = call(emulator, path, send_payload(path, to=number, template="tpl"))
        assert answer.status == 200, answer.body
    assert {m.delivery_channel for m in emulator.journal} == {strategy.split("|")[0]}
    assert all(m.failed_channels == () for m in emulator.journal)


# --------------------------------------------------------------------------- every error code


def natural_trigger(code: ErrorCode) -> EmulatorResponse:
    """Produce ``code`` the way a real request would meet it."""
    if code is ErrorCode.INTERNAL_ERROR:
        # 1000 has no natural trigger: EngageLab fails internally.  Injected only.
        emulator = Emulator()
        emulator.fail_next(ErrorCode.INTERNAL_ERROR)
        return post_message(emulator)
    if code in DELIVERY_ERROR_NUMBERS.values() and code is not ErrorCode.INVALID_PHONE_NUMBER:
        return post_message(Emulator(), number_for(code))
    emulator = Emulator(
        key_status="expired" if code is ErrorCode.AUTH_EXPIRED else "active",
        forbidden_endpoints=("/v1/messages",) if code is ErrorCode.PERMISSION_DENIED else (),
        strict_templates=code is ErrorCode.NOT_FOUND,
    )
    headers = {"content-type": "application/json"} if code is ErrorCode.AUTH_FAILED else HEADERS
    payload = send_payload("/v1/messages")
    if code is ErrorCode.FREQUENCY_LIMITED:
        send(emulator)
    elif code is ErrorCode.INVALID_FORMAT:
        payload = [payload]  # type: ignore[assignment]
    elif code is ErrorCode.INVALID_PARAMS:
        del payload["template"]
    elif code is ErrorCode.VALIDATION_FAILED:
        payload["to"] = EMAIL
    elif code is ErrorCode.INVALID_PHONE_NUMBER:
        payload["to"] = "12345"
    return call(emulator, "/v1/messages", payload, headers=headers)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: f"{int(c)}-{c.name}")
def test_every_documented_code_has_a_trigger(code: ErrorCode) -> None:
    assert_error(natural_trigger(code), code)


# --------------------------------------------------------------------------- injection


def test_fail_next_answers_each_kind_of_injected_error() -> None:
    emulator = Emulator()
    emulator.fail_next(ErrorCode.BLACKLISTED)
    emulator.fail_next(errors.frequency_limited(message="slow down"))
    emulator.fail_next(httpx.Response(502, text="<html>bad gateway</html>"))
    timeout = httpx.ConnectTimeout("no route")
    emulator.fail_next(timeout)
    payload = send_payload("/v1/messages")
    assert_error(call(emulator, "/v1/messages", payload), ErrorCode.BLACKLISTED)
    limited = call(emulator, "/v1/messages", payload)
    assert (limited.status, limited.json()) == (400, {"code": 3004, "message": "slow down"})
    gateway = call(emulator, "/v1/messages", payload)
    assert (gateway.status, gateway.body) == (502, b"<html>bad gateway</html>")
    fault = emulator.handle("POST", "/v1/messages", HEADERS, json.dumps(payload).encode())
    assert isinstance(fault, Fault)
    assert isinstance(fault.exception, httpx.ConnectTimeout)
    assert str(fault.exception) == "no route"
    assert fault.exception is not timeout  # a copy: raising it twice keeps tracebacks apart
    assert call(emulator, "/v1/messages", payload).status == 200
    assert emulator.unfired_injections() == []


def test_fail_next_times_and_endpoint() -> None:
    emulator = Emulator(rate_limit=False)
    injection = emulator.fail_next(ErrorCode.INTERNAL_SEND_ERROR, times=2, endpoint="/v1/codes")
    assert send(emulator)["send_channel"] == "sms"
    codes = send_payload("/v1/codes")
    for _ in range(2):
        assert_error(call(emulator, "/v1/codes", codes), ErrorCode.INTERNAL_SEND_ERROR)
    assert call(emulator, "/v1/codes", codes).status == 200
    assert (injection.fired, injection.exhausted) == (2, True)
    assert "fired 2 of 2" in injection.describe()


def test_fail_for_fails_every_send_to_that_recipient_only() -> None:
    emulator = Emulator(rate_limit=False)
    injection = emulator.fail_for(OTHER_PHONE, ErrorCode.PHONE_UNAVAILABLE)
    for _ in range(3):
        failed = post_message(emulator, to=OTHER_PHONE)
        assert_error(failed, ErrorCode.PHONE_UNAVAILABLE)
    send(emulator)
    assert injection.fired == 3
    assert [m.to for m in emulator.journal] == [PHONE]


def test_injection_arguments_are_checked() -> None:
    emulator = Emulator()
    with pytest.raises(TypeError, match=r"ErrorCode, an httpx\.Response"):
        emulator.fail_next(5001)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times must be an integer of at least 1"):
        emulator.fail_next(ErrorCode.SEND_FAILED, times=0)
    unfired = emulator.fail_for(PHONE, httpx.ReadTimeout("slow"))
    assert emulator.unfired_injections() == [unfired]
    assert unfired.describe() == "fail_for('+6591234567', ReadTimeout('slow')) (fired 0 times)"


# --------------------------------------------------------------------------- events


def test_listeners_hear_sends_failures_verifications_and_expiry() -> None:
    emulator = Emulator(rate_limit=False)
    events: list[EmulatorEvent] = []
    emulator.subscribe(events.append)
    message_id, code = sent_code(emulator)
    verify(emulator, message_id, "nope")
    verify(emulator, message_id, code)
    sent_code(emulator)
    post_message(emulator, number_for(ErrorCode.SEND_FAILED))
    emulator.advance(300)
    emulator.advance(300)
    assert [e.kind for e in events] == [
        "sent", "verify_failed", "verified", "sent", "send_failed", "expired",
    ]  # fmt: skip
    assert events[-1].message is not None
    assert events[-1].message.message_id != message_id


# --------------------------------------------------------------------------- journal


def controls(emulator: Emulator) -> EmulatorControls:
    return EmulatorControls(emulator, DEFAULT_BASE_URL)


def test_the_journal_is_bounded_and_counts_what_it_dropped() -> None:
    emulator = Emulator(journal_limit=3, rate_limit=False)
    ids = [send(emulator, to=f"+659000000{i}")["message_id"] for i in range(5)]
    assert [m.message_id for m in emulator.journal] == ids[2:]
    assert emulator.journal.dropped == 2
    with pytest.raises(AssertionError) as failure:
        controls(emulator).assert_sent(to=PHONE)
    assert str(failure.value).splitlines()[-1] == (
        "(2 older messages were dropped: the journal keeps the last 3; raise journal_limit to "
        "keep more)"
    )
    emulator.reset()
    assert (len(emulator.journal), emulator.journal.dropped) == (0, 0)


def test_last_code_survives_the_bound_while_its_message_is_in_the_journal() -> None:
    emulator = Emulator(journal_limit=3, rate_limit=False)
    for to in (PHONE, "+6522222222", "+6533333333", PHONE, "+6544444444"):
        send(emulator, to=to)
    assert [m.to for m in emulator.journal] == ["+6533333333", PHONE, "+6544444444"]
    assert emulator.last_code(PHONE) == emulator.journal.snapshot()[1].code
    assert emulator.last_code("+6522222222") is None  # its message was dropped


def test_journal_limit_none_keeps_everything() -> None:
    emulator = Emulator(journal_limit=None, rate_limit=False)
    for _ in range(50):
        send(emulator)
    assert (len(emulator.journal), emulator.journal.dropped) == (50, 0)


def test_assertions_match_on_the_given_fields() -> None:
    emulator = Emulator(rate_limit=False)
    send(emulator, language="en", params={"name": "Bob"})
    send(emulator, to=OTHER_PHONE)
    call(emulator, "/v1/codes", send_payload("/v1/codes", to=OTHER_PHONE, template="other"))
    otp = controls(emulator)
    assert otp.assert_sent(to=OTHER_PHONE).endpoint == "/v1/codes"  # the latest
    assert otp.assert_sent_once(language="en").params == {"name": "Bob"}
    assert otp.assert_sent_once(params={"name": "Bob"}).to == PHONE
    otp.assert_not_sent(template_id="ghost")
    otp.assert_not_sent(params={"name": "Alice"})
    assert len(otp.assert_sent_count(2, template_id="tpl")) == 2
    assert len(otp.assert_sent_count(3)) == 3
    assert otp.assert_sent_count(0, to=EMAIL) == []
    assert otp.last_code(OTHER_PHONE) == "424242"
    assert otp.sent == emulator.journal.snapshot()


def test_assert_sent_failure_says_expected_sent_and_the_closest_difference() -> None:
    emulator = Emulator(seed=1)
    first = send(emulator, language="en")["message_id"]
    second = send(emulator, to=OTHER_PHONE, template="login")["message_id"]
    with pytest.raises(AssertionError) as failure:
        controls(emulator).assert_sent(to=OTHER_PHONE, template_id="tpl")
    assert str(failure.value).splitlines() == [
        "assert_sent: no message matched.",
        "Expected: to='+6598765432', template_id='tpl'",
        "Sent (2):",
        "  1. to='+6591234567', template_id='tpl', language='en', params={} "
        f"(/v1/messages, send_channel='sms', message_id='{first}')",
        "  2. to='+6598765432', template_id='login', language='default', params={} "
        f"(/v1/messages, send_channel='sms', message_id='{second}')",
        "Closest: #1, which differs in",
        "  to: expected '+6598765432', got '+6591234567'",
    ]


def test_count_failures_name_the_count_and_an_empty_journal() -> None:
    emulator = Emulator()
    otp = controls(emulator)
    with pytest.raises(AssertionError) as nothing:
        otp.assert_sent_once(to=PHONE)
    assert str(nothing.value).splitlines() == [
        "assert_sent_once: expected 1 matching message(s), found 0.",
        "Expected: to='+6591234567'",
        "Sent: nothing",
    ]
    send(emulator)
    with pytest.raises(AssertionError) as present:
        otp.assert_not_sent(to=PHONE)
    lines = str(present.value).splitlines()
    assert lines[:3] == [
        "assert_not_sent: expected 0 matching message(s), found 1.",
        "Expected: to='+6591234567'",
        "Sent (1):",
    ]
    assert len(lines) == 4  # an exact match has no "Closest" section
    with pytest.raises(
        AssertionError, match=r"^assert_sent_count: expected 2 matching .*found 1\."
    ):
        otp.assert_sent_count(2)
    with pytest.raises(AssertionError, match="Expected: any message"):
        otp.assert_sent_count(5)


@pytest.mark.parametrize("method", ["assert_sent", "assert_sent_once", "assert_not_sent"])
def test_unknown_criteria_are_a_type_error_naming_the_allowed_ones(method: str) -> None:
    otp = controls(Emulator())
    with pytest.raises(TypeError) as failure:
        getattr(otp, method)(phone=PHONE, code="1")
    assert str(failure.value) == (
        f"{method}() got unknown field(s) code, phone; "
        "match on: endpoint, language, message_id, params, params_include, send_channel, "
        "template_id, to"
    )


def test_assert_sent_count_also_rejects_unknown_criteria() -> None:
    with pytest.raises(TypeError, match=r"assert_sent_count\(\) got unknown field\(s\) code"):
        controls(Emulator()).assert_sent_count(1, code="1")  # type: ignore[call-arg]


def test_last_code_errors_say_who_did_get_a_code() -> None:
    emulator = Emulator()
    otp = controls(emulator)
    with pytest.raises(AssertionError) as nobody:
        otp.last_code(PHONE)
    assert str(nobody.value) == (
        "last_code('+6591234567'): no code was delivered to it; sent to: nobody"
    )
    send(emulator, to=OTHER_PHONE)
    with pytest.raises(AssertionError) as somebody:
        otp.last_code(PHONE)
    assert str(somebody.value).endswith("sent to: '+6598765432'")
    assert otp.last_code(OTHER_PHONE) == emulator.last_code(OTHER_PHONE)


def test_last_code_is_the_latest_for_that_recipient() -> None:
    emulator = Emulator(rate_limit=False, seed=5)
    send(emulator)
    first = emulator.last_code(PHONE)
    send(emulator)
    assert emulator.last_code(PHONE) == emulator.journal.snapshot()[-1].code != first


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"dev_key": ""}, "dev_key and dev_secret"),
        ({"dev_secret": ""}, "dev_key and dev_secret"),
        ({"key_status": "paused"}, "'paused'"),
        ({"max_verify_attempts": 0}, "max_verify_attempts"),
        ({"journal_limit": 0}, "journal_limit"),
    ],
)
def test_bad_emulator_options_are_value_errors(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Emulator(**options)


def test_custom_credentials_and_a_secret_free_repr() -> None:
    emulator = Emulator(dev_key="k1", dev_secret="very-secret-value")
    headers = {**HEADERS, "authorization": basic("k1", "very-secret-value")}
    assert call(emulator, "/v1/messages", MESSAGE, headers=headers).status == 200
    assert_error(post_message(emulator), ErrorCode.AUTH_FAILED)
    assert "very-secret-value" not in repr(emulator)
    assert emulator.dev_secret == "very-secret-value"


# --------------------------------------------------------------------------- lone surrogates

LONE = "the request body holds a lone UTF-16 surrogate"


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        # The deep fuzz found this one: a PWA code the template's link could not encode.
        (
            "/v1/template-configs",
            b'{"template_id": "login", "send_channel_strategy": "sms", '
            b'"pwa_config": {"pwa_code": "\\ud800"}}',
        ),
        ("/v1/template-configs", b'{"template_id": "\\uDFFF"}'),
        ("/v1/messages", b'{"to": "+6598765432", "template": {"params": {"n": "\\ud83d"}}}'),
        ("/v1/codes", b'{"to": "\\udc00", "code": "424242", "template": {"id": "tpl"}}'),
        ("/v1/verifications", b'{"message_id": "\\ud800x", "verify_code": "1"}'),
        ("/v1/messages", b'{"to": "+6598765432", "template": {"id": "\xed\xa0\x80"}}'),  # raw bytes
        ("/v1/messages", '{"to": "+6598765432", "template": {"id": "\\ud800"}}'.encode("utf-16")),
    ],
)
def test_a_lone_surrogate_in_any_json_body_is_3001_not_a_crash(path: str, raw: bytes) -> None:
    """JSON can spell half of a UTF-16 pair alone; no step after parsing may meet it."""
    emulator = Emulator()
    message = assert_error(call(emulator, path, raw=raw), ErrorCode.INVALID_FORMAT, LONE)
    assert "\\ud" in message.lower()
    assert len(emulator.journal) == 0


def test_a_whole_surrogate_pair_and_escaped_accents_are_text_as_ever() -> None:
    emulator = Emulator()
    raw = json.dumps(send_payload("/v1/messages", params={"name": "Jos\u00e9 \U0001f600"})).encode()
    assert b"\\ud83d\\ude00" in raw  # json.dumps escapes it as a pair
    answer = call(emulator, "/v1/messages", raw=raw)
    assert answer.status == 200, answer.body


@pytest.mark.parametrize("raw", [b'{"to": }', b'{"to": "+6598765432", }', b'{"a" 1}', b"{"])
def test_a_body_the_json_scanner_stops_in_is_3001_not_1000(raw: bytes) -> None:
    """The fast path's scanner raised StopIteration for a member with no value: a 1000."""
    assert_error(call(Emulator(), "/v1/messages", raw=raw), ErrorCode.INVALID_FORMAT, "JSON")


def test_a_text_without_params_fills_the_presets_and_every_code() -> None:
    emulator = Emulator()
    template = emulator.add_template(
        "presets",
        content="{{brand_name}}: {{code}} ({{ttl}} min) {{unknown}} {{pwa_url}} again {{code}}",
        ttl=600,
        brand_name="Acme",
    )
    assert template.render("4321", {}) == "Acme: 4321 (10 min) {{unknown}} {{pwa_url}} again 4321"
    template.brand_name = "Other"  # templates can change after they are made
    template.pwa_url = "https://pwa.example/x"
    assert template.render("1", {}) == "Other: 1 (10 min) {{unknown}} https://pwa.example/x again 1"
    with_params = template.render("1", {"brand_name": "Param", "unknown": "u"})
    assert with_params == "Param: 1 (10 min) u https://pwa.example/x again 1"
