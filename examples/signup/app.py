"""Sign a user up with a one-time code sent to their phone by EngageLab.

This is application code, written the way a team using EngageLab would write it: a
plain ``httpx.Client`` and the documented endpoints, nothing from pytest-engagelab.
Every outcome becomes a :class:`Reply` whose ``text`` is what the user reads.

    service = SignupService(OTPConfig(dev_key="...", dev_secret="..."))
    service.request_code("+6591234567")       # "We sent a code to +6591234567 ..."
    service.confirm("+6591234567", "123456")   # "Welcome! Your number is confirmed."
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

log = logging.getLogger("signup")

#: EngageLab answers these when the number itself is wrong: ask the user to check it.
INVALID_NUMBER = frozenset({5011, 5020})
#: ...and these when the number is fine but cannot receive a code: ask for another one.
UNDELIVERABLE = frozenset({5012, 5013, 5015, 5017, 5018, 5019})
FREQUENCY_LIMITED = 3004
VALIDATION_FAILED = 3003


class Outcome(enum.Enum):
    CODE_SENT = "code sent"
    SIGNED_UP = "signed up"
    WRONG_CODE = "wrong code"
    TOO_MANY_ATTEMPTS = "too many attempts"
    CODE_EXPIRED = "code expired, new one sent"
    NO_CODE_REQUESTED = "no code requested"
    INVALID_NUMBER = "invalid number"
    UNDELIVERABLE = "undeliverable"
    WAIT = "wait"
    TRY_LATER = "try later"


@dataclass(frozen=True)
class Reply:
    """What happened, and the sentence the user sees."""

    outcome: Outcome
    text: str


TRY_LATER = Reply(Outcome.TRY_LATER, "We can't send codes right now. Please try again later.")


@dataclass(frozen=True)
class OTPConfig:
    """Where EngageLab is and how to talk to it."""

    dev_key: str
    dev_secret: str
    base_url: str = "https://otp.api.engagelab.cc"
    template_id: str = "signup-code"
    timeout: float = 5.0
    max_attempts: int = 3


class _Unavailable(Exception):
    """No usable answer from EngageLab."""


class _Refused(Exception):
    """EngageLab answered with a documented error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"code {code}: {message}")
        self.code = code


@dataclass
class _Pending:
    message_id: str
    wrong_codes: int = 0


class SignupService:
    """Sends a sign-up code to a phone number and checks the code the user types."""

    def __init__(self, config: OTPConfig) -> None:
        self.config = config
        self.users: set[str] = set()
        self._pending: dict[str, _Pending] = {}
        self._http = httpx.Client(
            base_url=config.base_url,
            auth=(config.dev_key, config.dev_secret),
            timeout=config.timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SignupService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the two steps a user takes ------------------------------------------------------

    def request_code(self, phone: str, *, language: str = "en") -> Reply:
        """Send a code to ``phone``."""
        template = {"id": self.config.template_id, "language": language}
        try:
            answer = self._post("/v1/messages", {"to": phone, "template": template})
        except _Refused as refused:
            return self._send_refused(phone, refused)
        except _Unavailable:
            return TRY_LATER
        self._pending[phone] = _Pending(answer["message_id"])
        if answer.get("send_channel") == "whatsapp":
            where = "on WhatsApp (or by text message if you don't use WhatsApp)"
        else:
            where = "by text message"
        return Reply(Outcome.CODE_SENT, f"We sent a code to {phone} {where}.")

    def confirm(self, phone: str, code: str) -> Reply:
        """Check the code the user typed; sign them up if it is right."""
        pending = self._pending.get(phone)
        if pending is None:
            return Reply(Outcome.NO_CODE_REQUESTED, "Please ask for a code first.")
        payload = {"message_id": pending.message_id, "verify_code": code}
        try:
            answer = self._post("/v1/verifications", payload)
        except _Refused as refused:
            if refused.code != VALIDATION_FAILED:
                log.error("EngageLab refused a verification: %s", refused)
                return TRY_LATER
            # 3003 on a pending code: its validity ran out.  Send a fresh one.
            del self._pending[phone]
            resent = self.request_code(phone)
            if resent.outcome is not Outcome.CODE_SENT:
                return resent
            return Reply(Outcome.CODE_EXPIRED, "That code has expired. We sent you a new one.")
        except _Unavailable:
            return TRY_LATER
        if answer.get("verified") is True:
            del self._pending[phone]
            self.users.add(phone)
            return Reply(Outcome.SIGNED_UP, "Welcome! Your number is confirmed.")
        pending.wrong_codes += 1
        left = self.config.max_attempts - pending.wrong_codes
        if left <= 0:
            del self._pending[phone]
            return Reply(Outcome.TOO_MANY_ATTEMPTS, "Too many wrong codes. Ask for a new code.")
        return Reply(Outcome.WRONG_CODE, f"That code is not right. You have {left} more tries.")

    # -- talking to EngageLab ----------------------------------------------------------------

    def _send_refused(self, phone: str, refused: _Refused) -> Reply:
        if refused.code in INVALID_NUMBER:
            return Reply(Outcome.INVALID_NUMBER, "That doesn't look like a mobile number.")
        if refused.code in UNDELIVERABLE:
            return Reply(
                Outcome.UNDELIVERABLE, "We can't send a code to this number. Try another one."
            )
        if refused.code == FREQUENCY_LIMITED:
            return Reply(Outcome.WAIT, "We sent you a code a moment ago. Wait before asking again.")
        log.error("EngageLab refused to send a code to %s: %s", phone, refused)
        return TRY_LATER

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self._post_once_or_twice(path, payload)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            log.warning("EngageLab answered %s to %s with no JSON", response.status_code, path)
            raise _Unavailable
        if response.status_code >= 500:
            log.warning("EngageLab failed on %s: %s", path, body)
            raise _Unavailable
        if response.is_error:
            raise _Refused(int(body.get("code", 0)), str(body.get("message", "")))
        return body

    def _post_once_or_twice(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        """POST, retrying once when the request never left (no connection was made).

        A timeout while waiting for the answer is not retried: EngageLab may already
        have sent the code, and a second request would text the user twice.
        """
        try:
            return self._http.post(path, json=payload)
        except (httpx.ConnectError, httpx.ConnectTimeout) as first:
            log.warning("could not reach EngageLab (%s); retrying once", first)
        except httpx.HTTPError as error:
            log.warning("EngageLab did not answer %s: %s", path, error)
            raise _Unavailable from error
        try:
            return self._http.post(path, json=payload)
        except httpx.HTTPError as error:
            log.warning("EngageLab is unreachable: %s", error)
            raise _Unavailable from error
