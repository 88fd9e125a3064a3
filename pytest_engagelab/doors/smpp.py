"""The SMPP door: the emulator behind EngageLab's SMPP interface, on a loopback socket.

EngageLab's SMPP profile (``otpsmpp.api.engagelab.cc``, see the README section
"The SMPP door"), as :class:`OTPSMPPServer` answers it:

* the first PDU must be ``bind_transceiver`` with the account's ``system_id`` and
  ``password``; wrong ones close the connection without an answer;
* ``submit_sm`` with ``service_type`` ``MSG`` (the default) or ``MRKT`` is a
  ``POST /v1/messages``, ``CODE`` a ``POST /v1/codes``, through the same
  :class:`~pytest_engagelab.emulator.core.Emulator` as the REST doors: the
  ``short_message`` JSON ``{"id", "language", "code", "params"}`` becomes the
  template, ``destination_addr`` the recipient; the answer is a
  ``submit_sm_resp`` with the message id or one of the documented statuses;
* delivery receipts (``deliver_sm``) wait until the test calls
  :meth:`OTPSMPPServer.deliver_receipts`; ``deliver_sm_resp`` acknowledges them;
* ``enquire_link`` is answered, and a session that sends none for ``keep_alive``
  seconds (35: the page's 30 s and its 5 s tolerance) is closed; ``unbind`` is
  answered and closes the session;
* any other command is answered ``generic_nack``; a PDU whose length or fields do
  not fit is answered ``generic_nack`` (ESME_RINVCMDLEN), and the connection is
  closed when the stream cannot be read on.  Never a traceback, never a dead
  thread: the server goes on serving every other session.

smpplib encodes and decodes the PDUs (``pip install pytest-engagelab[smpp]``).

Why this module is long: one server object holds the sessions, the answer to each
command and the queue of receipts, which all share its lock; the PDU checks live in
:mod:`.smpp_pdu` and the sessions' reading in :mod:`.smpp_session`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from pytest_engagelab.callbacks import TARGET_INVALID_ERRORS
from pytest_engagelab.doors import smpp_pdu as pdu
from pytest_engagelab.doors.controls import EmulatorControls
from pytest_engagelab.doors.listener import Listener
from pytest_engagelab.doors.smpp_pdu import SMPPStatus, SMPPUnavailable
from pytest_engagelab.doors.smpp_session import Drop, Session, SMPPReceipt, SMPPSubmit
from pytest_engagelab.emulator.auth import basic_authorization
from pytest_engagelab.emulator.clock import SEEDED_EPOCH, Clock
from pytest_engagelab.emulator.codes import ErrorCode
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.model import EmulatorEvent, EmulatorResponse, Fault
from pytest_engagelab.magic import DELIVERY_ERROR_NUMBERS

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "DEFAULT_PASSWORD",
    "DEFAULT_SYSTEM_ID",
    "OTPSMPPServer",
    "SMPPReceipt",
    "SMPPStatus",
    "SMPPSubmit",
    "SMPPUnavailable",
]

#: The account the server accepts unless told otherwise.
DEFAULT_SYSTEM_ID: Final = "test-smpp"
DEFAULT_PASSWORD: Final = "test-pw"
#: Seconds a session may go without ``enquire_link``: the page's 30 s, plus its 5 s tolerance.
DEFAULT_KEEP_ALIVE: Final = 35.0
#: Seconds to wait for the rest of a PDU once its first octets arrived.
DEFAULT_READ_TIMEOUT: Final = 2.0

_SERVICE_TYPES: Final = {"MSG": "/v1/messages", "MRKT": "/v1/messages", "CODE": "/v1/codes"}
#: Delivery errors after the number was found valid: the message gets an id and an UNDELIV
#: receipt.  The others (the number refused: 5011, 5013, 5017, 5019, 5020) answer at once.
_UNDELIVERED: Final = frozenset(DELIVERY_ERROR_NUMBERS.values()) - TARGET_INVALID_ERRORS
_MESSAGE_STATE: Final = {"DELIVRD": 2, "UNDELIV": 5}  # SMPP 3.4 5.2.28: DELIVERED, UNDELIVERABLE


class _Capture(threading.local):
    """The delivery failure the emulator reported during this thread's send, if any."""

    active = False
    failure: tuple[ErrorCode, str] | None = None


def _field(answer: EmulatorResponse, name: str) -> Any:
    """A field of the answer's JSON object, or ``None`` (an injected answer may be anything)."""
    try:
        payload = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return payload.get(name) if isinstance(payload, dict) else None


def _code_of(answer: EmulatorResponse) -> int | None:
    code = _field(answer, "code")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _message_id(answer: EmulatorResponse) -> str | None:
    message_id = _field(answer, "message_id")
    return message_id if isinstance(message_id, str) and message_id else None


class OTPSMPPServer(EmulatorControls):
    """EngageLab's OTP API over SMPP on a loopback socket: the ``otp_smpp_server`` fixture.

    Give ``host``, ``port``, ``system_id`` and ``password`` to the SMPP client under
    test; assert with the same journal, assertions, ``last_code``, injections and
    templates as ``otp_mock``; call :meth:`deliver_receipts` to send the delivery
    receipts.  Use it by hand too::

        with OTPSMPPServer() as smsc:
            client = smpplib.client.Client(smsc.host, smsc.port, allow_unknown_opt_params=True)
            ...

    ``system_id`` (at most 15 characters) and ``password`` (at most 8, SMPP 3.4's
    limits) are the SMPP account; the door sends the emulator the account's dev key
    and secret, so key status and endpoint permissions apply as over REST.
    ``keep_alive`` is the seconds a session may go without ``enquire_link``
    (35 by default), ``read_timeout`` the seconds the rest of a started PDU may
    take (2).  ``log`` receives one line per PDU (never a password or message text).
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        system_id: str = DEFAULT_SYSTEM_ID,
        password: str = DEFAULT_PASSWORD,
        keep_alive: float = DEFAULT_KEEP_ALIVE,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        log: Callable[[str], None] | None = None,
    ) -> None:
        pdu.smpplib_modules()  # one clear error now, not in a connection thread later
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(
                f"port must be an integer from 0 (any free port) to 65535, not {port!r}"
            )
        if not isinstance(system_id, str) or not 1 <= len(system_id) <= 15:
            raise ValueError("system_id must be a string of 1 to 15 characters (SMPP 3.4)")
        if not isinstance(password, str) or len(password) > 8:
            raise ValueError("password must be a string of at most 8 characters (SMPP 3.4)")
        if not system_id.isascii() or not password.isascii():
            raise ValueError("system_id and password must be ASCII")
        if not 0 < keep_alive < math.inf or not 0 < read_timeout < math.inf:
            raise ValueError(
                f"keep_alive and read_timeout must be positive, finite seconds, not "
                f"{keep_alive!r} and {read_timeout!r}"
            )
        self.host = host
        self.system_id = system_id
        self._password = password
        self.keep_alive = keep_alive
        self.read_timeout = read_timeout
        self.log = log
        super().__init__(emulator if emulator is not None else Emulator(), self._url_for(port))
        self._listener = Listener(
            host, port, self._serve_connection, what="OTPSMPPServer", thread_name="otp-smpp"
        )
        self._stopping = self._listener.stopping
        self._lock = threading.Lock()
        self._sessions: set[Session] = set()
        self._pending: list[SMPPReceipt] = []
        self._sent_receipts: list[SMPPReceipt] = []
        self._refused_binds: list[str] = []
        self._capture = _Capture()
        self.emulator.subscribe(self._on_event)

    # -- lifecycle ------------------------------------------------------------------

    def _url_for(self, port: int) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"smpp://[{host}]:{port}" if ":" in host else f"smpp://{host}:{port}"

    @property
    def password(self) -> str:
        """The SMPP password the server accepts (not part of any repr)."""
        return self._password

    @property
    def url(self) -> str:
        """``smpp://HOST:PORT`` (same as ``base_url``)."""
        return self.base_url

    @property
    def port(self) -> int:
        """The port served (the one the system chose, once started with ``port=0``)."""
        return self._listener.port

    @property
    def started(self) -> bool:
        """Whether the server is accepting connections."""
        return self._listener.started

    def __repr__(self) -> str:
        state = "started" if self.started else "stopped"
        return f"OTPSMPPServer(url={self.url!r}, system_id={self.system_id!r}, {state})"

    def start(self) -> None:
        """Bind, listen and serve in a background thread (no-op when started)."""
        if self.started:
            return
        self.base_url = self._url_for(self._listener.start())

    def stop(self) -> None:
        """Close the listening socket and every session, join every thread."""
        self._listener.stop()

    def reset(self) -> None:
        """The state of a fresh server: forget messages, templates, limits, injections
        and receipts, and rewind the clock."""
        super().reset()
        emulator = self.emulator
        emulator.clock = Clock(
            SEEDED_EPOCH if emulator.seed is not None else None, frozen=emulator.clock.frozen
        )
        with self._lock:
            self._pending.clear()
            self._sent_receipts.clear()
            self._refused_binds.clear()

    @property
    def sessions(self) -> int:
        """How many SMPP sessions are bound now."""
        with self._lock:
            return sum(1 for s in self._sessions if s.bound and s.open)

    @property
    def refused_binds(self) -> list[str]:
        """Why each refused bind was refused (``"127.0.0.1:PORT: wrong password"``), oldest
        first: the page says the server records it; the client only sees the connection
        close."""
        with self._lock:
            return list(self._refused_binds)

    # -- receipts ---------------------------------------------------------------------

    @property
    def pending_receipts(self) -> list[SMPPReceipt]:
        """The receipts queued and not yet sent, oldest first (a copy)."""
        with self._lock:
            return list(self._pending)

    @property
    def sent_receipts(self) -> list[SMPPReceipt]:
        """Every receipt sent so far, oldest first (a copy)."""
        with self._lock:
            return list(self._sent_receipts)

    def deliver_receipts(self) -> list[SMPPReceipt]:
        """Send every queued receipt as a ``deliver_sm``; return them.

        Each goes to the session that submitted its message, or, when that one
        is gone, to another bound session.  It does not wait for the client's
        ``deliver_sm_resp`` (a client that reads in the test's own thread reads
        them after this returns): see :meth:`SMPPReceipt.wait_acknowledged`.
        Raises ``AssertionError`` when receipts are queued and no session is
        bound to take them.
        """
        __tracebackhide__ = True
        with self._lock:
            pending, self._pending = self._pending, []
            bound = [s for s in self._sessions if s.bound and s.open]
        sent: list[SMPPReceipt] = []
        kept: list[SMPPReceipt] = []
        for receipt in pending:
            own = receipt._session
            targets = ([own] if own in bound else []) + [s for s in bound if s is not own]
            if not any(self._send_receipt(receipt, target) for target in targets):
                kept.append(receipt)
                continue
            sent.append(receipt)
        with self._lock:
            self._pending[:0] = kept
            self._sent_receipts.extend(sent)
        if kept:
            raise AssertionError(
                f"deliver_receipts: {len(kept)} receipt(s) could not be sent: no SMPP session "
                "is bound (bind_transceiver, and keep the session open until the receipts "
                "are read); they stay queued"
            )
        return sent

    def _send_receipt(self, receipt: SMPPReceipt, session: Session) -> bool:
        sequence = session.next_sequence()
        text = pdu.receipt_text(
            receipt.message_id,
            receipt.stat,
            None if receipt.error is None else int(receipt.error),
            receipt.submitted_at,
            self.emulator.clock.now(),
        )
        data = pdu.build(
            "deliver_sm",
            sequence,
            service_type="MSG",
            source_addr="",
            destination_addr=receipt.destination_addr,
            esm_class=0,
            data_coding=0,
            short_message=text.encode("ascii"),
            receipted_message_id=receipt.message_id,
            message_state=_MESSAGE_STATE[receipt.stat],
        )
        receipt.short_message = text
        receipt.sequence = sequence
        receipt._session = session
        with self._lock:
            session.awaiting[sequence] = receipt
        try:
            session.send(data)
        except OSError:
            with self._lock:
                session.awaiting.pop(sequence, None)
            return False
        self._log(session, "deliver_sm", sequence, f"{receipt.stat} id={receipt.message_id}")
        return True

    # -- connections ------------------------------------------------------------------

    def _serve_connection(self, conn: socket.socket, client: str) -> None:
        conn.settimeout(self.read_timeout)
        session = Session(conn, client)
        with self._lock:
            self._sessions.add(session)
        self._serve(session)

    def _serve(self, session: Session) -> None:
        reason = "closed by the client"
        try:
            session.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not self._stopping.is_set():
                raw = session.read_pdu(self.keep_alive, self.read_timeout)
                if raw is None:
                    break
                answer = self._answer(session, raw)
                if answer:
                    session.send(answer)
        except Drop as drop:
            reason = drop.reason
            if drop.answer:
                with contextlib.suppress(OSError):
                    session.send(drop.answer)
        except OSError:
            reason = "connection lost"
        except Exception as bug:  # never a traceback in a connection thread
            reason = f"pytest-engagelab SMPP door error ({type(bug).__name__}); please report it"
        finally:
            session.open = False
            self._log(session, "-", 0, f"connection closed: {reason}")
            with contextlib.suppress(OSError):
                session.close()
            with self._lock:
                self._sessions.discard(session)

    # -- answering --------------------------------------------------------------------

    def _answer(self, session: Session, raw: bytes) -> bytes:
        _length, command_id, _status, sequence = pdu.HEADER.unpack_from(raw)
        name = pdu.COMMAND_NAMES.get(command_id, f"0x{command_id:08x}")
        nack = pdu.GENERIC_NACK
        if command_id == pdu.ENQUIRE_LINK:
            session.enquired = time.monotonic()
            self._log(session, name, sequence, "ok")
            return pdu.build("enquire_link_resp", sequence)
        if command_id == pdu.UNBIND:
            session.bound = False  # before the answer: receipts must not go here any more
            self._log(session, name, sequence, "ok")
            raise Drop("unbind", pdu.build("unbind_resp", sequence))
        if command_id == pdu.DELIVER_SM_RESP:
            with self._lock:
                receipt = session.awaiting.pop(sequence, None)
            if receipt is not None:
                receipt.resp_status = _status
                receipt._acked.set()
            self._log(session, name, sequence, "ok" if receipt else "no such deliver_sm")
            return b""
        if command_id == nack:  # never answer a nack with a nack
            self._log(session, name, sequence, "ignored")
            return b""
        if command_id not in (pdu.BIND_TRANSCEIVER, pdu.SUBMIT_SM):
            self._log(session, name, sequence, "generic_nack ESME_RINVCMDID")
            return pdu.header_only(nack, SMPPStatus.ESME_RINVCMDID, sequence)
        try:
            parsed = pdu.parse(raw, name)
        except pdu.MalformedPDU as problem:
            self._log(session, name, sequence, f"generic_nack ESME_RINVCMDLEN: {problem}")
            return pdu.header_only(nack, SMPPStatus.ESME_RINVCMDLEN, sequence)
        if command_id == pdu.BIND_TRANSCEIVER:
            return self._bind(session, sequence, parsed)
        if not session.bound:
            self._log(session, name, sequence, "generic_nack ESME_RINVBNDSTS: not bound")
            return pdu.header_only(nack, SMPPStatus.ESME_RINVBNDSTS, sequence)
        return self._submit(session, sequence, parsed)

    def _bind(self, session: Session, sequence: int, parsed: Any) -> bytes:
        system_id = pdu.field_text(parsed.system_id)
        if session.bound:
            self._log(session, "bind_transceiver", sequence, "ESME_RALYBND")
            return pdu.build(
                "bind_transceiver_resp",
                sequence,
                SMPPStatus.ESME_RALYBND,
                system_id=system_id,
            )
        password = pdu.field_text(parsed.password)
        right_id = hmac.compare_digest(system_id.encode("latin-1"), self.system_id.encode())
        right_password = hmac.compare_digest(password.encode("latin-1"), self._password.encode())
        if not (right_id and right_password):
            wrong = "system_id" if not right_id else "password"
            self._log(session, "bind_transceiver", sequence, f"refused: wrong {wrong}")
            with self._lock:
                self._refused_binds.append(f"{session.peer}: wrong {wrong}")
            raise Drop(f"bind refused: wrong {wrong}")
        session.bound = True
        session.system_id = system_id
        session.enquired = time.monotonic()
        self._log(session, "bind_transceiver", sequence, "ok")
        return pdu.build("bind_transceiver_resp", sequence, system_id=system_id)

    def _submit(self, session: Session, sequence: int, parsed: Any) -> bytes:
        def answer(status: SMPPStatus, note: str = "", message_id: str = "") -> bytes:
            self._log(session, "submit_sm", sequence, f"{status.name}{note}")
            if status is not SMPPStatus.ESME_ROK:  # SMPP 3.4 4.4.2: no body with an error
                return pdu.header_only(0x80000004, status, sequence)
            return pdu.build("submit_sm_resp", sequence, message_id=message_id)

        service_type = pdu.field_text(parsed.service_type) or "MSG"
        endpoint = _SERVICE_TYPES.get(service_type)
        if endpoint is None:
            return answer(SMPPStatus.ESME_RINVPARAM, f": service_type {service_type[:8]!r}")
        data_coding = int(parsed.data_coding or 0)
        octets = parsed.short_message or parsed.message_payload or b""
        try:
            text = pdu.decode_text(octets, data_coding)
        except LookupError:
            return answer(SMPPStatus.ESME_RINVPARAM, f": data_coding 0x{data_coding:02x}")
        except UnicodeDecodeError:
            return answer(SMPPStatus.ESME_RINVNUMMSGS, ": short_message is not text")
        destination = pdu.field_text(parsed.destination_addr)
        request = SMPPSubmit(
            system_id=session.system_id,
            service_type=service_type,
            source_addr=pdu.field_text(parsed.source_addr),
            destination_addr=destination,
            data_coding=data_coding,
            registered_delivery=int(parsed.registered_delivery or 0),
            short_message=text,
            sequence=sequence,
        )
        outcome = self._send(endpoint, destination, text, request)
        if isinstance(outcome, Fault):
            raise Drop(f"submit_sm dropped (injected {type(outcome.exception).__name__})")
        failure = self._capture.failure
        message_id = _message_id(outcome)
        if outcome.status == 200 and message_id is not None:
            self._queue(SMPPReceipt(message_id, destination, "DELIVRD", None, self._now()), session)
            return answer(SMPPStatus.ESME_ROK, f" id={message_id}", message_id)
        if failure is not None:
            error, message_id = failure
            self._queue(
                SMPPReceipt(message_id, destination, "UNDELIV", error, self._now()), session
            )
            return answer(SMPPStatus.ESME_ROK, f" id={message_id} (undeliverable)", message_id)
        code = _code_of(outcome)
        return answer(pdu.status_for(code, outcome.status), f" (code {code})")

    def _send(
        self, endpoint: str, destination: str, text: str, request: SMPPSubmit
    ) -> EmulatorResponse | Fault:
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):
            payload = None
        if isinstance(payload, dict):
            template = {k: payload[k] for k in ("id", "language", "params") if k in payload}
            rest: dict[str, Any] = {"to": destination, "template": template}
            if endpoint == "/v1/codes" and "code" in payload:
                rest["code"] = payload["code"]
            body = json.dumps(rest, ensure_ascii=False).encode("utf-8", "backslashreplace")
        else:  # the emulator answers 3001, as for any body that is not a JSON object
            body = text.encode("utf-8", "backslashreplace")
        emulator = self.emulator
        headers = {
            "authorization": basic_authorization(emulator.dev_key, emulator.dev_secret),
            "content-type": "application/json",
        }
        capture = self._capture
        capture.active, capture.failure = True, None
        try:
            return self.emulator.handle("POST", endpoint, headers, body, request=request)
        finally:
            capture.active = False

    def _on_event(self, event: EmulatorEvent) -> None:
        """Called by the emulator, under its lock, in the thread that sent: a delivery
        failure where the number was valid gets a message id and an UNDELIV receipt."""
        capture = self._capture
        if capture.active and event.kind == "send_failed" and event.error in _UNDELIVERED:
            assert event.error is not None
            capture.failure = (event.error, self.emulator._next_id())

    def _now(self) -> float:
        return self.emulator.clock.now()

    def _queue(self, receipt: SMPPReceipt, session: Session) -> None:
        receipt._session = session
        with self._lock:
            self._pending.append(receipt)

    def _log(self, session: Session, command: str, sequence: int, outcome: str) -> None:
        if self.log is None:
            return
        with contextlib.suppress(Exception):  # a log line never costs the client its answer
            self.log(f"{session.peer} {command} seq={sequence} -> {outcome}")
