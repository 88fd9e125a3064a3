"""The emulator's vocabulary: what a request carries in, what an answer carries out.

Answers (:class:`EmulatorResponse`, :class:`Fault`), events for observers
(:class:`EmulatorEvent`), injected failures (:class:`Injection`), the endpoint and
language tables, and the small parsing helpers the routes in
:mod:`pytest_engagelab.emulator.core` share.  No HTTP library here either.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, Protocol, runtime_checkable

from pytest_engagelab.emulator.codes import ErrorCode
from pytest_engagelab.emulator.journal import SentMessage

__all__ = [
    "ENDPOINTS",
    "LANGUAGES",
    "EmulatorEvent",
    "EmulatorResponse",
    "Fault",
    "InjectedError",
    "Injection",
    "ResponseLike",
    "check_injectable",
    "error_body",
]

LANGUAGES: Final = frozenset({"default", "zh_CN", "zh_HK", "en", "ja", "th", "es"})
LANGUAGE_LIST: Final = ", ".join(sorted(LANGUAGES))
SNOWFLAKE_EPOCH_MS: Final = 1_288_834_974_657
JSON_HEADERS: Final = (("content-type", "application/json"),)
TEMPLATE_ID_MAX: Final = 128
#: The endpoints as ``fail_next(endpoint=...)`` names them.
ENDPOINTS: Final = (
    "/v1/messages",
    "/v1/codes",
    "/v1/custom-messages",
    "/v1/verifications",
    "/v1/template-configs",
    "/v1/template-configs/{id}",
)  # EngageLab's documented limit on template_id
UNSEEDED: Final = random.Random()


@runtime_checkable
class ResponseLike(Protocol):
    """A ready HTTP answer a test injects, shaped as an ``httpx.Response`` is.

    The core imports no HTTP library: it reads any object with these three members,
    so ``fail_next(httpx.Response(502))`` works without the core knowing httpx.
    """

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def read(self) -> bytes: ...


#: What a test can inject: a documented code, a ready answer, or an exception to raise.
InjectedError = ErrorCode | ResponseLike | BaseException


@dataclass(frozen=True)
class EmulatorResponse:
    """The emulator's answer: status, headers and body bytes."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Fault:
    """No answer: the door raises ``exception`` (respx) or drops the connection (server)."""

    exception: BaseException


@dataclass(frozen=True)
class EmulatorEvent:
    """Something happened to a message or a template: for callbacks and other observers.

    ``kind`` is ``"sent"``, ``"send_failed"``, ``"verified"``,
    ``"verify_failed"`` (a wrong code), ``"expired"`` (the code's validity
    ran out unverified, noticed when the clock moves) or ``"template_audit"``
    (a template's review ended: ``to`` is empty and ``detail`` holds
    ``template_id``, ``status`` (2 approved, 3 rejected) and ``audit_remark``).
    """

    kind: Literal["sent", "send_failed", "verified", "verify_failed", "expired", "template_audit"]
    at: float
    to: str
    template_id: str
    message: SentMessage | None = None
    error: ErrorCode | None = None
    error_message: str = ""
    detail: Mapping[str, Any] | None = None


@dataclass
class Injection:
    """A failure injected with ``fail_next`` or ``fail_for``."""

    error: InjectedError
    times: int | None
    to: str | None = None
    endpoint: str | None = None
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def describe(self) -> str:
        error = self.error
        if isinstance(error, ErrorCode):
            what = f"ErrorCode.{error.name}"
        elif isinstance(error, ResponseLike):
            what = f"<Response [{error.status_code}]>"
        else:
            what = f"{type(error).__name__}({str(error)!r})"
        if self.to is not None:
            return f"fail_for({self.to!r}, {what}) (fired {self.fired} times)"
        where = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"fail_next({what}, times={self.times}{where}) (fired {self.fired} of {self.times})"


class Incoming(NamedTuple):
    """One request as a route handler sees it (a named tuple: made for every request)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    request: Any
    recipe: tuple[Any, ...] | None = None  # see Emulator.handle's request_recipe


@dataclass
class Issued:
    message: SentMessage
    verifiable: bool
    attempts: int = 0
    verified: bool = False
    expired_reported: bool = False


class Reject(Exception):
    """Internal: answer with this code and message."""

    def __init__(
        self, code: ErrorCode, message: str, status: int | None = None, *, allow: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = code.http_status if status is None else status
        self.allow = allow  # the methods a 405 answer lists in its Allow header


class Send(NamedTuple):
    """One send as parsed (a named tuple: made for every send)."""

    endpoint: str
    recipients: tuple[str, ...]
    template_id: str
    language: str
    params: dict[str, str]
    code: str | None
    verifiable: bool
    rate_limited: bool = True


def dumps(payload: Any) -> bytes:
    # A lone surrogate parsed from a "\ud800" escape cannot be UTF-8 encoded; write it
    # back as the same JSON escape instead of failing.
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", errors="backslashreplace")


def error_body(code: ErrorCode, message: str, status: int | None = None) -> EmulatorResponse:
    """The documented error answer."""
    return EmulatorResponse(
        code.http_status if status is None else status,
        dumps({"code": int(code), "message": message}),
    )


def require_str(body: Mapping[str, Any], name: str, *, prefix: str = "") -> str:
    value = body.get(name)
    label = f"{prefix}{name}"
    if value is None:
        raise Reject(ErrorCode.INVALID_PARAMS, f"{label} is required")
    if not isinstance(value, str):
        raise Reject(ErrorCode.INVALID_PARAMS, f"{label} must be a string")
    if not value.strip():
        raise Reject(ErrorCode.INVALID_PARAMS, f"{label} must not be empty")
    return value


def parse_params(template: Mapping[str, Any]) -> dict[str, str]:
    params = template.get("params")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise Reject(ErrorCode.INVALID_PARAMS, "template.params must be an object of strings")
    for key, value in params.items():
        if not isinstance(value, str):
            raise Reject(
                ErrorCode.INVALID_PARAMS,
                f"template.params.{key} must be a string, not {type(value).__name__}",
            )
    return dict(params)


def check_injectable(error: object) -> None:
    if not isinstance(error, ErrorCode | ResponseLike | BaseException):
        raise TypeError(
            "an injected error must be an ErrorCode, an httpx.Response (see "
            f"pytest_engagelab.errors) or an exception instance, not {type(error).__name__}"
        )
