"""permessage-deflate: RFC 7692 examples and the negotiation of its four parameters."""

from __future__ import annotations

import random
import zlib

import pytest

from tidewire.exceptions import NegotiationError, ProtocolError
from tidewire.protocol import DeflateOptions
from tidewire.protocol.deflate import (
    Deflate,
    client_accept,
    client_offer,
    parse_extensions,
    server_accept,
)
from tidewire.protocol.reader import Reader

from .helpers import Pair


def codec(**kwargs: object) -> Deflate:
    options: dict[str, object] = dict(
        local_no_context_takeover=False,
        remote_no_context_takeover=False,
        local_max_window_bits=15,
        remote_max_window_bits=15,
    )
    options.update(kwargs)
    return Deflate(**options)  # type: ignore[arg-type]


def read(data: bytes, deflate: Deflate) -> list[object]:
    events: list[object] = []
    Reader(expect_mask=False, max_size=None, deflate=deflate).feed(data, events)  # type: ignore[arg-type]
    return events


def test_reads_rfc_7692_compressed_hello() -> None:
    # RFC 7692 section 7.2.3.1
    frame = bytes([0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    assert read(frame, codec()) == ["Hello"]


def test_reads_rfc_7692_context_takeover() -> None:
    # RFC 7692 section 7.2.3.2: the second "Hello" refers to the first.
    first = bytes([0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    second = bytes([0xC1, 0x05, 0xF2, 0x00, 0x11, 0x00, 0x00])
    assert read(first + second, codec()) == ["Hello", "Hello"]


def test_reads_rfc_7692_fragmented_compressed_message() -> None:
    # RFC 7692 section 7.2.3.4
    frames = bytes([0x41, 0x03, 0xF2, 0x48, 0xCD, 0x80, 0x04, 0xC9, 0xC9, 0x07, 0x00])
    assert read(frames, codec()) == ["Hello"]


@pytest.mark.parametrize("remote_no_context_takeover", [False, True])
def test_reads_messages_after_one_that_ended_with_a_final_block(
    remote_no_context_takeover: bool,
) -> None:
    """Found by fuzzing: after a message ended with BFINAL set (RFC 7692
    section 7.2.3.5), zlib's stream had ended, and with context takeover every
    later message came out empty. A final block ends the stream: the next
    message starts a new one."""
    final = bytes([0xC1, 0x08, 0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])
    plain = bytes([0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    # The final block without the octet that follows it is read too.
    bare = bytes([0xC1, 0x07, 0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    deflate = codec(remote_no_context_takeover=remote_no_context_takeover)
    assert read(final + plain + bare + final + plain, deflate) == ["Hello"] * 5


@pytest.mark.parametrize("extra", [b"\x01", b"\x00\x00", b"more data"])
def test_data_after_a_final_block_fails_with_1002(extra: bytes) -> None:
    payload = bytes([0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]) + extra
    frame = bytes([0xC1, len(payload)]) + payload
    with pytest.raises(ProtocolError, match="more after the final block") as info:
        read(frame, codec())
    assert info.value.code == 1002


def test_reads_rfc_7692_uncompressed_message_on_deflate_connection() -> None:
    assert read(bytes([0x81, 0x05]) + b"Hello", codec()) == ["Hello"]


def test_compresses_hello_like_rfc_7692() -> None:
    assert codec().compress(b"Hello") == bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])


def test_context_takeover_makes_repeats_smaller() -> None:
    c = codec()
    first = c.compress(b"a fairly long message, repeated")
    second = c.compress(b"a fairly long message, repeated")
    assert len(second) < len(first)
    nct = codec(local_no_context_takeover=True)
    assert nct.compress(b"Hello") == nct.compress(b"Hello")


def test_window_of_8_bits_sends_uncompressed() -> None:
    pair_codec = codec(local_max_window_bits=8)
    assert not pair_codec.can_compress


@pytest.mark.parametrize("bits", range(9, 16))
def test_compressor_keeps_within_the_agreed_window(bits: int) -> None:
    # A decoder with exactly the agreed window fails ("invalid distance too far
    # back") on any reference beyond it; the repeats here sit at distances on
    # both sides of every window size.
    c = codec(local_max_window_bits=bits)
    strict = zlib.decompressobj(-bits)
    noise = random.Random(bits).randbytes(40_000)
    for size in (200, 400, 700, 1_500, 3_000, 6_000, 12_000, 25_000, 40_000):
        message = noise[:size] * 3
        assert strict.decompress(c.compress(message) + b"\x00\x00\xff\xff") == message
    assert len(c.compress(b"tidewire " * 200)) < 100


def offers(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    return parse_extensions([header])


def test_parse_extensions_handles_params_and_quotes() -> None:
    assert offers('permessage-deflate; client_max_window_bits="10"; x, foo') == [
        ("permessage-deflate", [("client_max_window_bits", "10"), ("x", None)]),
        ("foo", []),
    ]


@pytest.mark.parametrize(
    "offer, response",
    [
        ("permessage-deflate", "permessage-deflate"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "permessage-deflate; client_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=9",
        ),
        # The first acceptable offer wins; a malformed one is skipped.
        (
            "permessage-deflate; server_max_window_bits=7, permessage-deflate",
            "permessage-deflate",
        ),
        (
            "permessage-deflate; foo, permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
    ],
)
def test_server_accepts_offer(offer: str, response: str) -> None:
    accepted = server_accept(DeflateOptions(), offers(offer))
    assert accepted is not None
    assert accepted[0] == response


@pytest.mark.parametrize(
    "offer",
    [
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=08",
        # Found by fuzzing: "²" (a latin-1 header byte) passed str.isdigit(),
        # then int() raised ValueError out of the handshake.
        'permessage-deflate; client_max_window_bits="\xb2"',
        'permessage-deflate; server_max_window_bits="1\u0661"',
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; unknown_param",
    ],
)
def test_server_declines_bad_offer(offer: str) -> None:
    assert server_accept(DeflateOptions(), offers(offer)) is None


def test_server_settings_ask_the_client() -> None:
    options = DeflateOptions(client_no_context_takeover=True, client_max_window_bits=10)
    header, deflate = server_accept(
        options, offers("permessage-deflate; client_max_window_bits")
    ) or ("", None)
    assert header == (
        "permessage-deflate; client_no_context_takeover; client_max_window_bits=10"
    )
    assert deflate is not None and deflate.remote_no_context_takeover


def test_client_offer_lets_server_limit_our_window_and_context() -> None:
    assert client_offer(DeflateOptions()) == (
        "permessage-deflate; client_max_window_bits, "
        "permessage-deflate; client_no_context_takeover; client_max_window_bits"
    )
    assert client_offer(DeflateOptions(client_no_context_takeover=True)) == (
        "permessage-deflate; client_no_context_takeover; client_max_window_bits"
    )


def test_server_takes_the_clients_first_offer() -> None:
    accepted = server_accept(DeflateOptions(), offers(client_offer(DeflateOptions())))
    assert accepted is not None and accepted[0] == "permessage-deflate"


def test_client_accepts_server_limits() -> None:
    params = offers("permessage-deflate; client_max_window_bits=9; server_no_context_takeover")
    deflate = client_accept(DeflateOptions(), params[0][1])
    assert deflate.local_max_window_bits == 9
    assert deflate.remote_no_context_takeover


@pytest.mark.parametrize(
    "response, message",
    [
        ("permessage-deflate; client_max_window_bits", "needs a value"),
        ("permessage-deflate; server_max_window_bits", "needs a value"),
        ("permessage-deflate; foo", "unknown parameter"),
        ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", "dup"),
    ],
)
def test_client_rejects_bad_response(response: str, message: str) -> None:
    with pytest.raises(NegotiationError, match=message):
        client_accept(DeflateOptions(), offers(response)[0][1])


@pytest.mark.parametrize(
    "client, server",
    [
        (DeflateOptions(), DeflateOptions()),
        (DeflateOptions(client_no_context_takeover=True), DeflateOptions()),
        (DeflateOptions(server_no_context_takeover=True), DeflateOptions()),
        (DeflateOptions(server_max_window_bits=9), DeflateOptions()),
        (DeflateOptions(), DeflateOptions(client_max_window_bits=8)),
        (DeflateOptions(client_max_window_bits=12), DeflateOptions(server_max_window_bits=11)),
    ],
)
def test_every_parameter_combination_round_trips(
    client: DeflateOptions, server: DeflateOptions
) -> None:
    pair = Pair(client_deflate=client, server_deflate=server)
    assert pair.client.deflate is not None and pair.server.deflate is not None
    messages = [b"hello " * 50, b"", b"hello " * 50, bytes(range(256)) * 40]
    for message in messages:
        pair.client.send_binary(message)
        pair.server.send_binary(message)
    assert pair.c2s() == messages
    assert pair.s2c() == messages
