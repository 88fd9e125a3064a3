"""The one recipient parser: phone numbers and e-mail addresses, for validation and redaction.

The emulator's 5011 check and the cassettes' recipient redaction read recipients
with the same two patterns, so what the emulator accepts as an address is what a
cassette redacts.  Phone numbers are E.164 (``+`` and 7 to 15 digits, no leading
zero).  An e-mail address has a local part of RFC 5322 characters
(letters of any script, digits and ``.!#$%&'*+/=?^`~-``, not starting with ``.`` or
``'``) or a quoted string, ``@``, and a domain of dot-separated labels of letters (any
script), digits and ``-``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

__all__ = ["EMAIL", "PHONE", "is_email", "is_phone", "redact_recipients"]

#: An E.164 phone number, as the whole recipient.
PHONE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_LOCAL_CHARS: Final = r"[\w!#$%&*+/=?^`~-][\w.!#$%&'*+/=?^`~-]*"
_QUOTED_LOCAL: Final = r'\\?"[^"\\\r\n]+\\?"'
#: An e-mail address, as the whole recipient or inside text (``\w`` is Unicode).
EMAIL: Final = re.compile(
    rf"(?:{_QUOTED_LOCAL}|{_LOCAL_CHARS})@(?:[\w](?:[\w-]*[\w])?\.)+[\w](?:[\w-]*[\w])?"
)
_PHONE_IN_TEXT: Final = re.compile(r"(?<![\w+])\+[1-9][0-9]{6,14}(?![0-9])")
_PHONE_PLACEHOLDER: Final = re.compile(r"\+1555[0-9]{7}")
_MAGIC_NUMBER: Final = re.compile(r"\+1000000[0-9]{4}")
_EMAIL_PLACEHOLDER_DOMAIN: Final = "@example.invalid"


def is_phone(to: str) -> bool:
    """Whether ``to`` is an E.164 phone number."""
    return PHONE.fullmatch(to) is not None


def is_email(to: str) -> bool:
    """Whether ``to`` is an e-mail address (and not a phone number)."""
    return EMAIL.fullmatch(to) is not None


def _phone_placeholder(number: str) -> str:
    digest = hashlib.sha256(number.encode("utf-8")).hexdigest()
    return "+1555" + str(int(digest, 16) % 10_000_000).zfill(7)


def _email_placeholder(address: str) -> str:
    digest = hashlib.sha256(address.lower().encode("utf-8")).hexdigest()
    return f"recipient-{digest[:10]}{_EMAIL_PLACEHOLDER_DOMAIN}"


def _redact_phone(match: re.Match[str]) -> str:
    number = match.group(0)
    if _PHONE_PLACEHOLDER.fullmatch(number) or _MAGIC_NUMBER.fullmatch(number):
        return number
    return _phone_placeholder(number)


def _redact_email(match: re.Match[str]) -> str:
    address = match.group(0)
    if address.lower().endswith(_EMAIL_PLACEHOLDER_DOMAIN):
        return address
    return _email_placeholder(address)


def redact_recipients(text: str) -> str:
    """``text`` with every E.164 phone number and e-mail address replaced by a stable
    placeholder (``+1555xxxxxxx``, ``recipient-xxxxxxxxxx@example.invalid``).

    The same recipient always gets the same placeholder, so a replayed request
    still matches its recording.  The magic numbers (``+1000000xxxx``) and
    placeholders are left alone.  The placeholder is derived from a hash: it
    hides a number from a casual reader, not from someone who tries every number.
    """
    return _PHONE_IN_TEXT.sub(_redact_phone, EMAIL.sub(_redact_email, text))

