"""Magic recipients: reserved phone numbers that make the emulator fail on purpose.

Each documented delivery error has one number that always answers it, and one
number makes WhatsApp delivery fail so that delivery falls back to the next
channel of the template's strategy.  All of them sit in the ``+1 000`` range,
which the North American numbering plan never assigns, so no real number (and
no number a test is likely to make up) triggers them.

>>> from pytest_engagelab.emulator.codes import ErrorCode
>>> from pytest_engagelab.magic import number_for
>>> number_for(ErrorCode.BLACKLISTED)
'+10000005013'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from pytest_engagelab.emulator.codes import ErrorCode

__all__ = [
    "DELIVERY_ERROR_NUMBERS",
    "WHATSAPP_FALLBACK_NUMBER",
    "number_for",
]

_DELIVERY_CODES: Final = (
    ErrorCode.SEND_FAILED,
    ErrorCode.INVALID_PHONE_NUMBER,
    ErrorCode.TARGET_UNREACHABLE,
    ErrorCode.BLACKLISTED,
    ErrorCode.CONTENT_REJECTED,
    ErrorCode.MESSAGE_INTERCEPTED,
    ErrorCode.INTERNAL_SEND_ERROR,
    ErrorCode.CHINA_MAINLAND_FORBIDDEN,
    ErrorCode.PHONE_UNAVAILABLE,
    ErrorCode.UNSUBSCRIBED,
    ErrorCode.NUMBER_NOT_REGISTERED,
)

#: Phone number -> the delivery error a send to it always answers.
DELIVERY_ERROR_NUMBERS: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {f"+1000000{int(code)}": code for code in _DELIVERY_CODES}
)

#: WhatsApp delivery to this number fails; the message falls back to the next channel.
WHATSAPP_FALLBACK_NUMBER: Final = "+10000000001"


def number_for(code: ErrorCode) -> str:
    """The magic phone number whose sends always answer the delivery error ``code``."""
    for number, candidate in DELIVERY_ERROR_NUMBERS.items():
        if candidate is code:
            return number
    allowed = ", ".join(f"{c.name} ({int(c)})" for c in _DELIVERY_CODES)
    raise ValueError(f"{code!r} is not a delivery error; magic numbers exist for: {allowed}")
