"""The drift check: replay recorded interactions through the emulator, compare the answers.

Each cassette is replayed in order through one fresh :class:`Emulator` (strict
templates, fixed seed).  Before each interaction the emulator is given the
account state the recording implies, never the answer itself:

* templates a recorded request uses (or lists, reads, deletes) without a
  recorded 4001 exist;
* a recorded 2002 means the key was expired, a 2004 that the key may not call
  that endpoint (for that interaction only);
* a recorded delivery error (5001, 5011 to 5020) for a valid phone number is
  what EngageLab knew about that number: the emulator gets the magic number
  for that code instead;
* a recorded 3004 means the same template went to the same recipient shortly
  before: the request is sent once beforehand;
* message ids and codes the emulator invents stand in for the recorded ones
  in later verify requests (a recorded successful verify uses the emulator's code).

Then status, error code (the ``code`` field) and the shape of the JSON body
(field names and JSON types, recursively; arrays by the merged shape of their
elements) are compared.

Why this module is long: the drift check is one pipeline (read, replay through a
fresh emulator with the state each interaction needs primed, compare shapes,
report as pytest items) whose steps share the replay state of one cassette.
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from pytest_engagelab.cassettes.reports import text_of
from pytest_engagelab.emulator.auth import basic_authorization
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.model import EmulatorResponse, Fault
from pytest_engagelab.errors import ErrorCode
from pytest_engagelab.magic import DELIVERY_ERROR_NUMBERS, number_for

__all__ = ["DriftReport", "InteractionDrift", "check_cassette", "check_drift"]

_SENDS: Final = frozenset({"/v1/messages", "/v1/codes", "/v1/custom-messages"})
_TEMPLATES: Final = "/v1/template-configs"
_CHANNELS: Final = frozenset({"whatsapp", "sms", "email", "voice"})
_DELIVERY_CODES: Final = frozenset(int(code) for code in DELIVERY_ERROR_NUMBERS.values())
_DRIFT_KEY: Final = "drift-check-key"
_DRIFT_SECRET: Final = "drift-check-secret"

EmulatorFactory = Callable[[], Emulator]


@dataclass(frozen=True)
class InteractionDrift:
    """One recorded interaction and how the emulator's answer differs from it."""

    cassette: Path
    index: int
    method: str
    path: str
    differences: tuple[str, ...] = ()

    @property
    def drifted(self) -> bool:
        return bool(self.differences)

    @property
    def label(self) -> str:
        return f"#{self.index} {self.method} {self.path}"

    def describe(self, shown: str | None = None) -> str:
        """The interaction and its differences, one per line; ``shown`` names the cassette."""
        lines = [f"{shown or self.cassette} {self.label}:"]
        lines += [f"  {difference}" for difference in self.differences] or ["  no drift"]
        return "\n".join(lines)


@dataclass
class DriftReport:
    """What :func:`check_drift` found: every interaction checked, and broken cassettes."""

    directory: Path
    interactions: list[InteractionDrift] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[InteractionDrift]:
        """The interactions whose emulator answer differs from the recorded one."""
        return [i for i in self.interactions if i.drifted]

    @property
    def ok(self) -> bool:
        """No drift and no unreadable cassette."""
        return not self.drifted and not self.errors

    def format(self) -> str:
        """A readable report: a summary line, then each drifted interaction and error."""
        cassettes = len({i.cassette for i in self.interactions})
        lines = [
            f"engagelab drift check of {self.directory}: {len(self.interactions)} interactions "
            f"in {cassettes} cassettes, {len(self.drifted)} differ, "
            f"{len(self.errors)} unreadable cassettes"
        ]
        lines += [drift.describe() for drift in self.drifted]
        lines += self.errors
        return "\n".join(lines)


def cassette_files(directory: Path) -> list[Path]:
    """The cassette files under ``directory`` (``*.yaml``/``*.yml``, recursively, sorted)."""
    if not directory.is_dir():
        return []
    found = [
        path
        for pattern in ("*.yaml", "*.yml")
        for path in directory.rglob(pattern)
        if not path.name.startswith(".")
    ]
    return sorted(found)


def check_drift(
    cassette_dir: str | Path, *, emulator_factory: EmulatorFactory | None = None
) -> DriftReport:
    """Replay every interaction of every cassette under ``cassette_dir`` through the
    emulator and report where its answers differ from the recorded ones.

    ``emulator_factory`` builds the emulator for each cassette (default: strict
    templates, seed 0).  For scripts::

        report = check_drift("cassettes")
        print(report.format())
        raise SystemExit(0 if report.ok else 1)
    """
    from pytest_engagelab.cassettes.errors import CassetteError

    directory = Path(cassette_dir)
    report = DriftReport(directory)
    if not directory.is_dir():
        report.errors.append(f"{directory}: no such cassette directory")
        return report
    for path in cassette_files(directory):
        try:
            report.interactions += check_cassette(path, emulator_factory=emulator_factory)
        except CassetteError as error:
            report.errors.append(str(error))
    return report


def check_cassette(
    path: Path, *, emulator_factory: EmulatorFactory | None = None
) -> list[InteractionDrift]:
    """The drift of each interaction of one cassette (raises ``CassetteError`` if unreadable)."""
    from pytest_engagelab.cassettes.files import read_cassette

    data = read_cassette(path)
    emulator = (
        emulator_factory()
        if emulator_factory is not None
        else Emulator(dev_key=_DRIFT_KEY, dev_secret=_DRIFT_SECRET, strict_templates=True, seed=0)
    )
    replay = _Replay(emulator, _base_path(data))
    return [
        replay.run(path, number, interaction)
        for number, interaction in enumerate(data["interactions"], start=1)
    ]


def _base_path(data: dict[str, Any]) -> str:
    header = data.get("engagelab")
    base_url = header.get("base_url") if isinstance(header, dict) else None
    if isinstance(base_url, str):
        return urllib.parse.urlsplit(base_url).path.rstrip("/")
    return ""


def _json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


class _Replay:
    """One cassette's replay through one emulator, with the state it builds up."""

    def __init__(self, emulator: Emulator, base_path: str) -> None:
        self.emulator = emulator
        self.base_path = base_path
        self.authorization = basic_authorization(emulator.dev_key, emulator.dev_secret)
        self.ids: dict[str, tuple[str, str | None]] = {}
        self.primed = 0

    def run(self, cassette: Path, number: int, interaction: dict[str, Any]) -> InteractionDrift:
        from pytest_engagelab.cassettes.scrub import AUTHORIZATION_PLACEHOLDER

        request, response = interaction["request"], interaction["response"]
        method = str(request.get("method", "GET")).upper()
        path = urllib.parse.unquote(urllib.parse.urlsplit(str(request.get("uri", ""))).path)
        if self.base_path and path.startswith(self.base_path):
            path = path[len(self.base_path) :] or "/"
        headers: dict[str, str] = {}
        for name, values in (request.get("headers") or {}).items():
            value = values[0] if isinstance(values, list) and values else values
            headers[str(name).lower()] = str(value)
        if headers.get("authorization") == AUTHORIZATION_PLACEHOLDER:
            headers["authorization"] = self.authorization
        status_info = response.get("status") or {}
        status = status_info.get("code") if isinstance(status_info, dict) else None
        recorded_text = text_of((response.get("body") or {}).get("string"))
        body = text_of(request.get("body")).encode("utf-8")
        is_json, recorded = _json(recorded_text)
        recorded = recorded if is_json else None
        body = self._prepare(method, path, headers, body, status, recorded)
        outcome = self._handle(method, path, headers, body, status, recorded)
        differences = _compare(status, recorded_text, outcome)
        if isinstance(outcome, EmulatorResponse) and outcome.status == 200:
            self._learn(path, body, recorded, outcome)
        return InteractionDrift(cassette, number, method, path, tuple(differences))

    def _handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        status: Any,
        recorded: Any,
    ) -> EmulatorResponse | Fault:
        emulator = self.emulator
        code = recorded.get("code") if isinstance(recorded, dict) else None
        key_status, forbidden = emulator.key_status, emulator.forbidden_endpoints
        if code == int(ErrorCode.AUTH_EXPIRED):
            emulator.key_status = "expired"
        elif code == int(ErrorCode.PERMISSION_DENIED):
            endpoint = path
            if path.startswith(_TEMPLATES + "/"):
                endpoint = _TEMPLATES + "/{id}"
            emulator.forbidden_endpoints = forbidden | {endpoint}
        try:
            return emulator.handle(method, path, headers, body)
        finally:
            emulator.key_status, emulator.forbidden_endpoints = key_status, forbidden

    # -- the state the recording implies --------------------------------------------------

    def _prepare(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        status: Any,
        recorded: Any,
    ) -> bytes:
        code = recorded.get("code") if isinstance(recorded, dict) else None
        _ok, payload = _json(body.decode("utf-8", "replace"))
        if path in _SENDS and isinstance(payload, dict):
            payload = self._prepare_send(path, payload, code, recorded)
            body = json.dumps(payload).encode("utf-8")
            if code == int(ErrorCode.FREQUENCY_LIMITED):
                self.emulator.handle(method, path, headers, body)
        elif path == "/v1/verifications" and isinstance(payload, dict):
            payload = self._prepare_verify(payload, code, recorded)
            body = json.dumps(payload).encode("utf-8")
        elif path.startswith(_TEMPLATES):
            self._prepare_templates(method, path, payload, status, code, recorded)
        return body

    def _ensure_template(self, template_id: str, strategy: str, verification: bool = True) -> None:
        if template_id not in self.emulator.templates:
            self.emulator.add_template(template_id, strategy=strategy, verification=verification)

    def _prepare_send(
        self, path: str, payload: dict[str, Any], code: Any, recorded: Any
    ) -> dict[str, Any]:
        payload = copy.deepcopy(payload)
        to = payload.get("to")
        first = to[0] if isinstance(to, list) and to else to
        template = payload.get("template")
        template_id = template.get("id") if isinstance(template, dict) else None
        params = template.get("params") if isinstance(template, dict) else None
        if isinstance(template_id, str) and code != int(ErrorCode.NOT_FOUND):
            channel = recorded.get("send_channel") if isinstance(recorded, dict) else None
            if channel not in _CHANNELS:
                channel = "email" if isinstance(first, str) and "@" in first else "sms"
            strategy = "whatsapp|sms" if channel == "whatsapp" else str(channel)
            has_code = isinstance(params, dict) and "code" in params
            self._ensure_template(template_id, strategy, path != "/v1/custom-messages" or has_code)
        known = ErrorCode.lookup(code) if isinstance(code, int) else None
        if (
            isinstance(known, ErrorCode)
            and int(known) in _DELIVERY_CODES
            and isinstance(to, str)
            and to.startswith("+")
            and to[1:].isdigit()
        ):
            payload["to"] = number_for(known)
        return payload

    def _prime_message(self) -> tuple[str, str | None]:
        self.primed += 1
        to = f"+1555{self.primed:07d}"
        self._ensure_template("drift-check-primer", "sms")
        answer = self._post("/v1/messages", {"to": to, "template": {"id": "drift-check-primer"}})
        message_id = answer.json()["message_id"] if isinstance(answer, EmulatorResponse) else ""
        return str(message_id), self.emulator.last_code(to)

    def _prepare_verify(self, payload: dict[str, Any], code: Any, recorded: Any) -> dict[str, Any]:
        payload = dict(payload)
        recorded_id = payload.get("message_id")
        if not isinstance(recorded_id, str):
            return payload
        known = self.ids.get(recorded_id)
        if known is None and code != int(ErrorCode.NOT_FOUND):
            known = self._prime_message()
            self.ids[recorded_id] = known
            if code == int(ErrorCode.VALIDATION_FAILED) and known[1] is not None:
                self._verify(known[0], known[1])
        if known is None:
            return payload
        payload["message_id"] = known[0]
        if isinstance(recorded, dict) and recorded.get("verified") is True and known[1]:
            payload["verify_code"] = known[1]
        return payload

    def _verify(self, message_id: str, code: str) -> None:
        self._post("/v1/verifications", {"message_id": message_id, "verify_code": code})

    def _post(self, path: str, payload: dict[str, Any]) -> EmulatorResponse | Fault:
        """A request of the drift check's own (to set up state), with valid credentials."""
        headers = {"authorization": self.authorization, "content-type": "application/json"}
        return self.emulator.handle("POST", path, headers, json.dumps(payload).encode("utf-8"))

    def _prepare_templates(
        self, method: str, path: str, payload: Any, status: Any, code: Any, recorded: Any
    ) -> None:
        if path.startswith(_TEMPLATES + "/") and status == 200:
            self._ensure_template(path.rsplit("/", 1)[1], "sms")
        elif path == _TEMPLATES and method == "GET" and isinstance(recorded, list):
            for row in recorded:
                if isinstance(row, dict) and isinstance(row.get("template_id"), str):
                    strategy = row.get("send_channel_strategy")
                    self._ensure_template(
                        row["template_id"], strategy if isinstance(strategy, str) else "sms"
                    )
        elif (
            path == _TEMPLATES
            and method == "POST"
            and code == int(ErrorCode.VALIDATION_FAILED)
            and isinstance(payload, dict)
            and isinstance(payload.get("template_id"), str)
        ):
            self._ensure_template(payload["template_id"], "sms")

    def _learn(self, path: str, body: bytes, recorded: Any, outcome: EmulatorResponse) -> None:
        if path not in _SENDS or not isinstance(recorded, dict):
            return
        recorded_id = recorded.get("message_id")
        ok, answer = _json(outcome.body.decode("utf-8", "replace"))
        if not (ok and isinstance(answer, dict) and isinstance(recorded_id, str)):
            return
        _ok, payload = _json(body.decode("utf-8", "replace"))
        to = payload.get("to") if isinstance(payload, dict) else None
        code = self.emulator.last_code(to) if isinstance(to, str) else None
        self.ids[recorded_id] = (str(answer.get("message_id")), code)


# -- comparing ------------------------------------------------------------------------------


def _compare(status: Any, recorded_text: str, outcome: EmulatorResponse | Fault) -> list[str]:
    if isinstance(outcome, Fault):
        error = outcome.exception
        return [f"answer: recorded status {status}, the emulator raises {type(error).__name__}"]
    differences = []
    if status != outcome.status:
        differences.append(f"status: recorded {status}, emulator {outcome.status}")
    recorded_ok, recorded = _json(recorded_text)
    answer_ok, answer = _json(outcome.body.decode("utf-8", "replace"))
    recorded_code = recorded.get("code") if recorded_ok and isinstance(recorded, dict) else None
    answer_code = answer.get("code") if answer_ok and isinstance(answer, dict) else None
    if recorded_code != answer_code:
        differences.append(
            f"error code: recorded {_code(recorded_code)}, emulator {_code(answer_code)}"
        )
    if status != outcome.status:
        return differences  # an error body and a success body differ in shape anyway
    if recorded_ok and answer_ok:
        differences += _shape_differences("$", _shape(recorded), _shape(answer))
    elif recorded_ok != answer_ok:
        which = "the recorded body" if answer_ok else "the emulator's body"
        differences.append(f"body: {which} is not JSON")
    return differences


def _code(code: Any) -> str:
    if code is None:
        return "none"
    if isinstance(code, int) and not isinstance(code, bool):
        known = ErrorCode.lookup(code)
        return (
            f"{code} ({known.name})" if isinstance(known, ErrorCode) else f"{code} (undocumented)"
        )
    return repr(code)


Shape = str | dict[str, "Shape"] | list["Shape"]


def _shape(value: Any) -> Shape:
    if isinstance(value, dict):
        return {str(k): _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        merged: Shape | None = None
        for element in value:
            shape = _shape(element)
            merged = shape if merged is None else _merge(merged, shape)
        return [] if merged is None else [merged]
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "string"


def _kind(shape: Shape) -> str:
    if isinstance(shape, dict):
        return "object"
    if isinstance(shape, list):
        return "array"
    return shape


def _merge(a: Shape, b: Shape) -> Shape:
    if isinstance(a, dict) and isinstance(b, dict):
        merged = dict(a)
        for key, value in b.items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return merged
    if isinstance(a, list) and isinstance(b, list):
        if not a or not b:
            return a or b
        return [_merge(a[0], b[0])]
    if _kind(a) == _kind(b):
        return a
    return "|".join(sorted(set(_kind(a).split("|")) | set(_kind(b).split("|"))))


def _shape_differences(where: str, recorded: Shape, answer: Shape) -> Iterator[str]:
    if _kind(recorded) != _kind(answer):
        recorded_kind, answer_kind = _kind(recorded), _kind(answer)
        yield f"shape: {where} is {recorded_kind} in the recording, {answer_kind} in the emulator"
        return
    if isinstance(recorded, dict) and isinstance(answer, dict):
        for key in recorded:
            if key not in answer:
                yield f"shape: {where}.{key} is recorded but missing from the emulator's answer"
        for key in answer:
            if key not in recorded:
                yield f"shape: {where}.{key} is in the emulator's answer but not recorded"
        for key in recorded:
            if key in answer:
                yield from _shape_differences(f"{where}.{key}", recorded[key], answer[key])
    elif isinstance(recorded, list) and isinstance(answer, list) and recorded and answer:
        yield from _shape_differences(f"{where}[]", recorded[0], answer[0])


# -- pytest --engagelab-check-drift ----------------------------------------------------------


class DriftFound(Exception):
    """Internal: an interaction drifted."""


class DriftItem(pytest.Item):
    """One recorded interaction, checked against the emulator."""

    def __init__(
        self, *, result: InteractionDrift | None, error: str | None, shown: str, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.result = result
        self.error = error
        self.shown = shown

    def runtest(self) -> None:
        if self.error is not None:
            raise DriftFound(self.error)
        if self.result is not None and self.result.drifted:
            raise DriftFound(self.result.describe(self.shown))

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, DriftFound):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


def collect_drift_items(session: pytest.Session, directory: Path) -> list[pytest.Item]:
    """One item per recorded interaction under ``directory`` (one per unreadable cassette)."""
    from pytest_engagelab.cassettes.errors import CassetteError

    items: list[pytest.Item] = []
    rootdir = session.config.rootpath
    files = cassette_files(directory)
    if not files:  # nothing to check is a mistake (a wrong directory), not a success
        message = (
            f"pytest-engagelab: no cassettes (*.yaml) under {directory}; set the ini option "
            "engagelab_cassette_dir to the cassette directory"
        )
        item = DriftItem.from_parent(
            session,
            name="no-cassettes",
            nodeid="no-cassettes",
            path=directory,
            result=None,
            error=message,
            shown=str(directory),
        )
        return [item]
    for path in files:
        try:
            shown = str(path.relative_to(rootdir))
        except ValueError:
            shown = str(path)
        try:
            results: list[tuple[str, InteractionDrift | None, str | None]] = [
                (result.label, result, None) for result in check_cassette(path)
            ]
        except CassetteError as unreadable:
            results = [("unreadable", None, str(unreadable))]
        for label, result, error in results:
            items.append(
                DriftItem.from_parent(
                    session,
                    name=label,
                    nodeid=f"{shown}::{label}",
                    path=path,
                    result=result,
                    error=error,
                    shown=shown,
                )
            )
    return items
