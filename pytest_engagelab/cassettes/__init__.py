"""Cassettes: record what EngageLab really answers, replay it offline, never write a secret.

A test marked ``@pytest.mark.engagelab_cassette`` runs on a vcrpy cassette (one
YAML file per test under the ini option ``engagelab_cassette_dir``).  This
module holds the parts a user or a script may call directly:

* :class:`Scrubber` — what is removed before anything is written (the
  ``Authorization`` header, the dev key, the secret, ``key:secret`` and its
  base64 form, extra secrets, optionally recipients);
* :func:`json_body` — the vcrpy matcher that compares JSON bodies as data;
* :func:`read_cassette` — load and check a cassette file, with readable errors;
* :class:`AtomicPersister` — the vcrpy persister that writes cassettes atomically
  and refuses to write one that still holds a secret;
* :func:`check_drift` / :class:`DriftReport` — replay a cassette directory
  through the emulator and report where its answers differ from the recorded ones.

Each part is its own module: :mod:`.credentials`, :mod:`.scrub`, :mod:`.matching`,
:mod:`.files`, :mod:`.settings`, :mod:`.reports`, :mod:`.recorder` (vcrpy) and
:mod:`.drift`; recipients are read by :mod:`pytest_engagelab.emulator.recipients`.
This package re-exports the names a user or a script calls.

Nothing here imports vcrpy at import time: only a test that records or replays
a cassette pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pytest_engagelab.cassettes.credentials import (
    BASE_URL_ENV,
    DEV_KEY_ENV,
    DEV_SECRET_ENV,
    Credentials,
    recording_credentials,
)
from pytest_engagelab.cassettes.errors import CassetteError, CassetteMiss, StaleCassetteWarning
from pytest_engagelab.cassettes.files import (
    CASSETTE_FORMAT_VERSION,
    AtomicPersister,
    cassette_file_name,
    cassette_path,
    read_cassette,
    write_atomically,
)
from pytest_engagelab.cassettes.matching import json_body
from pytest_engagelab.cassettes.scrub import AUTHORIZATION_PLACEHOLDER, Scrubber
from pytest_engagelab.cassettes.settings import RECORD_MODES, CassetteSettings
from pytest_engagelab.emulator.recipients import redact_recipients

if TYPE_CHECKING:
    from pytest_engagelab.cassettes.drift import DriftReport, InteractionDrift, check_drift

__all__ = [
    "AUTHORIZATION_PLACEHOLDER",
    "BASE_URL_ENV",
    "CASSETTE_FORMAT_VERSION",
    "DEV_KEY_ENV",
    "DEV_SECRET_ENV",
    "RECORD_MODES",
    "AtomicPersister",
    "CassetteError",
    "CassetteMiss",
    "CassetteSettings",
    "Credentials",
    "DriftReport",
    "InteractionDrift",
    "Scrubber",
    "StaleCassetteWarning",
    "cassette_file_name",
    "cassette_path",
    "check_drift",
    "json_body",
    "read_cassette",
    "recording_credentials",
    "redact_recipients",
    "write_atomically",
]

_DRIFT_NAMES: Final = frozenset({"DriftReport", "InteractionDrift", "check_drift"})


def __getattr__(name: str) -> Any:
    """The drift checker (and the emulator it runs) is imported on first use, not when
    pytest loads the plugin."""
    if name in _DRIFT_NAMES:
        from pytest_engagelab.cassettes import drift as _drift

        value = getattr(_drift, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
