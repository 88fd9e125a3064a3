"""pytest-engagelab: test code that sends EngageLab OTPs without sending a single SMS.

The public API is what ``__all__`` lists; modules whose names start with an
underscore are private.  The error catalogue is :mod:`pytest_engagelab.errors`,
the magic recipients :mod:`pytest_engagelab.magic`, the callback builders
:mod:`pytest_engagelab.callbacks`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from pytest_engagelab._version import __version__
    from pytest_engagelab.cassettes import (
        CassetteError,
        CassetteMiss,
        DriftReport,
        StaleCassetteWarning,
        check_drift,
    )
    from pytest_engagelab.client import AsyncOTPClient, OTPClient, SendResult, VerifyResult
    from pytest_engagelab.doors.controls import MessageCriteria
    from pytest_engagelab.doors.guard import EngageLabGuardError
    from pytest_engagelab.doors.mock import OTPMock
    from pytest_engagelab.doors.server import OTPServer
    from pytest_engagelab.doors.smpp import OTPSMPPServer, SMPPReceipt, SMPPStatus, SMPPSubmit
    from pytest_engagelab.emulator.clock import Clock
    from pytest_engagelab.emulator.core import Emulator
    from pytest_engagelab.emulator.defaults import (
        DEFAULT_BASE_URL,
        DEFAULT_DEV_KEY,
        DEFAULT_DEV_SECRET,
    )
    from pytest_engagelab.emulator.journal import SentMessage
    from pytest_engagelab.emulator.model import EmulatorEvent, EmulatorResponse, Fault, Injection
    from pytest_engagelab.emulator.request_log import RequestRecord
    from pytest_engagelab.emulator.settings import EngageLabSettings
    from pytest_engagelab.emulator.templates import Template
    from pytest_engagelab.errors import EngageLabError, ErrorCode

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
    "EngageLabGuardError",
    "EngageLabSettings",
    "ErrorCode",
    "Fault",
    "Injection",
    "MessageCriteria",
    "OTPClient",
    "OTPMock",
    "OTPSMPPServer",
    "OTPServer",
    "RequestRecord",
    "SMPPReceipt",
    "SMPPStatus",
    "SMPPSubmit",
    "SendResult",
    "SentMessage",
    "StaleCassetteWarning",
    "Template",
    "VerifyResult",
    "__version__",
    "check_drift",
]

# Imported on first access (PEP 562), not when pytest loads the plugin: ``import
# pytest_engagelab.plugin`` runs this file first, and the emulator, server, client and
# cassettes would otherwise cost every pytest run that never uses them (even
# ``__version__``: every module pytest loads from this package goes through its assertion
# rewriter, several hundred function calls each).
_WHERE: dict[str, str] = {
    "DEFAULT_BASE_URL": "pytest_engagelab.emulator.defaults",
    "DEFAULT_DEV_KEY": "pytest_engagelab.emulator.defaults",
    "DEFAULT_DEV_SECRET": "pytest_engagelab.emulator.defaults",
    "AsyncOTPClient": "pytest_engagelab.client",
    "CassetteError": "pytest_engagelab.cassettes",
    "CassetteMiss": "pytest_engagelab.cassettes",
    "Clock": "pytest_engagelab.emulator.clock",
    "DriftReport": "pytest_engagelab.cassettes.drift",
    "Emulator": "pytest_engagelab.emulator.core",
    "EmulatorEvent": "pytest_engagelab.emulator.model",
    "EmulatorResponse": "pytest_engagelab.emulator.model",
    "EngageLabError": "pytest_engagelab.errors",
    "EngageLabGuardError": "pytest_engagelab.doors.guard",
    "EngageLabSettings": "pytest_engagelab.emulator.settings",
    "ErrorCode": "pytest_engagelab.errors",
    "Fault": "pytest_engagelab.emulator.model",
    "Injection": "pytest_engagelab.emulator.model",
    "MessageCriteria": "pytest_engagelab.doors.controls",
    "OTPClient": "pytest_engagelab.client",
    "OTPMock": "pytest_engagelab.doors.mock",
    "OTPServer": "pytest_engagelab.doors.server",
    "RequestRecord": "pytest_engagelab.emulator.request_log",
    "OTPSMPPServer": "pytest_engagelab.doors.smpp",
    "SMPPReceipt": "pytest_engagelab.doors.smpp",
    "SMPPStatus": "pytest_engagelab.doors.smpp",
    "SMPPSubmit": "pytest_engagelab.doors.smpp",
    "SendResult": "pytest_engagelab.client",
    "SentMessage": "pytest_engagelab.emulator.journal",
    "StaleCassetteWarning": "pytest_engagelab.cassettes",
    "Template": "pytest_engagelab.emulator.templates",
    "VerifyResult": "pytest_engagelab.client",
    "check_drift": "pytest_engagelab.cassettes.drift",
    "__version__": "pytest_engagelab._version",
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
