"""The journal, the request log and the issued codes keep each send as atoms.

A send under ``otp_mock`` leaves nothing the garbage collector tracks (the entries are
flat tuples of strings, bytes and numbers); ``sent[i]``, its ``request`` and
``requests[i]`` are built when a test first reads them, and read the same as the
objects they stand for, every time the same objects.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest

from pytest_engagelab.doors.mock import OTPMock
from pytest_engagelab.emulator.core import DEFAULT_BASE_URL, Emulator
from pytest_engagelab.emulator.journal import SentMessage, message_atoms, message_from_atoms
from pytest_engagelab.emulator.model import EmulatorEvent

URL = f"{DEFAULT_BASE_URL}/v1/messages"
AUTH = ("test-dev-key", "test-dev-secret")


@pytest.fixture
def mock() -> Iterator[OTPMock]:
    with OTPMock(Emulator(seed=7)) as otp:
        yield otp


@pytest.fixture
def client(mock: OTPMock) -> Iterator[httpx.Client]:
    with httpx.Client(auth=AUTH, headers={"User-Agent": "atoms/1.0"}) as client:
        yield client


def _send(client: httpx.Client, i: int, **template: object) -> httpx.Response:
    body = {"to": f"+6590{i:07d}", "template": {"id": "login", **template}}
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.text
    return response


def _tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_a_send_leaves_nothing_the_collector_tracks(mock: OTPMock, client: httpx.Client) -> None:
    for i in range(50):  # warm: caches, interned names, the unregistered template
        _send(client, i)
    before = _tracked()
    for i in range(50, 1_050):
        _send(client, i, params={"name": "Ann"})
    retained = _tracked() - before
    # Before, each send kept 12 tracked objects (an httpx.Request with its headers, URL
    # and stream, the message, the request record, the issued code): 12,000 here.
    assert retained < 100, retained
    assert len(mock.sent) == 1_050
    assert len(mock.requests) == 1_050


def test_a_message_reads_as_sent_and_the_same_object_each_time(
    mock: OTPMock, client: httpx.Client
) -> None:
    response = _send(client, 1, params={"name": "Ann", "city": "Oslo"}, language="en")
    message = mock.sent[0]
    assert message is mock.sent[0] is mock.assert_sent(to="+65900000001")
    assert message.params == {"name": "Ann", "city": "Oslo"}
    assert message.language == "en"
    assert message.message_id == response.json()["message_id"]
    assert message.failed_channels == ()
    assert message.expires_at == message.sent_at + 300
    assert mock.emulator.last_code("+65900000001") == message.code
    request = message.request
    assert request is message.request  # built once
    sent = response.request
    assert isinstance(request, httpx.Request)
    assert (request.method, request.url) == (sent.method, sent.url)
    assert request.headers.multi_items() == sent.headers.multi_items()
    assert request.headers["user-agent"] == "atoms/1.0"
    assert request.content == sent.content == request.read()


def test_a_request_record_reads_as_before(mock: OTPMock, client: httpx.Client) -> None:
    response = _send(client, 2)
    record = mock.requests[0]
    assert record is mock.requests[0]
    assert record.method == "POST"
    assert record.path == "/v1/messages"
    assert record.endpoint == "/v1/messages"
    assert record.status == 200
    assert record.code is None
    assert record.json == {"to": "+65900000002", "template": {"id": "login"}}
    assert record.answer == response.json()
    assert record.headers["authorization"] == "Basic ***"
    assert record.headers["user-agent"] == "atoms/1.0"
    assert record.headers["content-type"] == "application/json"
    assert record == mock.requests[0]


def test_the_fallback_channel_and_the_failed_one_are_kept(
    mock: OTPMock, client: httpx.Client
) -> None:
    from pytest_engagelab.magic import WHATSAPP_FALLBACK_NUMBER

    mock.add_template("wa", strategy="whatsapp|sms")
    body = {"to": WHATSAPP_FALLBACK_NUMBER, "template": {"id": "wa"}}
    assert client.post(URL, json=body).status_code == 200
    message = mock.sent[0]
    assert (message.failed_channels, message.delivery_channel) == (("whatsapp",), "sms")


def test_a_code_kept_as_atoms_verifies_once(mock: OTPMock, client: httpx.Client) -> None:
    message_id = _send(client, 3).json()["message_id"]
    code = mock.emulator.last_code("+65900000003")
    verify = f"{DEFAULT_BASE_URL}/v1/verifications"
    wrong = client.post(verify, json={"message_id": message_id, "verify_code": "x"})
    assert wrong.json()["verified"] is False
    right = client.post(verify, json={"message_id": message_id, "verify_code": code})
    assert right.json()["verified"] is True
    again = client.post(verify, json={"message_id": message_id, "verify_code": code})
    assert again.json()["code"] == 3003


def test_listeners_get_the_message_the_journal_keeps(mock: OTPMock, client: httpx.Client) -> None:
    events: list[EmulatorEvent] = []
    mock.emulator.subscribe(events.append)
    _send(client, 4)
    mock.emulator.advance(301)
    kinds = [(event.kind, event.to) for event in events]
    assert kinds == [("sent", "+65900000004"), ("expired", "+65900000004")]
    assert events[0].message is mock.sent[0]
    assert events[1].message == mock.sent[0]


def test_expiry_reported_once_for_codes_kept_as_atoms(mock: OTPMock, client: httpx.Client) -> None:
    _send(client, 5)  # sent with no listener: kept as atoms
    _send(client, 6)
    events: list[EmulatorEvent] = []
    mock.emulator.subscribe(events.append)
    mock.emulator.advance(100)
    assert events == []
    mock.emulator.advance(250)
    mock.emulator.advance(10)
    assert sorted(event.to for event in events) == ["+65900000005", "+65900000006"]
    assert {event.kind for event in events} == {"expired"}


def test_a_message_from_atoms_equals_the_message_built_whole() -> None:
    entry = message_atoms(
        "+6591234567",
        "login",
        "default",
        "123456",
        "42",
        "sms",
        "/v1/messages",
        "the door's request",
        "Your code is 123456",
        "sms",
        "",
        10.0,
        310.0,
        ("a", "1", "b", "2"),
        None,
    )
    whole = SentMessage(
        to="+6591234567",
        template_id="login",
        language="default",
        params={"a": "1", "b": "2"},
        code="123456",
        message_id="42",
        send_channel="sms",
        endpoint="/v1/messages",
        request="the door's request",
        text="Your code is 123456",
        delivery_channel="sms",
        sent_at=10.0,
        expires_at=310.0,
    )
    built = message_from_atoms(entry)
    assert built == whole
    assert repr(built) == repr(whole)
    assert built.request == "the door's request"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(built, "nope")  # noqa: B009


def test_otp_server_keeps_its_requests_as_atoms_too() -> None:
    """The loopback server's sends, over a real socket, leave nothing tracked either, and
    ``sent[i].request`` reads as the request the client sent, its UTF-8 header included."""
    import http.client
    import json

    from pytest_engagelab.doors.server import OTPServer
    from pytest_engagelab.emulator.auth import basic_authorization

    with OTPServer(Emulator(seed=7)) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        headers = {
            "Authorization": basic_authorization(*AUTH),
            "Content-Type": "application/json",
            "User-Agent": "atöms/1.0",
        }

        def send(i: int) -> None:
            body = json.dumps({"to": f"+6590{i:07d}", "template": {"id": "login"}})
            connection.request("POST", "/v1/messages", body=body.encode(), headers=headers)
            answer = connection.getresponse()
            assert answer.status == 200, answer.read()
            answer.read()

        for i in range(50):  # warm
            send(i)
        before = _tracked()
        for i in range(50, 550):
            send(i)
        retained = _tracked() - before
        assert retained < 100, retained  # a deferred httpx.Request per send kept 500+
        request = server.sent[0].request
        assert request is server.sent[0].request
        assert isinstance(request, httpx.Request)
        assert (request.method, str(request.url)) == ("POST", f"{server.url}/v1/messages")
        assert json.loads(request.content) == {"to": "+65900000000", "template": {"id": "login"}}
        assert (b"user-agent", "atöms/1.0".encode("latin-1")) in request.headers.raw  # as sent
        assert server.requests[0].headers["user-agent"] == "atöms/1.0"
        connection.close()
