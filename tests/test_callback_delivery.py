"""The emulator's callbacks, end to end: queued per event, delivered only when asked.

A small Starlette app and a small Flask app receive them, over loopback HTTP
(uvicorn and werkzeug servers on 127.0.0.1, each in a thread) and in-process
(ASGI and WSGI).  Both handlers check every signature with the official SDK's
``WebhookVerifier`` and parse every body with its ``parse_events``, so a
signature or row the SDK would not accept fails the test.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from engagelab_otp import MessageStatusEvent, WebhookSignatureError, WebhookVerifier
from engagelab_otp import OTPClient as SDKClient
from flask import Flask
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.serving import make_server

from pytest_engagelab import Emulator, OTPClient, OTPMock
from pytest_engagelab.callbacks import (
    CALLBACK_HEADER,
    DEFAULT_BUSINESS_ID,
    CallbackDeliveryError,
    check_callback_url,
    verify_callback_signature,
)
from pytest_engagelab.doors.server import OTPServer
from pytest_engagelab.emulator.clock import SEEDED_EPOCH
from pytest_engagelab.errors import EngageLabError, ErrorCode
from pytest_engagelab.magic import WHATSAPP_FALLBACK_NUMBER, number_for

pytest_plugins = ["pytester"]

USER = "hooks-user"
SECRET = "hooks-secret-4711"
PHONE = "+6591234567"
SIGNING: dict[str, Any] = {"username": USER, "secret": SECRET}
HEADER = CALLBACK_HEADER.lower()  # the recorder keeps header names in lower case
SEND_STATUSES = ["plan", "target_valid", "sent", "delivered"]


# -- the handlers under test ---------------------------------------------------------------


@dataclass
class Recorder:
    """What a webhook handler does: check the signature with the SDK, keep the body, answer."""

    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    require_signature: bool = True
    verify_now: int | None = None
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    verifier: WebhookVerifier = field(default_factory=lambda: WebhookVerifier(USER, SECRET))

    def handle(self, headers: Mapping[str, str], body: bytes) -> int:
        self.received.append(({k.lower(): v for k, v in headers.items()}, body))
        if self.require_signature:
            try:
                self.verifier.verify(headers.get(CALLBACK_HEADER, ""), now=self.verify_now)
            except WebhookSignatureError:
                return 401
        return self.answers.pop(0) if self.answers else 200

    @property
    def events(self) -> list[MessageStatusEvent]:
        parsed = [e for _, body in self.received for e in self.verifier.parse_events(body)]
        assert all(isinstance(e, MessageStatusEvent) for e in parsed)
        return [e for e in parsed if isinstance(e, MessageStatusEvent)]

    @property
    def statuses(self) -> list[str]:
        return [e.status for e in self.events]

    @property
    def headers(self) -> list[dict[str, str]]:
        return [headers for headers, _ in self.received]


def starlette_app(recorder: Recorder) -> Starlette:
    async def hook(request: Request) -> PlainTextResponse:
        body = await request.body()
        if recorder.delay:
            await asyncio.sleep(recorder.delay)
        status = recorder.handle(request.headers, body)
        return PlainTextResponse("ok" if status < 300 else "handler says no", status)

    async def crash(request: Request) -> PlainTextResponse:
        raise RuntimeError("handler bug")

    return Starlette(
        routes=[Route("/hook", hook, methods=["POST"]), Route("/crash", crash, methods=["POST"])]
    )


def flask_app(recorder: Recorder) -> Flask:
    app = Flask("callback_receiver")

    @app.post("/hook")
    def hook() -> tuple[str, int]:
        if recorder.delay:
            time.sleep(recorder.delay)
        status = recorder.handle(flask_request.headers, flask_request.get_data())
        return ("ok" if status < 300 else "handler says no", status)

    return app


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def uvicorn_url(recorder: Recorder) -> Iterator[str]:
    """The Starlette app behind uvicorn on 127.0.0.1, in a thread."""
    config = uvicorn.Config(
        starlette_app(recorder),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook"
    server.should_exit = True
    thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def werkzeug_url(recorder: Recorder) -> Iterator[str]:
    """The Flask app behind werkzeug's server on 127.0.0.1, in a thread."""
    server = make_server("127.0.0.1", 0, flask_app(recorder), threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()
    thread.join(10)
    assert not thread.is_alive()


DESTINATIONS = ["starlette-http", "flask-http", "starlette-asgi", "flask-wsgi"]


@pytest.fixture(params=DESTINATIONS)
def destination(request: pytest.FixtureRequest, recorder: Recorder) -> dict[str, Any]:
    """``configure_callbacks`` arguments for each way a handler can be reached."""
    kind = request.param
    if kind == "starlette-http":
        return {"url": request.getfixturevalue("uvicorn_url")}
    if kind == "flask-http":
        return {"url": request.getfixturevalue("werkzeug_url")}
    if kind == "starlette-asgi":
        return {"app": starlette_app(recorder), "url": "/hook"}
    return {"app": flask_app(recorder), "url": "/hook"}


@pytest.fixture
def wsgi(recorder: Recorder) -> dict[str, Any]:
    """The quickest destination: the Flask app, in-process."""
    return {"app": flask_app(recorder), "url": "/hook"}


def _send_and_verify(client: OTPClient, otp: OTPMock, to: str = PHONE) -> str:
    result = client.send(to, "login")
    assert client.verify(result.message_id, otp.last_code(to)).verified
    return result.message_id


# -- end to end ---------------------------------------------------------------------------


def test_send_and_verify_reach_every_kind_of_handler(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, destination: dict[str, Any]
) -> None:
    otp_mock.configure_callbacks(**destination, **SIGNING)
    message_id = _send_and_verify(otp_client, otp_mock)

    deliveries = otp_mock.deliver_callbacks()

    assert [(d.status, d.statuses, d.attempts) for d in deliveries] == [
        (200, [status], 1) for status in [*SEND_STATUSES, "verified"]
    ]
    assert recorder.statuses == [*SEND_STATUSES, "verified"]
    assert all(e.message_id == message_id and e.to == PHONE for e in recorder.events)
    assert all(verify_callback_signature(h[HEADER], **SIGNING) for h in recorder.headers)
    sent_at = int(otp_mock.sent[0].sent_at)
    assert deliveries[2].rows[0] == {
        "message_id": message_id,
        "to": PHONE,
        "server": "otp",
        "channel": "sms",
        "itime": sent_at,
        "status": {
            "message_status": "sent",
            "status_data": {
                "msg_time": sent_at,
                "message_id": message_id,
                "current_send_channel": "sms",
                "template_key": "login",
                "business_id": DEFAULT_BUSINESS_ID,
            },
            "billing": {"cost": 0.005, "currency": "USD"},
            "error_code": 0,
        },
    }
    assert [e.billing for e in recorder.events if e.billing] == [{"cost": 0.005, "currency": "USD"}]


def test_nothing_is_delivered_before_deliver_callbacks(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, werkzeug_url: str
) -> None:
    otp_mock.configure_callbacks(url=werkzeug_url, **SIGNING)
    _send_and_verify(otp_client, otp_mock)
    time.sleep(0.05)
    assert recorder.received == []
    pending = otp_mock.pending_callbacks
    assert [r["status"]["message_status"] for r in pending] == [*SEND_STATUSES, "verified"]
    pending.clear()  # a copy: the queue is untouched
    assert len(otp_mock.pending_callbacks) == 5

    assert len(otp_mock.deliver_callbacks()) == 5
    assert otp_mock.pending_callbacks == []
    assert otp_mock.deliver_callbacks() == []
    assert len(recorder.received) == 5


def test_reset_forgets_queued_callbacks(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, werkzeug_url: str
) -> None:
    otp_mock.configure_callbacks(url=werkzeug_url, **SIGNING)
    _send_and_verify(otp_client, otp_mock)
    assert otp_mock.pending_callbacks != []

    otp_mock.reset()

    assert otp_mock.pending_callbacks == []
    assert otp_mock.deliver_callbacks() == []
    assert recorder.received == []


def test_events_before_configure_callbacks_are_not_queued(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, wsgi: dict[str, Any]
) -> None:
    otp_client.send(PHONE, "login")
    otp_mock.configure_callbacks(**wsgi, **SIGNING)
    assert otp_mock.pending_callbacks == []
    otp_client.send("+6598765432", "login")
    otp_mock.deliver_callbacks()
    assert {e.to for e in recorder.events} == {"+6598765432"}


def test_batch_size_groups_rows_in_one_post(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, werkzeug_url: str
) -> None:
    otp_mock.configure_callbacks(url=werkzeug_url, batch_size=3, **SIGNING)
    _send_and_verify(otp_client, otp_mock)
    deliveries = otp_mock.deliver_callbacks()
    assert [d.statuses for d in deliveries] == [SEND_STATUSES[:3], [SEND_STATUSES[3], "verified"]]
    assert [recorder.verifier.parse_events(body) != [] for _, body in recorder.received] == [
        True,
        True,
    ]
    import json

    assert [json.loads(body)["total"] for _, body in recorder.received] == [3, 2]


# -- the sequences ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "statuses"),
    [
        (ErrorCode.BLACKLISTED, ["plan", "target_invalid"]),
        (ErrorCode.NUMBER_NOT_REGISTERED, ["plan", "target_invalid"]),
        (ErrorCode.TARGET_UNREACHABLE, ["plan", "target_valid", "sent_failed"]),
        (ErrorCode.SEND_FAILED, ["plan", "target_valid", "sent_failed"]),
    ],
)
def test_magic_failing_number_reports_its_error(
    otp_mock: OTPMock,
    otp_client: OTPClient,
    recorder: Recorder,
    wsgi: dict[str, Any],
    code: ErrorCode,
    statuses: list[str],
) -> None:
    otp_mock.configure_callbacks(**wsgi, **SIGNING)
    to = number_for(code)
    with pytest.raises(EngageLabError):
        otp_client.send(to, "login")
    otp_mock.deliver_callbacks()

    events = recorder.events
    assert recorder.statuses == statuses
    assert {(e.to, e.template_key) for e in events} == {(to, "login")}
    last = events[-1]
    assert (last.error_code, last.error_message) == (int(code), code.default_message)
    assert [e.error_code for e in events[:-1]] == [0] * (len(statuses) - 1)
    assert len({e.message_id for e in events}) == 1
    assert events[0].message_id.isdigit()
    assert all(e.billing is None for e in events)


def test_injected_non_delivery_failure_sends_no_callback(
    otp_mock: OTPMock, otp_client: OTPClient, wsgi: dict[str, Any]
) -> None:
    otp_mock.configure_callbacks(**wsgi, **SIGNING)
    otp_mock.fail_for(PHONE, ErrorCode.INTERNAL_ERROR)
    with pytest.raises(EngageLabError):
        otp_client.send(PHONE, "login")
    assert otp_mock.pending_callbacks == []


def test_whatsapp_fallback_changes_the_current_send_channel(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, wsgi: dict[str, Any]
) -> None:
    otp_mock.add_template("login-wa", strategy="whatsapp|sms")
    otp_mock.configure_callbacks(**wsgi, **SIGNING)
    result = otp_client.send(WHATSAPP_FALLBACK_NUMBER, "login-wa")
    assert result.send_channel == "whatsapp"
    otp_mock.deliver_callbacks()

    assert [
        (e.status, e.channel, e.current_send_channel, e.error_code) for e in recorder.events
    ] == [
        ("plan", "whatsapp", "whatsapp", 0),
        ("target_valid", "whatsapp", "whatsapp", 0),
        ("sent", "whatsapp", "whatsapp", 0),
        ("delivered_failed", "whatsapp", "whatsapp", 5012),
        ("sent", "sms", "sms", 0),
        ("delivered", "sms", "sms", 0),
    ]
    assert [e.billing for e in recorder.events if e.billing] == [
        {"cost": 0.004, "currency": "USD"},
        {"cost": 0.005, "currency": "USD"},
    ]
    assert recorder.events[3].error_message == (
        "whatsapp delivery failed (target unreachable); falling back to sms"
    )


def test_wrong_code_then_expiry(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, wsgi: dict[str, Any]
) -> None:
    otp_mock.add_template("short", ttl=60)
    otp_mock.configure_callbacks(**wsgi, **SIGNING)
    result = otp_client.send(PHONE, "short")
    assert not otp_client.verify(result.message_id, "not-it").verified
    otp_mock.advance(59)
    assert otp_mock.pending_callbacks[-1]["status"]["message_status"] == "verified_failed"
    otp_mock.advance(1)
    otp_mock.deliver_callbacks()

    assert recorder.statuses == [*SEND_STATUSES, "verified_failed", "verified_timeout"]
    timeout = recorder.events[-1]
    assert timeout.timestamp == int(otp_mock.sent[0].expires_at)
    assert timeout.msg_time == int(otp_mock.sent[0].sent_at)
    assert timeout.is_terminal


def test_verified_code_never_times_out(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, wsgi: dict[str, Any]
) -> None:
    otp_mock.configure_callbacks(**wsgi, **SIGNING)
    _send_and_verify(otp_client, otp_mock)
    otp_mock.advance(3600)
    otp_mock.deliver_callbacks()
    assert recorder.statuses == [*SEND_STATUSES, "verified"]


# -- failures are reported -----------------------------------------------------------------


def test_handler_answering_500_is_reported_after_the_retries(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, uvicorn_url: str
) -> None:
    recorder.answers = [500] * 10
    otp_mock.configure_callbacks(url=uvicorn_url, retries=2, batch_size=10, **SIGNING)
    message_id = otp_client.send(PHONE, "login").message_id

    with pytest.raises(CallbackDeliveryError) as caught:
        otp_mock.deliver_callbacks()

    assert str(caught.value).splitlines() == [
        "deliver_callbacks: 1 of 1 callback request(s) failed:",
        f"  POST {uvicorn_url} [plan {message_id}, target_valid {message_id}, sent {message_id}, "
        f"delivered {message_id}] -> HTTP 500: handler says no after 3 attempts",
        "Fix the handler, raise retries= in configure_callbacks(), or pass raise_on_error=False "
        "to inspect the answers.",
    ]
    assert len(recorder.received) == 3
    assert caught.value.failed[0].attempts == 3
    assert SECRET not in str(caught.value)
    assert otp_mock.pending_callbacks == []


def test_a_retry_that_succeeds_is_not_an_error(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, werkzeug_url: str
) -> None:
    recorder.answers = [503]
    otp_mock.configure_callbacks(url=werkzeug_url, retries=1, batch_size=10, **SIGNING)
    otp_client.send(PHONE, "login")
    (delivery,) = otp_mock.deliver_callbacks()
    assert (delivery.ok, delivery.status, delivery.attempts) == (True, 200, 2)
    first, second = (h[HEADER] for h in recorder.headers)
    assert first != second  # each attempt is signed afresh (a new nonce)


def test_raise_on_error_false_returns_the_answers(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, wsgi: dict[str, Any]
) -> None:
    recorder.answers = [200, 404]
    otp_mock.configure_callbacks(**wsgi, **SIGNING)
    otp_client.send(PHONE, "login")
    deliveries = otp_mock.deliver_callbacks(raise_on_error=False)
    assert [(d.status, d.ok) for d in deliveries] == [
        (200, True),
        (404, False),
        (200, True),
        (200, True),
    ]
    assert deliveries[1].answer == "handler says no"


@pytest.mark.parametrize("kind", ["http", "asgi"])
def test_handler_that_times_out_is_reported(
    otp_mock: OTPMock,
    otp_client: OTPClient,
    recorder: Recorder,
    kind: str,
    request: pytest.FixtureRequest,
) -> None:
    recorder.delay = 1.0
    if kind == "http":
        where: dict[str, Any] = {"url": request.getfixturevalue("uvicorn_url")}
    else:
        where = {"app": starlette_app(recorder), "url": "/hook"}
    otp_mock.configure_callbacks(**where, timeout=0.2, batch_size=10, **SIGNING)
    otp_client.send(PHONE, "login")
    started = time.monotonic()
    with pytest.raises(CallbackDeliveryError, match=r"-> no answer \(timed out after 0.2s\)"):
        otp_mock.deliver_callbacks()
    assert time.monotonic() - started < 0.9


def test_late_answer_from_an_in_process_wsgi_app_is_reported(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, wsgi: dict[str, Any]
) -> None:
    recorder.delay = 0.3
    otp_mock.configure_callbacks(**wsgi, timeout=0.1, batch_size=10, **SIGNING)
    otp_client.send(PHONE, "login")
    (late,) = otp_mock.deliver_callbacks(raise_on_error=False)
    assert (late.ok, late.status) == (False, 200)
    assert late.error is not None
    assert late.error.startswith("answered after 0.")
    assert late.error.endswith("s, past the 0.1s timeout")


def test_unreachable_handler_and_crashing_app_are_reported(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    otp_mock.configure_callbacks(url=f"http://127.0.0.1:{closed_port}/hook", batch_size=10)
    otp_client.send(PHONE, "login")
    (refused,) = otp_mock.deliver_callbacks(raise_on_error=False)
    assert refused.status is None
    assert refused.error is not None
    assert refused.error.startswith("could not connect")

    otp_mock.configure_callbacks(app=starlette_app(recorder), url="/crash", batch_size=10)
    otp_client.send("+6598765432", "login")
    with pytest.raises(CallbackDeliveryError, match="the app raised RuntimeError: handler bug"):
        otp_mock.deliver_callbacks()


# -- signing -----------------------------------------------------------------------------------


def test_unsigned_callbacks_and_authorization_passthrough(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, wsgi: dict[str, Any]
) -> None:
    recorder.require_signature = False
    otp_mock.configure_callbacks(**wsgi, authorization="Bearer hook-token", batch_size=10)
    otp_client.send(PHONE, "login")
    otp_mock.deliver_callbacks()
    (headers,) = recorder.headers
    assert HEADER not in headers
    assert headers["authorization"] == "Bearer hook-token"
    assert headers["content-type"] == "application/json"


def _seeded_run(seed: int, recorder: Recorder) -> list[str]:
    recorder.received.clear()
    with OTPMock(Emulator(seed=seed)) as otp:
        otp.configure_callbacks(
            app=flask_app(recorder), url="/hook", timestamps="emulator", **SIGNING
        )
        with OTPClient(otp.dev_key, otp.dev_secret) as client:
            client.send(PHONE, "login")
        otp.deliver_callbacks()
    return [h[HEADER] for h in recorder.headers]


def test_seeded_emulator_signs_reproducibly_with_its_own_clock(recorder: Recorder) -> None:
    recorder.verify_now = int(SEEDED_EPOCH)
    first = _seeded_run(7, recorder)
    assert len(first) == 4
    assert _seeded_run(7, recorder) == first
    assert _seeded_run(8, recorder) != first
    parsed = verify_callback_signature(first[0], now=SEEDED_EPOCH, **SIGNING)
    assert parsed.timestamp == int(SEEDED_EPOCH)
    assert (
        len({verify_callback_signature(h, now=SEEDED_EPOCH, **SIGNING).nonce for h in first}) == 4
    )


def test_wall_clock_signatures_pass_a_real_handler_after_advance(
    otp_mock: OTPMock, otp_client: OTPClient, recorder: Recorder, wsgi: dict[str, Any]
) -> None:
    otp_mock.configure_callbacks(**wsgi, **SIGNING)
    otp_client.send(PHONE, "login")
    otp_mock.advance(3600)  # the emulator's clock is an hour ahead; signatures are not
    otp_mock.deliver_callbacks()
    assert recorder.statuses == [*SEND_STATUSES, "verified_timeout"]


# -- misuse -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "say where callbacks go: url="),
        ({"url": "/hook"}, "must be an absolute http\\(s\\) URL"),
        ({"url": "http://127.0.0.1/h", "username": USER}, "give both username and secret"),
        ({"url": "http://127.0.0.1/h", "retries": -1}, "retries must be 0 or more"),
        ({"url": "http://127.0.0.1/h", "batch_size": 0}, "batch_size must be at least 1"),
        ({"url": "http://127.0.0.1/h", "timeout": 0}, "timeout must be positive"),
        ({"app": "not an app"}, "app must be an ASGI or WSGI application, not str"),
    ],
)
def test_configure_callbacks_misuse_is_explained(
    otp_mock: OTPMock, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        otp_mock.configure_callbacks(**kwargs)


def test_deliver_before_configure_is_explained() -> None:
    with OTPMock() as otp, pytest.raises(RuntimeError, match="call configure_callbacks"):
        otp.deliver_callbacks()


# -- async tests -------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_adeliver_callbacks_to_an_asgi_app(
    otp_mock: OTPMock, recorder: Recorder, otp_async_client: Any
) -> None:
    otp_mock.configure_callbacks(app=starlette_app(recorder), url="/hook", **SIGNING)
    result = await otp_async_client.send(PHONE, "login")
    with pytest.raises(RuntimeError, match=r"use `await otp_mock\.adeliver_callbacks\(\)`"):
        otp_mock.deliver_callbacks()
    deliveries = await otp_mock.adeliver_callbacks()
    assert [d.status for d in deliveries] == [200] * 4
    assert {e.message_id for e in recorder.events} == {result.message_id}


@pytest.mark.anyio
async def test_adeliver_callbacks_over_loopback_http(
    otp_mock: OTPMock, recorder: Recorder, otp_async_client: Any, uvicorn_url: str
) -> None:
    otp_mock.configure_callbacks(url=uvicorn_url, **SIGNING)
    await otp_async_client.send(PHONE, "login")
    deliveries = await otp_mock.adeliver_callbacks()
    assert [d.status for d in deliveries] == [200] * 4
    assert recorder.statuses == SEND_STATUSES


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "wsgi"])
async def test_sync_deliver_inside_an_async_test_works_for_http_and_wsgi(
    otp_mock: OTPMock, recorder: Recorder, kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "http":
        where: dict[str, Any] = {"url": request.getfixturevalue("werkzeug_url")}
    else:
        where = {"app": flask_app(recorder), "url": "/hook"}
    otp_mock.configure_callbacks(**where, **SIGNING)
    async with httpx.AsyncClient() as http:
        await http.post(
            otp_mock.base_url + "/v1/messages",
            json={"to": PHONE, "template": {"id": "login"}},
            auth=(otp_mock.dev_key, otp_mock.dev_secret),
        )
    assert len(otp_mock.deliver_callbacks()) == 4
    await anyio.sleep(0)
    assert recorder.statuses == SEND_STATUSES


# -- the URL check -----------------------------------------------------------------------------


def test_check_callback_url_over_http_and_in_process(recorder: Recorder, uvicorn_url: str) -> None:
    recorder.require_signature = False
    check = check_callback_url(uvicorn_url)
    assert check.passed, check.reason
    assert check.status == 200
    assert check.reason.startswith(f"POST {uvicorn_url} answered HTTP 200 in ")
    assert recorder.received[-1][1] == b"{}"

    flask_check = check_callback_url("/hook", app=flask_app(recorder))
    assert flask_check.passed, flask_check.reason
    assert recorder.received[-1][1] == b"{}"


def test_check_callback_url_fails_a_slow_or_non_200_endpoint(recorder: Recorder) -> None:
    app = starlette_app(recorder)  # requires a signature: the unsigned check gets 401
    refused = check_callback_url("/hook", app=app)
    assert (refused.passed, refused.status) == (False, 401)
    assert refused.reason == "POST http://testserver/hook answered HTTP 401, not 200"

    recorder.require_signature = False
    recorder.delay = 0.5
    slow = check_callback_url("/hook", app=app, timeout=0.1)
    assert (slow.passed, slow.status) == (False, None)
    assert slow.reason == "POST http://testserver/hook: timed out after 0.1s"


# -- the loopback server ------------------------------------------------------------------------


def test_otp_server_delivers_callbacks_for_the_official_sdk(
    recorder: Recorder, uvicorn_url: str
) -> None:
    with OTPServer() as server:
        server.configure_callbacks(url=uvicorn_url, **SIGNING)
        sdk = SDKClient(server.dev_key, server.dev_secret)
        sdk.BASE_URL = server.url + "/v1"
        sent = sdk.send(PHONE, "login")
        sdk.verify(sent["message_id"], server.last_code(PHONE))
        assert recorder.received == []
        deliveries = server.deliver_callbacks()
    assert all(d.ok for d in deliveries)
    assert recorder.statuses == [*SEND_STATUSES, "verified"]
    assert {e.message_id for e in recorder.events} == {sent["message_id"]}


# -- as users meet it -------------------------------------------------------------------------


def test_users_test_their_flask_handler_through_otp_mock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from flask import Flask, request
        from engagelab_otp import WebhookVerifier

        verifier = WebhookVerifier("shop", "hook-secret")
        seen = []
        app = Flask("shop")

        @app.post("/engagelab")
        def engagelab():
            verifier.verify(request.headers.get("X-CALLBACK-ID", ""))
            for event in verifier.parse_events(request.get_data()):
                seen.append(event.status)
            return ""

        @app.post("/broken")
        def broken():
            return "database down", 500

        def test_delivered(otp_mock, otp_client):
            otp_mock.configure_callbacks(
                app=app, url="/engagelab", username="shop", secret="hook-secret"
            )
            otp_client.send("+6591234567", "login")
            otp_mock.deliver_callbacks()
            assert seen == ["plan", "target_valid", "sent", "delivered"]

        def test_broken_handler(otp_mock, otp_client):
            otp_mock.configure_callbacks(app=app, url="/broken", batch_size=10)
            otp_client.send("+6591234567", "login")
            otp_mock.deliver_callbacks()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *CallbackDeliveryError: deliver_callbacks: 1 of 1 callback request(s) failed:",
            "E *  POST http://testserver/broken ?plan *, target_valid *, sent *, delivered *? "
            "-> HTTP 500: database down after 1 attempt",
            "E *Fix the handler, raise retries= in configure_callbacks(), or pass "
            "raise_on_error=False to inspect the answers.",
        ]
    )
