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

Nothing here imports vcrpy at import time: only a test that records or replays
a cassette pays for it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

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


#: The record modes ``--engagelab-record-mode`` accepts; ``none`` (replay only) is the default.
RECORD_MODES: Final = ("none", "once", "new_episodes", "all", "rewrite")
DEV_KEY_ENV: Final = "ENGAGELAB_DEV_KEY"
DEV_SECRET_ENV: Final = "ENGAGELAB_DEV_SECRET"
BASE_URL_ENV: Final = "ENGAGELAB_BASE_URL"
#: The vcrpy cassette format this plugin reads and writes.
CASSETTE_FORMAT_VERSION: Final = 1

#: What a recorded ``Authorization`` header made of the recording credentials becomes.
AUTHORIZATION_PLACEHOLDER: Final = "<ENGAGELAB_AUTHORIZATION>"
#: What any other ``Authorization`` header becomes (wrong credentials, another scheme).
OTHER_AUTHORIZATION_PLACEHOLDER: Final = "<REDACTED_AUTHORIZATION>"
_SECRET_PLACEHOLDERS: Final = (
    ("base64(key:secret)", "<ENGAGELAB_BASIC_TOKEN>"),
    ("key:secret", "<ENGAGELAB_KEY:SECRET>"),
    ("secret", "<ENGAGELAB_DEV_SECRET>"),
    ("key", "<ENGAGELAB_DEV_KEY>"),
)

_PHONE: Final = re.compile(r"(?<![\w+])\+[1-9][0-9]{6,14}(?![0-9])")
_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_PHONE_PLACEHOLDER: Final = re.compile(r"\+1555[0-9]{7}")
_MAGIC_NUMBER: Final = re.compile(r"\+1000000[0-9]{4}")
_EMAIL_PLACEHOLDER_DOMAIN: Final = "@example.invalid"


class CassetteError(Exception):
    """A cassette cannot be read or written; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"pytest-engagelab: cassette {os.fspath(path)}: {problem}")
        self.path = Path(path)
        self.problem = problem


class CassetteMiss(Exception):
    """A request the cassette does not answer, in a record mode that does not record it.

    Raised from inside httpx's transport (it is not an ``httpx.HTTPError``, so
    no retry loop swallows it); the message names the cassette file, the
    request, the closest recorded request and the command that records it.
    """


# -- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What ``otp_client`` talks with: a dev key, a secret and a base URL."""

    dev_key: str
    dev_secret: str = field(repr=False)
    base_url: str

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header these credentials make."""
        return "Basic " + _b64(f"{self.dev_key}:{self.dev_secret}")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def recording_credentials(environ: Mapping[str, str], default_base_url: str) -> Credentials | None:
    """The real credentials from ``ENGAGELAB_DEV_KEY``/``ENGAGELAB_DEV_SECRET``
    (and ``ENGAGELAB_BASE_URL`` if set), or ``None`` when either is missing."""
    key = environ.get(DEV_KEY_ENV, "").strip()
    secret = environ.get(DEV_SECRET_ENV, "").strip()
    if not key or not secret:
        return None
    base_url = environ.get(BASE_URL_ENV, "").strip() or default_base_url
    return Credentials(key, secret, base_url.rstrip("/"))


def missing_credentials_message(mode: str) -> str:
    """The one line that says recording needs credentials."""
    return (
        f"pytest-engagelab: record mode {mode!r} records against the real EngageLab API and "
        f"needs {DEV_KEY_ENV} and {DEV_SECRET_ENV} set in the environment ({BASE_URL_ENV} "
        "optional); replaying (--engagelab-record-mode=none) needs no credentials"
    )


# -- scrubbing --------------------------------------------------------------------------------


def _phone_placeholder(number: str) -> str:
    digest = hashlib.sha256(number.encode("utf-8")).hexdigest()
    return "+1555" + str(int(digest, 16) % 10_000_000).zfill(7)


def _email_placeholder(address: str) -> str:
    digest = hashlib.sha256(address.lower().encode("utf-8")).hexdigest()
    return f"recipient-{digest[:10]}{_EMAIL_PLACEHOLDER_DOMAIN}"


def _redact_phone(match: re.Match[str]) -> str:
    number = match.group(0)
    if _PHONE_PLACEHOLDER.fullmatch(number) or _MAGIC_NUMBER.fullmatch(number):
        return number
    return _phone_placeholder(number)


def _redact_email(match: re.Match[str]) -> str:
    address = match.group(0)
    if address.lower().endswith(_EMAIL_PLACEHOLDER_DOMAIN):
        return address
    return _email_placeholder(address)


def redact_recipients(text: str) -> str:
    """``text`` with every E.164 phone number and e-mail address replaced by a stable
    placeholder (``+1555xxxxxxx``, ``recipient-xxxxxxxxxx@example.invalid``).

    The same recipient always gets the same placeholder, so a replayed request
    still matches its recording.  The magic numbers (``+1000000xxxx``) and
    placeholders are left alone.  The placeholder is derived from a hash: it
    hides a number from a casual reader, not from someone who tries every number.
    """
    return _PHONE.sub(_redact_phone, _EMAIL.sub(_redact_email, text))


class Scrubber:
    """Removes secrets (and optionally recipients) from requests and responses.

    ``dev_key``/``dev_secret`` are the credentials the test talks with; every
    form of them (the key, the secret, ``key:secret``, its base64 form, each also
    URL- and JSON-escaped) and each of ``extra_secrets`` is replaced by a
    placeholder wherever it occurs: header values, URLs, bodies.  The
    ``Authorization`` header is always replaced as a whole.
    """

    def __init__(
        self,
        dev_key: str,
        dev_secret: str,
        *,
        extra_secrets: Iterable[str] = (),
        redact_recipients: bool = False,
    ) -> None:
        self._authorization = Credentials(dev_key, dev_secret, "").authorization
        named = {
            "key": dev_key,
            "secret": dev_secret,
            "key:secret": f"{dev_key}:{dev_secret}",
            "base64(key:secret)": _b64(f"{dev_key}:{dev_secret}"),
        }
        pairs: list[tuple[str, str]] = [
            (named[name], placeholder) for name, placeholder in _SECRET_PLACEHOLDERS
        ]
        pairs += [(s, "<ENGAGELAB_EXTRA_SECRET>") for s in extra_secrets if s]
        forms: dict[str, str] = {}
        for value, placeholder in pairs:
            for form in _escaped_forms(value):
                forms.setdefault(form, placeholder)
        # Longest first, so that "key:secret" goes before "key" eats part of it.
        self._forms = sorted(forms.items(), key=lambda item: len(item[0]), reverse=True)
        self.redacts_recipients = redact_recipients

    def __repr__(self) -> str:
        return f"Scrubber(secrets={len(self._forms)}, redact_recipients={self.redacts_recipients})"

    def text(self, text: str) -> str:
        """``text`` with every secret (and recipient, if asked) replaced."""
        for secret, placeholder in self._forms:
            if secret in text:
                text = text.replace(secret, placeholder)
        return redact_recipients(text) if self.redacts_recipients else text

    def data(self, data: bytes | str | None) -> bytes | str | None:
        """A body, scrubbed; bytes that are not UTF-8 are scrubbed byte-wise."""
        if data is None:
            return None
        if isinstance(data, str):
            return self.text(data)
        try:
            return self.text(data.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            for secret, placeholder in self._forms:
                data = data.replace(secret.encode("utf-8"), placeholder.encode("utf-8"))
            return data

    def leaks(self, text: str) -> bool:
        """Whether ``text`` still holds a secret (the persister's last check)."""
        return any(secret in text for secret, _ in self._forms)

    def authorization(self, value: str) -> str:
        """The placeholder an ``Authorization`` header value is stored as."""
        if value.strip() == self._authorization:
            return AUTHORIZATION_PLACEHOLDER
        return OTHER_AUTHORIZATION_PLACEHOLDER

    def request(self, request: Any) -> Any:
        """vcrpy's ``before_record_request``: a scrubbed copy of a ``vcr.request.Request``."""
        import copy

        scrubbed = copy.deepcopy(request)
        scrubbed.uri = self.text(scrubbed.uri)
        scrubbed.body = self.data(scrubbed.body)
        headers = {}
        for name, value in scrubbed.headers.items():
            if name.lower() == "authorization":
                headers[name] = self.authorization(str(value))
            else:
                headers[name] = self.text(str(value))
        scrubbed.headers = headers
        return scrubbed

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        """vcrpy's ``before_record_response``: the recorded response dict, scrubbed."""
        headers: dict[str, list[str]] = {}
        for name, values in response.get("headers", {}).items():
            if name.lower() in ("authorization", "www-authenticate", "set-cookie"):
                headers[name] = [OTHER_AUTHORIZATION_PLACEHOLDER for _ in values]
            else:
                headers[name] = [self.text(str(v)) for v in values]
        response["headers"] = headers
        body = response.get("body", {})
        if "string" in body:
            body["string"] = self.data(body["string"])
        return response


_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")
_UNICODE_ESCAPE: Final = re.compile(r"\\u[0-9a-f]{4}")


def _escaped_forms(value: str) -> set[str]:
    """``value`` as it may appear in a request or response: as is, JSON-escaped (with and
    without ``\\uXXXX`` escapes, either case of hex digit, ``/`` as is or as ``\\/``), and
    URL-encoded (``quote`` and ``quote_plus``, ``/`` kept or encoded, percent escapes in
    upper or lower case)."""
    ascii_json = json.dumps(value)[1:-1]
    json_forms = {
        ascii_json,
        _UNICODE_ESCAPE.sub(lambda match: "\\u" + match.group(0)[2:].upper(), ascii_json),
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    json_forms |= {form.replace("/", "\\/") for form in json_forms}
    url_forms = {
        urllib.parse.quote(value),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        urllib.parse.quote_plus(value, safe="/"),
    }
    url_forms |= {_PERCENT_ESCAPE.sub(lambda match: match.group(0).lower(), f) for f in url_forms}
    return {value} | json_forms | url_forms


# -- matching ---------------------------------------------------------------------------------


def _body_text(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return str(body)


def _as_json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


@functools.lru_cache(maxsize=8192)
def _parsed_cached(body: bytes | str | None) -> tuple[str, bool, Any]:
    text = _body_text(body)
    return (text, *_as_json(text))


def _parsed(body: Any) -> tuple[str, bool, Any]:
    """The body as text, whether it is JSON, and its data.  vcrpy compares each request with
    every unplayed interaction, so each recorded body is parsed once, not once per
    comparison (the data is only compared, never changed)."""
    if body is None or isinstance(body, bytes | str):
        return _parsed_cached(body)
    text = _body_text(body)
    return (text, *_as_json(text))


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the bodies are the same JSON data (key order and spacing do not
    matter), or, when either is not JSON, the same bytes.  Raises ``AssertionError``."""
    body1, body2 = r1.body, r2.body
    if type(body1) is type(body2) and body1 == body2:  # the same bytes: the same data
        return
    text1, ok1, data1 = _parsed(body1)
    text2, ok2, data2 = _parsed(body2)
    same = data1 == data2 if ok1 and ok2 else text1 == text2
    if not same:
        raise AssertionError(f"{_short(text1)} != {_short(text2)}")


def _short(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# -- files ------------------------------------------------------------------------------------

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.\-\[\]=,+]")


def cassette_file_name(module_path: str, test_name: str, name: str | None = None) -> str:
    """The cassette file of a test, relative to the cassette directory.

    With the marker's ``name``: ``<name>.yaml``.  Otherwise
    ``<module>/<test>.yaml``: ``module_path`` is the test file relative to the
    rootdir (``tests/test_signup.py`` -> ``tests.test_signup``), ``test_name``
    the test's name within it (``TestLogin::test_ok[en]`` -> ``TestLogin.test_ok[en]``).
    """
    if name is not None:
        parts = [
            _safe(part) for part in name.replace("\\", "/").split("/") if part not in ("", ".")
        ]
        if not parts or ".." in parts:
            raise ValueError(f"cassette name {name!r} must be a relative path inside the directory")
        relative = "/".join(parts)
        return relative if relative.endswith((".yaml", ".yml")) else relative + ".yaml"
    module = module_path.replace("\\", "/").removesuffix(".py").replace("/", ".")
    return f"{_safe(module)}/{_safe(test_name.replace('::', '.'))}.yaml"


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part)


def read_cassette(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A cassette file as data, checked: a YAML mapping with ``version: 1`` and a list of
    ``interactions``, each with a ``request`` and a ``response``.

    Raises :class:`CassetteError` naming the file and the problem; a missing
    file raises ``FileNotFoundError``.
    """
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CassetteError(file, "not UTF-8 text") from None
    if not text.strip():
        raise CassetteError(file, "the file is empty; delete it or record it again")
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise CassetteError(file, f"not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise CassetteError(file, f"expected a mapping at the top, found {type(data).__name__}")
    version = data.get("version")
    if version != CASSETTE_FORMAT_VERSION:
        raise CassetteError(
            file,
            f"format version {version!r} is not supported (this plugin reads vcrpy cassette "
            f"format version {CASSETTE_FORMAT_VERSION}); record it again",
        )
    interactions = data.get("interactions")
    if not isinstance(interactions, list):
        raise CassetteError(file, "'interactions' must be a list")
    for number, interaction in enumerate(interactions, start=1):
        if not (
            isinstance(interaction, dict)
            and isinstance(interaction.get("request"), dict)
            and isinstance(interaction.get("response"), dict)
        ):
            raise CassetteError(
                file, f"interaction {number} must be a mapping with 'request' and 'response'"
            )
    return data


class AtomicPersister:
    """vcrpy persister: readable load errors, atomic writes, and a last secret check.

    Loading goes through :func:`read_cassette`, so a broken file is reported
    with its path and problem instead of being treated as empty (vcrpy's
    default).  Saving writes a temporary file next to the cassette and renames
    it over the old one (``os.replace``), so an interrupted run leaves the old
    cassette or none, never half of one; before writing, the text is searched
    for every secret the scrubber knows and the write is refused if one is left.
    ``ignore_existing`` makes loading see no cassette (record mode ``rewrite``).
    """

    def __init__(
        self,
        *,
        scrubber: Scrubber | None = None,
        ignore_existing: bool = False,
        header: Mapping[str, Any] | None = None,
    ) -> None:
        self.scrubber = scrubber
        self.ignore_existing = ignore_existing
        self.header = dict(header or {})

    def load_cassette(self, cassette_path: str, serializer: Any) -> tuple[list[Any], list[Any]]:
        from vcr.persisters.filesystem import CassetteNotFoundError  # type: ignore[import-untyped]
        from vcr.request import Request  # type: ignore[import-untyped]
        from vcr.serializers import compat  # type: ignore[import-untyped]

        if self.ignore_existing:
            raise CassetteNotFoundError()
        try:
            data = read_cassette(cassette_path)
        except FileNotFoundError:
            raise CassetteNotFoundError() from None
        try:
            requests = [Request._from_dict(i["request"]) for i in data["interactions"]]
            responses = [compat.convert_to_bytes(i["response"]) for i in data["interactions"]]
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
            raise CassetteError(
                cassette_path, f"an interaction is missing a field or has a wrong type ({error!r})"
            ) from None
        return requests, responses

    def save_cassette(
        self, cassette_path: str, cassette_dict: Mapping[str, Any], serializer: Any
    ) -> None:
        from vcr.serializers import compat

        interactions = [
            {
                "request": compat.convert_to_unicode(request._to_dict()),
                "response": compat.convert_to_unicode(response),
            }
            for request, response in zip(
                cassette_dict["requests"], cassette_dict["responses"], strict=True
            )
        ]
        data: dict[str, Any] = {"version": CASSETTE_FORMAT_VERSION}
        if self.header:
            data["engagelab"] = self.header
        data["interactions"] = interactions
        text = (
            "# pytest-engagelab cassette (vcrpy format 1): recorded, secrets scrubbed.\n"
            + serializer.serialize(data)
        )
        if self.scrubber is not None and self.scrubber.leaks(text):
            raise CassetteError(
                cassette_path,
                "not written: a secret is still in it after scrubbing (please report this)",
            )
        write_atomically(Path(cassette_path), text)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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

    @property
    def records(self) -> bool:
        """Whether this run may send requests to the real endpoint."""
        return self.record_mode != "none"


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
        secrets += [key, secret, f"{key}:{secret}", _b64(f"{key}:{secret}")]
        recording = None
    folder = Path(directory.strip() or "cassettes")
    return CassetteSettings(
        directory=folder if folder.is_absolute() else rootdir / folder,
        record_mode=mode,
        redact_recipients=_TRUE[word],
        extra_secrets=tuple(secrets),
        recording=recording,
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


def miss_report(excinfo: Any, test_file: Path) -> str:
    """A failure report for a :class:`CassetteMiss`: its message and where the test made
    the request, without the frames of httpx and vcrpy."""
    lines = [str(excinfo.value)]
    for entry in reversed(excinfo.traceback):
        if Path(str(entry.path)) == test_file:
            lines.append(f"(the request was made at {test_file.name}:{entry.lineno + 1})")
            break
    return "\n".join(lines)


def scrub_report(report: Any, scrubber: Scrubber) -> None:
    """Scrub a pytest report's failure text and captured sections, in place, when they
    hold a secret (a repr, a print, an exception message of the code under test)."""
    if report.longrepr is not None:
        text = str(report.longrepr)
        if scrubber.leaks(text):
            report.longrepr = scrubber.text(text)
    report.sections = [(title, scrubber.text(content)) for title, content in report.sections]


def cassette_path(
    directory: Path, rootdir: Path, test_file: Path, nodeid: str, marker: Any
) -> Path:
    """The cassette file of a test from its ``engagelab_cassette`` marker (``ValueError``
    with the message to show when the marker's arguments are wrong)."""
    names = list(marker.args) + ([marker.kwargs["name"]] if "name" in marker.kwargs else [])
    if (
        len(names) > 1
        or set(marker.kwargs) - {"name"}
        or not all(isinstance(n, str) and n.strip() for n in names)
    ):
        raise ValueError(
            "@pytest.mark.engagelab_cassette takes at most one argument, the cassette name "
            f"(a string such as 'signup/send_code'), got args={marker.args!r} "
            f"kwargs={marker.kwargs!r}"
        )
    try:
        module = test_file.relative_to(rootdir).as_posix()
    except ValueError:
        module = test_file.name
    test_name = nodeid.split("::", 1)[1] if "::" in nodeid else nodeid
    try:
        relative = cassette_file_name(module, test_name, names[0] if names else None)
    except ValueError as error:
        raise ValueError(f"@pytest.mark.engagelab_cassette: {error}") from None
    return directory / relative


def shared_cassettes(directory: Path, rootdir: Path, items: Iterable[Any]) -> str | None:
    """The message for tests that would record into the same cassette, or ``None``."""
    owners: dict[Path, str] = {}
    for item in items:
        marker = item.get_closest_marker("engagelab_cassette")
        if marker is None:
            continue
        try:
            path = cassette_path(directory, rootdir, item.path, item.nodeid, marker)
        except ValueError:
            continue  # reported when the test runs
        if path in owners:
            return (
                f"pytest-engagelab: {owners[path]} and {item.nodeid} both record into cassette "
                f"{path}; recording one would overwrite the other: give each test its own "
                "@pytest.mark.engagelab_cassette name"
            )
        owners[path] = item.nodeid
    return None
