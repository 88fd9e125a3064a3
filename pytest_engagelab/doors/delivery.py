"""The emulator's callback queue and its delivery (private; see :mod:`pytest_engagelab.callbacks`).

One :class:`CallbackDispatcher` per emulator listens to its events, turns each
into rows (:func:`~pytest_engagelab.callbacks.rows_for_event`) and queues them.
Nothing leaves the queue until the test calls ``deliver_callbacks()``, which
POSTs the rows, ``batch_size`` per request, over real HTTP (a plain
``httpx.Client``, so ``otp_mock`` lets it through) or in-process to an ASGI
(``httpx.ASGITransport``) or WSGI (``httpx.WSGITransport``) app.
"""

from __future__ import annotations

import copy
import random
import secrets
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pytest_engagelab.callbacks import (
    CALLBACK_HEADER,
    DEFAULT_BUSINESS_ID,
    DEFAULT_PRICES,
    CallbackDelivery,
    CallbackDeliveryError,
    encode_body,
    rows_for_event,
    sign_callback,
)
from pytest_engagelab.doors.transport import Answer, Target, apost, resolve_target, run_sync
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.model import EmulatorEvent

__all__ = ["CallbackDispatcher", "dispatcher_for"]

_USER_AGENT: Final = "EngageLab-Callback (pytest-engagelab emulator)"


# -- the queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackConfig:
    target: Target
    username: str | None
    secret: str | None
    authorization: str | None
    retries: int
    batch_size: int
    business_id: str
    prices: Mapping[str, float]
    timestamps: Literal["wall", "emulator"]


class CallbackDispatcher:
    """Queues the rows of one emulator's events and delivers them on request."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = weakref.ref(emulator)
        self._lock = threading.Lock()
        self._queue: list[dict[str, Any]] = []
        self._config: CallbackConfig | None = None
        self._nonces = random.Random()
        self._seeded = False

    def _get_emulator(self) -> Emulator:
        emulator = self._emulator()
        if emulator is None:  # pragma: no cover - the controls keep it alive
            raise RuntimeError("the emulator behind these callbacks is gone")
        return emulator

    def configure(self, config: CallbackConfig) -> None:
        seed = self._get_emulator().seed
        with self._lock:
            self._config = config
            self._seeded = seed is not None
            self._nonces = random.Random(seed)

    @property
    def configured(self) -> bool:
        return self._config is not None

    # -- events (called under the emulator's lock) --------------------------------------

    def on_event(self, event: EmulatorEvent) -> None:
        config = self._config
        if config is None:
            return
        emulator = self._get_emulator()
        template = emulator.templates.get(event.template_id)
        if "@" in event.to:
            channel = "email"
        else:
            channel = template.strategy[0] if template is not None else "sms"
        rows = rows_for_event(
            event,
            business_id=config.business_id,
            prices=config.prices,
            channel=channel,
            message_id=emulator._next_id,
        )
        with self._lock:
            self._queue.extend(rows)

    @property
    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    # -- delivery ----------------------------------------------------------------------

    def _require_config(self) -> CallbackConfig:
        config = self._config
        if config is None:
            raise RuntimeError(
                "no callback destination: call configure_callbacks(url=...) or "
                "configure_callbacks(app=...) before sending, then deliver_callbacks()"
            )
        return config

    def _take(self, config: CallbackConfig) -> list[tuple[dict[str, Any], ...]]:
        with self._lock:
            rows, self._queue = self._queue, []
        size = config.batch_size
        return [tuple(rows[i : i + size]) for i in range(0, len(rows), size)]

    def _headers(self, config: CallbackConfig) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if config.username is not None and config.secret is not None:
            if config.timestamps == "emulator":
                timestamp = int(self._get_emulator().clock.now())
            else:
                timestamp = int(time.time())
            with self._lock:
                nonce = (
                    f"{self._nonces.getrandbits(64):016x}" if self._seeded else secrets.token_hex(8)
                )
            headers[CALLBACK_HEADER] = sign_callback(
                username=config.username, secret=config.secret, timestamp=timestamp, nonce=nonce
            )
        if config.authorization is not None:
            headers["Authorization"] = config.authorization
        return headers

    @staticmethod
    def _delivery(
        config: CallbackConfig,
        batch: tuple[dict[str, Any], ...],
        headers: dict[str, str],
        body: bytes,
        answer: Answer,
        attempts: int,
    ) -> CallbackDelivery:
        return CallbackDelivery(
            url=config.target.url,
            rows=batch,
            status=answer.status,
            attempts=attempts,
            error=answer.error,
            answer=answer.text,
            headers=headers,
            body=body,
        )

    @staticmethod
    def _done(answer: Answer) -> bool:
        return answer.error is None and answer.status is not None and 200 <= answer.status < 300

    def deliver(self, *, raise_on_error: bool = True) -> list[CallbackDelivery]:
        __tracebackhide__ = True
        config = self._require_config()
        deliveries = run_sync(
            lambda: self._deliver(config),
            asgi=config.target.kind == "asgi",
            what="deliver_callbacks()",
        )
        return _checked(deliveries, raise_on_error)

    async def adeliver(self, *, raise_on_error: bool = True) -> list[CallbackDelivery]:
        __tracebackhide__ = True
        deliveries = await self._deliver(self._require_config())
        return _checked(deliveries, raise_on_error)

    async def _deliver(self, config: CallbackConfig) -> list[CallbackDelivery]:
        deliveries = []
        for batch in self._take(config):
            body = encode_body(batch)
            attempt = 0
            while True:
                attempt += 1
                headers = self._headers(config)
                answer = await apost(config.target, headers, body)
                if self._done(answer) or attempt > config.retries:
                    break
            deliveries.append(self._delivery(config, batch, headers, body, answer, attempt))
        return deliveries


def _checked(deliveries: list[CallbackDelivery], raise_on_error: bool) -> list[CallbackDelivery]:
    __tracebackhide__ = True
    if raise_on_error and any(not d.ok for d in deliveries):
        raise CallbackDeliveryError(deliveries)
    return deliveries


_DISPATCHERS: Final[weakref.WeakKeyDictionary[Emulator, CallbackDispatcher]] = (
    weakref.WeakKeyDictionary()
)
_DISPATCHERS_LOCK: Final = threading.Lock()


def dispatcher_for(emulator: Emulator) -> CallbackDispatcher:
    """The emulator's dispatcher, created and subscribed on first use."""
    with _DISPATCHERS_LOCK:
        dispatcher = _DISPATCHERS.get(emulator)
        if dispatcher is None:
            dispatcher = CallbackDispatcher(emulator)
            _DISPATCHERS[emulator] = dispatcher
            emulator.subscribe(dispatcher.on_event)
        return dispatcher


def configure(
    emulator: Emulator,
    *,
    url: str | None,
    app: Any,
    username: str | None,
    secret: str | None,
    authorization: str | None,
    retries: int,
    timeout: float,
    batch_size: int,
    business_id: str,
    prices: Mapping[str, float] | None,
    timestamps: Literal["wall", "emulator"],
) -> None:
    """Validate the settings and (re)configure the emulator's callbacks."""
    if (username is None) != (secret is None):
        raise ValueError(
            "configure_callbacks: give both username and secret to sign callbacks, or neither"
        )
    if username == "" or secret == "":
        raise ValueError("configure_callbacks: username and secret must not be empty")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, not {retries!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
    if timestamps not in ("wall", "emulator"):
        raise ValueError(f"timestamps must be 'wall' or 'emulator', not {timestamps!r}")
    config = CallbackConfig(
        target=resolve_target(url, app, timeout),
        username=username,
        secret=secret,
        authorization=authorization,
        retries=retries,
        batch_size=batch_size,
        business_id=business_id or DEFAULT_BUSINESS_ID,
        prices=dict(DEFAULT_PRICES if prices is None else prices),
        timestamps=timestamps,
    )
    dispatcher_for(emulator).configure(config)
