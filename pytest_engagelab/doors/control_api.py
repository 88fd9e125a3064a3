"""The control API under ``/_emulator/``: what a Python test does with the methods of
``OTPServer``, for clients in other processes and languages.  JSON in, JSON out."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from pytest_engagelab.doors.controls import EmulatorControls, review_from_json
from pytest_engagelab.doors.http import HTTPError, Request, dumps
from pytest_engagelab.emulator.core import lone_surrogate, lone_surrogate_message
from pytest_engagelab.emulator.journal import SentMessage
from pytest_engagelab.emulator.model import EmulatorResponse, InjectedError
from pytest_engagelab.emulator.template_configs import template_from_config
from pytest_engagelab.emulator.templates import TemplateConfigError
from pytest_engagelab.errors import ErrorCode

if TYPE_CHECKING:
    from pytest_engagelab.doors.server import OTPServer

__all__ = ["CONTROL_PREFIX", "ControlAPI", "TemplateSpecError", "load_templates", "message_to_json"]

#: The reserved path prefix of the control API.
CONTROL_PREFIX: Final = "/_emulator/"
_ERROR_CODES: Final = {int(code): code for code in ErrorCode}
_ADD_TEMPLATE_FIELDS: Final = {
    "template_id": str,
    "strategy": str,
    "code_length": int,
    "ttl": int,
    "code_type": int,
    "content": str,
    "brand_name": str,
    "from_id": str,
    "description": str,
    "verification": bool,
}


class TemplateSpecError(ValueError):
    """A template given to ``load_templates`` (or ``--templates``) is malformed."""


def message_to_json(message: SentMessage) -> dict[str, Any]:
    """A journal entry as the control API lists it (everything but the request)."""
    return {
        f.name: list(value) if isinstance(value := getattr(message, f.name), tuple) else value
        for f in dataclasses.fields(message)
        if f.name != "request"
    }


def load_templates(controls: EmulatorControls, spec: Any) -> list[str]:
    """Register templates from JSON data; return their ids.

    ``spec`` is one object or a list of them.  An object with
    ``send_channel_strategy`` is a template definition as ``POST
    /v1/template-configs`` takes it (checked by the same rules); any other
    object holds the keywords of ``add_template``.  A template replaces one of
    the same id.  The keywords of ``add_template`` are ``template_id`` (required),
    ``strategy``, ``code_length``, ``ttl``, ``code_type``, ``content``,
    ``brand_name``, ``from_id``, ``description``, ``verification``.
    """
    items = spec if isinstance(spec, list) else [spec]
    ids: list[str] = []
    for number, item in enumerate(items, 1):
        where = f"template #{number}"
        if not isinstance(item, dict):
            raise TemplateSpecError(f"{where} must be a JSON object, not {type(item).__name__}")
        if "send_channel_strategy" in item:
            ids.append(_register_config(controls, item, where))
            continue
        unknown = sorted(set(item) - set(_ADD_TEMPLATE_FIELDS))
        if unknown:
            raise TemplateSpecError(
                f"{where}: unknown field(s) {', '.join(unknown)}; use "
                f"{', '.join(_ADD_TEMPLATE_FIELDS)} (or a template-configs definition with "
                "send_channel_strategy)"
            )
        for name, value in item.items():
            kind = _ADD_TEMPLATE_FIELDS[name]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise TemplateSpecError(f"{where}: {name} must be a {kind.__name__}, not {value!r}")
        if "template_id" not in item:
            raise TemplateSpecError(f"{where}: template_id is required")
        kwargs = dict(item)
        template_id = kwargs.pop("template_id")
        try:
            controls.add_template(template_id, **kwargs)
        except ValueError as error:
            raise TemplateSpecError(f"{where} ({template_id!r}): {error}") from None
        ids.append(template_id)
    return ids


def _register_config(controls: EmulatorControls, config: dict[str, Any], where: str) -> str:
    try:
        parsed = template_from_config(config)
    except TemplateConfigError as error:
        raise TemplateSpecError(f"{where}: {error}") from None
    stored = controls.add_template(parsed.template_id)  # then made exactly the parsed one
    for spec in dataclasses.fields(parsed):
        setattr(stored, spec.name, getattr(parsed, spec.name))
    return parsed.template_id


class _InjectedAnswer:
    """``{"status": 503, "body": {...}}`` as an injectable ready answer (a ``ResponseLike``)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self.headers = {"content-type": "application/json"}
        self._content = dumps(body)

    def read(self) -> bytes:
        return self._content


def _injected_error(payload: dict[str, Any]) -> InjectedError:
    """``{"code": 5001}``, ``{"status": 503, "body": {...}}`` or ``{"drop": true}``."""
    if payload.get("drop") is True:
        return ConnectionResetError("dropped by the emulator (injected)")
    if "status" in payload:
        status = payload["status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise HTTPError(400, "status must be an HTTP status 100..599", ErrorCode.INVALID_PARAMS)
        try:
            return _InjectedAnswer(status, payload.get("body", {}))
        except ValueError:
            raise HTTPError(
                400, "body must be JSON without Infinity or NaN", ErrorCode.INVALID_PARAMS
            ) from None
    code = payload.get("code")
    known = _ERROR_CODES.get(code) if isinstance(code, int) else None
    if known is None:
        raise HTTPError(
            400,
            f"code must be a documented EngageLab error code such as 5001, not {code!r} "
            '(or give {"status": ..., "body": ...} or {"drop": true})',
            ErrorCode.INVALID_PARAMS,
        )
    return known


_Route = Callable[["ControlAPI", Any, dict[str, list[str]]], Any]


class ControlAPI:
    """The routes under :data:`CONTROL_PREFIX`, served for one ``OTPServer``."""

    def __init__(self, server: OTPServer) -> None:
        self.server = server

    def handle(self, request: Request) -> EmulatorResponse:
        method, path = request.method, request.path
        name = path[len(CONTROL_PREFIX) :].strip("/")
        route = _ROUTES.get((method, name))
        if route is None:
            allowed = [m for m, n in _ROUTES if n == name]
            if allowed:
                raise HTTPError(
                    405,
                    f"{method} {path}: use {' or '.join(allowed)}",
                    ErrorCode.INVALID_PARAMS,
                    (("allow", ", ".join(allowed)),),
                )
            raise HTTPError(
                404,
                f"no such control endpoint: {method} {path}; there are: "
                + ", ".join(f"{m} {CONTROL_PREFIX}{n}" for m, n in _ROUTES),
                ErrorCode.NOT_FOUND,
            )
        payload: Any = {}
        body = request.body
        if body.strip():
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise HTTPError(400, "the control request body is not valid JSON") from None
            bad = lone_surrogate(payload)
            if bad is not None:
                raise HTTPError(400, lone_surrogate_message(bad))
        if name != "templates" and not isinstance(payload, dict):
            raise HTTPError(400, "the control request body must be a JSON object")
        try:
            answer = dumps(route(self, payload, parse_qs(request.query)))
        except ValueError:  # a float the clock cannot hold: never Infinity on the wire
            raise HTTPError(
                400, "the answer would not be finite JSON", ErrorCode.INVALID_PARAMS
            ) from None
        return EmulatorResponse(200, answer)

    def health(self, payload: Any, query: dict[str, list[str]]) -> Any:
        server = self.server
        return {
            "status": "ok",
            "url": server.url,
            "sent": len(server.emulator.journal),
            "now": server.emulator.clock.now(),
        }

    def sent(self, payload: Any, query: dict[str, list[str]]) -> Any:
        wanted = {k: v[-1] for k, v in query.items() if k in ("to", "template_id", "endpoint")}
        return {
            "sent": [
                message_to_json(m)
                for m in self.server.sent
                if all(getattr(m, k) == v for k, v in wanted.items())
            ]
        }

    def review_template(self, payload: Any, query: dict[str, list[str]]) -> Any:
        try:
            return review_from_json(self.server, payload)
        except LookupError as error:
            raise HTTPError(400, str(error), ErrorCode.NOT_FOUND) from None
        except ValueError as error:
            raise HTTPError(400, str(error), ErrorCode.INVALID_PARAMS) from None

    def requests(self, payload: Any, query: dict[str, list[str]]) -> Any:
        return {"requests": [entry.to_json() for entry in self.server.requests]}

    def last_code(self, payload: Any, query: dict[str, list[str]]) -> Any:
        to = query.get("to", [""])[-1]
        if not to:
            raise HTTPError(400, "give the recipient: ?to=%2B6598765432", ErrorCode.INVALID_PARAMS)
        code = self.server.emulator.last_code(to)
        if code is None:
            raise HTTPError(404, f"no code was delivered to {to!r}", ErrorCode.NOT_FOUND)
        return {"to": to, "code": code}

    def list_templates(self, payload: Any, query: dict[str, list[str]]) -> Any:
        return {"templates": [t.summary() for t in self.server.emulator.templates.values()]}

    def templates(self, payload: Any, query: dict[str, list[str]]) -> Any:
        try:
            return {"templates": load_templates(self.server, payload)}
        except TemplateSpecError as error:
            raise HTTPError(400, str(error), ErrorCode.INVALID_PARAMS) from None

    def fail_next(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        times = payload.get("times", 1)
        endpoint = payload.get("endpoint")
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise HTTPError(400, "times must be an integer >= 1", ErrorCode.INVALID_PARAMS)
        if endpoint is not None and not isinstance(endpoint, str):
            raise HTTPError(400, "endpoint must be a path such as /v1/messages")
        try:
            injection = self.server.fail_next(
                _injected_error(payload), times=times, endpoint=endpoint
            )
        except ValueError as error:
            raise HTTPError(400, str(error), ErrorCode.INVALID_PARAMS) from None
        return {"injected": injection.describe()}

    def fail_for(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        to = payload.get("to")
        if not isinstance(to, str) or not to:
            raise HTTPError(400, "to is required: the recipient to fail", ErrorCode.INVALID_PARAMS)
        return {"injected": self.server.fail_for(to, _injected_error(payload)).describe()}

    def advance(self, payload: dict[str, Any], query: dict[str, list[str]]) -> Any:
        seconds: Any = payload.get("seconds")
        try:
            return {"now": self.server.advance(seconds)}
        except ValueError as error:  # the clock names what it takes, and its limit
            raise HTTPError(400, str(error), ErrorCode.INVALID_PARAMS) from None

    def reset(self, payload: Any, query: dict[str, list[str]]) -> Any:
        self.server.reset()
        return {"reset": True}


_ROUTES: Final[dict[tuple[str, str], _Route]] = {
    ("GET", "health"): ControlAPI.health,
    ("GET", "sent"): ControlAPI.sent,
    ("GET", "requests"): ControlAPI.requests,
    ("POST", "review-template"): ControlAPI.review_template,
    ("GET", "last-code"): ControlAPI.last_code,
    ("GET", "templates"): ControlAPI.list_templates,
    ("POST", "templates"): ControlAPI.templates,
    ("POST", "fail-next"): ControlAPI.fail_next,
    ("POST", "fail-for"): ControlAPI.fail_for,
    ("POST", "advance"): ControlAPI.advance,
    ("POST", "reset"): ControlAPI.reset,
}
