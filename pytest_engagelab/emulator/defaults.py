"""The emulator's built-in defaults, in a module that imports nothing heavy.

The plugin reads them when pytest starts (ini option help, settings), long
before any test needs the emulator itself.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_BUSINESS_ID",
    "DEFAULT_DEV_KEY",
    "DEFAULT_DEV_SECRET",
    "DEFAULT_SMPP_HOST",
    "INI_OPTIONS",
    "IniOption",
    "KeyStatus",
]

DEFAULT_BASE_URL: Final = "https://otp.api.engagelab.cc"
DEFAULT_DEV_KEY: Final = "test-dev-key"
DEFAULT_DEV_SECRET: Final = "test-dev-secret"
#: EngageLab's SMPP endpoint (``openapi/smpp.mdx``), which ``otp_smpp_server`` stands in for.
DEFAULT_SMPP_HOST: Final = "otpsmpp.api.engagelab.cc"
KeyStatus = Literal["active", "expired", "disabled"]
#: The ``business_id`` the emulator puts in its callback rows unless told otherwise (a
#: made-up, snowflake-shaped id; EngageLab's are 19-digit decimal strings).
DEFAULT_BUSINESS_ID: Final = "1000000000000000001"


class IniOption:
    """One ``engagelab_*`` ini option: its setting, type and help.

    A plain class, not a dataclass: this module loads with the plugin, and building a
    dataclass costs start-up time (bench row 3).  ``settings_from_ini`` in
    :mod:`~pytest_engagelab.emulator.settings` reads the values.
    """

    __slots__ = ("help", "kind", "name", "setting")

    def __init__(self, setting: str, kind: str, help: str) -> None:
        self.setting = setting
        self.kind = kind  # "string", "bool" or "int"
        self.help = help
        self.name = f"engagelab_{setting}"

    def __repr__(self) -> str:
        return f"IniOption({self.setting!r}, {self.kind!r}, {self.help!r})"


INI_OPTIONS: Final = (
    IniOption("dev_key", "string", f"dev key the emulator accepts (default {DEFAULT_DEV_KEY})"),
    IniOption(
        "dev_secret", "string", f"dev secret the emulator accepts (default {DEFAULT_DEV_SECRET})"
    ),
    IniOption(
        "base_url",
        "string",
        f"base URL the emulator serves, without /v1 (default {DEFAULT_BASE_URL})",
    ),
    IniOption(
        "strict_templates",
        "bool",
        "answer 4001 for templates not registered with add_template (default false)",
    ),
    IniOption(
        "seed", "int", "seed for codes and message ids, for reproducible runs (default: none)"
    ),
    IniOption(
        "journal_limit",
        "int",
        "messages the journal keeps; older ones are dropped (default 10000; 0 = no limit)",
    ),
    IniOption(
        "assert_all_fired",
        "bool",
        "fail a test whose injected failures never fired (default true)",
    ),
    IniOption(
        "phone_validation",
        "string",
        "e164 (default): phone numbers need the E.164 shape; strict: also valid for their "
        "region, by phonenumbers (pip install 'pytest-engagelab[phonenumbers]')",
    ),
    IniOption(
        "template_review",
        "string",
        "auto (default): templates created through the API are approved at once; manual: "
        "pending until the test calls review_template",
    ),
)
