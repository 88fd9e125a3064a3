"""Replay matching: the vcrpy matcher that compares JSON request bodies as data."""

from __future__ import annotations

import functools
import json
from typing import Any

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
