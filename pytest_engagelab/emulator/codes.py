"""The catalogue of every error code EngageLab documents for the OTP API.

Part of the sans-IO core: it imports no HTTP library.  Users import
:class:`ErrorCode` from :mod:`pytest_engagelab.errors`, which re-exports it beside the
exception hierarchy and the response factories.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["ErrorCode"]


class ErrorCode(enum.IntEnum):
    """Every error code EngageLab documents for the OTP API.

    Each member carries ``http_status`` (the status EngageLab answers it with),
    ``description`` (the documented meaning), ``default_message`` (the message
    the emulator and the factories use when none is given) and ``retryable``
    (whether the same request may succeed later; the official SDK retries
    1000, 5001 and 5016).
    """

    http_status: int
    description: str
    default_message: str
    retryable: bool

    def __new__(
        cls, value: int, http_status: int, description: str, default_message: str, retryable: bool
    ) -> ErrorCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.http_status = http_status
        member.description = description
        member.default_message = default_message
        member.retryable = retryable
        return member

    INTERNAL_ERROR = (1000, 500, "Internal error", "internal error", True)
    AUTH_FAILED = (
        2001,
        401,
        "Authentication failed; the correct token was not provided",
        "authentication failed",
        False,
    )
    AUTH_EXPIRED = (
        2002,
        401,
        "Authentication failed; the token has expired or been disabled",
        "token expired or disabled",
        False,
    )
    PERMISSION_DENIED = (
        2004,
        403,
        "No permission to call this API",
        "no permission to call this api",
        False,
    )
    INVALID_FORMAT = (
        3001,
        400,
        "Invalid request parameter format; the JSON content does not match the required format",
        "invalid request parameter format",
        False,
    )
    INVALID_PARAMS = (
        3002,
        400,
        "Invalid request parameters; they do not meet the requirements",
        "invalid request parameters",
        False,
    )
    VALIDATION_FAILED = (
        3003,
        400,
        "Related business validation failed; the message field says which",
        "business validation failed",
        False,
    )
    FREQUENCY_LIMITED = (
        3004,
        400,
        "Frequency limit exceeded: same template and target within the code's validity period",
        "frequency limit exceeded",
        False,
    )
    NOT_FOUND = (
        4001,
        400,
        "The related resource does not exist (for example an unknown template)",
        "resource does not exist",
        False,
    )
    SEND_FAILED = (5001, 400, "Sending failed (general/other)", "sms send fail", True)
    INVALID_PHONE_NUMBER = (
        5011,
        400,
        "Invalid phone number format",
        "invalid phone number format",
        False,
    )
    TARGET_UNREACHABLE = (5012, 400, "Target unreachable", "target unreachable", False)
    BLACKLISTED = (
        5013,
        400,
        "Number has been added to the blacklist",
        "number is blacklisted",
        False,
    )
    CONTENT_REJECTED = (
        5014,
        400,
        "Content does not comply with specifications",
        "content does not comply with specifications",
        False,
    )
    MESSAGE_INTERCEPTED = (
        5015,
        400,
        "Message intercepted/rejected",
        "message intercepted",
        False,
    )
    INTERNAL_SEND_ERROR = (5016, 400, "Internal sending error", "internal sending error", True)
    CHINA_MAINLAND_FORBIDDEN = (
        5017,
        400,
        "No permission to send to mainland China",
        "no permission to send to mainland china",
        False,
    )
    PHONE_UNAVAILABLE = (
        5018,
        400,
        "Phone issue (powered off/service suspended)",
        "phone powered off or service suspended",
        False,
    )
    UNSUBSCRIBED = (5019, 400, "User has unsubscribed", "user has unsubscribed", False)
    NUMBER_NOT_REGISTERED = (
        5020,
        400,
        "Number not registered/invalid number",
        "number not registered",
        False,
    )

    @classmethod
    def lookup(cls, value: int) -> ErrorCode | int:
        """The member for ``value``, or ``value`` itself when it is not documented."""
        return _MEMBERS.get(value, value)


_MEMBERS: Final[dict[int, ErrorCode]] = {int(member): member for member in ErrorCode}
