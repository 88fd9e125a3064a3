"""The app under test, pointed at pytest-engagelab's emulator instead of EngageLab."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_engagelab import OTPMock
from signup.app import OTPConfig, SignupService


@pytest.fixture
def signup(otp_mock: OTPMock) -> Iterator[SignupService]:
    """A SignupService talking to ``otp_mock``, with our template set up as in production."""
    otp_mock.add_template("signup-code", strategy="whatsapp|sms", ttl=300)
    config = OTPConfig(
        base_url=otp_mock.base_url, dev_key=otp_mock.dev_key, dev_secret=otp_mock.dev_secret
    )
    with SignupService(config) as service:
        yield service
