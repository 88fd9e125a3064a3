"""Public import path of :class:`OTPMock` (the door lives in :mod:`pytest_engagelab.doors.mock`)."""

from __future__ import annotations

from pytest_engagelab.doors.mock import OTPMock

__all__ = ["OTPMock"]
