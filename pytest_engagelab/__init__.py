"""pytest-engagelab: test code that sends EngageLab OTPs without sending a single SMS.

The public API is what ``__all__`` lists; modules whose names start with an
underscore are private.  The error catalogue is :mod:`pytest_engagelab.errors`,
the magic recipients :mod:`pytest_engagelab.magic`, the callback builders
:mod:`pytest_engagelab.callbacks`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_engagelab._version import __version__

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from pytest_engagelab._clock import Clock
    from pytest_engagelab._controls import MessageCriteria
    from pytest_engagelab._emulator import (
        DEFAULT_BASE_URL,
        DEFAULT_DEV_KEY,
        DEFAULT_DEV_SECRET,
        Emulator,
        EmulatorEvent,
        EmulatorResponse,
        Fault,
        Injection,
    )
    from pytest_engagelab._journal import SentMessage
    from pytest_engagelab._settings import EngageLabSettings
    from pytest_engagelab._templates import Template
    from pytest_engagelab.cassettes import CassetteError, CassetteMiss, DriftReport, check_drift
    from pytest_engagelab.client import AsyncOTPClient, OTPClient, SendResult, VerifyResult
    from pytest_engagelab.errors import EngageLabError, ErrorCode
    from pytest_engagelab.mock import OTPMock
    from pytest_engagelab.server import OTPServer

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_DEV_KEY",
    "DEFAULT_DEV_SECRET",
    "AsyncOTPClient",
    "CassetteError",
    "CassetteMiss",
    "Clock",
    "DriftReport",
    "Emulator",
    "EmulatorEvent",
    "EmulatorResponse",
    "EngageLabError",
    "EngageLabSettings",
    "ErrorCode",
    "Fault",
    "Injection",
    "MessageCriteria",
    "OTPClient",
    "OTPMock",
    "OTPServer",
    "SendResult",
    "SentMessage",
    "Template",
    "VerifyResult",
    "__version__",
    "check_drift",
]

# Imported on first access (PEP 562), not when pytest loads the plugin: ``import
# pytest_engagelab.plugin`` runs this file first, and the emulator, server, client and
# cassettes would otherwise cost every pytest run that never uses them.
_WHERE: dict[str, str] = {
    "DEFAULT_BASE_URL": "pytest_engagelab._defaults",
    "DEFAULT_DEV_KEY": "pytest_engagelab._defaults",
    "DEFAULT_DEV_SECRET": "pytest_engagelab._defaults",
    "AsyncOTPClient": "pytest_engagelab.client",
    "CassetteError": "pytest_engagelab.cassettes",
    "CassetteMiss": "pytest_engagelab.cassettes",
    "Clock": "pytest_engagelab._clock",
    "DriftReport": "pytest_engagelab._drift",
    "Emulator": "pytest_engagelab._emulator",
    "EmulatorEvent": "pytest_engagelab._emulator",
    "EmulatorResponse": "pytest_engagelab._emulator",
    "EngageLabError": "pytest_engagelab.errors",
    "EngageLabSettings": "pytest_engagelab._settings",
    "ErrorCode": "pytest_engagelab.errors",
    "Fault": "pytest_engagelab._emulator",
    "Injection": "pytest_engagelab._emulator",
    "MessageCriteria": "pytest_engagelab._controls",
    "OTPClient": "pytest_engagelab.client",
    "OTPMock": "pytest_engagelab.mock",
    "OTPServer": "pytest_engagelab.server",
    "SendResult": "pytest_engagelab.client",
    "SentMessage": "pytest_engagelab._journal",
    "Template": "pytest_engagelab._templates",
    "VerifyResult": "pytest_engagelab.client",
    "check_drift": "pytest_engagelab._drift",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
