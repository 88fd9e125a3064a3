"""Public import path of :class:`OTPServer` (the door is :mod:`pytest_engagelab.doors.server`)."""

from __future__ import annotations

from pytest_engagelab.doors.server import OTPServer

__all__ = ["OTPServer"]
