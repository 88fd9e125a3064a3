"""HTTP Basic auth as EngageLab uses it: ``Authorization: Basic base64(dev_key:dev_secret)``.

The one place the header is built (the client, the emulator, the cassette scrubber and
the drift check all call it) and parsed (the emulator's authentication).
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["basic_authorization", "basic_token", "parse_basic"]


def basic_token(dev_key: str, dev_secret: str) -> str:
    """``base64(dev_key:dev_secret)``, UTF-8 encoded, as the header carries it."""
    return base64.b64encode(f"{dev_key}:{dev_secret}".encode()).decode("ascii")


def basic_authorization(dev_key: str, dev_secret: str) -> str:
    """The whole ``Authorization`` header value: ``Basic <token>``."""
    return "Basic " + basic_token(dev_key, dev_secret)


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(dev_key, dev_secret)`` from a ``Basic`` header, or ``None`` when it is not one
    (another scheme, bad base64, not UTF-8, no colon)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    key, colon, secret = decoded.partition(":")
    return (key, secret) if colon else None
