"""Frames byte by byte, against the examples of RFC 6455 section 5.7."""

from __future__ import annotations

import pytest

from tidewire.exceptions import InvalidUTF8, ProtocolError
from tidewire.protocol import Close, Opcode, Ping, Pong
from tidewire.protocol.frames import build_close, build_frame, parse_close
from tidewire.protocol.mask import apply_mask
from tidewire.protocol.reader import Reader

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])

# RFC 6455 section 5.7
HELLO_UNMASKED = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
HELLO_MASKED = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
HEL_LO = bytes([0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F])
PING_HELLO = bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
PONG_HELLO_MASKED = bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])


def client_reader(max_size: int | None = None) -> Reader:
    """What a client uses to read server frames (unmasked)."""
    return Reader(expect_mask=False, max_size=max_size)


def server_reader(max_size: int | None = None) -> Reader:
    return Reader(expect_mask=True, max_size=max_size)


def feed(reader: Reader, data: bytes, *, bytewise: bool = False) -> list[object]:
    events: list[object] = []
    if bytewise:
        for i in range(len(data)):
            reader.feed(data[i : i + 1], events)  # type: ignore[arg-type]
    else:
        reader.feed(data, events)  # type: ignore[arg-type]
    return events


def test_build_unmasked_text_matches_rfc() -> None:
    assert build_frame(Opcode.TEXT, b"Hello") == HELLO_UNMASKED


def test_build_masked_text_matches_rfc() -> None:
    assert build_frame(Opcode.TEXT, b"Hello", mask=MASK) == HELLO_MASKED


def test_build_fragments_match_rfc() -> None:
    first = build_frame(Opcode.TEXT, b"Hel", fin=False)
    last = build_frame(Opcode.CONT, b"lo")
    assert first + last == HEL_LO


def test_build_16_and_64_bit_lengths_match_rfc() -> None:
    assert build_frame(Opcode.BINARY, bytes(256))[:4] == bytes([0x82, 0x7E, 0x01, 0x00])
    assert build_frame(Opcode.BINARY, bytes(65536))[:10] == bytes(
        [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
    )


@pytest.mark.parametrize("bytewise", [False, True])
def test_client_reads_unmasked_text(bytewise: bool) -> None:
    assert feed(client_reader(), HELLO_UNMASKED, bytewise=bytewise) == ["Hello"]


@pytest.mark.parametrize("bytewise", [False, True])
def test_server_reads_masked_text(bytewise: bool) -> None:
    assert feed(server_reader(), HELLO_MASKED, bytewise=bytewise) == ["Hello"]


@pytest.mark.parametrize("bytewise", [False, True])
def test_client_reassembles_fragments(bytewise: bool) -> None:
    assert feed(client_reader(), HEL_LO, bytewise=bytewise) == ["Hello"]


def test_control_frame_between_fragments_is_delivered_first() -> None:
    data = HEL_LO[:5] + PING_HELLO + HEL_LO[5:]
    assert feed(client_reader(), data) == [Ping(b"Hello"), "Hello"]


def test_server_reads_masked_pong() -> None:
    assert feed(server_reader(), PONG_HELLO_MASKED) == [Pong(b"Hello")]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_binary_lengths_round_trip(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert feed(server_reader(), build_frame(Opcode.BINARY, payload, mask=MASK)) == [payload]


def test_reader_keeps_partial_frames_between_feeds() -> None:
    data = build_frame(Opcode.BINARY, b"x" * 1000, mask=MASK) * 3
    reader = server_reader()
    events: list[object] = []
    for i in range(0, len(data), 7):
        reader.feed(data[i : i + 7], events)  # type: ignore[arg-type]
    assert events == [b"x" * 1000] * 3


def test_mask_is_its_own_inverse() -> None:
    data = bytes(range(256)) * 3 + b"tail"
    assert apply_mask(apply_mask(data, MASK), MASK) == data
    assert apply_mask(b"Hello", MASK) == HELLO_MASKED[6:]


@pytest.mark.parametrize(
    "frame, message",
    [
        (bytes([0x83, 0x00]), "reserved opcode"),
        (bytes([0x8B, 0x00]), "reserved opcode"),
        (bytes([0xC1, 0x00]), "RSV1"),
        (bytes([0xA1, 0x00]), "RSV2 or RSV3"),
        (bytes([0x91, 0x00]), "RSV2 or RSV3"),
        (bytes([0x09, 0x00]), "fragmented control frame"),
        (bytes([0x89, 0x7E, 0x00, 0x7E]) + bytes(126), "over 125 bytes"),
        (bytes([0x80, 0x00]), "continuation frame outside"),
        (bytes([0x01, 0x00, 0x81, 0x00]), "new message inside"),
        (bytes([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]), "most significant bit"),
        (bytes([0x88, 0x01, 0x03]), "1-byte payload"),
    ],
)
def test_client_rejects_bad_frame(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        feed(client_reader(), frame)
    assert info.value.code == 1002


def test_server_rejects_unmasked_frame() -> None:
    with pytest.raises(ProtocolError, match="unmasked frame"):
        feed(server_reader(), HELLO_UNMASKED)


def test_client_rejects_masked_frame() -> None:
    with pytest.raises(ProtocolError, match="masked frame from server"):
        feed(client_reader(), HELLO_MASKED)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_close_with_invalid_code_is_a_protocol_error(code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(code.to_bytes(2, "big"))
    assert info.value.code == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999])
def test_close_with_valid_code_round_trips(code: int) -> None:
    close = Close(code, "bye ✓")
    assert parse_close(build_close(close)) == close


def test_close_reason_with_invalid_utf8_is_1007() -> None:
    with pytest.raises(InvalidUTF8) as info:
        parse_close(b"\x03\xe8\xff")
    assert info.value.code == 1007


def test_empty_close_means_no_status() -> None:
    assert parse_close(b"") == Close(1005)
    assert build_close(Close(1005)) == b""


def test_invalid_utf8_fails_on_the_first_bad_byte_mid_frame() -> None:
    payload = "κόσμε".encode() + b"\xed\xa0\x80" + b"more text" * 100
    frame = build_frame(Opcode.TEXT, payload, mask=MASK)
    reader = server_reader()
    events: list[object] = []
    bad_at = 8 + len("κόσμε".encode()) + 2  # 8-byte header, valid prefix, 2 bad bytes
    reader.feed(frame[: bad_at - 1], events)  # type: ignore[arg-type]
    with pytest.raises(InvalidUTF8):
        reader.feed(frame[bad_at - 1 : bad_at], events)  # type: ignore[arg-type]


def test_invalid_utf8_across_fragments_is_caught_in_the_fragment() -> None:
    frames = build_frame(Opcode.TEXT, b"ok", fin=False) + build_frame(
        Opcode.CONT, b"\xc0\xaf", fin=False
    )
    with pytest.raises(InvalidUTF8):
        feed(client_reader(), frames)


def test_utf8_sequence_split_across_fragments_is_valid() -> None:
    euro = "€".encode()
    frames = build_frame(Opcode.TEXT, euro[:1], fin=False) + build_frame(Opcode.CONT, euro[1:])
    assert feed(client_reader(), frames) == ["€"]


def test_truncated_utf8_at_end_of_message_is_invalid() -> None:
    with pytest.raises(InvalidUTF8):
        feed(client_reader(), build_frame(Opcode.TEXT, "€".encode()[:2]))


def test_message_over_limit_fails_before_payload_arrives() -> None:
    reader = client_reader(max_size=1000)
    header = build_frame(Opcode.BINARY, bytes(1001))[:4]
    with pytest.raises(ProtocolError) as info:
        feed(reader, header)
    assert info.value.code == 1009


def test_fragmented_message_over_limit_fails() -> None:
    frames = build_frame(Opcode.BINARY, bytes(600), fin=False) + build_frame(
        Opcode.CONT, bytes(600)
    )
    with pytest.raises(ProtocolError) as info:
        feed(client_reader(max_size=1000), frames)
    assert info.value.code == 1009


def test_message_at_limit_is_accepted() -> None:
    assert feed(client_reader(max_size=1000), build_frame(Opcode.BINARY, bytes(1000))) == [
        bytes(1000)
    ]


def test_frame_over_max_frame_size_fails_with_1009() -> None:
    reader = Reader(expect_mask=False, max_size=None, max_frame_size=100)
    with pytest.raises(ProtocolError, match="frame of 101 bytes") as info:
        feed(reader, build_frame(Opcode.BINARY, bytes(101))[:2])
    assert info.value.code == 1009
    assert feed(Reader(expect_mask=False, max_size=None, max_frame_size=100),
                build_frame(Opcode.BINARY, bytes(100))) == [bytes(100)]
