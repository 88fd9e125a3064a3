"""EngageLab callbacks (webhooks): signed requests to test the handler that receives them.

EngageLab POSTs ``{"total": n, "rows": [...]}`` to the callback URL configured
in its console, signed with an ``X-CALLBACK-ID`` header::

    X-CALLBACK-ID: timestamp=<ts>;nonce=<n>;username=<u>;signature=<hex>

where ``signature`` is the hex HMAC-SHA256 of ``f"{ts}{nonce}{username}"`` keyed
with the callback secret.  This module builds such requests (rows for every
message status, notification, uplink message and system event; a valid
signature or a deliberately broken one), checks signatures the way a handler
should (:func:`verify_callback_signature`), and runs the URL check EngageLab
makes when a callback URL is configured (:func:`check_callback_url`).

The emulator behind ``otp_mock`` and ``otp_server`` sends the same rows for
what happens to its messages: see ``configure_callbacks()`` and
``deliver_callbacks()`` on those fixtures.

>>> request = callback_request(
...     message_status_row("delivered", message_id="1", to="+6591234567"),
...     username="hooks", secret="s3cret", timestamp=1735689600, nonce="abc",
... )
>>> request.json()["total"]
1
>>> verify_callback_signature(
...     request.headers["X-CALLBACK-ID"], username="hooks", secret="s3cret", now=1735689600
... ).nonce
'abc'

Why this module is long: it is the public callback API, and each row builder
mirrors one documented callback shape; splitting it would split one page of
EngageLab's documentation across modules users have to know.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from pytest_engagelab.emulator.defaults import DEFAULT_BUSINESS_ID
from pytest_engagelab.emulator.journal import SentMessage
from pytest_engagelab.emulator.model import EmulatorEvent
from pytest_engagelab.errors import ErrorCode
from pytest_engagelab.magic import DELIVERY_ERROR_NUMBERS

__all__ = [
    "CALLBACK_HEADER",
    "DEFAULT_BUSINESS_ID",
    "DEFAULT_PRICES",
    "MESSAGE_STATUSES",
    "NOTIFICATION_EVENTS",
    "SERVER",
    "SYSTEM_EVENTS",
    "UPLINK_EVENTS",
    "URL_CHECK_TIMEOUT",
    "BrokenSignature",
    "CallbackDelivery",
    "CallbackDeliveryError",
    "CallbackRequest",
    "CallbackSignature",
    "CallbackSignatureError",
    "CallbackUrlCheck",
    "MessageStatus",
    "callback_body",
    "callback_request",
    "check_callback_url",
    "message_status_row",
    "notification_row",
    "rows_for_event",
    "sign_callback",
    "system_event_row",
    "uplink_row",
    "verify_callback_signature",
]

#: The header that carries the signature.
CALLBACK_HEADER: Final = "X-CALLBACK-ID"
#: EngageLab's URL check: a POST of ``{}`` must get HTTP 200 within this many seconds.
URL_CHECK_TIMEOUT: Final = 3.0
#: The ``server`` field of every row.
SERVER: Final = "otp"
#: What ``billing.cost`` (USD) says per channel on a ``sent`` row.  EngageLab documents
#: no prices: these are made-up placeholders; pass ``prices=`` to change them.
DEFAULT_PRICES: Final[Mapping[str, float]] = MappingProxyType(
    {"sms": 0.005, "whatsapp": 0.004, "voice": 0.02, "email": 0.0005}
)

MessageStatus = Literal[
    "plan",
    "target_valid",
    "target_invalid",
    "sent",
    "sent_failed",
    "sent_fail",
    "delivered",
    "delivered_failed",
    "verified",
    "verified_failed",
    "verified_timeout",
]
#: Every documented ``message_status`` (``sent_fail`` is the spelling of one doc example).
MESSAGE_STATUSES: Final[tuple[str, ...]] = get_args(MessageStatus)
#: ``notification.event`` values.
NOTIFICATION_EVENTS: Final = (
    "insufficient_verification_rate",
    "insufficient_balance",
    "template_audit_result",
)
#: ``response.event`` values (uplink messages).
UPLINK_EVENTS: Final = ("uplink_message",)
#: ``system_event.event`` values.
SYSTEM_EVENTS: Final = (
    "account_login",
    "key_manage",
    "msg_history",
    "template_manage",
    "api_call",
)

#: How :func:`callback_request` can break a signature on purpose.
BrokenSignature = Literal[
    "wrong_secret", "wrong_username", "stale_timestamp", "malformed_header", "missing_header"
]
_BROKEN: Final[tuple[str, ...]] = get_args(BrokenSignature)
_STALE_BY: Final = 3600

#: When a WhatsApp delivery fails and falls back, its ``delivered_failed`` row says this.
FALLBACK_ERROR: Final = ErrorCode.TARGET_UNREACHABLE
#: Delivery errors found while checking the target: ``target_invalid``; the other delivery
#: errors are ``target_valid`` then ``sent_failed``.
TARGET_INVALID_ERRORS: Final = frozenset(
    {
        ErrorCode.INVALID_PHONE_NUMBER,
        ErrorCode.BLACKLISTED,
        ErrorCode.CHINA_MAINLAND_FORBIDDEN,
        ErrorCode.UNSUBSCRIBED,
        ErrorCode.NUMBER_NOT_REGISTERED,
    }
)
_DELIVERY_ERRORS: Final = frozenset(DELIVERY_ERROR_NUMBERS.values())


# -- signatures ----------------------------------------------------------------------------


class CallbackSignatureError(ValueError):
    """An ``X-CALLBACK-ID`` header is missing, malformed, stale, or signed with another key."""


@dataclass(frozen=True)
class CallbackSignature:
    """The parts of a valid ``X-CALLBACK-ID`` header."""

    timestamp: int
    nonce: str
    username: str
    signature: str


def _hmac(secret: str, timestamp: str, nonce: str, username: str) -> str:
    message = f"{timestamp}{nonce}{username}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _signed_with(secret: str, parts: dict[str, str]) -> bool:
    """Whether ``parts["signature"]`` was made with ``secret`` (constant-time); the
    expected signature lives only in this hidden frame."""
    __tracebackhide__ = True
    expected = _hmac(secret, parts["timestamp"], parts["nonce"], parts["username"])
    return hmac.compare_digest(expected.encode(), parts["signature"].encode())


def sign_callback(*, username: str, secret: str, timestamp: int, nonce: str) -> str:
    """The ``X-CALLBACK-ID`` value EngageLab sends for these parts."""
    if not username or not secret:
        raise ValueError("sign_callback needs a non-empty username and secret")
    signature = _hmac(secret, str(timestamp), nonce, username)
    return f"timestamp={timestamp};nonce={nonce};username={username};signature={signature}"


def verify_callback_signature(
    header: str | None,
    *,
    username: str,
    secret: str,
    now: float | None = None,
    tolerance: int = 300,
) -> CallbackSignature:
    """Check an ``X-CALLBACK-ID`` header as a handler should; return its parts.

    Raises :class:`CallbackSignatureError` saying why when the header is missing
    or malformed, names another username, carries a timestamp more than
    ``tolerance`` seconds from ``now`` (default: the wall clock), or its
    signature was not made with ``secret``.  The comparison is constant-time.

    An empty ``secret`` raises ``ValueError`` (as :func:`sign_callback` does): a
    handler whose secret comes from an unset variable must not accept headers
    anyone can sign.  Under pytest this frame is hidden from tracebacks, so ``-l``
    never shows the secret or the signature it expects.
    """
    __tracebackhide__ = True
    if not isinstance(secret, str) or not secret:
        raise ValueError(
            "verify_callback_signature needs a non-empty secret; an empty one would accept "
            "headers anyone can sign (is the variable holding it unset?)"
        )
    if not header:
        raise CallbackSignatureError(f"missing {CALLBACK_HEADER} header")
    parts: dict[str, str] = {}
    for segment in header.split(";"):
        key, sep, value = segment.partition("=")
        if sep:
            parts[key.strip()] = value.strip()
    missing = [k for k in ("timestamp", "nonce", "username", "signature") if not parts.get(k)]
    if missing:
        raise CallbackSignatureError(
            f"malformed {CALLBACK_HEADER} header: no {', '.join(missing)}; expected "
            "timestamp=<ts>;nonce=<n>;username=<u>;signature=<hex>"
        )
    if not hmac.compare_digest(parts["username"].encode(), username.encode()):
        raise CallbackSignatureError(
            f"username mismatch: the header names {parts['username']!r}, expected {username!r}"
        )
    try:
        timestamp = int(parts["timestamp"])
    except ValueError:
        raise CallbackSignatureError(
            f"invalid timestamp {parts['timestamp']!r}: expected whole seconds since the epoch"
        ) from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise CallbackSignatureError(
            f"stale timestamp: {timestamp} is {abs(current - timestamp):.0f}s from now "
            f"(tolerance {tolerance}s)"
        )
    if not _signed_with(secret, parts):
        raise CallbackSignatureError("signature mismatch: not signed with this secret")
    return CallbackSignature(timestamp, parts["nonce"], parts["username"], parts["signature"])


# -- rows --------------------------------------------------------------------------------


def _check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; use one of: {', '.join(allowed)}")


def message_status_row(
    status: MessageStatus | str,
    *,
    message_id: str,
    to: str,
    channel: str = "sms",
    itime: int | None = None,
    msg_time: int | None = None,
    template_key: str = "",
    business_id: str = DEFAULT_BUSINESS_ID,
    current_send_channel: str | None = None,
    billing: Mapping[str, Any] | None = None,
    error_code: int = 0,
    error_message: str | None = None,
    custom_args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A message-status row in the documented shape.

    ``itime`` (when the status happened) and ``msg_time`` (when the message was
    sent) default to now, in whole seconds; ``current_send_channel`` defaults to
    ``channel``.  ``billing`` is normally given only on ``sent``
    (``{"cost": 0.005, "currency": "USD"}``); ``error_code`` 0 means no error and
    ``error_message`` becomes ``error_detail.message``.
    """
    _check_choice("message status", status, MESSAGE_STATUSES)
    now = int(time.time())
    row: dict[str, Any] = {
        "message_id": message_id,
        "to": to,
        "server": SERVER,
        "channel": channel,
        "itime": now if itime is None else itime,
    }
    if custom_args is not None:
        row["custom_args"] = dict(custom_args)
    state: dict[str, Any] = {
        "message_status": status,
        "status_data": {
            "msg_time": row["itime"] if msg_time is None else msg_time,
            "message_id": message_id,
            "current_send_channel": channel
            if current_send_channel is None
            else current_send_channel,
            "template_key": template_key,
            "business_id": business_id,
        },
    }
    if billing is not None:
        state["billing"] = dict(billing)
    state["error_code"] = int(error_code)
    if error_message is not None:
        state["error_detail"] = {"message": error_message}
    row["status"] = state
    return row


def notification_row(
    event: str,
    data: Mapping[str, Any] | None = None,
    *,
    itime: int | None = None,
) -> dict[str, Any]:
    """A notification row: ``insufficient_verification_rate``, ``insufficient_balance``
    or ``template_audit_result``, with its ``notification_data``."""
    _check_choice("notification event", event, NOTIFICATION_EVENTS)
    return {
        "server": SERVER,
        "itime": int(time.time()) if itime is None else itime,
        "notification": {"event": event, "notification_data": dict(data or {})},
    }


def uplink_row(
    *,
    from_: str,
    to: str,
    body: str,
    message_id: str = "",
    business_id: str = DEFAULT_BUSINESS_ID,
    message_sid: str = "",
    account_sid: str = "",
    itime: int | None = None,
) -> dict[str, Any]:
    """An uplink row: a user's reply (``response.event`` is ``uplink_message``)."""
    return {
        "message_id": message_id,
        "business_id": business_id,
        "server": SERVER,
        "itime": int(time.time()) if itime is None else itime,
        "response": {
            "event": UPLINK_EVENTS[0],
            "response_data": {
                "message_sid": message_sid,
                "account_sid": account_sid,
                "from": from_,
                "to": to,
                "body": body,
            },
        },
    }


def system_event_row(
    event: str,
    data: Mapping[str, Any] | None = None,
    *,
    business_id: str = DEFAULT_BUSINESS_ID,
    org_id: str = "",
    operator: Mapping[str, Any] | None = None,
    itime: int | None = None,
) -> dict[str, Any]:
    """A system-event row (``account_login``, ``key_manage``, ``msg_history``,
    ``template_manage``, ``api_call``); ``data`` adds to ``business_id``, ``org_id``
    and ``operator``."""
    _check_choice("system event", event, SYSTEM_EVENTS)
    payload: dict[str, Any] = {
        "business_id": business_id,
        "org_id": org_id,
        "operator": dict(operator or {}),
    }
    payload.update(data or {})
    return {
        "server": SERVER,
        "itime": int(time.time()) if itime is None else itime,
        "system_event": {"event": event, "data": payload},
    }


def callback_body(rows: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """``{"total": len(rows), "rows": rows}``."""
    return {"total": len(rows), "rows": list(rows)}


# -- requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackRequest:
    """A callback as EngageLab POSTs it: headers and JSON body bytes."""

    headers: dict[str, str] = field(repr=False)
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def encode_body(rows: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> bytes:
    return json.dumps(callback_body(rows), separators=(",", ":"), ensure_ascii=False).encode()


def _broken_header(
    broken: str, *, username: str, secret: str, timestamp: int, nonce: str
) -> str | None:
    if broken == "wrong_secret":
        return sign_callback(
            username=username, secret=secret + "-wrong", timestamp=timestamp, nonce=nonce
        )
    if broken == "wrong_username":
        return sign_callback(
            username=username + "-wrong", secret=secret, timestamp=timestamp, nonce=nonce
        )
    if broken == "stale_timestamp":
        return sign_callback(
            username=username, secret=secret, timestamp=timestamp - _STALE_BY, nonce=nonce
        )
    if broken == "malformed_header":
        good = sign_callback(username=username, secret=secret, timestamp=timestamp, nonce=nonce)
        return good.replace(";", ",").replace("signature=", "sig:")
    return None  # missing_header


def callback_request(
    *rows: dict[str, Any],
    username: str | None = None,
    secret: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
    authorization: str | None = None,
    broken: BrokenSignature | None = None,
) -> CallbackRequest:
    """A callback request carrying ``rows``, signed when ``username`` and ``secret`` are given.

    ``timestamp`` defaults to now and ``nonce`` to a random one.  ``broken``
    spoils the signature on purpose: ``"wrong_secret"``, ``"wrong_username"``,
    ``"stale_timestamp"`` (an hour old), ``"malformed_header"`` or
    ``"missing_header"``.  ``authorization`` is sent as the ``Authorization``
    header, as EngageLab passes a configured one through.
    """
    if (username is None) != (secret is None):
        raise ValueError("callback_request: give both username and secret to sign, or neither")
    if broken is not None:
        _check_choice("broken signature", broken, _BROKEN)
        if username is None:
            raise ValueError("callback_request: broken= needs username and secret")
    headers = {"Content-Type": "application/json"}
    if username is not None and secret is not None:
        ts = int(time.time()) if timestamp is None else timestamp
        once = secrets.token_hex(8) if nonce is None else nonce
        value: str | None
        if broken is None:
            value = sign_callback(username=username, secret=secret, timestamp=ts, nonce=once)
        else:
            value = _broken_header(
                broken, username=username, secret=secret, timestamp=ts, nonce=once
            )
        if value is not None:
            headers[CALLBACK_HEADER] = value
    if authorization is not None:
        headers["Authorization"] = authorization
    return CallbackRequest(headers, encode_body(rows))


# -- the emulator's events as rows ----------------------------------------------------------


def _billing(channel: str, prices: Mapping[str, float]) -> dict[str, Any]:
    return {"cost": prices.get(channel, 0.0), "currency": "USD"}


def rows_for_event(
    event: EmulatorEvent,
    *,
    business_id: str = DEFAULT_BUSINESS_ID,
    prices: Mapping[str, float] = DEFAULT_PRICES,
    channel: str = "sms",
    message_id: Callable[[], str] | None = None,
) -> list[dict[str, Any]]:
    """The rows EngageLab would send for one emulator event, in order.

    * ``sent``: ``plan``, ``target_valid``, ``sent`` (with billing), ``delivered``;
      for each channel that failed first (the WhatsApp fallback number), that
      channel's ``sent`` and ``delivered_failed`` (error 5012), then the next
      channel's ``sent`` and ``delivered`` (``current_send_channel`` changes);
    * ``verified``: ``verified``; ``verify_failed`` (a wrong code):
      ``verified_failed``; ``expired``: ``verified_timeout``;
    * ``template_audit`` (a template's review ended): a ``template_audit_result``
      notification with ``business_id``, ``template_id``, ``status`` and ``audit_remark``;
    * ``send_failed`` with a delivery error (5001, 5011-5020): ``plan`` then
      ``target_invalid`` (5011, 5013, 5017, 5019, 5020) or ``target_valid`` and
      ``sent_failed`` (the others), carrying the code and its message.  Such a send
      got no message id from the API; ``message_id()`` makes one, and ``channel``
      is the channel it would have used.  Other failures send nothing.
    """
    at = int(event.at)
    if event.kind == "template_audit":
        # EngageLab names the event but documents no notification_data for it: ours
        # carries the business id, the template id, its status and audit_remark.
        data = {"business_id": business_id, **(event.detail or {})}
        return [notification_row("template_audit_result", data, itime=at)]
    message = event.message

    def row(
        status: str, channel: str, msg: SentMessage | None, msg_id: str, **extra: Any
    ) -> dict[str, Any]:
        return message_status_row(
            status,
            message_id=msg_id,
            to=event.to,
            channel=channel,
            itime=at,
            msg_time=at if msg is None else int(msg.sent_at),
            template_key=event.template_id,
            business_id=business_id,
            **extra,
        )

    if message is None:
        error = event.error
        if event.kind != "send_failed" or error not in _DELIVERY_ERRORS or error is None:
            return []
        msg_id = message_id() if message_id is not None else ""
        detail = {"error_code": int(error), "error_message": event.error_message}
        if error in TARGET_INVALID_ERRORS:
            return [
                row("plan", channel, None, msg_id),
                row("target_invalid", channel, None, msg_id, **detail),
            ]
        return [
            row("plan", channel, None, msg_id),
            row("target_valid", channel, None, msg_id),
            row("sent_failed", channel, None, msg_id, **detail),
        ]
    mid = message.message_id
    final = message.delivery_channel or message.send_channel
    if event.kind == "sent":
        first = message.send_channel
        rows = [row("plan", first, message, mid), row("target_valid", first, message, mid)]
        for failed in message.failed_channels:
            rows.append(row("sent", failed, message, mid, billing=_billing(failed, prices)))
            rows.append(
                row(
                    "delivered_failed",
                    failed,
                    message,
                    mid,
                    error_code=int(FALLBACK_ERROR),
                    error_message=f"{failed} delivery failed ({FALLBACK_ERROR.default_message}); "
                    f"falling back to {final}",
                )
            )
        rows.append(row("sent", final, message, mid, billing=_billing(final, prices)))
        rows.append(row("delivered", final, message, mid))
        return rows
    status = {
        "verified": "verified",
        "verify_failed": "verified_failed",
        "expired": "verified_timeout",
    }[event.kind]
    extra: dict[str, Any] = {}
    if event.kind == "verify_failed":
        extra["error_message"] = "wrong verification code"
    elif event.kind == "expired":
        extra["error_message"] = "the code expired unverified"
    return [row(status, final, message, mid, **extra)]


# -- delivery results ---------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackDelivery:
    """One callback POST the emulator made, and how the handler answered.

    ``status`` is the HTTP status of the last attempt (``None`` when it got no
    answer: a timeout, a refused connection, an app that raised; ``error`` says
    which); ``attempts`` counts the tries (1 + retries used).
    """

    url: str
    rows: tuple[dict[str, Any], ...]
    status: int | None
    attempts: int
    error: str | None = None
    answer: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        """Whether the handler answered 2xx in time."""
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def statuses(self) -> list[str]:
        """The ``message_status`` of each message-status row, in order."""
        return [r["status"]["message_status"] for r in self.rows if "status" in r]

    def describe(self) -> str:
        """One line for failure messages."""
        what = ", ".join(
            f"{r['status']['message_status']} {r.get('message_id', '')}".strip()
            for r in self.rows
            if "status" in r
        )
        outcome = f"HTTP {self.status}" if self.status is not None else "no answer"
        if self.error:
            outcome += f" ({self.error})"
        if self.answer:
            outcome += f": {self.answer}"
        tries = "attempt" if self.attempts == 1 else "attempts"
        return f"POST {self.url} [{what}] -> {outcome} after {self.attempts} {tries}"


class CallbackDeliveryError(AssertionError):
    """The handler answered a callback with a non-2xx status, timed out, or was unreachable."""

    def __init__(self, deliveries: list[CallbackDelivery]) -> None:
        failed = [d for d in deliveries if not d.ok]
        lines = [
            f"deliver_callbacks: {len(failed)} of {len(deliveries)} callback request(s) failed:"
        ]
        lines.extend(f"  {d.describe()}" for d in failed)
        lines.append(
            "Fix the handler, raise retries= in configure_callbacks(), or pass "
            "raise_on_error=False to inspect the answers."
        )
        super().__init__("\n".join(lines))
        self.deliveries = deliveries
        self.failed = failed


# -- the URL check --------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackUrlCheck:
    """The outcome of EngageLab's URL check; ``passed`` is what matters, ``reason`` says why."""

    passed: bool
    status: int | None
    elapsed: float
    reason: str


def check_callback_url(
    url: str | None = None,
    *,
    app: Any = None,
    timeout: float = URL_CHECK_TIMEOUT,
    authorization: str | None = None,
) -> CallbackUrlCheck:
    """Make the check EngageLab makes when a callback URL is configured.

    POSTs ``{}`` to ``url`` (over real HTTP), or to ``app`` in-process (an ASGI
    or WSGI app; ``url`` is then the path or full URL to call, default ``/``).
    It passes when the answer is HTTP 200 within ``timeout`` seconds (3 by
    default, as EngageLab requires).  Call it where no event loop is running.
    """
    from pytest_engagelab.doors.transport import post, resolve_target

    target = resolve_target(url, app, timeout)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    answer = post(target, headers, b"{}")
    if answer.error is not None:
        reason = f"POST {target.url}: {answer.error}"
    elif answer.status != 200:
        reason = f"POST {target.url} answered HTTP {answer.status}, not 200"
    else:
        reason = f"POST {target.url} answered HTTP 200 in {answer.elapsed:.3f}s"
    passed = answer.error is None and answer.status == 200
    return CallbackUrlCheck(passed, answer.status, answer.elapsed, reason)
