"""Template management as EngageLab's ``template.json`` documents it, through the HTTP door.

Each test sends the documented body to ``otp_server`` with a real httpx client over
loopback and checks the answer a client sees: HTTP status, JSON body, error code and
message.  One test per defect of issue 12: the documented custom SMS shape, the
documented fields read back, the channel-config and verify_code_config rules, nested
type checks, the review lifecycle, ``{{pwa_url}}`` and ``/v1/custom-messages`` with an
empty ``params.code``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.templates import PWA_URL_BASE
from pytest_engagelab.server import OTPServer

PHONE = "+6591234567"
CODE_CONFIG = {"verify_code_type": 1, "verify_code_len": 6, "verify_code_ttl": 5}

#: template.json's custom SMS template: template_type 2 with template_custom_config.
CUSTOM_SMS = {
    "template_id": "signup",
    "description": "sign-up code",
    "send_channel_strategy": "sms",
    "brand_name": "Acme",
    "verify_code_config": CODE_CONFIG,
    "sms_config": {
        "template_type": 2,
        "template_custom_config": {
            "custom_sub_type": "authentication",
            "custom_content": "[{{brand_name}}] {{code}} is your code, valid {{ttl}} min.",
            "custom_country_codes": "SG,MY",
        },
    },
}


@pytest.fixture
def api(otp_server: OTPServer) -> Iterator[httpx.Client]:
    """An httpx client with Basic auth on the loopback server."""
    with httpx.Client(
        base_url=otp_server.url, auth=(otp_server.dev_key, otp_server.dev_secret), timeout=10
    ) as client:
        yield client


def error(response: httpx.Response) -> tuple[int, int, str]:
    body = response.json()
    assert set(body) == {"code", "message"}, body
    return response.status_code, body["code"], body["message"]


def create(api: httpx.Client, definition: dict[str, Any]) -> httpx.Response:
    return api.post("/v1/template-configs", json=definition)


# -------------------------------------------------------------------- the documented shapes


def test_a_custom_sms_template_in_the_documented_shape_is_created_and_delivers_its_text(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    answer = create(api, CUSTOM_SMS)
    assert (answer.status_code, answer.json()) == (200, {"code": 0, "message": "success"})
    sent = api.post("/v1/messages", json={"to": PHONE, "template": {"id": "signup"}})
    assert sent.status_code == 200
    message = otp_server.assert_sent_once(to=PHONE, template_id="signup")
    assert message.text == f"[Acme] {message.code} is your code, valid 5 min."


def test_the_undocumented_flat_sms_shape_says_where_the_content_goes(api: httpx.Client) -> None:
    flat = {**CUSTOM_SMS, "sms_config": {"template_type": 2, "custom_content": "{{code}}"}}
    assert error(create(api, flat)) == (
        400,
        3002,
        "sms_config.template_custom_config is required for template_type 2 "
        "(custom_sub_type and custom_content go inside it)",
    )


def test_list_and_detail_answer_every_documented_field(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    otp_server.advance(90)
    assert create(api, CUSTOM_SMS).status_code == 200
    detail = api.get("/v1/template-configs/signup")
    listed = api.get("/v1/template-configs")
    assert detail.status_code == listed.status_code == 200
    expected = {
        "template_id": "signup",
        "description": "sign-up code",
        "send_channel_strategy": "sms",
        "brand_name": "Acme",
        "verify_code_config": CODE_CONFIG,
        "sms_config": {
            **CUSTOM_SMS["sms_config"],  # type: ignore[dict-item]
            "template_parts": [
                {
                    "language": "default",
                    "content": "[{{brand_name}}] {{code}} is your code, valid {{ttl}} min.",
                }
            ],
        },
        "created_time": int(otp_server.emulator.clock.now()),
        "status": 2,
        "audit_remark": "",
    }
    assert detail.json() == expected
    assert listed.json() == [expected]


def test_an_email_template_with_language_configs_answers_them_back(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    email_config = {
        "template_name": "otp-mail",
        "template_custom_configs": [
            {
                "language": "default",
                "pre_from_name": "Acme",
                "pre_from_mail": "no-reply@acme.example",
                "pre_subject": "Your code",
                "template_content": "<p>{{code}}</p>",
                "pre_param_map": {"team": "Acme"},
            }
        ],
    }
    definition = {
        "template_id": "mail",
        "send_channel_strategy": "email",
        "verify_code_config": CODE_CONFIG,
        "email_config": email_config,
    }
    assert create(api, definition).status_code == 200
    assert api.get("/v1/template-configs/mail").json()["email_config"] == email_config
    sent = api.post("/v1/messages", json={"to": "ana@acme.example", "template": {"id": "mail"}})
    assert sent.json()["send_channel"] == "email"
    message = otp_server.assert_sent_once(template_id="mail")
    assert message.text == f"<p>{message.code}</p>"


# -------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("strategy", "configs", "missing"),
    [
        ("whatsapp|sms", {"sms_config": {"template_type": 1}}, "whatsapp_config"),
        ("sms", {}, "sms_config"),
        ("voice|sms", {"whatsapp_config": {"template_type": 1}}, "voice_config, sms_config"),
        ("email", {"sms_config": {"template_type": 1}}, "email_config"),
    ],
)
def test_a_strategy_channel_without_its_config_is_3003(
    api: httpx.Client, strategy: str, configs: dict[str, Any], missing: str
) -> None:
    definition = {
        "template_id": "t",
        "send_channel_strategy": strategy,
        "verify_code_config": CODE_CONFIG,
        **configs,
    }
    assert error(create(api, definition)) == (
        400,
        3003,
        f"not contains any channel config: send_channel_strategy {strategy!r} needs {missing}",
    )
    assert api.get("/v1/template-configs").json() == []


@pytest.mark.parametrize(
    ("strategy", "configs", "carrier"),
    [
        ("sms", {"sms_config": {"template_type": 1}}, "sms"),
        ("whatsapp", {"whatsapp_config": {"template_type": 1}}, "whatsapp"),
        ("email", {"email_config": {"template_name": "otp"}}, "email"),
    ],
)
def test_verify_code_config_is_required_when_the_template_carries_a_code(
    api: httpx.Client, strategy: str, configs: dict[str, Any], carrier: str
) -> None:
    definition = {"template_id": "t", "send_channel_strategy": strategy, **configs}
    assert error(create(api, definition)) == (
        400,
        3002,
        f"verify_code_config is required: the template carries a verification code ({carrier})",
    )


@pytest.mark.parametrize("field", ["verify_code_type", "verify_code_len", "verify_code_ttl"])
def test_verify_code_config_needs_all_three_fields(api: httpx.Client, field: str) -> None:
    partial = {k: v for k, v in CODE_CONFIG.items() if k != field}
    definition = {**CUSTOM_SMS, "verify_code_config": partial}
    assert error(create(api, definition)) == (
        400,
        3002,
        f"verify_code_config.{field} is required",
    )


def test_a_marketing_sms_template_needs_no_code_config_and_sends_no_code(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    definition = {
        "template_id": "promo",
        "send_channel_strategy": "sms",
        "sms_config": {
            "template_type": 2,
            "template_custom_config": {
                "custom_sub_type": "marketing",
                "custom_content": "Hi {{name}}, 20% off today",
            },
        },
    }
    assert create(api, definition).status_code == 200
    assert "verify_code_config" not in api.get("/v1/template-configs/promo").json()
    body = {"to": PHONE, "template": {"id": "promo", "params": {"name": "Bo"}}}
    assert api.post("/v1/custom-messages", json=body).status_code == 200
    message = otp_server.assert_sent_once(template_id="promo")
    assert (message.text, message.code) == ("Hi Bo, 20% off today", "")
    with pytest.raises(AssertionError, match=r"no code was delivered to it"):
        otp_server.last_code(PHONE)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pwa_config": {"pwa_code": {}}}, "pwa_config.pwa_code must be a string, not an object"),
        (
            {"send_channel_strategy": "whatsapp", "whatsapp_config": {"template_type": "x"}},
            "whatsapp_config.template_type must be an integer, not a string",
        ),
        (
            {"sms_config": {"template_type": "abc"}},
            "sms_config.template_type must be an integer, not a string",
        ),
        (
            {"email_config": {"template_name": 5}},
            "email_config.template_name must be a string, not a number",
        ),
        ({"voice_config": []}, "voice_config must be an object, not an array"),
        (
            {"whatsapp_config": {"template_type": 2}},
            "whatsapp_config.template_type must be 1, not 2",
        ),
        (
            {"sms_config": {"template_type": 3}},
            "sms_config.template_type must be 1 or 2, not 3",
        ),
        (
            {"email_config": {"template_name": "m", "template_custom_configs": [{}]}},
            "email_config.template_custom_configs[0].language is required",
        ),
    ],
)
def test_nested_config_fields_are_type_checked_naming_the_field(
    api: httpx.Client, changes: dict[str, Any], message: str
) -> None:
    assert error(create(api, {**CUSTOM_SMS, **changes})) == (400, 3002, message)


# -------------------------------------------------------------------- the review lifecycle


def send(api: httpx.Client, template_id: str = "signup") -> httpx.Response:
    return api.post("/v1/messages", json={"to": PHONE, "template": {"id": template_id}})


def test_templates_are_approved_at_once_by_default_and_an_audit_callback_is_queued(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    otp_server.configure_callbacks(url="http://127.0.0.1:9/unused")
    assert create(api, CUSTOM_SMS).status_code == 200
    assert api.get("/v1/template-configs/signup").json()["status"] == 2
    (row,) = otp_server.pending_callbacks
    assert row["notification"] == {
        "event": "template_audit_result",
        "notification_data": {
            "business_id": "1000000000000000001",
            "template_id": "signup",
            "status": 2,
            "audit_remark": "",
        },
    }
    assert send(api).status_code == 200


@pytest.mark.engagelab(template_review="manual")
def test_a_held_template_is_pending_and_cannot_send_until_approved(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    otp_server.configure_callbacks(url="http://127.0.0.1:9/unused")
    assert create(api, CUSTOM_SMS).status_code == 200
    detail = api.get("/v1/template-configs/signup").json()
    assert (detail["status"], detail["audit_remark"]) == (1, "")
    assert otp_server.pending_callbacks == []
    assert error(send(api)) == (
        400,
        3003,
        "template 'signup' is pending review (status 1); it can send once approved",
    )
    otp_server.assert_not_sent()

    reviewed = api.post(
        "/_emulator/review-template",
        json={"template_id": "signup", "status": "approved", "remark": "looks fine"},
    )
    assert reviewed.json() == {"template_id": "signup", "status": 2, "audit_remark": "looks fine"}
    detail = api.get("/v1/template-configs/signup").json()
    assert (detail["status"], detail["audit_remark"]) == (2, "looks fine")
    (row,) = otp_server.pending_callbacks
    assert row["notification"]["notification_data"]["audit_remark"] == "looks fine"
    assert send(api).status_code == 200


@pytest.mark.engagelab(template_review="manual")
def test_a_rejected_template_answers_3003_with_its_remark(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    assert create(api, CUSTOM_SMS).status_code == 200
    otp_server.review_template("signup", "rejected", remark="brand name not registered")
    detail = api.get("/v1/template-configs/signup").json()
    assert (detail["status"], detail["audit_remark"]) == (3, "brand name not registered")
    assert error(send(api)) == (
        400,
        3003,
        "template 'signup' was rejected in review (status 3): brand name not registered",
    )
    otp_server.review_template("signup", "pending")
    assert api.get("/v1/template-configs/signup").json()["status"] == 1


@pytest.mark.engagelab(template_review="manual", send_unapproved=True)
def test_send_unapproved_lets_a_pending_template_send(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    assert create(api, CUSTOM_SMS).status_code == 200
    assert api.get("/v1/template-configs/signup").json()["status"] == 1
    assert send(api).status_code == 200


def test_reviewing_wrongly_says_what_is_wrong(api: httpx.Client, otp_server: OTPServer) -> None:
    review = {"template_id": "x", "status": "approved"}
    unknown = api.post("/_emulator/review-template", json=review)
    assert error(unknown) == (
        400,
        4001,
        "review_template('x'): no such template; registered: none",
    )
    bad = api.post("/_emulator/review-template", json={"template_id": "x", "status": "ok"})
    assert error(bad) == (
        400,
        3002,
        "status must be 'pending', 'approved' or 'rejected', not 'ok'",
    )
    with pytest.raises(KeyError, match=r"no such template; registered: none"):
        otp_server.review_template("x", "approved")
    otp_server.add_template("login")
    with pytest.raises(ValueError, match=r"not 'done'"):
        otp_server.review_template("login", "done")  # type: ignore[arg-type]


# -------------------------------------------------------------------- presets and params.code


def test_pwa_url_is_filled_from_the_templates_pwa_config(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    content = "{{code}} or open {{pwa_url}} ({{brand_name}}, {{ttl}} min)"
    definition = {
        **CUSTOM_SMS,
        "sms_config": {
            "template_type": 2,
            "template_custom_config": {
                "custom_sub_type": "authentication",
                "custom_content": content,
            },
        },
        "pwa_config": {"pwa_platform": "acme-pwa", "pwa_code": "signup 1"},
    }
    assert create(api, definition).status_code == 200
    assert api.get("/v1/template-configs/signup").json()["pwa_config"] == {
        "pwa_platform": "acme-pwa",
        "pwa_code": "signup 1",
    }
    assert send(api).status_code == 200
    message = otp_server.assert_sent_once()
    assert message.text == (
        f"{message.code} or open {PWA_URL_BASE}/acme-pwa/signup%201 (Acme, 5 min)"
    )


def test_pwa_url_stays_literal_without_a_pwa_config_and_add_template_can_set_it() -> None:
    emulator = Emulator()
    plain = emulator.add_template("plain", content="{{code}} {{pwa_url}}")
    assert plain.render("1234", {}) == "1234 {{pwa_url}}"
    given = emulator.add_template("pwa", content="{{code}} {{pwa_url}}", pwa_url="https://a/b")
    assert given.render("1234", {}) == "1234 https://a/b"
    assert given.render("1234", {"pwa_url": "https://c"}) == "1234 https://c"


@pytest.mark.parametrize("code", ["", "   "])
def test_custom_messages_with_an_empty_params_code_is_3002(
    api: httpx.Client, otp_server: OTPServer, code: str
) -> None:
    body = {"to": PHONE, "template": {"id": "login", "params": {"code": code}}}
    assert error(api.post("/v1/custom-messages", json=body)) == (
        400,
        3002,
        "template.params.code must not be empty: 'login' is a verification-code template",
    )
    otp_server.assert_not_sent()


def test_custom_messages_journals_the_code_the_caller_sent(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    body = {"to": PHONE, "template": {"id": "login", "params": {"code": "4242"}}}
    assert api.post("/v1/custom-messages", json=body).status_code == 200
    assert otp_server.assert_sent_once().code == "4242"
    assert otp_server.last_code(PHONE) == "4242"


# -------------------------------------------------------------------- as a suite configures it


def test_ini_options_hold_templates_for_review_and_check_numbers_strictly(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        "[pytest]\nengagelab_template_review = manual\nengagelab_phone_validation = strict\n"
    )
    pytester.makepyfile(
        test_suite="""
        import httpx

        DEFINITION = {
            "template_id": "signup",
            "send_channel_strategy": "sms",
            "verify_code_config": {
                "verify_code_type": 1, "verify_code_len": 6, "verify_code_ttl": 5
            },
            "sms_config": {"template_type": 1},
        }

        def test_held(otp_server):
            auth = (otp_server.dev_key, otp_server.dev_secret)
            with httpx.Client(base_url=otp_server.url, auth=auth) as api:
                assert api.post("/v1/template-configs", json=DEFINITION).status_code == 200
                assert api.get("/v1/template-configs/signup").json()["status"] == 1
                body = {"to": "+6511234567", "template": {"id": "login"}}
                assert api.post("/v1/messages", json=body).json()["code"] == 5011
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_wrong_review_setting_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nengagelab_template_review = later\n")
    pytester.makepyfile(test_x="def test_x(otp_mock): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-engagelab: ini option engagelab_template_review = 'later': "
            "template_review must be 'auto' or 'manual', not 'later'"
        ]
    )
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.engagelab(template_review="later")
        def test_x(otp_mock): pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.engagelab: template_review must be 'auto' or 'manual', not 'later'"]
    )


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/template-configs/signup", "GET, DELETE"),
        ("PATCH", "/v1/template-configs", "GET, POST"),
        ("GET", "/v1/messages", "POST"),
    ],
)
def test_a_method_no_document_lists_is_405_naming_the_allowed_ones(
    api: httpx.Client, otp_mock: Any, method: str, path: str, allow: str
) -> None:
    """template.json documents no update: PUT is as unknown as any other method."""
    expected = {"code": 3002, "message": f"{method} {path}: use {allow.replace(', ', ' or ')}"}
    with httpx.Client(base_url="https://otp.api.engagelab.cc") as in_process:
        for client in (api, in_process):  # otp_server, then otp_mock
            answer = client.request(method, path)
            assert (answer.status_code, answer.headers["allow"]) == (405, allow)
            assert answer.json() == expected


def test_an_email_template_answers_in_the_language_the_send_asks_for(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    """template.json: "Different template content can be matched according to the
    language parameter during message delivery"."""

    def config(language: str, content: str) -> dict[str, str]:
        return {
            "language": language,
            "pre_from_mail": "no-reply@acme.example",
            "pre_subject": "Code",
            "template_content": content,
        }

    definition = {
        "template_id": "mail",
        "send_channel_strategy": "email",
        "verify_code_config": CODE_CONFIG,
        "email_config": {
            "template_name": "otp-mail",
            "template_custom_configs": [
                config("default", "Code {{code}}"),
                config("zh_CN", "验证码 {{code}}"),
            ],
        },
    }
    assert create(api, definition).status_code == 200
    for to, language in (("a@acme.example", "zh_CN"), ("b@acme.example", "ja")):
        body = {"to": to, "template": {"id": "mail", "language": language}}
        assert api.post("/v1/messages", json=body).status_code == 200
    chinese, japanese = otp_server.sent
    assert chinese.text == f"验证码 {chinese.code}"
    assert japanese.text == f"Code {japanese.code}"  # no ja content: the default one
