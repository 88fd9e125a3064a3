"""The EngageLab OTP error catalogue: codes, exceptions and response factories.

Every documented error code is a member of :class:`ErrorCode`, which knows the
HTTP status EngageLab answers it with, what it means and whether a retry can
help.  :func:`error_response` and the one-factory-per-code functions
(``errors.invalid_phone_number()``, ``errors.frequency_limited(message=...)``)
build the ``httpx.Response`` EngageLab would send; they work as a respx
``return_value`` or ``side_effect`` and as a pytest-httpx callback.

Exception hierarchy, grouped by what a caller does about the failure::

    EngageLabError                  any failure of an API call
    ├── AuthenticationError         2001, 2002, 2004: fix the key or its rights
    ├── BadRequestError             3001, 3002, 3003: fix the request
    ├── RateLimitedError            3004 (and HTTP 429): wait, then try again
    ├── NotFoundError               4001: the template or message does not exist
    ├── DeliveryError               5001, 5011-5020: the recipient cannot be reached
    ├── ServerError                 1000 and unexplained 5xx answers: retry later
    └── TransportError              no answer at all (chains the httpx exception)
        └── RequestTimeout          the request timed out

:meth:`EngageLabError.from_response` maps any error answer, including ones that
are not the documented JSON (an HTML 502 from a proxy, an empty body), to the
right class.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

import httpx

from pytest_engagelab.emulator.codes import ErrorCode

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "DeliveryError",
    "EngageLabError",
    "ErrorCode",
    "ErrorFactory",
    "NotFoundError",
    "RateLimitedError",
    "RequestTimeout",
    "ServerError",
    "TransportError",
    "auth_expired",
    "auth_failed",
    "blacklisted",
    "china_mainland_forbidden",
    "content_rejected",
    "error_response",
    "frequency_limited",
    "internal_error",
    "internal_send_error",
    "invalid_format",
    "invalid_params",
    "invalid_phone_number",
    "message_intercepted",
    "not_found",
    "number_not_registered",
    "permission_denied",
    "phone_unavailable",
    "send_failed",
    "target_unreachable",
    "unsubscribed",
    "validation_failed",
]




_EXCERPT_LIMIT: Final = 200


def _excerpt(text: str) -> str:
    """A short, single-line, readable excerpt of an unexpected response body."""
    flat = " ".join(text.split())
    if len(flat) > _EXCERPT_LIMIT:
        return flat[: _EXCERPT_LIMIT - 3] + "..."
    return flat


class EngageLabError(Exception):
    """An EngageLab API call failed.

    ``code`` is an :class:`ErrorCode` where EngageLab documents it, the raw int
    where it does not, and ``None`` when the answer carried no code at all (a
    proxy's HTML page, an empty body, no answer).  ``http_status`` is ``None``
    when no answer arrived.
    """

    #: Codes whose answers this class stands for; used by :meth:`from_response`.
    codes: ClassVar[frozenset[int]] = frozenset()

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | int | None = None,
        http_status: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = ErrorCode.lookup(code) if code is not None else None
        self.http_status = http_status
        if retryable is None:
            if isinstance(self.code, ErrorCode):
                retryable = self.code.retryable
            else:
                retryable = http_status is not None and (http_status == 429 or http_status >= 500)
        self.retryable = retryable

    def __str__(self) -> str:
        parts = []
        if self.code is not None:
            parts.append(f"code {int(self.code)}")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        prefix = f"[{', '.join(parts)}] " if parts else ""
        return f"{prefix}{self.message}"

    def __repr__(self) -> str:
        code = repr(self.code)
        if isinstance(self.code, ErrorCode):
            code = f"ErrorCode.{self.code.name}"
        return (
            f"{type(self).__name__}(message={self.message!r}, code={code}, "
            f"http_status={self.http_status!r}, retryable={self.retryable!r})"
        )

    @staticmethod
    def from_response(response: httpx.Response) -> EngageLabError:
        """The exception for an error answer, of the class its code (or status) calls for.

        A documented JSON body ``{"code": int, "message": str}`` gives the code and
        message; anything else gives the status and a short excerpt of the body.
        """
        status = response.status_code
        code: int | None = None
        message: str | None = None
        try:
            payload: Any = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if isinstance(payload, dict):
            raw_code = payload.get("code")
            if isinstance(raw_code, int) and not isinstance(raw_code, bool):
                code = raw_code
            raw_message = payload.get("message")
            if isinstance(raw_message, str):
                message = raw_message
        if message is None:
            try:
                text = response.content.decode("utf-8", errors="replace")
            except Exception:  # pragma: no cover - decode with errors="replace" cannot fail
                text = ""
            excerpt = _excerpt(text)
            reason = response.reason_phrase or "error"
            message = f"HTTP {status} {reason}: {excerpt or '(empty body)'}"
        cls = _class_for(code, status)
        return cls(message, code=code, http_status=status)


class AuthenticationError(EngageLabError):
    """The key is wrong, expired, disabled, or may not call this API (2001, 2002, 2004)."""

    codes = frozenset({2001, 2002, 2004})


class BadRequestError(EngageLabError):
    """The request itself is wrong: format, parameters or business rules (3001-3003)."""

    codes = frozenset({3001, 3002, 3003})


class RateLimitedError(EngageLabError):
    """Sent again too soon (3004), or the server answered HTTP 429."""

    codes = frozenset({3004})


class NotFoundError(EngageLabError):
    """The template, message or other resource does not exist (4001)."""

    codes = frozenset({4001})


class DeliveryError(EngageLabError):
    """EngageLab accepted the request but cannot deliver to this recipient (5001, 5011-5020)."""

    codes = frozenset({5001, *range(5011, 5021)})


class ServerError(EngageLabError):
    """EngageLab failed internally (1000) or answered 5xx without a documented code."""

    codes = frozenset({1000})


class TransportError(EngageLabError):
    """No answer arrived: the connection failed.  The httpx exception is ``__cause__``."""


class RequestTimeout(TransportError):
    """No answer arrived in time.  The httpx timeout exception is ``__cause__``."""


_BY_CODE: Final[dict[int, type[EngageLabError]]] = {
    code: cls
    for cls in (
        AuthenticationError,
        BadRequestError,
        RateLimitedError,
        NotFoundError,
        DeliveryError,
        ServerError,
    )
    for code in cls.codes
}


def _class_for(code: int | None, status: int) -> type[EngageLabError]:
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return BadRequestError
    return EngageLabError


def error_response(code: ErrorCode | int, message: str | None = None) -> httpx.Response:
    """The answer EngageLab gives for ``code``: its documented HTTP status and JSON body.

    An undocumented int code is answered with HTTP 400.  ``message`` defaults to
    the code's ``default_message``.
    """
    member = ErrorCode.lookup(int(code))
    if isinstance(member, ErrorCode):
        status = member.http_status
        text = member.default_message if message is None else message
    else:
        status = 400
        text = "error" if message is None else message
    return httpx.Response(status, json={"code": int(code), "message": text})


class ErrorFactory:
    """Builds the response for one error code; see the module's factory functions.

    Call it with no argument, with ``message=...``, or let respx or pytest-httpx
    call it with the request (as a ``side_effect`` or callback): the request is
    ignored.
    """

    def __init__(self, code: ErrorCode) -> None:
        self.code = code
        self.__name__ = code.name.lower()
        self.__qualname__ = self.__name__
        self.__doc__ = (
            f"HTTP {code.http_status} with code {int(code)}: {code.description}.\n\n"
            f"Default message: {code.default_message!r}."
        )

    def __call__(
        self, request: httpx.Request | None = None, *, message: str | None = None
    ) -> httpx.Response:
        response = error_response(self.code, message)
        if request is not None:
            response.request = request
        return response

    def __repr__(self) -> str:
        return f"<error factory {self.__name__} ({int(self.code)}, HTTP {self.code.http_status})>"


internal_error: Final = ErrorFactory(ErrorCode.INTERNAL_ERROR)
auth_failed: Final = ErrorFactory(ErrorCode.AUTH_FAILED)
auth_expired: Final = ErrorFactory(ErrorCode.AUTH_EXPIRED)
permission_denied: Final = ErrorFactory(ErrorCode.PERMISSION_DENIED)
invalid_format: Final = ErrorFactory(ErrorCode.INVALID_FORMAT)
invalid_params: Final = ErrorFactory(ErrorCode.INVALID_PARAMS)
validation_failed: Final = ErrorFactory(ErrorCode.VALIDATION_FAILED)
frequency_limited: Final = ErrorFactory(ErrorCode.FREQUENCY_LIMITED)
not_found: Final = ErrorFactory(ErrorCode.NOT_FOUND)
send_failed: Final = ErrorFactory(ErrorCode.SEND_FAILED)
invalid_phone_number: Final = ErrorFactory(ErrorCode.INVALID_PHONE_NUMBER)
target_unreachable: Final = ErrorFactory(ErrorCode.TARGET_UNREACHABLE)
blacklisted: Final = ErrorFactory(ErrorCode.BLACKLISTED)
content_rejected: Final = ErrorFactory(ErrorCode.CONTENT_REJECTED)
message_intercepted: Final = ErrorFactory(ErrorCode.MESSAGE_INTERCEPTED)
internal_send_error: Final = ErrorFactory(ErrorCode.INTERNAL_SEND_ERROR)
china_mainland_forbidden: Final = ErrorFactory(ErrorCode.CHINA_MAINLAND_FORBIDDEN)
phone_unavailable: Final = ErrorFactory(ErrorCode.PHONE_UNAVAILABLE)
unsubscribed: Final = ErrorFactory(ErrorCode.UNSUBSCRIBED)
number_not_registered: Final = ErrorFactory(ErrorCode.NUMBER_NOT_REGISTERED)
