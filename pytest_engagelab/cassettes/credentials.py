"""The recording credentials: where they come from (the environment) and what they make."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pytest_engagelab.emulator.auth import basic_authorization
from pytest_engagelab.emulator.settings import api_root

DEV_KEY_ENV: Final = "ENGAGELAB_DEV_KEY"
DEV_SECRET_ENV: Final = "ENGAGELAB_DEV_SECRET"
BASE_URL_ENV: Final = "ENGAGELAB_BASE_URL"


@dataclass(frozen=True)
class Credentials:
    """What ``otp_client`` talks with: a dev key, a secret and a base URL."""

    dev_key: str
    dev_secret: str = field(repr=False)
    base_url: str

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header these credentials make."""
        return basic_authorization(self.dev_key, self.dev_secret)


def recording_credentials(environ: Mapping[str, str], default_base_url: str) -> Credentials | None:
    """The real credentials from ``ENGAGELAB_DEV_KEY``/``ENGAGELAB_DEV_SECRET``
    (and ``ENGAGELAB_BASE_URL`` if set), or ``None`` when either is missing."""
    key = environ.get(DEV_KEY_ENV, "").strip()
    secret = environ.get(DEV_SECRET_ENV, "").strip()
    if not key or not secret:
        return None
    base_url = environ.get(BASE_URL_ENV, "").strip() or default_base_url
    return Credentials(key, secret, api_root(base_url))  # a trailing /v1 is dropped


def missing_credentials_message(mode: str) -> str:
    """The one line that says recording needs credentials."""
    return (
        f"pytest-engagelab: record mode {mode!r} records against the real EngageLab API and "
        f"needs {DEV_KEY_ENV} and {DEV_SECRET_ENV} set in the environment ({BASE_URL_ENV} "
        "optional); replaying (--engagelab-record-mode=none) needs no credentials"
    )
