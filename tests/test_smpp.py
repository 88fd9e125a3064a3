"""The SMPP door: a real ``smpplib.client.Client`` against ``otp_smpp_server``, raw
sockets for the PDUs no client would send, and the fixture as users meet it."""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

from pytest_engagelab import OTPMock, OTPSMPPServer, SMPPStatus, SMPPSubmit
from pytest_engagelab.errors import ErrorCode
from pytest_engagelab.magic import WHATSAPP_FALLBACK_NUMBER, number_for

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

TO = "+6598765432"
HEADER = struct.Struct(">LLLL")
GENERIC_NACK = 0x80000000
SUBMIT_SM_RESP = 0x80000004


# -- helpers ----------------------------------------------------------------------------


@contextmanager
def bound(server: OTPSMPPServer) -> Iterator[smpplib.client.Client]:
    """An smpplib client bound as a transceiver to ``server``; unbound afterwards."""
    client = smpplib.client.Client(
        server.host, server.port, timeout=5, allow_unknown_opt_params=True
    )
    client.connect()
    try:
        client.bind_transceiver(system_id=server.system_id, password=server.password)
        yield client
    finally:
        try:
            if client.state == smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX:
                client.unbind()
        except (smpplib.exceptions.ConnectionError, OSError):
            pass
        client.disconnect()


def submit(
    client: smpplib.client.Client,
    payload: dict[str, Any] | str,
    *,
    to: str = TO,
    service_type: str = "MSG",
    data_coding: int = 0x08,
) -> Any:
    """Send one submit_sm (UCS2 by default, as EngageLab recommends); the submit_sm_resp."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    octets = text.encode("utf-16-be") if data_coding == 0x08 else text.encode()
    client.send_message(
        service_type=service_type,
        source_addr="",
        destination_addr=to,
        data_coding=data_coding,
        short_message=octets,
    )
    return client.read_pdu()


def raw_connection(server: OTPSMPPServer) -> socket.socket:
    conn = socket.create_connection((server.host, server.port), timeout=5)
    return conn


def read_raw(conn: socket.socket) -> tuple[int, int, int, int, bytes]:
    """One PDU from a raw socket: (length, command_id, status, sequence, body)."""
    head = b""
    while len(head) < 16:
        chunk = conn.recv(16 - len(head))
        if not chunk:
            raise EOFError(f"the server closed the connection after {len(head)} octets")
        head += chunk
    length, command_id, status, sequence = HEADER.unpack(head)
    body = b""
    while len(body) < length - 16:
        body += conn.recv(length - 16 - len(body))
    return length, command_id, status, sequence, body


def closed(conn: socket.socket, timeout: float = 3.0) -> bool:
    conn.settimeout(timeout)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


def raw_bind(conn: socket.socket, server: OTPSMPPServer) -> None:
    bind = smpplib.smpp.make_pdu(
        "bind_transceiver",
        sequence=1,
        system_id=server.system_id,
        password=server.password,
        system_type="",
    )
    bind.sequence = 1
    conn.sendall(bind.generate())
    _, command_id, status, _, _ = read_raw(conn)
    assert (command_id, status) == (0x80000009, 0)


# -- bind and submit --------------------------------------------------------------------


def test_bind_transceiver_answers_with_the_system_id(otp_smpp_server: OTPSMPPServer) -> None:
    client = smpplib.client.Client(
        otp_smpp_server.host, otp_smpp_server.port, timeout=5, allow_unknown_opt_params=True
    )
    client.connect()
    try:
        resp = client.bind_transceiver(
            system_id=otp_smpp_server.system_id, password=otp_smpp_server.password
        )
        assert (resp.command, resp.status, resp.system_id) == (
            "bind_transceiver_resp",
            0,
            b"test-smpp",
        )
        assert otp_smpp_server.sessions == 1
    finally:
        client.disconnect()


def test_msg_sends_the_template_through_v1_messages(otp_smpp_server: OTPSMPPServer) -> None:
    with bound(otp_smpp_server) as client:
        resp = submit(client, {"id": "login", "language": "en", "params": {"name": "Ann"}})
    assert (resp.command, resp.status) == ("submit_sm_resp", SMPPStatus.ESME_ROK)
    sent = otp_smpp_server.assert_sent_once(
        to=TO,
        template_id="login",
        language="en",
        params={"name": "Ann"},
        endpoint="/v1/messages",
    )
    assert resp.message_id == sent.message_id.encode()
    assert isinstance(sent.request, SMPPSubmit)
    assert (sent.request.service_type, sent.request.data_coding) == ("MSG", 0x08)
    assert len(otp_smpp_server.last_code(TO)) == 6


@pytest.mark.parametrize(("service_type", "kept"), [("MRKT", "MRKT"), ("", "MSG")])
def test_mrkt_and_the_default_service_type_send_through_v1_messages(
    otp_smpp_server: OTPSMPPServer, service_type: str, kept: str
) -> None:
    with bound(otp_smpp_server) as client:
        resp = submit(
            client, {"id": "promo", "params": {"offer": "10%"}}, service_type=service_type
        )
    assert resp.status == SMPPStatus.ESME_ROK
    sent = otp_smpp_server.assert_sent_once(template_id="promo", endpoint="/v1/messages")
    assert sent.request.service_type == kept
    assert sent.params == {"offer": "10%"}


def test_code_delivers_the_given_code_through_v1_codes_in_the_default_coding(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    with bound(otp_smpp_server) as client:
        resp = submit(
            client, {"id": "login", "code": "4321"}, service_type="CODE", data_coding=0x00
        )
    assert resp.status == SMPPStatus.ESME_ROK
    otp_smpp_server.assert_sent_once(to=TO, endpoint="/v1/codes")
    assert otp_smpp_server.last_code(TO) == "4321"


def test_a_code_given_with_msg_is_ignored_as_the_page_says(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    with bound(otp_smpp_server) as client:
        assert submit(client, {"id": "login", "code": "1111"}).status == SMPPStatus.ESME_ROK
    sent = otp_smpp_server.assert_sent_once(endpoint="/v1/messages")
    assert len(sent.code) == 6
    assert sent.code != "1111"


def test_ucs2_carries_characters_outside_latin_1(otp_smpp_server: OTPSMPPServer) -> None:
    with bound(otp_smpp_server) as client:
        resp = submit(client, {"id": "login", "params": {"name": "陈伟 🙂"}})
    assert resp.status == SMPPStatus.ESME_ROK
    otp_smpp_server.assert_sent_once(params={"name": "陈伟 🙂"})


def test_one_emulator_behind_otp_mock_and_an_smpp_server(otp_mock: OTPMock) -> None:
    with OTPSMPPServer(otp_mock.emulator) as smsc, bound(smsc) as client:
        assert submit(client, {"id": "login", "code": "1357"}, service_type="CODE").status == 0
    otp_mock.assert_sent_once(to=TO, endpoint="/v1/codes")
    assert otp_mock.last_code(TO) == "1357"


def test_a_long_body_goes_in_message_payload(otp_smpp_server: OTPSMPPServer) -> None:
    body = json.dumps({"id": "login", "params": {"note": "x" * 300}}).encode("utf-16-be")
    with bound(otp_smpp_server) as client:
        client.send_message(
            service_type="MSG", destination_addr=TO, data_coding=0x08, message_payload=body
        )
        resp = client.read_pdu()
    assert resp.status == SMPPStatus.ESME_ROK
    otp_smpp_server.assert_sent_once(params={"note": "x" * 300})


# -- the documented statuses, through their natural triggers ----------------------------

_STATUS_CASES = [
    # ESME_RINVPARAM: a wrong field of the JSON, a destination not in E.164, a bad coding
    ("no template id", {"language": "en"}, {}, SMPPStatus.ESME_RINVPARAM),
    ("unknown language", {"id": "login", "language": "xx"}, {}, SMPPStatus.ESME_RINVPARAM),
    ("params not strings", {"id": "login", "params": {"n": 1}}, {}, SMPPStatus.ESME_RINVPARAM),
    ("CODE with no code", {"id": "login"}, {"service_type": "CODE"}, SMPPStatus.ESME_RINVPARAM),
    ("no + on the number", {"id": "login"}, {"to": "6598765432"}, SMPPStatus.ESME_RINVPARAM),
    ("unknown service_type", {"id": "login"}, {"service_type": "XYZ"}, SMPPStatus.ESME_RINVPARAM),
    ("8-bit data_coding", {"id": "login"}, {"data_coding": 0x04}, SMPPStatus.ESME_RINVPARAM),
    # ESME_RINVNUMMSGS: short_message is not a JSON object
    ("not JSON", "login please", {}, SMPPStatus.ESME_RINVNUMMSGS),
    ("a JSON list", '["login"]', {}, SMPPStatus.ESME_RINVNUMMSGS),
    # ESME_RSUBMITFAIL: the number refused (magic numbers)
    (
        "blacklisted",
        {"id": "login"},
        {"to": number_for(ErrorCode.BLACKLISTED)},
        SMPPStatus.ESME_RSUBMITFAIL,
    ),
    (
        "unsubscribed",
        {"id": "login"},
        {"to": number_for(ErrorCode.UNSUBSCRIBED)},
        SMPPStatus.ESME_RSUBMITFAIL,
    ),
]


@pytest.mark.parametrize(
    ("payload", "options", "status"),
    [case[1:] for case in _STATUS_CASES],
    ids=[case[0] for case in _STATUS_CASES],
)
def test_a_refused_submit_gets_the_documented_status_and_no_body(
    otp_smpp_server: OTPSMPPServer,
    payload: dict[str, Any] | str,
    options: dict[str, Any],
    status: SMPPStatus,
) -> None:
    with bound(otp_smpp_server) as client:
        resp = submit(client, payload, **options)
        assert (resp.command, resp.status, resp.length) == ("submit_sm_resp", status, 16)
        assert submit(client, {"id": "after"}).status == SMPPStatus.ESME_ROK  # session goes on
    otp_smpp_server.assert_sent_once()
    otp_smpp_server.assert_sent_once(template_id="after")


def test_gsm_escaped_braces_in_the_default_coding_are_rinvnummsgs(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    """The page's warning: with data_coding 0x00, {} must travel as themselves."""
    parts, coding, _ = smpplib.gsm.make_parts(json.dumps({"id": "login"}))
    assert coding == 0x00
    assert b"\x1b(" in parts[0]  # GSM 03.38 sends { as an escape sequence
    with bound(otp_smpp_server) as client:
        client.send_message(destination_addr=TO, data_coding=coding, short_message=parts[0])
        resp = client.read_pdu()
    assert resp.status == SMPPStatus.ESME_RINVNUMMSGS
    otp_smpp_server.assert_not_sent()


def test_the_frequency_limit_is_rsubmitfail(otp_smpp_server: OTPSMPPServer) -> None:
    with bound(otp_smpp_server) as client:
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_ROK
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_RSUBMITFAIL
    otp_smpp_server.assert_sent_count(1)


@pytest.mark.engagelab(strict_templates=True)
def test_an_unknown_template_in_strict_mode_is_rsubmitfail(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    otp_smpp_server.add_template("login")
    with bound(otp_smpp_server) as client:
        assert submit(client, {"id": "nope"}).status == SMPPStatus.ESME_RSUBMITFAIL
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_ROK


def test_octets_that_are_not_text_in_their_coding_are_rinvnummsgs(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    with bound(otp_smpp_server) as client:
        client.send_message(destination_addr=TO, data_coding=0x08, short_message=b'{"id":1}')
        assert client.read_pdu().status == SMPPStatus.ESME_RINVNUMMSGS  # odd length: no UCS2
        client.send_message(destination_addr=TO, data_coding=0x00, short_message=b"\xff{}")
        assert client.read_pdu().status == SMPPStatus.ESME_RINVNUMMSGS
    otp_smpp_server.assert_not_sent()


def test_an_internal_error_is_rsyserr(otp_smpp_server: OTPSMPPServer) -> None:
    otp_smpp_server.fail_next(ErrorCode.INTERNAL_ERROR)
    otp_smpp_server.fail_next(ErrorCode.INTERNAL_SEND_ERROR)
    otp_smpp_server.fail_next(httpx.Response(503, text="busy"))
    with bound(otp_smpp_server) as client:
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_RSYSERR
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_RSYSERR
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_RSYSERR
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_ROK


def test_an_injected_answer_with_no_message_id_is_runknownerr(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    otp_smpp_server.fail_next(httpx.Response(200, json={"unexpected": True}))
    otp_smpp_server.fail_next(httpx.Response(418, text="<html>"))
    with bound(otp_smpp_server) as client:
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_RUNKNOWNERR
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_RUNKNOWNERR
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_ROK


@pytest.mark.engagelab(key_status="disabled")
def test_a_disabled_key_is_runknownerr(otp_smpp_server: OTPSMPPServer) -> None:
    with bound(otp_smpp_server) as client:
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_RUNKNOWNERR
    otp_smpp_server.assert_not_sent()


@pytest.mark.engagelab(forbidden_endpoints=("/v1/codes",))
def test_a_service_type_the_key_may_not_use_is_runknownerr(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    with bound(otp_smpp_server) as client:
        resp = submit(client, {"id": "login", "code": "1234"}, service_type="CODE")
        assert resp.status == SMPPStatus.ESME_RUNKNOWNERR
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_ROK


def test_fail_next_on_an_endpoint_hits_only_that_service_type(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    otp_smpp_server.fail_next(ErrorCode.SEND_FAILED, endpoint="/v1/codes")
    with bound(otp_smpp_server) as client:
        assert submit(client, {"id": "a"}).status == SMPPStatus.ESME_ROK
        resp = submit(client, {"id": "b", "code": "1"}, service_type="CODE")
        assert resp.status == SMPPStatus.ESME_RSUBMITFAIL


def test_an_injected_exception_drops_the_connection_without_an_answer(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    otp_smpp_server.fail_next(ConnectionResetError("injected"))
    with bound(otp_smpp_server) as client:
        client.send_message(destination_addr=TO, short_message=b'{"id":"login"}')
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.read_pdu()
    with bound(otp_smpp_server) as client:  # the server goes on
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_ROK


# -- delivery receipts -------------------------------------------------------------------

_RECEIPT = re.compile(
    r"id:(?P<id>\d+) sub:001 dlvrd:(?P<dlvrd>\d{3}) submit date:\d{10} done date:\d{10} "
    r"stat:(?P<stat>DELIVRD|UNDELIV) err:(?P<err>\d+) text:"
)


def _read_receipts(client: smpplib.client.Client, count: int) -> list[Any]:
    got: list[Any] = []
    client.set_message_received_handler(lambda pdu: got.append(pdu))
    for _ in range(count):
        client.read_once()  # reads the deliver_sm and answers deliver_sm_resp
    return got


def test_receipts_for_a_delivered_and_an_undelivered_message(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    unreachable = number_for(ErrorCode.TARGET_UNREACHABLE)
    with bound(otp_smpp_server) as client:
        ok = submit(client, {"id": "login"})
        failed = submit(client, {"id": "login"}, to=unreachable)
        assert ok.status == failed.status == SMPPStatus.ESME_ROK
        assert ok.message_id != failed.message_id
        assert len(otp_smpp_server.pending_receipts) == 2
        assert _read_nothing_yet(client)
        receipts = otp_smpp_server.deliver_receipts()
        delivered, undelivered = _read_receipts(client, 2)
        assert all(r.wait_acknowledged(2.0) for r in receipts)
    assert [r.resp_status for r in receipts] == [0, 0]
    assert otp_smpp_server.pending_receipts == []
    for pdu, resp, to in ((delivered, ok, TO), (undelivered, failed, unreachable)):
        assert pdu.command == "deliver_sm"
        assert (pdu.service_type, pdu.source_addr, pdu.destination_addr) == (
            b"MSG",
            b"",
            to.encode(),
        )
        assert (pdu.esm_class, pdu.data_coding) == (0, 0)
        assert pdu.receipted_message_id == resp.message_id
    first = _RECEIPT.fullmatch(delivered.short_message.decode())
    second = _RECEIPT.fullmatch(undelivered.short_message.decode())
    assert first is not None
    assert second is not None
    assert (first["id"], first["dlvrd"], first["stat"], first["err"]) == (
        ok.message_id.decode(),
        "001",
        "DELIVRD",
        "000",
    )
    assert (second["dlvrd"], second["stat"], second["err"]) == ("000", "UNDELIV", "5012")
    assert (delivered.message_state, undelivered.message_state) == (2, 5)
    otp_smpp_server.assert_not_sent(to=unreachable)  # as over REST: nothing was delivered


def test_fail_for_a_delivery_error_is_an_undeliv_receipt(otp_smpp_server: OTPSMPPServer) -> None:
    otp_smpp_server.fail_for(TO, ErrorCode.SEND_FAILED)
    with bound(otp_smpp_server) as client:
        resp = submit(client, {"id": "login"})
        assert resp.status == SMPPStatus.ESME_ROK
        (receipt,) = otp_smpp_server.deliver_receipts()
        (pdu,) = _read_receipts(client, 1)
    assert (receipt.stat, receipt.error, receipt.message_id) == (
        "UNDELIV",
        ErrorCode.SEND_FAILED,
        resp.message_id.decode(),
    )
    assert b" stat:UNDELIV err:5001 text:" in pdu.short_message
    otp_smpp_server.assert_not_sent()


def test_a_whatsapp_fallback_is_delivered(otp_smpp_server: OTPSMPPServer) -> None:
    otp_smpp_server.add_template("login", strategy="whatsapp|sms")
    with bound(otp_smpp_server) as client:
        assert submit(client, {"id": "login"}, to=WHATSAPP_FALLBACK_NUMBER).status == 0
        (receipt,) = otp_smpp_server.deliver_receipts()
        (pdu,) = _read_receipts(client, 1)
    assert receipt.stat == "DELIVRD"
    assert pdu.message_state == 2
    assert otp_smpp_server.assert_sent_once().failed_channels == ("whatsapp",)


def _read_nothing_yet(client: smpplib.client.Client) -> bool:
    """No receipt arrives before deliver_receipts()."""
    client._socket.settimeout(0.2)
    try:
        client.read_pdu()
    except TimeoutError:
        return True
    finally:
        client._socket.settimeout(5)
    return False


def test_a_receipt_goes_to_another_bound_session_when_its_own_is_gone(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    with bound(otp_smpp_server) as client:
        message_id = submit(client, {"id": "login"}).message_id
    with bound(otp_smpp_server) as other:
        otp_smpp_server.deliver_receipts()
        (pdu,) = _read_receipts(other, 1)
    assert pdu.receipted_message_id == message_id


def test_receipts_with_no_bound_session_stay_queued_and_say_why(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    with bound(otp_smpp_server) as client:
        submit(client, {"id": "login"})
    deadline = time.monotonic() + 3
    while otp_smpp_server.sessions and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(AssertionError) as caught:
        otp_smpp_server.deliver_receipts()
    assert str(caught.value) == (
        "deliver_receipts: 1 receipt(s) could not be sent: no SMPP session is bound "
        "(bind_transceiver, and keep the session open until the receipts are read); they "
        "stay queued"
    )
    assert len(otp_smpp_server.pending_receipts) == 1


# -- session commands ----------------------------------------------------------------------


def test_enquire_link_is_answered_with_its_sequence(otp_smpp_server: OTPSMPPServer) -> None:
    with bound(otp_smpp_server) as client:
        enquire = smpplib.smpp.make_pdu("enquire_link", client=client)
        client.send_pdu(enquire)
        resp = client.read_pdu()
    assert (resp.command, resp.status, resp.sequence) == (
        "enquire_link_resp",
        0,
        enquire.sequence,
    )


def test_unbind_is_answered_and_closes_the_session(otp_smpp_server: OTPSMPPServer) -> None:
    with bound(otp_smpp_server) as client:
        assert client.unbind().command == "unbind_resp"
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.read_pdu()


@pytest.mark.parametrize(("system_id", "password"), [("test-smpp", "wrong"), ("nobody", "test-pw")])
def test_a_bad_bind_drops_the_connection(
    otp_smpp_server: OTPSMPPServer, system_id: str, password: str
) -> None:
    lines: list[str] = []
    otp_smpp_server.log = lines.append
    client = smpplib.client.Client(
        otp_smpp_server.host, otp_smpp_server.port, timeout=5, allow_unknown_opt_params=True
    )
    client.connect()
    try:
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.bind_transceiver(system_id=system_id, password=password)
    finally:
        client.disconnect()
    with bound(otp_smpp_server) as good:  # the server goes on
        assert submit(good, {"id": "login"}).status == SMPPStatus.ESME_ROK
    wrong = "password" if system_id == "test-smpp" else "system_id"
    assert len(otp_smpp_server.refused_binds) == 1
    assert otp_smpp_server.refused_binds[0].endswith(f": wrong {wrong}")
    refused = re.compile(rf".* bind_transceiver seq=\d+ -> refused: wrong {wrong}")
    assert [line for line in lines if refused.fullmatch(line)] != []
    assert not any(otp_smpp_server.password in line for line in lines)


def test_an_unsupported_command_is_answered_generic_nack(otp_smpp_server: OTPSMPPServer) -> None:
    with bound(otp_smpp_server) as client:
        query = smpplib.smpp.make_pdu("query_sm", client=client, message_id="1", source_addr="")
        client.send_pdu(query)
        resp = client.read_pdu()
        assert (resp.command, resp.status, resp.sequence) == (
            "generic_nack",
            SMPPStatus.ESME_RINVCMDID,
            query.sequence,
        )
        assert submit(client, {"id": "login"}).status == SMPPStatus.ESME_ROK


def test_bind_transmitter_is_not_offered(otp_smpp_server: OTPSMPPServer) -> None:
    client = smpplib.client.Client(
        otp_smpp_server.host, otp_smpp_server.port, timeout=5, allow_unknown_opt_params=True
    )
    client.connect()
    try:
        with pytest.raises(smpplib.exceptions.PDUError) as caught:
            client._bind("bind_transmitter", system_id="test-smpp", password="test-pw")
    finally:
        client.disconnect()
    assert caught.value.args[1] == SMPPStatus.ESME_RINVCMDID


def test_a_session_without_enquire_link_is_closed_after_the_keep_alive_window() -> None:
    with OTPSMPPServer(keep_alive=0.8) as server, bound(server) as idle, bound(server) as alive:
        started = time.monotonic()
        while time.monotonic() - started < 1.6:
            alive.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=alive))
            assert alive.read_pdu().command == "enquire_link_resp"
            time.sleep(0.1)
        with pytest.raises(smpplib.exceptions.ConnectionError):
            idle.read_pdu()
        assert submit(alive, {"id": "login"}).status == SMPPStatus.ESME_ROK


def test_the_keep_alive_window_defaults_to_the_pages_30_s_plus_5_and_can_be_set(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    assert otp_smpp_server.keep_alive == 35.0
    otp_smpp_server.keep_alive = 0.3  # before the client connects
    with bound(otp_smpp_server) as client:
        started = time.monotonic()
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.read_pdu()
        assert 0.2 < time.monotonic() - started < 3


# -- malformed PDUs over raw sockets -------------------------------------------------------


class _Logged(OTPSMPPServer):
    """A server that keeps its log lines in ``lines``."""

    def __init__(self, read_timeout: float) -> None:
        self.lines: list[str] = []
        super().__init__(read_timeout=read_timeout, log=self.lines.append)


@pytest.fixture
def smsc() -> Iterator[_Logged]:
    """A server that gives up on a started PDU after 0.3 s."""
    with _Logged(read_timeout=0.3) as server:
        yield server


def _still_serving(server: OTPSMPPServer) -> None:
    with bound(server) as client:
        assert submit(client, {"id": "still-serving"}).status == SMPPStatus.ESME_ROK


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (HEADER.pack(8, 0x15, 0, 7), "shorter than its header"),
        (HEADER.pack(0x7FFFFFFF, 0x04, 0, 7), "longer than 64 KiB"),
        (HEADER.pack(40, 0x04, 0, 7) + b"MSG\0", "truncated, then silence"),
    ],
    ids=["length-8", "length-2GiB", "truncated"],
)
def test_a_pdu_whose_length_cannot_be_framed_is_nacked_and_closed(
    smsc: OTPSMPPServer, data: bytes, why: str
) -> None:
    with raw_connection(smsc) as conn:
        conn.sendall(data)
        _, command_id, status, sequence, _ = read_raw(conn)
        assert (command_id, status, sequence) == (GENERIC_NACK, SMPPStatus.ESME_RINVCMDLEN, 7)
        assert closed(conn)
    _still_serving(smsc)


def test_a_connection_closed_in_the_middle_of_a_pdu_is_let_go(smsc: _Logged) -> None:
    with raw_connection(smsc) as conn:
        conn.sendall(HEADER.pack(40, 0x04, 0, 7)[:10])
    deadline = time.monotonic() + 3
    while not any("connection closed" in line for line in smsc.lines):
        assert time.monotonic() < deadline, smsc.lines
        time.sleep(0.01)
    _still_serving(smsc)


#: The mandatory fields of a submit_sm up to sm_length: MSG, source "", to TO, UCS2.
SUBMIT_FIELDS = b"MSG\0" + b"\1\1\0" + b"\1\1+6598765432\0" + b"\0\0\0\0\0\0\0\x08\0"


@pytest.mark.parametrize(
    ("command_id", "body", "status"),
    [
        (0x00000099, b"", SMPPStatus.ESME_RINVCMDID),
        (0x00000103, b"\0" * 20, SMPPStatus.ESME_RINVCMDID),
        (0x00000004, b"MSG" * 30, SMPPStatus.ESME_RINVCMDLEN),
        (0x00000004, b"MSG\0\1\1+6591\0", SMPPStatus.ESME_RINVCMDLEN),
        (0x00000004, SUBMIT_FIELDS + b"\xc8" + b"{}", SMPPStatus.ESME_RINVCMDLEN),
        (0x00000004, SUBMIT_FIELDS + b"\0" + b"\x04\x24\x00", SMPPStatus.ESME_RINVCMDLEN),
        (
            0x00000004,
            SUBMIT_FIELDS + b"\0" + struct.pack(">HH", 0x0424, 50) + b"{}",
            SMPPStatus.ESME_RINVCMDLEN,
        ),
        (
            0x00000004,
            SUBMIT_FIELDS + b"\0" + struct.pack(">HH", 0x0204, 1) + b"\1",
            SMPPStatus.ESME_RINVCMDLEN,
        ),
    ],
    ids=[
        "unknown-command-id",
        "data_sm-not-offered",
        "no-nul-anywhere",
        "ends-mid-fields",
        "sm_length-beyond-the-pdu",
        "tlv-header-cut-short",
        "tlv-longer-than-the-pdu",
        "tlv-of-the-wrong-size",
    ],
)
def test_a_pdu_whose_fields_do_not_fit_is_nacked_and_the_session_goes_on(
    smsc: OTPSMPPServer, command_id: int, body: bytes, status: SMPPStatus
) -> None:
    with raw_connection(smsc) as conn:
        raw_bind(conn, smsc)
        conn.sendall(HEADER.pack(16 + len(body), command_id, 0, 42) + body)
        _, answer_id, answer_status, sequence, _ = read_raw(conn)
        assert (answer_id, answer_status, sequence) == (GENERIC_NACK, status, 42)
        conn.sendall(HEADER.pack(16, 0x15, 0, 43))  # enquire_link: still served
        assert read_raw(conn)[1:4] == (0x80000015, 0, 43)
    _still_serving(smsc)


def test_a_submit_before_bind_is_nacked_invalid_bind_status(smsc: OTPSMPPServer) -> None:
    submit_sm = smpplib.smpp.make_pdu(
        "submit_sm", sequence=5, destination_addr=TO, short_message=b'{"id":"login"}'
    )
    submit_sm.sequence = 5
    with raw_connection(smsc) as conn:
        conn.sendall(submit_sm.generate())
        assert read_raw(conn)[1:4] == (GENERIC_NACK, SMPPStatus.ESME_RINVBNDSTS, 5)
    smsc.assert_not_sent()


def test_enquire_link_before_bind_is_answered_and_a_client_nack_is_not(
    smsc: _Logged,
) -> None:
    with raw_connection(smsc) as conn:
        conn.sendall(HEADER.pack(16, GENERIC_NACK, 3, 1) + HEADER.pack(16, 0x15, 0, 2))
        assert read_raw(conn)[1:4] == (0x80000015, 0, 2)  # the nack got nothing
    assert any(line.endswith("generic_nack seq=1 -> ignored") for line in smsc.lines)


def test_a_second_bind_is_answered_already_bound(smsc: OTPSMPPServer) -> None:
    with raw_connection(smsc) as conn:
        raw_bind(conn, smsc)
        bind = smpplib.smpp.make_pdu(
            "bind_transceiver", sequence=9, system_id="test-smpp", password="test-pw"
        )
        bind.sequence = 9
        conn.sendall(bind.generate())
        assert read_raw(conn)[1:4] == (0x80000009, SMPPStatus.ESME_RALYBND, 9)


def test_unknown_tlvs_are_ignored(smsc: OTPSMPPServer) -> None:
    submit_sm = smpplib.smpp.make_pdu(
        "submit_sm", sequence=3, destination_addr=TO, short_message=b'{"id":"login"}'
    )
    submit_sm.sequence = 3
    data = submit_sm.generate() + struct.pack(">HH", 0x1400, 3) + b"abc"  # a vendor TLV
    data = struct.pack(">L", len(data)) + data[4:]
    with raw_connection(smsc) as conn:
        raw_bind(conn, smsc)
        conn.sendall(data)
        _, command_id, status, sequence, body = read_raw(conn)
    assert (command_id, status, sequence) == (SUBMIT_SM_RESP, 0, 3)
    assert body.rstrip(b"\0").decode() == smsc.assert_sent_once().message_id


# -- many sessions -------------------------------------------------------------------------


def test_eight_sessions_at_once_lose_and_repeat_no_message_id(
    otp_smpp_server: OTPSMPPServer,
) -> None:
    per_client = 25
    ids: list[list[bytes]] = [[] for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def run(index: int) -> None:
        try:
            with bound(otp_smpp_server) as client:
                start.wait()
                for n in range(per_client):
                    resp = submit(client, {"id": "login"}, to=f"+659{index:03d}{n:04d}")
                    assert resp.status == SMPPStatus.ESME_ROK
                    ids[index].append(resp.message_id)
        except BaseException as error:  # reported in the test's thread below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    answered = [message_id.decode() for each in ids for message_id in each]
    assert len(answered) == len(set(answered)) == 8 * per_client
    assert sorted(m.message_id for m in otp_smpp_server.sent) == sorted(answered)


# -- the fixture as users meet it -----------------------------------------------------------

_USER_TEST = """
import json
import random

import smpplib.client
import smpplib.consts


def test_login_over_smpp(otp_smpp_server):
    client = smpplib.client.Client(
        otp_smpp_server.host, otp_smpp_server.port, allow_unknown_opt_params=True
    )
    client.connect()
    client.bind_transceiver(
        system_id=otp_smpp_server.system_id, password=otp_smpp_server.password
    )
    body = json.dumps({"id": "login", "code": "2468"}).encode("utf-16-be")
    client.send_message(
        service_type="CODE", destination_addr="+6591234567", data_coding=8, short_message=body
    )
    assert client.read_pdu().status == 0
    assert otp_smpp_server.last_code("+6591234567") == "2468"
    client.unbind()
    client.disconnect()


def test_an_unfired_injection_fails(otp_smpp_server):
    otp_smpp_server.fail_next(ErrorCode.SEND_FAILED)
"""


def test_the_fixture_as_a_user_meets_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("from pytest_engagelab import ErrorCode\n" + _USER_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*otp_smpp_server: 1 injected failure(s) never fired:*",
            "*fail_next(ErrorCode.SEND_FAILED*",
        ]
    )


def test_the_fixture_is_documented_in_pytest_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "otp_smpp_server -- *plugin.py:*",
            "    EngageLab's OTP API over SMPP (``otpsmpp.api.engagelab.cc``) on a loopback *",
        ]
    )


def test_without_smpplib_the_fixture_fails_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import sys\nsys.modules['smpplib'] = None\n")
    pytester.makepyfile("def test_it(otp_smpp_server):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "otp_smpp_server: the SMPP door needs smpplib, which is not installed: "
            "pip install pytest-engagelab[smpp]"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_loading_the_plugin_imports_neither_the_door_nor_smpplib() -> None:
    script = (
        "import sys, pytest_engagelab.plugin\n"
        "print(sorted(m for m in ('smpplib', 'pytest_engagelab.doors.smpp') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_the_password_stays_out_of_repr_and_log_lines(otp_smpp_server: OTPSMPPServer) -> None:
    lines: list[str] = []
    otp_smpp_server.log = lines.append
    with bound(otp_smpp_server) as client:
        submit(client, {"id": "login", "code": "97531"}, service_type="CODE")
    assert "test-pw" not in repr(otp_smpp_server)
    assert lines
    assert not [line for line in lines if "test-pw" in line or "97531" in line]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"password": "123456789"}, "password must be a string of at most 8 characters"),
        ({"system_id": "x" * 16}, "system_id must be a string of 1 to 15 characters"),
        ({"keep_alive": 0}, "keep_alive and read_timeout must be positive, finite seconds"),
        ({"read_timeout": float("inf")}, "keep_alive and read_timeout must be positive, finite"),
        ({"port": 70000}, "port must be an integer from 0 (any free port) to 65535"),
    ],
)
def test_a_bad_setting_is_one_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        OTPSMPPServer(**kwargs)


# -- the command line ------------------------------------------------------------------------


def test_serve_with_smpp_port_puts_one_emulator_behind_both_doors() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_engagelab", "serve", "--smpp-port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        smpp_line = process.stdout.readline().strip()
        http_line = process.stdout.readline().strip()
        smpp_match = re.fullmatch(
            r"pytest-engagelab SMPP door listening on smpp://(.+):(\d+)", smpp_line
        )
        http_match = re.fullmatch(r"pytest-engagelab emulator listening on (http://\S+)", http_line)
        assert smpp_match is not None, smpp_line
        assert http_match is not None, http_line
        client = smpplib.client.Client(
            smpp_match[1], int(smpp_match[2]), timeout=5, allow_unknown_opt_params=True
        )
        client.connect()
        client.bind_transceiver(system_id="test-smpp", password="test-pw")
        body = json.dumps({"id": "login", "code": "8642"}).encode("utf-16-be")
        client.send_message(
            service_type="CODE", destination_addr=TO, data_coding=8, short_message=body
        )
        assert client.read_pdu().status == 0
        client.unbind()
        client.disconnect()
        answer = httpx.get(f"{http_match[1]}/_emulator/last-code", params={"to": TO})
        assert answer.json() == {"to": TO, "code": "8642"}
    finally:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def test_the_readme_example_runs(pytester: pytest.Pytester) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The SMPP door") :]
    start = section.index("```python\n") + len("```python\n")
    example = section[start : section.index("\n```\n", start)]
    assert "def test_a_login_code_over_smpp(otp_smpp_server):" in example
    pytester.makepyfile(example)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_random_and_mutated_pdus_never_break_the_server(smsc: _Logged) -> None:
    """300 PDUs of random bytes and of valid PDUs with octets changed: each is answered or
    closes its connection; no door error, no thread exception, the server goes on."""
    rng = random.Random(14)
    valid = smpplib.smpp.make_pdu(
        "submit_sm",
        sequence=1,
        service_type="CODE",
        destination_addr=TO,
        data_coding=8,
        short_message=json.dumps({"id": "login", "code": "1"}).encode("utf-16-be"),
    ).generate()
    commands = [0x04, 0x05, 0x06, 0x09, 0x15, 0x80000005, 0x80000000, rng.getrandbits(32)]
    conn: socket.socket | None = None
    answered = dropped = 0
    for _ in range(300):
        if conn is None:
            conn = raw_connection(smsc)
            raw_bind(conn, smsc)
        if rng.random() < 0.5:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
            data = HEADER.pack(16 + len(body), rng.choice(commands), 0, 77) + body
        else:
            mutated = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(16, len(mutated))] = rng.getrandbits(8)
            data = bytes(mutated)
        conn.sendall(data + HEADER.pack(16, 0x15, 0, 78))  # then an enquire_link
        try:
            while read_raw(conn)[3] != 78:  # answers up to the enquire_link_resp
                pass
            answered += 1
        except (EOFError, ConnectionResetError, TimeoutError):
            dropped += 1  # a mutated length: framing lost, the connection closed
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    assert answered > 200, (answered, dropped)
    assert not [line for line in smsc.lines if "door error" in line]
    _still_serving(smsc)


def test_serve_says_in_one_line_why_the_smpp_door_cannot_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "pytest_engagelab", "serve", "--smpp-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    command = [sys.executable, "-m", "pytest_engagelab", "serve", "--smpp-port", "0"]
    long_password = subprocess.run(
        [*command, "--smpp-password", "123456789"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (busy.returncode, busy.stdout) == (2, "")
    assert busy.stderr == (
        f"python -m pytest_engagelab serve: OTPSMPPServer cannot listen on 127.0.0.1:{port}: "
        "Address already in use\n"
    )
    assert (long_password.returncode, long_password.stdout) == (2, "")
    assert long_password.stderr == (
        "python -m pytest_engagelab serve: --smpp-port: password must be a string of at most "
        "8 characters (SMPP 3.4)\n"
    )


def test_the_server_listens_on_ipv6_loopback_too() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with OTPSMPPServer(host="::1") as server:
        assert server.url == f"smpp://[::1]:{server.port}"
        with socket.create_connection(("::1", server.port), timeout=5) as conn:
            raw_bind(conn, server)
            conn.sendall(HEADER.pack(16, 0x15, 0, 2))
            assert read_raw(conn)[1:4] == (0x80000015, 0, 2)


def test_accept_out_of_file_descriptors_backs_off_and_the_bind_still_succeeds(
    monkeypatch: pytest.MonkeyPatch, accept_out_of_fds: Callable[[float], list[float]]
) -> None:
    """The SMPP door stands on the same listener as otp_server: no spin at EMFILE."""
    failing_for = 0.6
    with OTPSMPPServer() as server:
        calls = accept_out_of_fds(failing_for)
        with bound(server) as client:
            assert client.state == smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX
        monkeypatch.undo()
    failing = [t for t in calls if t - calls[0] < failing_for]
    assert 3 <= len(failing) <= 12, len(failing)
