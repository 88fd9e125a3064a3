"""The one recipient parser: phone numbers and e-mail addresses, for validation and redaction.

The emulator's 5011 check and the cassettes' recipient redaction read recipients
with the same two patterns, so what the emulator accepts as an address is what a
cassette redacts.  Phone numbers are E.164 (``+`` and 7 to 15 digits, no leading
zero).  An e-mail address has a local part of RFC 5322 characters
(letters of any script, digits and ``.!#$%&'*+/=?^`~-``, not starting with ``.`` or
``'``) or a quoted string, ``@``, and a domain of dot-separated labels of letters (any
script), digits and ``-``.

Inside text (a cassette body) the same address is also found when a JSON encoder
wrote it ASCII-only (``jos\\u00e9@ex\\u00e4mple.com``, as ``requests`` and
``json.dumps`` do), and gets the placeholder of its decoded form.

Phone numbers are checked for their E.164 shape only, unless the emulator runs with
``phone_validation="strict"``: then :func:`strict_phone_problem` asks Google's
libphonenumber (the ``phonenumbers`` package, imported on first use, never when the
plugin loads) whether the number is valid for its region.  Mainland China is told
by its country calling code (+86) alone, which needs no number library.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from types import ModuleType
from typing import Final

__all__ = [
    "EMAIL",
    "PHONE",
    "PHONENUMBERS_MISSING",
    "is_email",
    "is_mainland_china",
    "is_phone",
    "phone_region",
    "phonenumbers_available",
    "redact_recipients",
    "require_phonenumbers",
    "strict_phone_problem",
]

#: An E.164 phone number, as the whole recipient.
PHONE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_LOCAL_CHARS: Final = r"[\w!#$%&*+/=?^`~-][\w.!#$%&'*+/=?^`~-]*"
_QUOTED_LOCAL: Final = r'\\?"[^"\\\r\n]+\\?"'
#: An e-mail address, as the whole recipient or inside text (``\w`` is Unicode).
EMAIL: Final = re.compile(
    rf"(?:{_QUOTED_LOCAL}|{_LOCAL_CHARS})@(?:[\w](?:[\w-]*[\w])?\.)+[\w](?:[\w-]*[\w])?"
)
_PHONE_IN_TEXT: Final = re.compile(r"(?<![\w+])\+[1-9][0-9]{6,14}(?![0-9])")
# An address some of whose characters a JSON encoder wrote as \uXXXX escapes.
_ESCAPE: Final = r"\\u[0-9a-fA-F]{4}"
_ESCAPED_EMAIL: Final = re.compile(
    rf"(?:{_ESCAPE}|[\w!#$%&*+/=?^`~-])(?:{_ESCAPE}|[\w.!#$%&'*+/=?^`~-])*"
    rf"@(?:(?:{_ESCAPE}|[\w-])+\.)+(?:{_ESCAPE}|[\w-])+"
)
#: The mainland China country calling code (Hong Kong +852, Macau +853 and Taiwan +886
#: are codes of their own).
_MAINLAND_CHINA: Final = "+86"
#: What ``phone_validation="strict"`` without the package says.
PHONENUMBERS_MISSING: Final = (
    "phone_validation='strict' needs the phonenumbers package: "
    "pip install 'pytest-engagelab[phonenumbers]'"
)
_PHONE_PLACEHOLDER: Final = re.compile(r"\+1555[0-9]{7}")
_MAGIC_NUMBER: Final = re.compile(r"\+1000000[0-9]{4}")
_EMAIL_PLACEHOLDER_DOMAIN: Final = "@example.invalid"


def is_phone(to: str) -> bool:
    """Whether ``to`` is an E.164 phone number."""
    return PHONE.fullmatch(to) is not None


def is_email(to: str) -> bool:
    """Whether ``to`` is an e-mail address (and not a phone number)."""
    return EMAIL.fullmatch(to) is not None


def is_mainland_china(number: str) -> bool:
    """Whether the E.164 ``number`` is a mainland China number (country code +86)."""
    return number.startswith(_MAINLAND_CHINA)


def phonenumbers_available() -> bool:
    """Whether ``phonenumbers`` is installed (looked up, not imported)."""
    return importlib.util.find_spec("phonenumbers") is not None


def require_phonenumbers() -> ModuleType:
    """``phonenumbers``, imported now; :class:`ImportError` with one line if missing."""
    try:
        import phonenumbers
    except ImportError:
        raise ImportError(PHONENUMBERS_MISSING) from None
    return phonenumbers


def phone_region(number: str) -> str | None:
    """The region (``"SG"``, ``"CN"``...) libphonenumber assigns ``number``, or ``None``."""
    phonenumbers = require_phonenumbers()
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region: str | None = phonenumbers.region_code_for_number(parsed)
    return region


def strict_phone_problem(number: str) -> str | None:
    """Why libphonenumber finds the E.164 ``number`` invalid, or ``None`` if it is valid."""
    phonenumbers = require_phonenumbers()
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return f"{number!r} starts with no country calling code libphonenumber knows"
    if phonenumbers.is_valid_number(parsed):
        return None
    region = phonenumbers.region_code_for_country_code(parsed.country_code)
    where = f"region {region}" if region not in (None, "ZZ") else "any region"
    return f"{number!r} is not a valid number for {where} (+{parsed.country_code})"


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
    # A quoted local part inside JSON text is \"...\": same address, same placeholder.
    return _email_placeholder(address.replace('\\"', '"'))


def redact_recipients(text: str) -> str:
    """``text`` with every E.164 phone number and e-mail address replaced by a stable
    placeholder (``+1555xxxxxxx``, ``recipient-xxxxxxxxxx@example.invalid``).

    The same recipient always gets the same placeholder, so a replayed request
    still matches its recording.  The magic numbers (``+1000000xxxx``) and
    placeholders are left alone.  The placeholder is derived from a hash: it
    hides a number from a casual reader, not from someone who tries every number.
    """
    text = EMAIL.sub(_redact_email, text)
    if "\\u" in text:
        text = _ESCAPED_EMAIL.sub(_redact_escaped_email, text)
    return _PHONE_IN_TEXT.sub(_redact_phone, text)


def _redact_escaped_email(match: re.Match[str]) -> str:
    escaped = match.group(0)
    try:
        address = json.loads(f'"{escaped}"')
    except ValueError:
        return escaped
    if not isinstance(address, str) or not is_email(address):
        return escaped
    if address.lower().endswith(_EMAIL_PLACEHOLDER_DOMAIN):
        return escaped
    return _email_placeholder(address)

