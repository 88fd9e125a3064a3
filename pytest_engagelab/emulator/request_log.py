"""Every request that reached the emulator, delivered or refused, in the order it came.

Part of the sans-IO core: bodies are kept as bytes and parsed when a test reads them,
and a request is kept as a plain tuple of atoms (:func:`record_atoms`), built into a
:class:`RequestRecord` when a test reads it: the garbage collector tracks nothing a
long test's log keeps.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from pytest_engagelab.emulator.bounded import BoundedLog
from pytest_engagelab.emulator.codes import ErrorCode
from pytest_engagelab.emulator.journal import build_request
from pytest_engagelab.emulator.model import ENDPOINTS

__all__ = [
    "RequestLog",
    "RequestRecord",
    "endpoint_name",
    "mask_authorization",
    "record",
    "record_atoms",
    "record_from_atoms",
]

_ERROR_CODES: Final = {int(code): code for code in ErrorCode}
_LINE: Final = 240  # longest body text in one line of a report
_new: Final = object.__new__


def endpoint_name(path: str) -> str | None:
    """The endpoint ``path`` (no query, no trailing slash) belongs to, as ``ENDPOINTS``
    names it, or ``None``."""
    if path in ENDPOINTS:
        return path
    if path.startswith("/v1/template-configs/") and path.count("/") == 3:
        return "/v1/template-configs/{id}"
    return None


def mask_authorization(value: str) -> str:
    """``Basic dGVzdDp4`` -> ``Basic ***``: the scheme stays, the credentials never."""
    scheme, _, rest = value.strip().partition(" ")
    return f"{scheme} ***" if rest else "***"


def _parsed(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _compact(value: Any, raw: bytes) -> str:
    if value is None:
        text = raw.decode("utf-8", "replace") if raw else ""
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= _LINE else text[: _LINE - 3] + "..."


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered (or dropped), as a test reads it.

    ``endpoint`` is the route as ``fail_next(endpoint=...)`` names it
    (``"/v1/template-configs/{id}"``), ``None`` for a path the API does not have.
    ``json`` is the parsed request body (``None`` when it is not JSON), ``headers``
    the request headers with lower-case names and ``Authorization`` masked.
    ``status`` is the HTTP status answered, ``None`` when an injected exception
    answered nothing (``raised`` then names it); ``code`` the EngageLab error code
    of the answer (an :class:`~pytest_engagelab.errors.ErrorCode` when documented),
    ``None`` for a 200; ``answer`` the parsed answer body; ``at`` the emulator's
    clock when it arrived.
    """

    method: str
    path: str
    endpoint: str | None
    status: int | None
    at: float
    raised: str | None = None
    _body: bytes = field(default=b"", repr=False, compare=False)
    _answer: bytes = field(default=b"", repr=False, compare=False)
    _headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @functools.cached_property
    def json(self) -> Any:
        """The parsed request body, or ``None``."""
        return _parsed(self._body)

    @functools.cached_property
    def answer(self) -> Any:
        """The parsed answer body, or ``None`` (no answer, or not JSON)."""
        return _parsed(self._answer)

    @functools.cached_property
    def code(self) -> int | None:
        """The EngageLab error code answered, ``None`` for success or no answer."""
        answer = self.answer
        value = answer.get("code") if isinstance(answer, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value == 0:
            return None
        return _ERROR_CODES.get(value, value)

    @functools.cached_property
    def headers(self) -> dict[str, str]:
        """The request headers, lower-case names, ``Authorization`` masked."""
        masked = {}
        for name, value in self._headers.items():
            name = str(name).lower()
            masked[name] = mask_authorization(value) if name == "authorization" else str(value)
        return masked

    if not TYPE_CHECKING:  # seen at run time only: mypy keeps checking attribute names

        def __getattr__(self, name: str) -> Any:
            # Reached only for ``_headers`` of a record kept as atoms whose door gave a
            # request recipe: the headers are those of the request it builds.
            recipe = self.__dict__.get("_recipe") if name == "_headers" else None
            if recipe is None:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}"
                )
            headers = self.__dict__["_headers"] = build_request(recipe).headers
            return headers

    def describe(self) -> str:
        """One line: the request and its answer, no credentials."""
        request = f"{self.method} {self.path}"
        body = _compact(self.json, self._body)
        if body:
            request += f" {body}"
        if self.status is None:
            return f"{request} -> no answer ({self.raised})"
        answer = _compact(self.answer, self._answer)
        return f"{request} -> {self.status} {answer}".rstrip()

    def to_json(self) -> dict[str, Any]:
        """The record as the control API lists it."""
        return {
            "method": self.method,
            "path": self.path,
            "endpoint": self.endpoint,
            "json": self.json,
            "headers": self.headers,
            "status": self.status,
            "code": None if self.code is None else int(self.code),
            "answer": self.answer,
            "at": self.at,
            "raised": self.raised,
        }


def record(
    method: str,
    path: str,
    endpoint: str | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    status: int | None,
    answer: bytes,
    at: float,
    raised: BaseException | None = None,
) -> RequestRecord:
    """A :class:`RequestRecord`.  ``headers`` is kept as given (read when a test asks):
    each door hands over a mapping it does not change afterwards."""
    # Every request pays for this: fill the frozen record's __dict__ in one step instead of
    # the generated __init__'s object.__setattr__ per field (a fifth of the cost).
    entry = _new(RequestRecord)
    entry.__dict__.update(
        method=method,
        path=path,
        endpoint=endpoint,
        status=status,
        at=at,
        raised=None if raised is None else raised_text(raised),
        _body=body if type(body) is bytes else bytes(body),
        _answer=answer,
        _headers=headers,
    )
    return entry


def raised_text(raised: BaseException) -> str:
    """How a record names the exception that answered instead of a response."""
    return f"{type(raised).__name__}({str(raised)!r})"


def record_atoms(
    method: str,
    path: str,
    endpoint: str | None,
    status: int | None,
    at: float,
    raised: str | None,
    body: bytes,
    answer: bytes,
    headers: Mapping[str, str] | None,
    recipe: tuple[Any, ...] | None,
) -> tuple[Any, ...]:
    """A request as the log keeps it: one flat tuple (the recipe's atoms at its end),
    read by :func:`record_from_atoms`.  ``headers`` is ``None`` when ``recipe`` (see
    :func:`~pytest_engagelab.emulator.journal.register_request_builder`) builds them."""
    return (method, path, endpoint, status, at, raised, body, answer, headers, *(recipe or ()))


def record_from_atoms(entry: tuple[Any, ...]) -> RequestRecord:
    """The :class:`RequestRecord` a tuple from :func:`record_atoms` describes."""
    method, path, endpoint, status, at, raised, body, answer, headers = entry[:9]
    record = _new(RequestRecord)
    record.__dict__.update(
        method=method,
        path=path,
        endpoint=endpoint,
        status=status,
        at=at,
        raised=raised,
        _body=body,
        _answer=answer,
    )
    if headers is not None:
        record.__dict__["_headers"] = headers
    elif len(entry) > 9:
        record.__dict__["_recipe"] = entry[9:]
    else:
        record.__dict__["_headers"] = {}
    return record


class RequestLog(BoundedLog[RequestRecord]):
    """A thread-safe, bounded list of :class:`RequestRecord`, oldest first, bounded like
    the journal (see :class:`BoundedLog`); ``total`` counts every request since the last
    clear.  The emulator appends each request as atoms (:func:`record_atoms`)."""

    def _build(self, entry: tuple[Any, ...]) -> RequestRecord:
        return record_from_atoms(entry)
