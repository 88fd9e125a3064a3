"""The session's cassette settings, checked and combined from the command line, the ini
file and the environment."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pytest_engagelab.cassettes.credentials import (
    Credentials,
    missing_credentials_message,
    recording_credentials,
)
from pytest_engagelab.emulator.auth import basic_token

#: The record modes ``--engagelab-record-mode`` accepts; ``none`` (replay only) is the default.
RECORD_MODES: Final = ("none", "once", "new_episodes", "all", "rewrite")


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CassetteSettings:
    """The session's cassette settings, from the command line, the ini file and the environment."""

    directory: Path
    record_mode: str = "none"
    redact_recipients: bool = False
    extra_secrets: tuple[str, ...] = field(default=(), repr=False)
    #: The real credentials from the environment, when recording; ``None`` when replaying.
    recording: Credentials | None = None
    #: ``engagelab_cassette_max_age``: replaying a cassette recorded longer ago warns.
    max_age: datetime.timedelta | None = None

    @property
    def records(self) -> bool:
        """Whether this run may send requests to the real endpoint."""
        return self.record_mode != "none"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every value that must not reach a file name: the recording credentials (in
        each form) and the extra secrets."""
        values = list(self.extra_secrets)
        if self.recording is not None:
            key, secret = self.recording.dev_key, self.recording.dev_secret
            values += [key, secret, f"{key}:{secret}", basic_token(key, secret)]
        return tuple(values)


_AGE_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE: Final = re.compile(r"\s*([0-9]+)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_max_age(text: str) -> datetime.timedelta | None:
    """The ini option ``engagelab_cassette_max_age``: ``90d``, ``12w``, ``36h``, ``45m``,
    ``600s`` (a bare number is days); empty, ``0`` or ``off``: no limit.  ``ValueError``
    with the one-line message otherwise."""
    word = text.strip().lower()
    if word in ("", "0", "off", "none", "false"):
        return None
    match = _AGE.fullmatch(word)
    if match is None:
        raise ValueError(
            f"pytest-engagelab: ini option engagelab_cassette_max_age = {text!r} is not an "
            "age; use a number and a unit, such as 90d, 12w, 36h (or off)"
        )
    seconds = int(match.group(1)) * _AGE_UNITS[match.group(2) or "d"]
    return datetime.timedelta(seconds=seconds) if seconds else None


_TRUE: Final = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def cassette_settings(
    *,
    rootdir: Path,
    directory: str,
    record_mode: str | None,
    ini_record_mode: str,
    redact: str,
    extra_secrets: Iterable[str],
    environ: Mapping[str, str],
    default_base_url: str,
    max_age: str = "",
) -> CassetteSettings:
    """Check and combine the cassette options; raises ``ValueError`` with a one-line message.

    ``record_mode`` (the command line) wins over ``ini_record_mode``; an entry
    of ``extra_secrets`` that starts with ``$`` names an environment variable
    whose value is the secret.  When recording, an unset or empty variable is an
    error (a misspelt name would otherwise let the secret into the cassette); when
    replaying it is skipped, so replay needs no secrets.  A secret shorter than
    six characters is an error: it would match inside ordinary text.
    """
    mode = record_mode or ini_record_mode.strip() or "none"
    if mode not in RECORD_MODES:
        raise ValueError(
            f"pytest-engagelab: ini option engagelab_record_mode = {mode!r} is not a record mode; "
            f"use one of: {', '.join(RECORD_MODES)}"
        )
    word = redact.strip().lower() or "false"
    if word not in _TRUE:
        raise ValueError(
            f"pytest-engagelab: ini option engagelab_redact_recipients = {redact!r} is not a "
            "boolean; use true or false"
        )
    secrets = _extra_secrets(extra_secrets, environ, records=mode != "none")
    recording = recording_credentials(environ, default_base_url)
    if recording is None and mode != "none":
        raise ValueError(missing_credentials_message(mode))
    if recording is not None and mode == "none":
        # Replaying with real credentials in the environment: code under test may use
        # them, so they are scrubbed from messages too -- but otp_client does not use them.
        key, secret = recording.dev_key, recording.dev_secret
        secrets += [key, secret, f"{key}:{secret}", basic_token(key, secret)]
        recording = None
    folder = Path(directory.strip() or "cassettes")
    return CassetteSettings(
        directory=folder if folder.is_absolute() else rootdir / folder,
        record_mode=mode,
        redact_recipients=_TRUE[word],
        extra_secrets=tuple(secrets),
        recording=recording,
        max_age=parse_max_age(max_age),
    )


#: Extra secrets shorter than this would match inside ordinary text (the plugin's own
#: messages, JSON keys) and garble it, so they are refused.
_MIN_EXTRA_SECRET_LENGTH: Final = 6


def _extra_secrets(
    entries: Iterable[str], environ: Mapping[str, str], *, records: bool
) -> list[str]:
    """The values of the ini option ``engagelab_extra_secrets`` (``ValueError`` with the
    one-line message when one cannot be used; the message never holds a value)."""
    secrets: list[str] = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        if not entry.startswith("$"):
            value = entry
        elif environ.get(entry[1:], "").strip():
            value = environ[entry[1:]]
        elif records:
            state = "empty" if entry[1:] in environ else "not set"
            raise ValueError(
                f"pytest-engagelab: engagelab_extra_secrets names {entry}, which is {state}; "
                "set it or remove the line"
            )
        else:
            continue  # replaying writes no cassette: the secret is not needed
        if len(value) < _MIN_EXTRA_SECRET_LENGTH:
            raise ValueError(
                f"pytest-engagelab: engagelab_extra_secrets has a value of {len(value)} "
                f"characters; secrets shorter than {_MIN_EXTRA_SECRET_LENGTH} characters "
                "cannot be scrubbed safely"
            )
        secrets.append(value)
    return secrets
