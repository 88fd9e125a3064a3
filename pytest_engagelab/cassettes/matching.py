"""Replay matching: a request is answered by a recorded one with the same method, path and
body, the body compared as JSON data when it is JSON (key order and spacing do not matter,
``true`` is not ``1``) and as bytes otherwise.

:func:`request_key` turns a request into one hashable value that is equal exactly when
the three matchers (``method``, ``path``, :func:`json_body`) would all pass, so the
cassette finds a request's answers in a dictionary instead of comparing it with every
recorded interaction.  :func:`json_body` stays the vcrpy matcher, used to explain a miss.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any, Final

__all__ = ["body_key", "json_body", "request_key"]

_NAN: Final = ("nan",)


def _canonical(value: Any) -> Hashable:
    """JSON data as a hashable value that keeps JSON's types apart: ``true`` is not ``1``,
    ``1`` is ``1.0``, object keys in any order."""
    if isinstance(value, bool):  # before int: bool is an int to Python, not to JSON
        return ("b", value)
    if isinstance(value, int | float):
        return _NAN if value != value else ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z",)
    if isinstance(value, list):
        return ("a", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("o", frozenset((key, _canonical(item)) for key, item in value.items()))
    return ("?", repr(value))  # pragma: no cover - json.loads makes nothing else


def _raw(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"a request body must be text or bytes, not {type(body).__name__}")


def body_key(body: Any) -> Hashable:
    """A body as a hashable value: its JSON data when it is JSON, else its bytes
    (``None`` is the empty body)."""
    raw = _raw(body)
    if raw.strip():
        try:
            return ("json", _canonical(json.loads(raw)))
        except (ValueError, RecursionError):  # not JSON, or nested too deep to be data
            pass
    return ("bytes", raw)


def request_key(request: Any) -> Hashable:
    """A ``vcr.request.Request`` as one hashable value: method, path (``""`` is ``/``)
    and :func:`body_key`."""
    return (request.method, request.path or "/", body_key(request.body))


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the bodies are the same JSON data (key order and spacing do not
    matter, ``true`` is not ``1``), or, when either is not JSON, the same bytes.

    Raises ``AssertionError`` naming both bodies.
    """
    body1, body2 = r1.body, r2.body
    if type(body1) is type(body2) and body1 == body2:  # the same bytes: the same data
        return
    if body_key(body1) != body_key(body2):
        raise AssertionError(f"{_short(body1)} != {_short(body2)}")


def _short(body: Any, limit: int = 200) -> str:
    text = _raw(body).decode("utf-8", "replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
