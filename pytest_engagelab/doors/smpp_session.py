"""The sessions of the SMPP door: who is bound, what was sent, reading whole PDUs
(private; see :mod:`pytest_engagelab.doors.smpp`)."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from pytest_engagelab.doors import smpp_pdu as pdu
from pytest_engagelab.doors.smpp_pdu import SMPPStatus
from pytest_engagelab.emulator.codes import ErrorCode

__all__ = ["Drop", "SMPPReceipt", "SMPPSubmit", "Session"]


@dataclass(frozen=True)
class SMPPSubmit:
    """One ``submit_sm`` as the door received it: ``SentMessage.request`` under
    ``otp_smpp_server``.  ``short_message`` is the decoded text (``message_payload``
    when ``short_message`` was empty); the password is not kept."""

    system_id: str
    service_type: str
    source_addr: str
    destination_addr: str
    data_coding: int
    registered_delivery: int
    short_message: str
    sequence: int


@dataclass(eq=False)
class SMPPReceipt:
    """A delivery receipt: queued after a ``submit_sm``, sent as a ``deliver_sm`` by
    :meth:`OTPSMPPServer.deliver_receipts`.

    ``stat`` is ``"DELIVRD"`` or ``"UNDELIV"`` (then ``error`` says why);
    ``short_message`` is the receipt text, ``sequence`` the ``deliver_sm``'s
    sequence number once sent; ``resp_status`` the ``command_status`` of the
    client's ``deliver_sm_resp`` once it came (see :meth:`wait_acknowledged`).
    """

    message_id: str
    destination_addr: str
    stat: Literal["DELIVRD", "UNDELIV"]
    error: ErrorCode | None
    submitted_at: float
    short_message: str = ""
    sequence: int | None = None
    resp_status: int | None = None
    _session: Session | None = field(default=None, repr=False)
    _acked: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def acknowledged(self) -> bool:
        """Whether the client answered the ``deliver_sm`` with a ``deliver_sm_resp``."""
        return self._acked.is_set()

    def wait_acknowledged(self, timeout: float = 2.0) -> bool:
        """Wait up to ``timeout`` seconds for the ``deliver_sm_resp``; whether it came."""
        return self._acked.wait(timeout)


class Session:
    """One TCP connection: its socket, bind state and the receipts sent on it."""

    def __init__(self, conn: socket.socket, peer: str) -> None:
        self.conn = conn
        self.peer = peer
        self.bound = False
        self.system_id = ""
        self.enquired = time.monotonic()
        self.write_lock = threading.Lock()
        self.sequence = 0
        self.awaiting: dict[int, SMPPReceipt] = {}
        self.open = True
        # a selector, not select.select: that one fails for descriptors past FD_SETSIZE
        self._readable = selectors.DefaultSelector()
        self._readable.register(conn, selectors.EVENT_READ)

    def close(self) -> None:
        """Close the socket and the selector that waits on it."""
        self.open = False
        self._readable.close()
        self.conn.close()

    def send(self, data: bytes) -> None:
        with self.write_lock:
            self.conn.sendall(data)

    def next_sequence(self) -> int:
        with self.write_lock:
            self.sequence = self.sequence % 0x7FFFFFFF + 1
            return self.sequence

    def _wait_readable(self, seconds: float) -> bool:
        if seconds <= 0:
            return False
        return bool(self._readable.select(seconds))

    def _recv(self, size: int, deadline: float, what: str) -> bytes:
        chunks: list[bytes] = []
        got = 0
        while got < size:
            if not self._wait_readable(deadline - time.monotonic()):
                raise Drop(what)
            chunk = self.conn.recv(size - got)
            if not chunk:
                raise Drop("closed by the client in the middle of a PDU")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def read_pdu(self, keep_alive: float, read_timeout: float) -> bytes | None:
        """The next whole PDU, or ``None`` when the client closed between PDUs."""
        idle = self.enquired + keep_alive - time.monotonic()
        if not self._wait_readable(idle):  # stop() makes it readable: EOF
            raise Drop(f"no enquire_link for {keep_alive:g} s (the keep-alive window)")
        first = self.conn.recv(16)
        if not first:
            return None
        deadline = time.monotonic() + read_timeout
        late = f"the PDU stopped short: nothing more for {read_timeout:g} s"
        head = first + self._recv(16 - len(first), deadline, late) if len(first) < 16 else first
        length, _command_id, _status, sequence = pdu.HEADER.unpack(head)
        if length < 16 or length > pdu.MAX_PDU:
            raise Drop(
                f"command_length {length} is outside 16..{pdu.MAX_PDU}",
                pdu.header_only(pdu.GENERIC_NACK, SMPPStatus.ESME_RINVCMDLEN, sequence),
            )
        try:
            body = self._recv(length - 16, deadline, late)
        except Drop as drop:
            nack = pdu.header_only(pdu.GENERIC_NACK, SMPPStatus.ESME_RINVCMDLEN, sequence)
            raise Drop(drop.reason, nack if drop.reason == late else b"") from None
        return head + body


class Drop(Exception):
    """Internal: close the connection (after ``answer``, when there is one)."""

    def __init__(self, reason: str, answer: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.answer = answer
