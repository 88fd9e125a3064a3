"""Emulator settings: built-in defaults, then ini values, then ``@pytest.mark.engagelab``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from pytest_engagelab.emulator.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_DEV_KEY,
    DEFAULT_DEV_SECRET,
    INI_OPTIONS,
    KeyStatus,
)

if TYPE_CHECKING:  # the emulator is imported when the first one is built
    from pytest_engagelab.emulator.core import Emulator

#: How ``POST /v1/template-configs`` reviews a template (see ``Emulator``).
TemplateReview = Literal["auto", "manual"]
#: How phone numbers are checked: the E.164 shape, or valid for their region too.
PhoneValidation = Literal["e164", "strict"]

__all__ = ["INI_OPTIONS", "EngageLabSettings", "SettingsError", "api_root"]


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message says which and what is allowed."""


@dataclass(frozen=True)
class EngageLabSettings:
    """How ``otp_mock`` and ``otp_server`` build their emulator.

    Precedence, lowest first: these defaults, the ``engagelab_*`` ini options
    (suite-wide), then ``@pytest.mark.engagelab(...)`` on the test, its class or
    its module (the marker closest to the test wins for each keyword).  Override
    the ``engagelab_settings`` fixture to compute suite defaults in code.
    """

    dev_key: str = DEFAULT_DEV_KEY
    dev_secret: str = dataclasses.field(default=DEFAULT_DEV_SECRET, repr=False)
    base_url: str = DEFAULT_BASE_URL
    strict_templates: bool = False
    seed: int | None = None
    journal_limit: int | None = 10_000
    assert_all_fired: bool = True
    key_status: KeyStatus = "active"
    forbidden_endpoints: tuple[str, ...] = ()
    rate_limit: bool = True
    max_verify_attempts: int | None = None
    template_review: TemplateReview = "auto"
    send_unapproved: bool = False
    phone_validation: PhoneValidation = "e164"
    mainland_china: bool = True

    def build_emulator(self) -> Emulator:
        """A fresh emulator with these settings."""
        from pytest_engagelab.emulator.core import Emulator

        return Emulator(
            dev_key=self.dev_key,
            dev_secret=self.dev_secret,
            strict_templates=self.strict_templates,
            seed=self.seed,
            key_status=self.key_status,
            forbidden_endpoints=self.forbidden_endpoints,
            rate_limit=self.rate_limit,
            journal_limit=self.journal_limit,
            max_verify_attempts=self.max_verify_attempts,
            template_review=self.template_review,
            send_unapproved=self.send_unapproved,
            phone_validation=self.phone_validation,
            mainland_china=self.mainland_china,
        )

    def merged(self, overrides: Mapping[str, Any], *, source: str) -> EngageLabSettings:
        """These settings with ``overrides`` applied, each checked; ``source`` names
        where they came from for error messages."""
        unknown = sorted(set(overrides) - set(MARKER_KEYWORDS))
        if unknown:
            raise SettingsError(
                f"{source}: unknown keyword(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(MARKER_KEYWORDS)}"
            )
        checked = {name: _CHECKS[name](name, value, source) for name, value in overrides.items()}
        return dataclasses.replace(self, **checked)


def _text(name: str, value: Any, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{source}: {name} must be a non-empty string, not {value!r}")
    return value


def api_root(url: str) -> str:
    """A base URL as the kit means it: the API's root, without ``/v1`` or a final ``/``.

    ``https://otp.api.engagelab.cc/v1`` (the official SDK's ``BASE_URL``) and
    ``https://otp.api.engagelab.cc/`` both become ``https://otp.api.engagelab.cc``:
    the kit adds ``/v1/messages`` and the other paths itself.
    """
    root = url.strip().rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")].rstrip("/")
    return root


def _url(name: str, value: Any, source: str) -> str:
    text = _text(name, value, source)
    if not text.startswith(("http://", "https://")):
        raise SettingsError(f"{source}: {name} must start with http:// or https://, not {text!r}")
    return api_root(text)


def _flag(name: str, value: Any, source: str) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{source}: {name} must be True or False, not {value!r}")
    return value


def _optional_int(low: int) -> Callable[[str, Any, str], int | None]:
    def check(name: str, value: Any, source: str) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SettingsError(
                f"{source}: {name} must be an integer >= {low} or None, not {value!r}"
            )
        return value

    return check


def _key_status(name: str, value: Any, source: str) -> str:
    if value not in ("active", "expired", "disabled"):
        raise SettingsError(
            f"{source}: {name} must be 'active', 'expired' or 'disabled', not {value!r}"
        )
    return str(value)


def _choice(*allowed: str) -> Callable[[str, Any, str], str]:
    def check(name: str, value: Any, source: str) -> str:
        if value not in allowed:
            choices = " or ".join(repr(a) for a in allowed)
            raise SettingsError(f"{source}: {name} must be {choices}, not {value!r}")
        return str(value)

    return check


def _phone_validation(name: str, value: Any, source: str) -> str:
    choice = _choice("e164", "strict")(name, value, source)
    if choice == "strict":
        from pytest_engagelab.emulator import recipients  # a small module, no phonenumbers

        if not recipients.phonenumbers_available():
            raise SettingsError(f"{source}: {recipients.PHONENUMBERS_MISSING}")
    return choice


def _endpoints(name: str, value: Any, source: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple | set | frozenset) or not all(
        isinstance(v, str) and v.startswith("/") for v in value
    ):
        raise SettingsError(
            f"{source}: {name} must be a list of paths such as ['/v1/verifications'], "
            f"not {value!r}"
        )
    return tuple(value)


_CHECKS: Final[dict[str, Callable[[str, Any, str], Any]]] = {
    "dev_key": _text,
    "dev_secret": _text,
    "base_url": _url,
    "strict_templates": _flag,
    "seed": _optional_int(0),
    "journal_limit": _optional_int(1),
    "assert_all_fired": _flag,
    "key_status": _key_status,
    "forbidden_endpoints": _endpoints,
    "rate_limit": _flag,
    "max_verify_attempts": _optional_int(1),
    "template_review": _choice("auto", "manual"),
    "send_unapproved": _flag,
    "phone_validation": _phone_validation,
    "mainland_china": _flag,
}

#: The keywords ``@pytest.mark.engagelab`` accepts.
MARKER_KEYWORDS: Final = tuple(_CHECKS)


def settings_from_ini(read: Callable[[str], Any], base: EngageLabSettings) -> EngageLabSettings:
    """Settings from the ini options; ``read(name)`` returns the ini value or ``None``.

    The value is typed when pytest parsed it (``bool`` and ``int`` options, pytest >=
    8.4 for ``int``) and a string otherwise: both are accepted.
    """
    values: dict[str, Any] = {}
    for option in INI_OPTIONS:
        raw = read(option.name)
        if raw is None or raw == "" or raw == []:
            continue
        source = f"ini option {option.name} = {raw!r}"
        if option.kind == "int":
            if isinstance(raw, int) and not isinstance(raw, bool):
                number = raw
            else:
                try:
                    number = int(str(raw).strip())
                except ValueError:
                    raise SettingsError(f"{source}: not an integer") from None
            if option.setting == "journal_limit" and number == 0:
                values[option.setting] = None
                continue
            values[option.setting] = _CHECKS[option.setting](option.setting, number, source)
        elif option.kind == "bool":
            if isinstance(raw, bool):
                values[option.setting] = raw
                continue
            word = str(raw).strip().lower()
            if word not in _TRUTH:
                raise SettingsError(f"{source}: not a boolean; use true or false")
            values[option.setting] = _TRUTH[word]
        else:
            text = str(raw).strip()
            values[option.setting] = _CHECKS[option.setting](option.setting, text, source)
    return dataclasses.replace(base, **values)


#: The words pytest's ``bool`` ini type takes (its ``_strtobool``), any case.
_TRUTH: Final = {
    **dict.fromkeys(("y", "yes", "t", "true", "on", "1"), True),
    **dict.fromkeys(("n", "no", "f", "false", "off", "0"), False),
}
