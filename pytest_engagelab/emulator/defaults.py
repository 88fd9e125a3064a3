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
