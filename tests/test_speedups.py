"""Compiled functions agree with their pure-Python twins, and are really used."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable

import pytest

from tidewire.protocol import mask


def test_compiled_speedups_are_in_use_unless_disabled() -> None:
    if os.environ.get("TIDEWIRE_NO_SPEEDUPS"):
        assert mask.apply_mask is mask.apply_mask_py
    else:
        from tidewire import _speedups

        assert mask.apply_mask is _speedups.apply_mask


def test_protocol_connections_use_the_compiled_base_unless_disabled() -> None:
    from tidewire.protocol import ClientProtocol, ServerProtocol, connection

    if os.environ.get("TIDEWIRE_NO_SPEEDUPS"):
        expected = connection.ConnectionPy
    else:
        from tidewire.protocol import _connection_c

        expected = _connection_c.Connection
        assert expected is not connection.ConnectionPy
    assert connection.Connection is expected
    assert ServerProtocol.__mro__[1] is ClientProtocol.__mro__[1] is expected


def test_asyncio_connections_use_the_compiled_layer_unless_disabled() -> None:
    from tidewire.asyncio import ClientConnection, ServerConnection, connection, messages

    if os.environ.get("TIDEWIRE_NO_SPEEDUPS"):
        expected = connection.ConnectionPy, messages.MessageQueuePy
    else:
        from tidewire.asyncio import _connection_c, _messages_c

        expected = _connection_c.Connection, _messages_c.MessageQueue
        assert expected[0] is not connection.ConnectionPy
        assert expected[1] is not messages.MessageQueuePy
    assert (connection.Connection, messages.MessageQueue) == expected
    assert ServerConnection.__mro__[1] is ClientConnection.__mro__[1] is expected[0]

    async def queue_type() -> type:
        return type(connection.Connection().messages)

    # The compiled connection queues its messages in the compiled queue.
    assert asyncio.run(queue_type()) is expected[1]


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 125, 4096, 65535, 65537])
def test_apply_mask_matches_twin(size: int) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)
    key = rng.randbytes(4)
    assert mask.apply_mask(data, key) == mask.apply_mask_py(data, key)
    assert mask.apply_mask(bytearray(data), key) == mask.apply_mask_py(memoryview(data), key)


@pytest.mark.parametrize("size", [1, 2047, 2048, 2049, 4099])
def test_pure_mask_is_a_bytewise_xor(size: int) -> None:
    # The twin switches from one integer XOR to table lookups at 2 KiB.
    rng = random.Random(size)
    data = rng.randbytes(size)
    key = rng.randbytes(4)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert mask.apply_mask_py(data, key) == expected
    assert mask.apply_mask_py(memoryview(bytearray(data)), key) == expected
    assert mask.copy_unmasked_py(b"ab" + data, 2, size, key, 0) == expected


@pytest.mark.parametrize("bad", [b"", b"abc", b"abcde"])
def test_apply_mask_rejects_bad_key_length(bad: bytes) -> None:
    for fn in (mask.apply_mask, mask.apply_mask_py):
        with pytest.raises(ValueError):
            fn(b"data", bad)


def copiers() -> list[Callable[..., bytes]]:
    found: list[Callable[..., bytes]] = [mask.copy_unmasked_py]
    if not os.environ.get("TIDEWIRE_NO_SPEEDUPS"):
        from tidewire import _speedups

        assert mask.copy_unmasked is _speedups.copy_unmasked
        found.append(_speedups.copy_unmasked)
    return found


@pytest.mark.parametrize("n", [0, 1, 4, 7, 125, 4096, 70_000])
@pytest.mark.parametrize("phase", [0, 1, 2, 3, 6])
def test_copy_unmasked_is_a_slice_unmasked_from_the_phase(n: int, phase: int) -> None:
    rng = random.Random(n * 10 + phase)
    data = bytearray(rng.randbytes(n + 9))
    key = rng.randbytes(4)
    # Unmasking from the phase is unmasking a longer run and dropping its head.
    padded = bytes(phase & 3) + bytes(data[5 : 5 + n])
    expected = mask.apply_mask_py(padded, key)[phase & 3 :]
    for copy in copiers():
        assert copy(data, 5, n, key, phase) == expected, copy
        assert copy(bytes(data), 5, n, None, phase) == bytes(data[5 : 5 + n])


@pytest.mark.parametrize(
    ("start", "n", "key"),
    [(-1, 2, None), (0, -1, None), (8, 3, None), (0, 11, None), (0, 2, b"abc"), (0, 2, b"")],
)
def test_copy_unmasked_refuses_out_of_range_and_bad_keys(
    start: int, n: int, key: bytes | None
) -> None:
    for copy in copiers():
        with pytest.raises(ValueError):
            copy(b"0123456789", start, n, key, 0)


def readers() -> list[type]:
    """The pure-Python Reader, and its compiled twin when speedups are on."""
    from tidewire.protocol import reader

    found: list[type] = [reader.Reader]
    if not os.environ.get("TIDEWIRE_NO_SPEEDUPS"):
        from tidewire.protocol import _reader_c

        found.append(_reader_c.Reader)
    return found


def assemblies() -> list[type]:
    found: list[type] = [mask.AssemblyPy]
    if not os.environ.get("TIDEWIRE_NO_SPEEDUPS"):
        from tidewire import _speedups

        assert mask.Assembly is _speedups.Assembly
        found.append(_speedups.Assembly)
    return found


@pytest.mark.parametrize("masked", [True, False])
def test_assembly_matches_unmasking_in_one_go(masked: bool) -> None:
    rng = random.Random(7)
    data = rng.randbytes(100_003)
    key = rng.randbytes(4)
    expected = mask.apply_mask_py(data, key) if masked else data
    for cls in assemblies():
        whole = cls(len(data))
        pos = 0
        while pos < len(data):
            n = rng.choice([1, 3, 5, 4096, 70_000])
            whole.put(memoryview(data)[pos : pos + n], key if masked else None)
            pos += len(data[pos : pos + n])
        assert whole.take() == expected, cls


def test_assembly_takes_pieces_with_different_masks() -> None:
    rng = random.Random(11)
    keys = [rng.randbytes(4), None, rng.randbytes(4)]
    pieces = [(rng.randbytes(rng.choice([1, 2, 3, 5, 3000])), rng.choice(keys)) for _ in range(60)]
    expected = b""
    for piece, key in pieces:
        # each piece is unmasked from the key byte at its position in the message
        expected += mask.copy_unmasked_py(piece, 0, len(piece), key, len(expected))
    for cls in assemblies():
        whole = cls(len(expected))
        for piece, key in pieces:
            whole.put(piece, key)
        assert whole.take() == expected, cls


def test_assembly_refuses_overflow_incomplete_and_second_take() -> None:
    for cls in assemblies():
        whole = cls(4)
        with pytest.raises(ValueError):
            whole.put(b"12345")
        whole.put(b"12")
        with pytest.raises(ValueError):
            whole.take()  # not complete
        with pytest.raises(ValueError):
            whole.put(b"34", b"abc")  # bad mask
        whole.put(b"34")
        assert whole.take() == b"1234"
        with pytest.raises(ValueError):
            whole.take()
        with pytest.raises(ValueError):
            whole.put(b"")
        with pytest.raises(ValueError):
            cls(-1)


@pytest.mark.parametrize("masked", [True, False])
def test_assembly_filled_in_place_matches_put(masked: bool) -> None:
    """Bytes written into space() then counted with filled() are unmasked as
    put() would, mixed with put() in any order."""
    rng = random.Random(5)
    data = rng.randbytes(100_003)
    key = rng.randbytes(4) if masked else None
    expected = mask.copy_unmasked_py(data, 0, len(data), key, 0)
    for cls in assemblies():
        whole = cls(len(data))
        pos = 0
        while pos < len(data):
            n = min(rng.choice([1, 3, 5, 4096, 70_000]), len(data) - pos)
            if rng.random() < 0.5:
                with whole.space() as space:
                    assert len(space) == len(data) - pos and not space.readonly, cls
                    space[:n] = data[pos : pos + n]
                whole.filled(n, key)
            else:
                whole.put(data[pos : pos + n], key)
            pos += n
        assert whole.take() == expected, cls


def test_assembly_filled_refuses_overflow_bad_keys_and_a_taken_message() -> None:
    for cls in assemblies():
        whole = cls(4)
        with pytest.raises(ValueError):
            whole.filled(5)
        with pytest.raises(ValueError):
            whole.filled(-1)
        with pytest.raises(ValueError):
            whole.filled(2, b"abc")
        whole.filled(4)
        whole.take()
        with pytest.raises(ValueError):
            whole.space()
        with pytest.raises(ValueError):
            whole.filled(0)


def large_frame_stream(rng: random.Random, masked: bool) -> tuple[list[bytes | str], bytes]:
    """Messages with a large one-frame binary one among small ones, and their frames."""
    from tidewire.protocol.frames import build_frame

    big = rng.randbytes(rng.choice([65_536, 200_001, 1_048_576]))
    messages: list[bytes | str] = [b"before", big, "text after", big[:70_000], b""]
    stream = b"".join(
        build_frame(1 if isinstance(m, str) else 2, m.encode() if isinstance(m, str) else m,
                    mask=rng.randbytes(4) if masked else None)
        for m in messages
    )
    return messages, stream


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_large_frames_read_into_the_readers_space(seed: int, masked: bool) -> None:
    """Where the reader offers space() (the rest of a large message), bytes are
    written into it and counted with filled(); elsewhere fed: the messages are
    the same as when everything is fed."""
    rng = random.Random(seed)
    messages, stream = large_frame_stream(rng, masked)
    for cls in readers():
        reader = cls(expect_mask=masked, max_size=2**21)
        events: list[object] = []
        pos = 0
        used = 0
        while pos < len(stream):
            space = reader.space()
            if space is None:
                n = min(rng.choice([1, 2, 7, 1000, 30_000]), len(stream) - pos)
                reader.feed(stream[pos : pos + n], events)
            else:
                n = min(rng.choice([1, 7, 1000, 65_536, 300_000]), len(space))
                space[:n] = stream[pos : pos + n]
                space.release()
                more = reader.filled(n, events)
                assert more == (reader.space() is not None), cls  # False once complete
                used += 1
            pos += n
        assert events == messages, cls
        assert used > 0, cls
        assert reader.space() is None, cls


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_large_binary_frames_in_random_chunks(seed: int, masked: bool) -> None:
    """A large one-frame message (assembled in place) between small frames, cut
    anywhere, as a server reads them (masked) and as a client does: both twins
    give the same messages, in order."""
    rng = random.Random(seed)
    messages, stream = large_frame_stream(rng, masked)
    for cls in readers():
        reader = cls(expect_mask=masked, max_size=2**21)
        events: list[object] = []
        pos = 0
        while pos < len(stream):
            n = rng.choice([1, 2, 7, 1000, 65_536, 300_000])
            reader.feed(stream[pos : pos + n], events)
            pos += n
        assert events == messages, cls


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_reader_takes_any_bytes_like_chunk(wrap: Callable[[bytes], object]) -> None:
    """Small frames and a ping cut every 3 bytes, fed as bytes, bytearray or
    memoryview: each twin keeps what is left of a frame between calls."""
    from tidewire.protocol.frames import Ping, build_frame

    key = b"\x0f\xf0\x3c\xc3"
    stream = (build_frame(1, "héllo".encode(), mask=key) + build_frame(9, b"hi", mask=key)
              + build_frame(2, bytes(300), mask=key))
    for cls in readers():
        reader = cls(expect_mask=True, max_size=None)
        events: list[object] = []
        for pos in range(0, len(stream), 3):
            reader.feed(wrap(stream[pos : pos + 3]), events)  # type: ignore[arg-type]
        assert events == ["héllo", Ping(b"hi"), bytes(300)], cls


@pytest.mark.parametrize("cut", range(6, 16))
@pytest.mark.parametrize("fragmented", [False, True])
def test_encoded_surrogate_has_one_reason_wherever_the_message_is_cut(
    cut: int, fragmented: bool
) -> None:
    """Found by fuzzing: CPython names ED A0 80 an "invalid continuation byte"
    when it sees all three bytes, while the reader stops at two and says
    "encoded surrogate"; the peer now reads one reason whatever the chunks."""
    from tidewire.exceptions import InvalidUTF8
    from tidewire.protocol.frames import build_frame

    key = b"\x0f\xf0\x3c\xc3"
    payload = b"ok\xed\xa0\x80tail"
    if fragmented:
        stream = build_frame(1, payload[:3], fin=False, mask=key) + build_frame(
            0, payload[3:], mask=key
        )
    else:
        stream = build_frame(1, payload, mask=key)
    for cls in readers():
        reader = cls(expect_mask=True, max_size=None)
        events: list[object] = []
        with pytest.raises(InvalidUTF8, match="encoded surrogate$"):
            reader.feed(stream[:cut], events)
            reader.feed(stream[cut:], events)
        assert events == [], cls


def test_huge_frame_header_allocates_nothing_up_front() -> None:
    """Found by fuzzing: with no max_size, a header that claimed 256 MiB made
    the reader allocate 256 MiB for it before one byte of it came. A frame
    over 16 MiB is now gathered as it arrives, like a fragmented one."""
    import tracemalloc

    from tidewire.protocol.frames import build_frame

    header = bytes([0x82, 0x7F]) + (1 << 28).to_bytes(8, "big")
    for cls in readers():
        reader = cls(expect_mask=False, max_size=None)
        events: list[object] = []
        tracemalloc.start()
        try:
            reader.feed(header + bytes(1000), events)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert reader.space() is None, cls
        assert peak < 1 << 20, (cls, peak)
    # Such a frame, when it does come, is read as before.
    big = random.Random(3).randbytes((1 << 24) + 1)
    for cls in readers():
        events = []
        cls(expect_mask=False, max_size=None).feed(build_frame(2, big), events)
        assert events == [big], cls
