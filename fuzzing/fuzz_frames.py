"""The frame reader, differentially: compiled twin against pure-Python twin.

An open connection, server or client side, with or without permessage-deflate,
with a small or a large ``max_size``, is fed the same bytes on each twin of
the core (see ``twins``): whole, one byte at a time, and cut where the input
says (reading large messages through ``receive_space()`` where offered, as the
asyncio layer does). Every run must end the same: the same events, the same
error, the same close frames and the same bytes to send; messages received
are echoed back, so that the compressor is compared too. The masking
functions of ``_speedups.c`` are also compared with ``mask.py``'s directly.

The input: 4 bytes of settings (side and extensions, ``max_size``, failure
mode, where data starts), 4 bytes of chunk sizes, then the byte stream.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

from fuzzing import twins
from fuzzing.harness import fuzz
from fuzzing.source import Source

__all__ = ["test_one_input", "main"]

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

# What a client offers (server side) or a server answers (client side).
SERVER_OFFERS = [
    None,
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=8; client_max_window_bits=9",
    "permessage-deflate; server_max_window_bits=10",
    "x-unknown, permessage-deflate; client_max_window_bits=8",
    "permessage-deflate; server_no_context_takeover",
]
CLIENT_ANSWERS = [
    None,
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=9",
    "permessage-deflate; client_max_window_bits=8",
    "permessage-deflate; server_max_window_bits=8; client_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
]
MAX_SIZES: list[int | None] = [1 << 20, None, 0, 1, 125, 126, 1000, 70_000]


@dataclasses.dataclass(frozen=True)
class Setup:
    client: bool  # the side under test; its peer sends the stream
    extension: str | None
    max_size: int | None
    defer_failures: bool
    with_head: bool  # the first bytes come with the handshake, in one piece
    sizes: tuple[int, ...]  # chunk sizes for the cut run, in turn

    @classmethod
    def read(cls, src: Source) -> Setup:
        b = src.byte()
        client = bool(b & 0x80)
        extension = (CLIENT_ANSWERS if client else SERVER_OFFERS)[b & 7]
        max_size = src.pick(MAX_SIZES)
        b = src.byte()
        sizes = tuple(1 + x for x in src.take(4)) or (1,)
        return cls(client, extension, max_size, bool(b & 1), bool(b & 2), sizes)


def open_connection(protocol: ModuleType, setup: Setup, first: bytes) -> tuple[Any, list[Any]]:
    """A connection of ``protocol`` (one twin) after a real handshake, and the
    events that ``first`` gave: it comes in the same piece as the handshake's
    last bytes."""
    ext = f"Sec-WebSocket-Extensions: {setup.extension}\r\n" if setup.extension else ""
    if setup.client:
        conn = protocol.ClientProtocol(
            protocol.parse_uri("ws://example.com/chat"), max_size=setup.max_size
        )
        conn.key = KEY
        conn.defer_failures = setup.defer_failures  # as the I/O layers do, from the start
        conn.send_request(conn.connect())
        conn.data_to_send()  # the request: not a frame
        conn.receive_data(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n{ext}\r\n"
            ).encode()
            + first
        )
        response, *events = conn.events_received()
        assert response.status == 101 and conn.handshake_exc is None, conn.handshake_exc
    else:
        conn = protocol.ServerProtocol(max_size=setup.max_size)
        conn.defer_failures = setup.defer_failures
        conn.receive_data(
            (
                "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{ext}\r\n"
            ).encode()
            + first
        )
        (request,) = conn.events_received()
        response = conn.accept(request)
        assert response.status == 101, response
        conn.send_response(response)
        events = []
    return conn, events


def event_key(event: object) -> object:
    """An event as plain data: each twin has its own classes."""
    if isinstance(event, (str, bytes)):
        return event
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        fields = dataclasses.astuple(event)
        if type(event).__name__ == "Response":
            fields = (event.status,)  # type: ignore[attr-defined]
        return (type(event).__name__, fields)
    raise AssertionError(f"unexpected event {event!r}")


def exc_key(exc: BaseException | None) -> object:
    if exc is None:
        return None
    return (type(exc).__name__, str(exc), getattr(exc, "code", None))


def frames_sent(data: bytes, client: bool) -> list[tuple[int, bytes]]:
    """What a connection sent after its handshake, as (first byte, payload)
    per frame, unmasked: a client's masking keys are random."""
    from tidewire.protocol.mask import apply_mask_py

    if not client:
        data = data[data.index(b"\r\n\r\n") + 4 :]  # the 101 response
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert bool(b1 & 0x80) == client, "a mask bit on the wrong side"
        length = b1 & 0x7F
        head = 2 + {126: 2, 127: 8}.get(length, 0)
        if length >= 126:
            length = int.from_bytes(data[pos + 2 : pos + head], "big")
        key = data[pos + head : pos + head + 4] if client else None
        pos += head + (4 if client else 0)
        payload = data[pos : pos + length]
        assert len(payload) == length, "a frame cut short"
        frames.append((b0, apply_mask_py(payload, key) if key else payload))
        pos += length
    return frames


class Run:
    """One connection fed a stream; what came out of it."""

    def __init__(self, protocol: ModuleType, setup: Setup, first: bytes) -> None:
        self.setup = setup
        self.conn, early = open_connection(protocol, setup, first)
        self.events: list[object] = []
        self.out = bytearray()
        self.collect(early)

    def collect(self, early: list[Any] = ()) -> None:  # type: ignore[assignment]
        conn = self.conn
        for event in [*early, *conn.events_received()]:
            self.events.append(event_key(event))
            # Echo messages: what the compressor makes is compared too.
            if conn.state.name == "OPEN" and not conn.failed:
                if isinstance(event, str):
                    conn.send_text(event.encode())
                elif isinstance(event, bytes):
                    conn.send_binary(event)
        for data in conn.data_to_send():
            self.out += data

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.collect()

    def feed_into_space(self, data: bytes) -> int:
        """Write up to all of ``data`` into ``receive_space()`` if offered;
        return how many bytes were taken."""
        space = self.conn.receive_space()
        if space is None:
            return 0
        n = min(len(space), len(data))
        space[:n] = data[:n]
        space.release()
        self.conn.received_into(n)
        self.collect()
        return n

    def outcome(self) -> dict[str, object]:
        conn = self.conn
        pending = exc_key(conn.pending_failure)
        if conn.pending_failure is not None:
            conn.fail_pending()
            self.collect()
        frames = frames_sent(bytes(self.out), self.setup.client)
        return {
            "events": self.events,
            # Which messages were echoed depends on when a close came, so on
            # the chunks; the frames that answer the peer don't.
            "echoes": [f for f in frames if f[0] & 0x0F < 8],
            "controls": [f for f in frames if f[0] & 0x0F >= 8],
            "state": conn.state.name,
            "failed": conn.failed,
            "close_expected": conn.close_expected(),
            "close_sent": event_key(conn.close_sent) if conn.close_sent else None,
            "close_rcvd": event_key(conn.close_rcvd) if conn.close_rcvd else None,
            "exc": exc_key(conn.exc),
            "pending": pending,
        }


def whole(protocol: ModuleType, setup: Setup, stream: bytes) -> dict[str, object]:
    if setup.with_head:
        return Run(protocol, setup, stream).outcome()
    run = Run(protocol, setup, b"")
    if stream:
        run.feed(stream)
    return run.outcome()


def cut(
    protocol: ModuleType, setup: Setup, stream: bytes, sizes: tuple[int, ...]
) -> dict[str, object]:
    """Fed in chunks of ``sizes`` in turn; into the reader's space when offered."""
    run = Run(protocol, setup, b"")
    pos = 0
    turn = 0
    while pos < len(stream):
        n = sizes[turn % len(sizes)]
        turn += 1
        taken = run.feed_into_space(stream[pos : pos + n])
        if not taken:
            run.feed(stream[pos : pos + n])
            taken = n
        pos += taken
    return run.outcome()


def check_outcome(outcome: dict[str, object]) -> None:
    """Rules each run must follow, whatever the twin."""
    exc = outcome["exc"]
    if exc is not None and outcome["close_sent"] is not None:
        name, _, code = exc  # type: ignore[misc]
        sent = outcome["close_sent"][1][0]  # type: ignore[index]
        # A failure we report is the close code we sent, unless the peer's
        # close came first and we only echoed it.
        if outcome["close_rcvd"] is None:
            assert sent == code, f"{name} with code {code} but sent close {sent}"
    if outcome["failed"]:
        assert outcome["close_expected"]


def compare_masking(
    compiled: ModuleType, pure: ModuleType, stream: bytes, sizes: tuple[int, ...]
) -> None:
    """The masking functions of ``_speedups.c`` against ``mask.py``'s, directly:
    any key, start, length, phase, and pieces of an assembly."""
    fast, slow = compiled.mask, pure.mask
    key = (stream[:4] + b"\x5a\xa5\x0f\xf0")[:4]
    assert fast.apply_mask(stream, key) == slow.apply_mask_py(stream, key)
    start, n, phase = sizes[0] % 8, len(stream) - sizes[0] % 8 - sizes[1] % 4, sizes[2]
    mask = None if phase & 0x80 else key
    if n >= 0:
        assert fast.copy_unmasked(stream, start, n, mask, phase) == slow.copy_unmasked_py(
            stream, start, n, mask, phase
        )
    wholes = [fast.Assembly(len(stream)), slow.AssemblyPy(len(stream))]
    pos = turn = 0
    while pos < len(stream):
        n = sizes[turn % len(sizes)]
        piece = stream[pos : pos + n]
        mask = key if n & 1 else None  # pieces with and without a mask
        for whole in wholes:
            if n & 2:
                with whole.space() as space:
                    space[: len(piece)] = piece
                whole.filled(len(piece), mask)
            else:
                whole.put(piece, mask)
        pos += len(piece)
        turn += 1
    assert wholes[0].take() == wholes[1].take()


def test_one_input(data: bytes) -> None:
    src = Source(data)
    setup = Setup.read(src)
    stream = src.rest()
    compiled, pure = twins.compiled(), twins.pure()
    compare_masking(compiled, pure, stream, setup.sizes + (1, 1, 1))
    for how, run in [
        ("whole", lambda p: whole(p, setup, stream)),
        ("byte by byte", lambda p: cut(p, setup, stream, (1,))),
        ("cut", lambda p: cut(p, setup, stream, setup.sizes)),
    ]:
        expected = run(pure)
        check_outcome(expected)
        compare(f"compiled, {how}", run(compiled), f"pure, {how}", expected)
        if how == "whole":
            reference = expected
        else:
            # Fed in pieces, the same but for which messages came before a
            # close and were echoed.
            del expected["echoes"]
            excuse_inflating_order(expected, reference)
            compare(f"pure, {how}", expected, "pure, whole", reference, skip="echoes")


def excuse_inflating_order(outcome: dict[str, object], whole: dict[str, object]) -> None:
    """Where a compressed message is wrong in more than one way (invalid
    UTF-8, corrupt data, more than ``max_size`` once inflated), which one is
    reported depends on the chunks: fed whole, zlib inflates it in one call,
    fails it (1002) or stops at the limit (1009) where its output buffer ends,
    before any text is decoded; fed in pieces, each piece's output is checked
    as it comes. Any of these is right; take the split run's as the whole's."""
    exc, ref = outcome["exc"], whole["exc"]
    inflating = ("invalid compressed data", "message too big after decompression")
    if (
        isinstance(exc, tuple) and isinstance(ref, tuple)
        and (exc[0] == "InvalidUTF8" or exc[1].startswith(inflating))
        and ref[1].startswith(inflating)
        and outcome["controls"][:-1] == whole["controls"][:-1]  # type: ignore[index]
    ):
        for key in ("exc", "close_sent", "controls", "pending"):
            outcome[key] = whole[key]


def compare(
    name: str, outcome: dict[str, object], ref_name: str, ref: dict[str, object], skip: str = ""
) -> None:
    diff = {k: (ref[k], v) for k, v in outcome.items() if k != skip and ref[k] != v}
    if diff:
        raise AssertionError(f"{name} differs from {ref_name}: {diff}")


def seeds() -> dict[str, bytes]:
    """Valid streams, plain and compressed, for each side."""
    import zlib

    from tidewire.protocol.frames import Close as CloseFrame
    from tidewire.protocol.frames import build_close, build_frame

    def compress(data: bytes, bits: int = 15) -> bytes:
        c = zlib.compressobj(6, zlib.DEFLATED, -bits)
        return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]

    def stream(*frames: tuple[int, bytes, bool, bool], client: bool) -> bytes:
        key = None if client else b"\x37\xfa\x21\x3d"
        return b"".join(
            build_frame(op, data, fin=fin, rsv1=rsv1, mask=key) for op, data, fin, rsv1 in frames
        )

    text = "Ünïcødé text, and some more text to compress well: ".encode() * 3
    close = build_close(CloseFrame(1000, "bye"))
    out = {}
    for client in (False, True):
        side = "client" if client else "server"
        head = 0x80 if client else 0
        sizes = b"\x00\x02\x06\x7f"  # chunks of 1, 3, 7, 128 bytes
        out[f"{side}-plain.bin"] = bytes([head, 0, 0]) + sizes + stream(
            (1, text, True, False), (2, bytes(range(256)), True, False),
            (9, b"ping", True, False), (8, close, True, False), client=client,
        )
        out[f"{side}-fragments.bin"] = bytes([head, 0, 1]) + sizes + stream(
            (1, text[:5], False, False), (9, b"", True, False), (0, text[5:9], False, False),
            (0, text[9:], True, False), (10, b"pong", True, False), client=client,
        )
        out[f"{side}-deflate.bin"] = bytes([head | 1, 0, 2]) + sizes + stream(
            (1, compress(text), True, True), (2, compress(b"\x00" * 5000), True, True),
            (1, compress(b""), True, True), (8, close, True, False), client=client,
        )
        deflated = compress(text)
        out[f"{side}-deflate-fragments.bin"] = bytes([head | 3, 0, 0]) + sizes + stream(
            (1, deflated[:7], False, True), (0, deflated[7:], True, False),
            (2, b"plain", True, False), client=client,
        )
        out[f"{side}-small-limit.bin"] = bytes([head | 1, 4, 1]) + sizes + stream(
            (2, b"x" * 100, True, False), (2, compress(b"y" * 1000), True, True),
            client=client,
        )
        # The start of a message large enough to be read in place.
        out[f"{side}-large-frame.bin"] = bytes([head, 7, 0]) + sizes + stream(
            (2, bytes(66_000), True, False), client=client,
        )[:300]
    return out


def main() -> None:
    fuzz(test_one_input, twins.pure)


if __name__ == "__main__":
    main()
