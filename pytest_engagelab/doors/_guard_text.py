"""The guard's words: what a refused request was (read from the caller's frames), the
message, and the credentials to mask in a report.

Apart from :mod:`pytest_engagelab.doors.guard` so that start-up does not load it: pytest
loads every module of a plugin's package through its assertion rewriter, at about 15 µs
per kilobyte of bytecode (bench row 3).  The guard imports it on its first refusal, on a
lookup of a host that is not loopback, or to write a report.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from pytest_engagelab.doors.guard import EngageLabGuardError, Guard

_WAYS_OUT: Final = (
    "no test may reach EngageLab by accident. Use the otp_mock fixture, point the client at "
    "otp_server.base_url, or mark the test @pytest.mark.engagelab_live to reach the real "
    "EngageLab on purpose."
)
_FRAMES: Final = 80  # how far up the stack the guard looks for the request
#: A Basic credential; compiled on first use (by ``re``'s cache), not when the plugin loads.
_BASIC: Final = r"Basic ([A-Za-z0-9+/]{8,}={0,2})"
_SHORTEST_SECRET: Final = 6  # a shorter secret would mask ordinary words in a report


def _message(
    host: str,
    port: int | None,
    method: str | None,
    path: str | None,
    recipient: str | None,
    via: str | None = None,
) -> str:
    where = f"{host}:{port}" if port is not None else host
    if method and path:
        what = f"{method} {path} to {where}"
    elif path:
        what = f"a request for {path} to {where}"
    else:
        what = f"a connection to {where}"
    if recipient:
        what += f" (recipient {recipient})"
    if via:
        what += f" through the proxy {via}"
    return f"pytest-engagelab stopped {what} before it left the test: {_WAYS_OUT}"


# -- what request was it? -------------------------------------------------------------------


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _path_of(url: object) -> str | None:
    text = _text(url)
    if text is None:
        raw = getattr(url, "raw_path", None)  # httpx.URL
        text = _text(raw)
        if text is None:
            return None
    if "://" in text:
        try:
            text = urlsplit(text).path or "/"
        except ValueError:
            return None
    return text.split("?", 1)[0] or "/"


def _known_request(value: object) -> tuple[str | None, str | None, object] | None:
    """(method, path, body) of a request object of a client the guard knows."""
    kind = type(value)
    module = kind.__module__
    name = kind.__name__
    if name == "Request" and module.startswith("httpx"):
        try:
            body: object = value.content  # type: ignore[attr-defined]
        except Exception:  # a streaming body not read yet
            body = None
        return _text(value.method), _path_of(value.url), body  # type: ignore[attr-defined]
    if name == "Request" and module == "urllib.request":
        return value.get_method(), _path_of(value.selector), value.data  # type: ignore[attr-defined]
    if name == "Request" and module.startswith("httpcore"):
        url = value.url  # type: ignore[attr-defined]
        return _text(value.method), _path_of(getattr(url, "target", None)), None  # type: ignore[attr-defined]
    return None


def _from_frame(local: dict[str, Any]) -> tuple[str | None, str | None, object] | None:
    for value in local.values():
        found = _known_request(value)
        if found is not None:
            return found
    method, url = _text(local.get("method")), local.get("url")
    if method is not None and url is not None:
        path = _path_of(url)
        if path is not None:
            body = next(
                (
                    local[name]
                    for name in ("body", "json", "data", "content")
                    if isinstance(local.get(name), bytes | str | dict | list)
                ),
                None,
            )
            return method.upper(), path, body
    return None


def _hosts_in(local: dict[str, Any]) -> list[str]:
    """The hosts the request a frame is making is for: its request object's URL, a
    tunnel's target (``http.client`` through a proxy), or an absolute ``url``."""
    hosts: list[str] = []
    for value in local.values():
        kind = type(value)
        if kind.__name__ != "Request":
            continue
        if kind.__module__.startswith(("httpx", "httpcore")):
            hosts.append(_text(getattr(value.url, "host", None)) or "")
            if _text(getattr(value, "method", None)) == "CONNECT":  # httpcore's tunnel
                target = _text(getattr(value.url, "target", None)) or ""
                hosts.append(target.rpartition(":")[0])
        elif kind.__module__ == "urllib.request":
            hosts.append(urlsplit(value.full_url).hostname or "")
    tunnel = getattr(local.get("self"), "_tunnel_host", None)
    if isinstance(tunnel, str):
        hosts.append(tunnel)
    url = _text(local.get("url"))
    if url is not None and "://" in url and local.get("method") is not None:
        hosts.append(urlsplit(url).hostname or "")
    return [host for host in hosts if host]


def _requested_host(frame: FrameType | None, guard: Guard) -> str | None:
    """A guarded host a request being made is for, seen in the caller's frames."""
    depth = 0
    try:
        while frame is not None and depth < _FRAMES:
            for host in _hosts_in(frame.f_locals):
                if guard.blocks(host):
                    return host
            frame = frame.f_back
            depth += 1
    except Exception:  # looking is a courtesy to proxies: never fail a connect over it
        return None
    finally:
        del frame
    return None


def _recipient(body: object) -> str | None:
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):
            return None
    if not isinstance(body, dict):
        return None
    to = body.get("to")
    if isinstance(to, str):
        recipients = [to]
    elif isinstance(to, list) and all(isinstance(t, str) for t in to):
        recipients = list(to)
    else:
        return None
    from pytest_engagelab.emulator.recipients import redact_recipients

    return ", ".join(redact_recipients(t) for t in recipients) or None


def _secret_forms(authorization: object, into: set[str]) -> None:
    """Add the forms of a Basic credential (token, ``key:secret``, secret) to ``into``."""
    if not isinstance(authorization, str):
        return
    match = re.search(_BASIC, authorization)
    if match is not None:
        token = match.group(1)
        try:
            pair = base64.b64decode(token, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return
        into.add(token)
        _key, colon, secret = pair.partition(":")
        if colon:
            into.add(pair)
            if len(secret) >= _SHORTEST_SECRET:
                into.add(secret)


def _credentials_in(local: dict[str, Any], into: set[str]) -> None:
    """The credentials a frame holds: its ``auth=(key, secret)``, header mappings and
    request objects (which ``pytest -l`` would print)."""
    auth = local.get("auth")
    if type(auth) is tuple and len(auth) == 2 and all(isinstance(a, str) for a in auth):
        key, secret = auth
        pair = f"{key}:{secret}"
        into.add(base64.b64encode(pair.encode("utf-8")).decode("ascii"))
        into.add(pair)
        if len(secret) >= _SHORTEST_SECRET:
            into.add(secret)
    for value in local.values():
        if isinstance(value, str):
            if value.startswith("Basic "):
                _secret_forms(value, into)
            continue
        headers = getattr(value, "headers", None)  # httpx.Request
        if headers is None and isinstance(getattr(value, "unredirected_hdrs", None), dict):
            headers = {**value.unredirected_hdrs, **value.headers}  # urllib.request.Request
        if headers is None and isinstance(value, Mapping):
            headers = value
        if headers is not None and hasattr(headers, "get"):
            for name in ("authorization", "Authorization"):
                _secret_forms(headers.get(name), into)


def _request_context(
    frame: FrameType | None,
) -> tuple[str | None, str | None, str | None, frozenset[str]]:
    """The method, path and (redacted) recipient of the request being made, when one of
    the caller's frames tells (httpx, requests/urllib3, urllib, http.client do), and the
    credentials those frames hold (to mask them in the failure report)."""
    method = path = None
    body: object = None
    secrets: set[str] = set()
    depth = 0
    try:
        while frame is not None and depth < _FRAMES:
            local = frame.f_locals
            if body is None:
                found = _from_frame(local)
                if found is not None and found[0] != "CONNECT":  # a proxy tunnel: look on
                    if method is None:
                        method, path = found[0], found[1]
                    body = found[2]
            _credentials_in(local, secrets)
            frame = frame.f_back
            depth += 1
    except Exception:  # the message is a courtesy: never fail the refusal over it
        pass
    finally:
        del frame
    try:
        recipient = _recipient(body)
    except Exception:
        recipient = None
    return method, path, recipient, frozenset(secrets)


def attempts_text(attempts: list[EngageLabGuardError]) -> str:
    """The refusals of one test, each once with how often it happened."""
    counted: dict[str, int] = {}
    for attempt in attempts:
        counted[str(attempt)] = counted.get(str(attempt), 0) + 1
    return "\n".join(
        message + (f" ({times} times)" if times > 1 else "") for message, times in counted.items()
    )


def mask_credentials(text: str, attempts: Iterable[EngageLabGuardError] = ()) -> str:
    """``text`` with the credentials of the stopped requests masked, and every Basic
    credential it shows: the base64 token, and the ``key:secret`` and secret it decodes
    to, wherever they appear (``pytest -l`` prints the clients' header dictionaries and
    the test's own ``auth=(key, secret)``)."""
    forms: set[str] = set()
    for attempt in attempts:
        forms.update(attempt._secrets)
    for match in re.finditer(_BASIC, text):
        _secret_forms(match.group(0), forms)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text
