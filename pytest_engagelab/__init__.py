"""pytest-engagelab: test code that sends EngageLab OTPs without sending a single SMS.

The public API is what ``__all__`` lists; modules whose names start with an
underscore are private.  The error catalogue is :mod:`pytest_engagelab.errors`,
the magic recipients :mod:`pytest_engagelab.magic`, the callback builders
:mod:`pytest_engagelab.callbacks`.
"""

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
from pytest_engagelab._version import __version__
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
