"""PDUs of the SMPP door, over smpplib's codec (private; see :mod:`.smpp`).

smpplib encodes and decodes every PDU; this module frames them on the wire, checks
that a PDU's fields fit its ``command_length`` before smpplib reads it (smpplib
trusts its input: a string with no terminating NUL makes it read from the start
again), drops the optional parameters (TLVs) a command does not define, as SMPP
3.4 says a receiver must, and maps the emulator's answers onto EngageLab's
documented ``command_status`` values.
"""

from __future__ import annotations

import enum
import functools
import struct
import time
from typing import Any, Final

from pytest_engagelab.emulator.codes import ErrorCode

__all__ = [
    "INSTALL_HINT",
    "MAX_PDU",
    "MalformedPDU",
    "SMPPStatus",
    "SMPPUnavailable",
    "decode_text",
    "receipt_text",
    "status_for",
]

#: What a missing smpplib is answered with.
INSTALL_HINT: Final = "pip install pytest-engagelab[smpp]"
#: The largest ``command_length`` accepted (64 KiB); SMPP 3.4 PDUs stay far below it.
MAX_PDU: Final = 65536
HEADER: Final = struct.Struct(">LLLL")

GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_TRANSMITTER: Final = 0x00000002
SUBMIT_SM: Final = 0x00000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
BIND_TRANSCEIVER: Final = 0x00000009
ENQUIRE_LINK: Final = 0x00000015

#: Command ids by the names the log and failure messages use.
COMMAND_NAMES: Final = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    SUBMIT_SM: "submit_sm",
    DELIVER_SM: "deliver_sm",
    DELIVER_SM_RESP: "deliver_sm_resp",
    UNBIND: "unbind",
    BIND_TRANSCEIVER: "bind_transceiver",
    ENQUIRE_LINK: "enquire_link",
}


class SMPPStatus(enum.IntEnum):
    """The ``command_status`` values the SMPP door answers with.

    The five EngageLab documents for ``submit_sm_resp``, ``ESME_ROK``, and the
    SMPP 3.4 ones the door uses for PDUs it cannot take (in a ``generic_nack``).
    """

    ESME_ROK = 0x00000000
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RSYSERR = 0x00000008
    ESME_RINVPARAM = 0x00000032
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RUNKNOWNERR = 0x000000FF


class SMPPUnavailable(ImportError):
    """smpplib, which the SMPP door encodes and decodes PDUs with, is not installed."""


class MalformedPDU(ValueError):
    """A PDU whose fields do not fit its ``command_length``."""


def smpplib_modules() -> tuple[Any, Any, Any]:
    """``smpplib.smpp``, ``smpplib.command`` and ``smpplib.consts``, or one clear error."""
    try:
        import smpplib.command  # type: ignore[import-untyped]
        import smpplib.consts  # type: ignore[import-untyped]
        import smpplib.smpp  # type: ignore[import-untyped]
    except ImportError:
        raise SMPPUnavailable(
            f"the SMPP door needs smpplib, which is not installed: {INSTALL_HINT}"
        ) from None
    return smpplib.smpp, smpplib.command, smpplib.consts


# -- building ---------------------------------------------------------------------------


def header_only(command_id: int, status: int, sequence: int) -> bytes:
    """A PDU with no body: ``generic_nack``, an error ``submit_sm_resp``..."""
    return HEADER.pack(16, command_id, status, sequence)


def build(name: str, sequence: int, status: int = 0, **fields: str | int | bytes) -> bytes:
    """The PDU ``name`` with ``fields``, encoded by smpplib."""
    smpp, _, _ = smpplib_modules()
    pdu = smpp.make_pdu(name, sequence=sequence, status=status, **fields)
    pdu.sequence = sequence  # smpplib keeps its dummy client's 0 when given one
    data: bytes = pdu.generate()
    return data


# -- reading ------------------------------------------------------------------------------


@functools.cache
def _tlv_names() -> dict[int, str]:
    _, _, consts = smpplib_modules()
    return {code: name for name, code in consts.OPTIONAL_PARAMS.items()}


@functools.cache
def _shape(name: str) -> Any:
    """An empty PDU of command ``name``: its fields, their order and types."""
    _, command, _ = smpplib_modules()
    return command.factory(name, sequence=0)


def parse(raw: bytes, name: str) -> Any:
    """Decode ``raw`` (a whole PDU of command ``name``) with smpplib, once its fields
    are known to fit: mandatory strings NUL-terminated within their size, octet
    strings within the PDU, every TLV whole.  TLVs the command does not define are
    dropped.  Raises :class:`MalformedPDU` naming the first field that does not fit."""
    smpp, command, _ = smpplib_modules()
    shape = _shape(name)
    body = raw[16:]
    pos = 0
    ints: dict[str, int] = {}
    for field in shape.params_order:
        if shape.field_is_optional(field):
            break
        param = shape.params[field]
        if param.type is int:
            if pos + param.size > len(body):
                raise MalformedPDU(f"{name}: the PDU ends before {field}")
            ints[field] = int.from_bytes(body[pos : pos + param.size], "big")
            pos += param.size
        elif param.type is str:
            end = body.find(b"\0", pos, pos + param.max)
            if end < 0:
                raise MalformedPDU(
                    f"{name}: {field} is not a NUL-terminated string of at most {param.max} octets"
                )
            pos = end + 1
        else:  # an octet string whose length an earlier field gives
            length = ints.get(param.len_field, 0)
            if pos + length > len(body):
                raise MalformedPDU(f"{name}: {field} is longer than the rest of the PDU")
            pos += length
    kept = [body[:pos]]
    names = _tlv_names()
    while pos < len(body):
        if pos + 4 > len(body):
            raise MalformedPDU(f"{name}: an optional parameter (TLV) is cut short")
        tag, length = struct.unpack_from(">HH", body, pos)
        end = pos + 4 + length
        if end > len(body):
            raise MalformedPDU(f"{name}: TLV 0x{tag:04x} is longer than the rest of the PDU")
        field = names.get(tag)
        param = shape.params.get(field) if field is not None else None
        if param is not None:
            size = getattr(param, "size", None)
            if (param.type is int and length != size) or (param.type is str and length < 1):
                raise MalformedPDU(f"{name}: TLV {field} has a wrong length ({length})")
            if param.type in (int, str, command.ostr):  # not flags, which smpplib cannot read
                kept.append(body[pos:end])
        pos = end
    cleaned = b"".join(kept)
    data = raw[:16] + cleaned
    try:
        return smpp.parse_pdu(data, sequence=0, allow_unknown_opt_params=True)
    except Exception as error:  # the checks above should leave smpplib nothing to fail on
        raise MalformedPDU(f"{name}: smpplib cannot read it ({type(error).__name__})") from None


def field_text(value: Any) -> str:
    """A C-octet string field as smpplib parsed it (bytes, or ``None`` when absent)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


# -- short_message ----------------------------------------------------------------------

#: data_coding -> the codec its octets are read with.
_CODINGS: Final = {
    0x00: "utf-8",  # the SMSC default: EngageLab reads JSON sent "directly" ({} as 0x7B/0x7D)
    0x01: "ascii",  # IA5
    0x03: "latin-1",
    0x08: "utf-16-be",  # UCS2, as EngageLab recommends (surrogate pairs read as UTF-16)
}


def decode_text(data: bytes, data_coding: int) -> str:
    """The text of ``short_message`` (or ``message_payload``) in ``data_coding``.

    Raises ``LookupError`` for a data_coding the door does not read, and
    ``UnicodeDecodeError`` for octets that are not text in it.
    """
    codec = _CODINGS.get(data_coding)
    if codec is None:
        supported = ", ".join(f"0x{c:02x}" for c in _CODINGS)
        raise LookupError(
            f"data_coding 0x{data_coding:02x} is not supported; use 0x08 (UCS2) or one of "
            f"{supported}"
        )
    return data.decode(codec)


# -- outcomes -----------------------------------------------------------------------------

_CODES: Final = {int(code): code for code in ErrorCode}
_BY_CODE: Final = {
    ErrorCode.INVALID_FORMAT: SMPPStatus.ESME_RINVNUMMSGS,
    ErrorCode.INVALID_PARAMS: SMPPStatus.ESME_RINVPARAM,
    ErrorCode.INVALID_PHONE_NUMBER: SMPPStatus.ESME_RINVPARAM,
    ErrorCode.INTERNAL_ERROR: SMPPStatus.ESME_RSYSERR,
    ErrorCode.INTERNAL_SEND_ERROR: SMPPStatus.ESME_RSYSERR,
    ErrorCode.AUTH_FAILED: SMPPStatus.ESME_RUNKNOWNERR,
    ErrorCode.AUTH_EXPIRED: SMPPStatus.ESME_RUNKNOWNERR,
    ErrorCode.PERMISSION_DENIED: SMPPStatus.ESME_RUNKNOWNERR,
}


def status_for(code: int | None, http_status: int) -> SMPPStatus:
    """The ``submit_sm_resp`` status for an emulator error answer.

    3001 (the body is not a JSON object) is ESME_RINVNUMMSGS; 3002 and 5011 (a
    field or the destination is wrong) ESME_RINVPARAM; 1000 and 5016 ESME_RSYSERR;
    2001, 2002, 2004 (the key or its permissions) ESME_RUNKNOWNERR; every other
    documented code (3003, 3004, 4001, 5001, 5012-5020) ESME_RSUBMITFAIL.  An
    answer with no documented code (an injected ``httpx.Response``) is
    ESME_RSYSERR for HTTP 5xx, otherwise ESME_RUNKNOWNERR.
    """
    known = _CODES.get(code) if code is not None else None
    if known is None:
        return SMPPStatus.ESME_RSYSERR if http_status >= 500 else SMPPStatus.ESME_RUNKNOWNERR
    return _BY_CODE.get(known, SMPPStatus.ESME_RSUBMITFAIL)


def _smpp_date(at: float) -> str:
    return time.strftime("%y%m%d%H%M", time.gmtime(at))


def receipt_text(
    message_id: str, stat: str, error: int | None, submitted: float, done: float
) -> str:
    """The delivery receipt in the SMPP 3.4 appendix B format.

    ``err`` is ``000`` when delivered, otherwise the EngageLab error code; ``text:``
    stays empty, so the code a message carried never travels in a receipt.
    """
    delivered = "001" if stat == "DELIVRD" else "000"
    err = "000" if error is None else str(error)
    return (
        f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{_smpp_date(submitted)} "
        f"done date:{_smpp_date(done)} stat:{stat} err:{err} text:"
    )
