"""permessage-deflate (RFC 7692): negotiation, the decoder, and round trips.

The first input byte picks one of four checks, the rest is its input:

- negotiation: extension header values, as a client offers them to a server
  and as a server answers a client, are accepted or refused with a
  ``NegotiationError`` and nothing else; what a server accepts, a client
  reads back with the same settings;
- decoding: any bytes, in any pieces and messages, decompress within the
  limit or fail with 1009 (too big) or 1002 (not DEFLATE data);
- bombs: a message of a few bytes that inflates past the limit stops at the
  limit with 1009, and one within it comes out whole;
- round trips: what one side compresses, in fragments or not, over several
  messages with or without context takeover, the other side restores; and so
  does a message that a sender ended with a final block (BFINAL set, RFC 7692
  section 7.2.3.5).
"""

from __future__ import annotations

import importlib
import zlib

from fuzzing.harness import fuzz
from fuzzing.source import Source

__all__ = ["test_one_input", "main", "seeds"]

LIMITS: list[int | None] = [None, 0, 1, 100, 1000, 65_536, 1 << 20]
TAIL = b"\x00\x00\xff\xff"


def options_list() -> list[object]:
    from tidewire.protocol.deflate import DeflateOptions

    return [
        DeflateOptions(),
        DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
        DeflateOptions(server_max_window_bits=9, client_max_window_bits=8),
        DeflateOptions(client_max_window_bits=12, level=1, mem_level=1),
        DeflateOptions(server_max_window_bits=8),
        DeflateOptions(server_max_window_bits=15, client_no_context_takeover=True, level=9),
    ]


def check_codec(codec: object) -> None:
    for name in ("local_max_window_bits", "remote_max_window_bits"):
        bits = getattr(codec, name)
        assert type(bits) is int and 8 <= bits <= 15, f"{name}={bits!r}"


def negotiate(src: Source) -> None:
    from tidewire.exceptions import NegotiationError
    from tidewire.protocol.deflate import client_accept, parse_extensions, server_accept

    options = src.pick(options_list())
    # Header values reach the parser decoded as latin-1, one value a line.
    values = src.rest().decode("latin-1").split("\n")
    try:
        offers = parse_extensions(values)
    except NegotiationError:
        return
    accepted = server_accept(options, offers)  # type: ignore[arg-type]
    if accepted is not None:
        response, server = accepted
        check_codec(server)
        ((name, params),) = parse_extensions([response])
        assert name == "permessage-deflate"
        # A client that offered what the server picked reads its answer with
        # the same settings, mirrored.
        client = client_accept(type(options)(), params)  # type: ignore[arg-type]
        check_codec(client)
        assert client.local_no_context_takeover == server.remote_no_context_takeover
        assert client.remote_no_context_takeover == server.local_no_context_takeover
        assert client.local_max_window_bits <= server.remote_max_window_bits
    # The same values as a server's answer, read by a client.
    for name, params in offers:
        if name != "permessage-deflate":
            continue
        try:
            codec = client_accept(options, params)  # type: ignore[arg-type]
        except NegotiationError:
            continue
        check_codec(codec)


def decoder(src: Source) -> object:
    from tidewire.protocol.deflate import Deflate

    b = src.byte()
    return Deflate(
        local_no_context_takeover=False,
        remote_no_context_takeover=bool(b & 1),
        local_max_window_bits=15,
        remote_max_window_bits=8 + (b >> 1) % 8,
    )


def pieces(data: bytes, sizes: bytes) -> list[bytes]:
    """``data`` cut in chunks of ``sizes`` in turn (each 1-256 bytes)."""
    out = []
    pos = 0
    turn = 0
    while pos < len(data):
        n = 1 + sizes[turn % len(sizes)] if sizes else len(data)
        out.append(data[pos : pos + n])
        pos += n
        turn += 1
    return out


def receive(codec: object, message: list[bytes], limit: int | None) -> bytes:
    """Decompress one message from its pieces, as the reader does."""
    parts = []
    size = 0
    for piece in message:
        part = codec.decompress(piece, None if limit is None else limit - size)  # type: ignore[attr-defined]
        parts.append(part)
        size += len(part)
    parts.append(codec.end_message(None if limit is None else limit - size))  # type: ignore[attr-defined]
    return b"".join(parts)


def decode_anything(src: Source) -> None:
    from tidewire.exceptions import PayloadTooBig, ProtocolError

    codec = decoder(src)
    limit = src.pick(LIMITS)
    sizes = src.take(3)
    # Messages are separated by "|||" in the input.
    for payload in src.rest().split(b"|||"):
        try:
            out = receive(codec, pieces(payload, sizes), limit)
        except PayloadTooBig as exc:
            assert exc.code == 1009 and limit is not None
            return  # the connection fails
        except ProtocolError as exc:
            assert exc.code == 1002, exc
            assert str(exc).startswith("invalid compressed data"), exc
            return
        assert limit is None or len(out) <= limit


def bomb(src: Source) -> None:
    from tidewire.exceptions import PayloadTooBig

    codec = decoder(src)
    limit = src.pick([0, 1, 1000, 65_536, 1 << 20])
    fill = src.take(4) or b"\x00"
    size = int.from_bytes(src.take(2), "big") * 16  # up to 1 MiB, the largest limit
    level = src.byte() % 10
    sizes = src.take(3)
    data = (fill * (size // len(fill) + 1))[:size]
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    compressed = (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    try:
        out = receive(codec, pieces(compressed, sizes), limit)
    except PayloadTooBig as exc:
        assert exc.code == 1009
        assert size > limit, f"{size} bytes refused under a limit of {limit}"
        return
    assert size <= limit, f"{size} bytes accepted over a limit of {limit}"
    assert out == data


def round_trip(src: Source) -> None:
    from tidewire.protocol.deflate import (
        client_accept,
        client_offer,
        parse_extensions,
        server_accept,
    )

    server_options = src.pick(options_list())
    client_options = src.pick(options_list())
    accepted = server_accept(
        server_options, parse_extensions([client_offer(client_options)])  # type: ignore[arg-type]
    )
    if accepted is None:
        return
    response, server = accepted
    ((_, params),) = parse_extensions([response])
    client = client_accept(client_options, params)  # type: ignore[arg-type]
    sizes = src.take(3)
    b = src.byte()
    to_server = bool(b & 1)
    final_blocks = bool(b & 2)  # a sender that ends each message with BFINAL
    sender, receiver = (client, server) if to_server else (server, client)
    for message in src.rest().split(b"|||"):
        if not sender.can_compress:
            continue  # an 8-bit window: messages go uncompressed
        if final_blocks:
            c = zlib.compressobj(6, zlib.DEFLATED, -sender.local_max_window_bits)
            # The final block, then the octet that lets the receiver append
            # its empty stored block (RFC 7692 section 7.2.3.5).
            wire = [c.compress(message) + c.flush(zlib.Z_FINISH) + b"\x00"]
        else:
            fragments = pieces(message, sizes) or [b""]
            wire = [
                sender.compress(f, i == len(fragments) - 1) for i, f in enumerate(fragments)
            ]
        assert receive(receiver, wire, None) == message


CHECKS = [negotiate, decode_anything, bomb, round_trip]


def test_one_input(data: bytes) -> None:
    src = Source(data)
    src.pick(CHECKS)(src)


def seeds() -> dict[str, bytes]:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    hello = (c.compress(b"Hello, hello, hello!") + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    more = (c.compress(b"hello again") + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    return {
        "negotiate-default.bin": b"\x00\x00permessage-deflate; client_max_window_bits",
        "negotiate-all.bin": (
            b"\x00\x02permessage-deflate; server_no_context_takeover; "
            b"client_no_context_takeover; server_max_window_bits=10; "
            b'client_max_window_bits="12", x-other; a=b\npermessage-deflate'
        ),
        "negotiate-bad-bits.bin": b"\x00\x01permessage-deflate; server_max_window_bits=7",
        "decode-two-messages.bin": b"\x01\x00\x06\x03\x05\x00" + hello + b"|||" + more,
        "decode-final-block.bin": b"\x01\x01\x06\x00\x00\x00\xf3\x48\xcd\xc9\xc9\x07\x00\x00",
        "bomb-zeros.bin": b"\x02\x00\x04\x00\x00\x00\x00\xff\xff\x06\x10\x40\xff",
        "bomb-text.bin": b"\x02\x04\x01abcd\x00\x10\x09\x00",
        "round-trip.bin": b"\x03\x00\x00\x03\x07\x00\x00text one|||text two, text two|||",
        "round-trip-final.bin": b"\x03\x01\x02\x03\x07\x00\x02text one|||text two, text two",
    }


def main() -> None:
    fuzz(test_one_input, lambda: importlib.import_module("tidewire.protocol.deflate"))


if __name__ == "__main__":
    main()
