"""POSTing to a callback handler: over real HTTP, or in-process to an ASGI or WSGI app.

Used by the callback queue (:mod:`pytest_engagelab.doors.delivery`) and by EngageLab's
URL check (:func:`pytest_engagelab.callbacks.check_callback_url`).  It imports neither,
so neither depends on the other through it.  Real HTTP goes through a plain
``httpx.Client``, so ``otp_mock`` lets it through; in-process calls use
``httpx.ASGITransport`` and ``httpx.WSGITransport``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import anyio
import httpx

__all__ = ["Answer", "Target", "apost", "post", "resolve_target", "run_sync"]

_IN_PROCESS_BASE: Final = "http://testserver"
_ANSWER_EXCERPT: Final = 200
_T = TypeVar("_T")


# -- where callbacks go ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A callback URL, or an app called in-process at ``url``."""

    url: str
    app: Any
    kind: Literal["url", "asgi", "wsgi"]
    timeout: float


def _is_asgi(app: Any) -> bool:
    call = getattr(app, "__call__", None)  # noqa: B004 - classes and instances alike
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)


def resolve_target(url: str | None, app: Any, timeout: float) -> Target:
    """Check ``url``/``app``; a clear ``ValueError`` says what is wrong."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive seconds, not {timeout!r}")
    if app is None:
        if not url:
            raise ValueError(
                "say where callbacks go: url='http://127.0.0.1:8000/hooks' (real HTTP) or "
                "app=<an ASGI or WSGI app> (called in-process)"
            )
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"callback url must be an absolute http(s) URL, not {url!r}")
        return Target(url, None, "url", timeout)
    if not callable(app):
        raise ValueError(f"app must be an ASGI or WSGI application, not {type(app).__name__}")
    path = url or "/"
    full = path if "://" in path else _IN_PROCESS_BASE + "/" + path.lstrip("/")
    return Target(full, app, "asgi" if _is_asgi(app) else "wsgi", timeout)


@dataclass(frozen=True)
class Answer:
    status: int | None
    text: str
    error: str | None
    elapsed: float


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text if len(text) <= _ANSWER_EXCERPT else text[: _ANSWER_EXCERPT - 3] + "..."


def _failure(target: Target, exc: BaseException, started: float) -> Answer:
    elapsed = time.monotonic() - started
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        error = f"timed out after {target.timeout:g}s"
    elif isinstance(exc, httpx.ConnectError):
        error = f"could not connect: {exc}"
    elif isinstance(exc, httpx.RequestError):
        error = f"{type(exc).__name__}: {exc}"
    else:
        error = f"the app raised {type(exc).__name__}: {exc}"
    return Answer(None, "", error, elapsed)


def _answered(target: Target, response: httpx.Response, started: float) -> Answer:
    elapsed = time.monotonic() - started
    if elapsed > target.timeout:  # an in-process WSGI app cannot be interrupted
        return Answer(
            response.status_code,
            "",
            f"answered after {elapsed:.2f}s, past the {target.timeout:g}s timeout",
            elapsed,
        )
    return Answer(response.status_code, _excerpt(response), None, elapsed)


async def _await(make: Callable[[], Awaitable[_T]]) -> _T:
    return await make()


def run_sync(make: Callable[[], Awaitable[_T]], *, asgi: bool, what: str) -> _T:
    """Run ``make()`` to completion from sync code.

    Where no event loop runs, on a fresh one; inside a running loop (a sync call
    from an async test), on a fresh loop in a worker thread, except for an ASGI
    app, which belongs to the test's loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(make))
    if asgi:
        raise RuntimeError(
            f"{what} cannot call an ASGI app from inside a running event loop; in an async "
            "test use `await otp_mock.adeliver_callbacks()`"
        )
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _await(make)).result()


def _wsgi_post(target: Target, headers: Mapping[str, str], body: bytes) -> Answer:
    started = time.monotonic()
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=target.app)) as client:
            response = client.post(target.url, headers=dict(headers), content=body)
    except Exception as exc:
        return _failure(target, exc, started)
    return _answered(target, response, started)


def post(target: Target, headers: Mapping[str, str], body: bytes) -> Answer:
    """POST ``body`` to ``target`` and wait for the answer (never raises for the handler)."""
    return run_sync(
        lambda: apost(target, headers, body), asgi=target.kind == "asgi", what="the URL check"
    )


async def apost(target: Target, headers: Mapping[str, str], body: bytes) -> Answer:
    """POST ``body`` to ``target``: over HTTP, or in-process to the ASGI or WSGI app."""
    if target.kind == "wsgi":
        return await anyio.to_thread.run_sync(_wsgi_post, target, headers, body)
    transport = httpx.ASGITransport(app=target.app) if target.kind == "asgi" else None
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(transport=transport, timeout=target.timeout) as client:
            with anyio.fail_after(target.timeout):
                response = await client.post(target.url, headers=dict(headers), content=body)
    except Exception as exc:
        return _failure(target, exc, started)
    return _answered(target, response, started)
