"""The payload builders and the signature check of ``pytest_engagelab.callbacks``.

The official SDK (``engagelab_otp.WebhookVerifier``) is the referee: it must
accept what the builders sign and reject every deliberately broken variant, and
its ``parse_events`` must read every row the builders make.
"""

from __future__ import annotations

import doctest
import hashlib
import hmac
import time
from typing import Any

import pytest
from engagelab_otp import (
    MessageStatusEvent,
    NotificationEvent,
    SystemEvent,
    UplinkEvent,
    WebhookSignatureError,
    WebhookVerifier,
)

from pytest_engagelab import callbacks
from pytest_engagelab.callbacks import (
    CALLBACK_HEADER,
    DEFAULT_BUSINESS_ID,
    MESSAGE_STATUSES,
    BrokenSignature,
    CallbackSignatureError,
    callback_body,
    callback_request,
    message_status_row,
    notification_row,
    sign_callback,
    system_event_row,
    uplink_row,
    verify_callback_signature,
)

USER = "hooks-user"
SECRET = "hooks-secret-4711"
NOW = 1_764_000_000


def _row(status: str = "delivered", **extra: Any) -> dict[str, Any]:
    return message_status_row(status, message_id="1725407449772531712", to="+6591234567", **extra)


# -- signatures ------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_nonce_username() -> None:
    header = sign_callback(username=USER, secret=SECRET, timestamp=NOW, nonce="n0nce")
    expected = hmac.new(SECRET.encode(), f"{NOW}n0nce{USER}".encode(), hashlib.sha256).hexdigest()
    assert header == f"timestamp={NOW};nonce=n0nce;username={USER};signature={expected}"


def test_sdk_accepts_a_signed_request_and_parses_its_body() -> None:
    request = callback_request(_row("sent"), _row("delivered"), username=USER, secret=SECRET)
    verifier = WebhookVerifier(USER, SECRET)
    assert verifier.verify(request.headers[CALLBACK_HEADER]) is True
    assert request.headers["Content-Type"] == "application/json"
    events = verifier.parse_events(request.body)
    assert [e.status for e in events if isinstance(e, MessageStatusEvent)] == ["sent", "delivered"]
    assert request.json()["total"] == 2


BROKEN: list[tuple[BrokenSignature, str, str]] = [
    ("wrong_secret", "signature mismatch", "signature mismatch"),
    ("wrong_username", "username mismatch", "username mismatch"),
    ("stale_timestamp", "timestamp outside tolerance window", "stale timestamp"),
    ("malformed_header", "malformed X-CALLBACK-ID header", "malformed X-CALLBACK-ID"),
    ("missing_header", "missing X-CALLBACK-ID header", "missing X-CALLBACK-ID"),
]


@pytest.mark.parametrize(("broken", "sdk_says", "we_say"), BROKEN)
def test_broken_signatures_are_rejected_by_the_sdk_and_by_us(
    broken: BrokenSignature, sdk_says: str, we_say: str
) -> None:
    request = callback_request(_row(), username=USER, secret=SECRET, broken=broken)
    header = request.headers.get(CALLBACK_HEADER, "")
    assert (header == "") is (broken == "missing_header")
    with pytest.raises(WebhookSignatureError, match=sdk_says):
        WebhookVerifier(USER, SECRET).verify(header)
    with pytest.raises(CallbackSignatureError, match=we_say):
        verify_callback_signature(header, username=USER, secret=SECRET)


def test_verify_returns_the_parts_of_a_good_header() -> None:
    header = sign_callback(username=USER, secret=SECRET, timestamp=NOW, nonce="abc")
    parsed = verify_callback_signature(header, username=USER, secret=SECRET, now=NOW + 10)
    assert (parsed.timestamp, parsed.nonce, parsed.username) == (NOW, "abc", USER)


def test_tolerance_is_inclusive_and_configurable() -> None:
    header = sign_callback(username=USER, secret=SECRET, timestamp=NOW, nonce="abc")
    verify_callback_signature(header, username=USER, secret=SECRET, now=NOW - 300)
    with pytest.raises(CallbackSignatureError, match=r"301s from now \(tolerance 300s\)"):
        verify_callback_signature(header, username=USER, secret=SECRET, now=NOW + 301)
    verify_callback_signature(header, username=USER, secret=SECRET, now=NOW + 900, tolerance=900)


def test_verify_names_what_is_missing_and_a_bad_timestamp() -> None:
    with pytest.raises(CallbackSignatureError, match="no nonce, signature"):
        verify_callback_signature(f"timestamp={NOW};username={USER}", username=USER, secret=SECRET)
    with pytest.raises(CallbackSignatureError, match="invalid timestamp 'soon'"):
        verify_callback_signature(
            f"timestamp=soon;nonce=a;username={USER};signature=00", username=USER, secret=SECRET
        )


def test_failure_messages_never_show_the_secret() -> None:
    request = callback_request(_row(), username=USER, secret=SECRET, broken="wrong_secret")
    with pytest.raises(CallbackSignatureError) as caught:
        verify_callback_signature(request.headers[CALLBACK_HEADER], username=USER, secret=SECRET)
    assert SECRET not in str(caught.value)


def test_unsigned_request_and_authorization_passthrough() -> None:
    request = callback_request(_row(), authorization="Bearer hook-token")
    assert CALLBACK_HEADER not in request.headers
    assert request.headers["Authorization"] == "Bearer hook-token"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"username": USER}, "give both username and secret"),
        ({"broken": "wrong_secret"}, "broken= needs username and secret"),
        ({"username": USER, "secret": SECRET, "broken": "bent"}, "unknown broken signature"),
    ],
)
def test_callback_request_misuse_is_explained(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        callback_request(_row(), **kwargs)


# -- rows --------------------------------------------------------------------------------


def test_message_status_row_has_the_documented_shape() -> None:
    row = _row(
        "sent",
        channel="whatsapp",
        itime=NOW,
        msg_time=NOW - 5,
        template_key="login",
        billing={"cost": 0.004, "currency": "USD"},
        custom_args={"order": "42"},
    )
    assert row == {
        "message_id": "1725407449772531712",
        "to": "+6591234567",
        "server": "otp",
        "channel": "whatsapp",
        "itime": NOW,
        "custom_args": {"order": "42"},
        "status": {
            "message_status": "sent",
            "status_data": {
                "msg_time": NOW - 5,
                "message_id": "1725407449772531712",
                "current_send_channel": "whatsapp",
                "template_key": "login",
                "business_id": DEFAULT_BUSINESS_ID,
            },
            "billing": {"cost": 0.004, "currency": "USD"},
            "error_code": 0,
        },
    }


@pytest.mark.parametrize("status", MESSAGE_STATUSES)
def test_sdk_parses_every_message_status(status: str) -> None:
    row = _row(status, itime=NOW, error_code=5012, error_message="target unreachable")
    (event,) = WebhookVerifier(USER, SECRET).parse_events(callback_body([row]))
    assert isinstance(event, MessageStatusEvent)
    assert (event.status, event.timestamp, event.error_code) == (status, NOW, 5012)
    assert event.error_message == "target unreachable"
    assert event.is_terminal is (status not in ("plan", "target_valid", "sent"))


def test_sdk_parses_notification_uplink_and_system_rows() -> None:
    rows = [
        notification_row("insufficient_balance", {"balance": "0.10"}, itime=NOW),
        uplink_row(from_="+6591234567", to="+6580000000", body="STOP", message_id="9"),
        system_event_row("key_manage", {"action": "disable"}, org_id="org-1"),
    ]
    notification, uplink, system = WebhookVerifier(USER, SECRET).parse_events(callback_body(rows))
    assert isinstance(notification, NotificationEvent)
    assert (notification.event, notification.data) == ("insufficient_balance", {"balance": "0.10"})
    assert notification.timestamp == NOW
    assert isinstance(uplink, UplinkEvent)
    assert (uplink.event, uplink.message_id) == ("uplink_message", "9")
    assert uplink.data["body"] == "STOP"
    assert uplink.data["from"] == "+6591234567"
    assert isinstance(system, SystemEvent)
    assert system.event == "key_manage"
    assert system.data == {
        "business_id": DEFAULT_BUSINESS_ID,
        "org_id": "org-1",
        "operator": {},
        "action": "disable",
    }
    assert abs(system.timestamp - time.time()) < 60


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: _row("delivred"), "unknown message status 'delivred'; use one of: plan,"),
        (lambda: notification_row("low_balance"), "unknown notification event 'low_balance'"),
        (lambda: system_event_row("login"), "unknown system event 'login'"),
    ],
)
def test_unknown_statuses_and_events_are_refused(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_the_module_example_holds() -> None:
    failed, attempted = doctest.testmod(callbacks)
    assert (failed, attempted > 0) == (0, True)
