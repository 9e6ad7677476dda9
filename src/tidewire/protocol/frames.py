"""The RFC 6455 frame format (section 5): opcodes, headers, masking, close payloads.

Nothing here keeps state: these are the building blocks of ``reader`` (bytes in)
and ``connection`` (bytes out).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..exceptions import InvalidUTF8, ProtocolError
from .mask import apply_mask

__all__ = [
    "Opcode",
    "Close",
    "Ping",
    "Pong",
    "CloseCode",
    "build_frame",
    "build_frame_parts",
    "parse_close",
    "build_close",
    "check_close_code",
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "MAX_CONTROL_PAYLOAD",
]


class Opcode(enum.IntEnum):
    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
MAX_CONTROL_PAYLOAD = 125


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire
    ABNORMAL = 1006  # never on the wire
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


# Codes that may appear in a close frame: the registered ones that are meant for
# the wire (RFC 6455 section 7.4.1 and the IANA registry), and 3000-4999.
_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                         1012, 1013, 1014})

_CLOSE_NAMES = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "connection closed abnormally",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "extension required",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
}


def check_close_code(code: int) -> bool:
    """Tell whether ``code`` may be sent in a close frame."""
    return code in _WIRE_CODES or 3000 <= code < 5000


@dataclass(frozen=True)
class Close:
    """The content of a close frame: a code and a reason."""

    code: int
    reason: str = ""

    def __str__(self) -> str:
        name = _CLOSE_NAMES.get(self.code)
        if name is None:
            name = "registered" if 3000 <= self.code < 4000 else "private use"
        text = f"{self.code} ({name})"
        return f"{text} {self.reason}" if self.reason else text


@dataclass(frozen=True)
class Ping:
    """A ping frame and its payload."""

    data: bytes


@dataclass(frozen=True)
class Pong:
    """A pong frame and its payload."""

    data: bytes


# A code without a reason, the usual close payload, by its two bytes: a Close
# is frozen, so one instance serves every connection.
_BARE_CLOSES = {struct.pack("!H", code): Close(code) for code in _WIRE_CODES}


def parse_close(payload: bytes) -> Close:
    """Parse the payload of a close frame; raise ``ProtocolError`` if invalid.

    An empty payload means "no status code" (1005).
    """
    if not payload:
        return Close(CloseCode.NO_STATUS)
    if type(payload) is bytes:
        close = _BARE_CLOSES.get(payload)
        if close is not None:
            return close
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if not check_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError as exc:
        raise InvalidUTF8("invalid UTF-8 in close reason") from exc
    return Close(code, reason)


def build_close(close: Close) -> bytes:
    """Build the payload of a close frame; 1005 gives an empty payload."""
    if close.code == CloseCode.NO_STATUS:
        return b""
    return struct.pack("!H", close.code) + close.reason.encode()


_H2 = struct.Struct("!BB")
_H4 = struct.Struct("!BBH")
_H10 = struct.Struct("!BBQ")

# The header of each small unmasked final frame, by first byte (FIN, RSV1 or
# not, continuation, text or binary) then payload length: a server sends one
# per message, and a lookup costs far less than packing it.
SMALL_HEADERS = {
    head: [bytes((head, n)) for n in range(126)]
    for head in (0x80, 0x81, 0x82, 0xC0, 0xC1, 0xC2)
}


def build_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Serialize one frame. ``mask`` is the 4-byte key, required from a client."""
    head = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if mask is None:
        if length < 126:
            return _H2.pack(head, length) + payload
        header = _H4.pack(head, 126, length) if length < 65536 else _H10.pack(head, 127, length)
        return header + payload
    header, payload = build_frame_parts(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)
    return header + payload


def build_frame_parts(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> tuple[bytes, bytes]:
    """A frame as its header (with the mask key) and its payload (masked), so
    that a large payload is written as it is instead of copied behind a header."""
    head = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    mbit = 0x80 if mask is not None else 0
    if length < 126:
        header = _H2.pack(head, mbit | length)
    elif length < 65536:
        header = _H4.pack(head, mbit | 126, length)
    else:
        header = _H10.pack(head, mbit | 127, length)
    if mask is None:
        return header, payload
    return header + mask, apply_mask(payload, mask)
