"""Re-record the reference cassettes in ``cassettes/`` against the real EngageLab endpoint.

Skipped unless ``ENGAGELAB_DEV_KEY`` and ``ENGAGELAB_DEV_SECRET`` are set.  The
one command (README, "Re-recording the reference cassettes")::

    ENGAGELAB_DEV_KEY=... ENGAGELAB_DEV_SECRET=... \\
    ENGAGELAB_LIVE_TO=+65XXXXXXXX ENGAGELAB_LIVE_TEMPLATE=your-template \\
    pytest tests/live -m live --engagelab-record-mode=rewrite -o engagelab_redact_recipients=true

``ENGAGELAB_LIVE_TO`` is a phone number you own (it gets one real OTP);
``ENGAGELAB_LIVE_TEMPLATE`` an approved OTP template.  Optional:
``ENGAGELAB_LIVE_CODE_TEMPLATE`` (for ``/v1/codes``), ``ENGAGELAB_LIVE_CUSTOM_TEMPLATE``
(for ``/v1/custom-messages``), ``ENGAGELAB_LIVE_EMAIL`` and
``ENGAGELAB_LIVE_EMAIL_TEMPLATE`` (an e-mail send); the tests that need them are
skipped without them.  Each test asserts what the documentation says; a test that
fails writes nothing, so a failure here is EngageLab disagreeing with its
documentation.  Cassettes a real account cannot reproduce on demand (a
successful verify, 5001, 2002, 2004) stay as ``cassettes/_build_reference.py``
builds them.  Afterwards, ``pytest --engagelab-check-drift`` tells whether the
emulator still agrees.
"""

from __future__ import annotations

import os

import httpx
import pytest

from pytest_engagelab import OTPClient
from pytest_engagelab.cassettes.recorder import ActiveCassette
from pytest_engagelab.errors import EngageLabError

pytestmark = [
    pytest.mark.live,
    pytest.mark.engagelab_live,  # the guard lets these through to the real EngageLab
    pytest.mark.skipif(  # a string: evaluated when the test runs, not when imported
        "not (os.environ.get('ENGAGELAB_DEV_KEY') and os.environ.get('ENGAGELAB_DEV_SECRET'))",
        reason="live: set ENGAGELAB_DEV_KEY and ENGAGELAB_DEV_SECRET to re-record",
    ),
]

LIVE_TEMPLATE_ID = "pytest_engagelab_live"


def env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.skip(f"live: set {name} to record this cassette")
    return value


@pytest.fixture(autouse=True)
def _recipients_redacted(engagelab_cassette: ActiveCassette | None) -> None:
    """Reference cassettes are committed: never with a real phone number or address."""
    active = engagelab_cassette
    if active is not None and active.recording and not active.settings.redact_recipients:
        pytest.fail(
            "live: re-record the reference cassettes with -o engagelab_redact_recipients=true",
            pytrace=False,
        )


def raw(
    cassette: ActiveCassette,
    method: str,
    path: str,
    *,
    json: object = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    """A request the typed client would not send (wrong credentials, a body that is not JSON)."""
    c = cassette.credentials
    return httpx.request(
        method,
        c.base_url + path,
        json=json,
        content=content,
        headers=headers,
        auth=auth or (c.dev_key, c.dev_secret),
        timeout=30,
    )


def error_code(call: object) -> int:
    assert callable(call)
    with pytest.raises(EngageLabError) as raised:
        call()
    code = raised.value.code
    assert code is not None
    return int(code)


@pytest.mark.engagelab_cassette("messages/send_verify_limit")
def test_send_verify_and_frequency_limit(otp_client: OTPClient) -> None:
    to, template = env("ENGAGELAB_LIVE_TO"), env("ENGAGELAB_LIVE_TEMPLATE")
    sent = otp_client.send(to, template)
    assert sent.message_id.isdigit()
    assert sent.send_channel in {"whatsapp", "sms", "email", "voice"}
    assert otp_client.verify(sent.message_id, "000000").verified is False
    assert error_code(lambda: otp_client.send(to, template)) == 3004


@pytest.mark.engagelab_cassette("codes/send_code")
def test_send_code(otp_client: OTPClient) -> None:
    to, template = env("ENGAGELAB_LIVE_TO"), env("ENGAGELAB_LIVE_CODE_TEMPLATE")
    assert otp_client.send_code(to, "398210", template).message_id.isdigit()


@pytest.mark.engagelab_cassette("custom_messages/send")
def test_send_custom_message(otp_client: OTPClient) -> None:
    to, template = env("ENGAGELAB_LIVE_TO"), env("ENGAGELAB_LIVE_CUSTOM_TEMPLATE")
    sent = otp_client.send_custom_message(to, template, params={"code": "398210"})
    assert sent.message_id.isdigit()


@pytest.mark.engagelab_cassette("messages/send_email")
def test_send_email(otp_client: OTPClient) -> None:
    to, template = env("ENGAGELAB_LIVE_EMAIL"), env("ENGAGELAB_LIVE_EMAIL_TEMPLATE")
    assert otp_client.send(to, template).send_channel == "email"


@pytest.mark.engagelab_cassette("verifications/unknown_message")
def test_verify_unknown_message(otp_client: OTPClient) -> None:
    assert error_code(lambda: otp_client.verify("1725407449772531712", "667090")) == 4001


@pytest.mark.engagelab_cassette("errors/auth_failed")
def test_wrong_credentials(engagelab_cassette: ActiveCassette) -> None:
    body = {"to": "+6591234567", "template": {"id": "test-template-1"}}
    answer = raw(engagelab_cassette, "POST", "/v1/messages", json=body, auth=("wrong", "wrong"))
    assert (answer.status_code, answer.json()["code"]) == (401, 2001)


@pytest.mark.engagelab_cassette("errors/invalid_format")
def test_body_not_json(engagelab_cassette: ActiveCassette) -> None:
    answer = raw(
        engagelab_cassette,
        "POST",
        "/v1/messages",
        content=b"to=+6591234567",
        headers={"content-type": "application/json"},
    )
    assert (answer.status_code, answer.json()["code"]) == (400, 3001)


@pytest.mark.engagelab_cassette("errors/missing_template")
def test_missing_template(engagelab_cassette: ActiveCassette) -> None:
    answer = raw(engagelab_cassette, "POST", "/v1/messages", json={"to": "+6591234567"})
    assert (answer.status_code, answer.json()["code"]) == (400, 3002)


@pytest.mark.engagelab_cassette("errors/unknown_template")
def test_unknown_template(otp_client: OTPClient) -> None:
    to = env("ENGAGELAB_LIVE_TO")
    assert error_code(lambda: otp_client.send(to, "no-such-template-pytest-engagelab")) == 4001


@pytest.mark.engagelab_cassette("errors/invalid_phone_number")
def test_invalid_phone_number(engagelab_cassette: ActiveCassette) -> None:
    body = {"to": "12345", "template": {"id": env("ENGAGELAB_LIVE_TEMPLATE")}}
    answer = raw(engagelab_cassette, "POST", "/v1/messages", json=body)
    assert (answer.status_code, answer.json()["code"]) == (400, 5011)


@pytest.mark.engagelab_cassette("template_configs/lifecycle")
def test_template_config_lifecycle(engagelab_cassette: ActiveCassette) -> None:
    config = {
        "template_id": LIVE_TEMPLATE_ID,
        "description": "pytest-engagelab live re-recording; safe to delete",
        "send_channel_strategy": "sms",
        "brand_name": "EngageLab",
        "verify_code_config": {"verify_code_type": 1, "verify_code_len": 6, "verify_code_ttl": 5},
        "sms_config": {"template_type": 1},
    }
    item = f"/v1/template-configs/{LIVE_TEMPLATE_ID}"
    created = raw(engagelab_cassette, "POST", "/v1/template-configs", json=config)
    assert created.status_code == 200, created.text
    assert raw(engagelab_cassette, "GET", item).json()["template_id"] == LIVE_TEMPLATE_ID
    listed = raw(engagelab_cassette, "GET", "/v1/template-configs").json()
    assert LIVE_TEMPLATE_ID in [row["template_id"] for row in listed]
    assert raw(engagelab_cassette, "DELETE", item).status_code == 200
    gone = raw(engagelab_cassette, "DELETE", item)
    assert (gone.status_code, gone.json()["code"]) == (400, 4001)
