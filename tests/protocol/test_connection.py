"""The connection state machine, with a client and a server wired in memory."""

from __future__ import annotations

import pytest

from tidewire.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from tidewire.protocol import Close, Ping, Pong, State
from tidewire.protocol.frames import Opcode, build_frame

from .helpers import Pair, wire

MASK = b"\x01\x02\x03\x04"


@pytest.fixture(params=[True, False], ids=["deflate", "plain"])
def pair(request: pytest.FixtureRequest) -> Pair:
    if request.param:
        return Pair()
    return Pair(client_deflate=None, server_deflate=None)


def test_handshake_opens_both_sides(pair: Pair) -> None:
    assert pair.client.state is State.OPEN
    assert pair.server.state is State.OPEN


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_text_and_binary_messages_arrive_in_order(pair: Pair, direction: str) -> None:
    sender = pair.client if direction == "c2s" else pair.server
    sender.send_text("héllo".encode())
    sender.send_binary(b"\x00\xff" * 1000)
    sender.send_text(b"")
    sender.send_binary(b"")
    assert getattr(pair, direction)() == ["héllo", b"\x00\xff" * 1000, "", b""]


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_fragmented_send_arrives_as_one_message(pair: Pair, direction: str) -> None:
    sender = pair.client if direction == "c2s" else pair.server
    sender.send_binary(b"ab", fin=False)
    sender.send_continuation(b"cd", fin=False)
    sender.send_continuation(b"ef", fin=True)
    sender.send_text(b"x" * 10, fin=False)
    sender.send_continuation(b"y" * 10, fin=True)
    assert getattr(pair, direction)() == [b"abcdef", "x" * 10 + "y" * 10]


def test_ping_gets_an_automatic_pong(pair: Pair) -> None:
    pair.client.send_ping(b"are you there")
    assert pair.c2s() == [Ping(b"are you there")]
    assert pair.s2c() == [Pong(b"are you there")]


def test_client_initiated_close_handshake(pair: Pair) -> None:
    pair.client.send_close(1000, "bye")
    assert pair.client.state is State.CLOSING
    assert pair.c2s() == [Close(1000, "bye")]
    assert pair.server.close_expected()  # the server closes TCP first
    assert pair.s2c() == [Close(1000)]
    assert pair.client.close_expected()
    pair.client.receive_eof()
    pair.server.receive_eof()
    assert pair.client.state is State.CLOSED
    exc = pair.client.close_exc()
    assert isinstance(exc, ConnectionClosedOK)
    assert exc.sent == Close(1000, "bye") and exc.rcvd == Close(1000)
    assert exc.rcvd_then_sent is False
    assert isinstance(pair.server.close_exc(), ConnectionClosedOK)
    assert pair.server.close_exc().rcvd_then_sent is True


def test_connection_closed_reads_well_and_survives_pickling(pair: Pair) -> None:
    import pickle

    pair.client.send_close(1000, "bye")
    pair.c2s()
    pair.s2c()
    exc = pair.client.close_exc()
    assert str(exc) == "sent 1000 (OK) bye; then received 1000 (OK)"
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is ConnectionClosedOK and str(copy) == str(exc)
    assert (copy.rcvd, copy.sent, copy.rcvd_then_sent) == (exc.rcvd, exc.sent, False)


def test_server_initiated_close_with_error_code(pair: Pair) -> None:
    pair.server.send_close(4000, "custom")
    assert pair.s2c() == [Close(4000, "custom")]
    assert pair.c2s() == [Close(4000)]
    exc = pair.client.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.code == 4000 and exc.reason == "custom"


def test_empty_close_frame_is_echoed_empty(pair: Pair) -> None:
    pair.client.send_close(1005)
    assert wire(pair.client)[:2] == b"\x88\x80"
    pair.server.receive_data(build_frame(Opcode.CLOSE, b"", mask=MASK))
    assert pair.server.events_received() == [Close(1005)]
    assert wire(pair.server) == b"\x88\x00"


def test_sending_after_close_raises_connection_closed(pair: Pair) -> None:
    pair.client.send_close()
    with pytest.raises(ConnectionClosed):
        pair.client.send_text(b"late")


def test_messages_sent_before_close_are_delivered(pair: Pair) -> None:
    pair.server.send_close()
    pair.client.send_text(b"in flight")
    assert pair.c2s() == ["in flight"]  # the server is closing but still reads
    assert pair.s2c() == [Close(1000)]


def test_data_after_close_frame_is_ignored(pair: Pair) -> None:
    pair.client.send_close()
    pair.client._out.append(build_frame(Opcode.TEXT, b"after", mask=MASK))  # a rogue peer
    assert pair.c2s() == [Close(1000)]


@pytest.mark.parametrize("defer", [False, True], ids=["fail", "defer"])
@pytest.mark.parametrize("together", [True, False], ids=["one-chunk", "two-chunks"])
def test_violation_after_close_frame_is_ignored_in_any_chunk(
    pair: Pair, together: bool, defer: bool
) -> None:
    """Found by fuzzing: a violation right behind a close frame, in the same
    chunk, failed the connection, while in a later chunk it was ignored."""
    pair.server.defer_failures = defer
    close = build_frame(Opcode.CLOSE, b"\x03\xe8", mask=MASK)
    rogue = bytes([0x8F, 0x80]) + MASK  # reserved opcode 0xF
    if together:
        pair.server.receive_data(close + rogue)
    else:
        pair.server.receive_data(close)
        pair.server.receive_data(rogue)
    assert pair.server.events_received() == [Close(1000)]
    assert not pair.server.failed
    assert pair.server.exc is None and pair.server.pending_failure is None
    assert pair.server.closed_ok()
    assert wire(pair.server) == b"\x88\x02\x03\xe8"


def test_protocol_error_fails_with_1002_and_keeps_cause(pair: Pair) -> None:
    pair.server.receive_data(bytes([0x83, 0x80]) + MASK)  # reserved opcode 3
    assert pair.server.close_expected()
    assert pair.s2c() == [Close(1002, "reserved opcode 0x3")]
    exc = pair.server.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.sent == Close(1002, "reserved opcode 0x3")
    assert exc.__cause__ is not None and "reserved opcode" in str(exc.__cause__)


def test_invalid_utf8_fails_with_1007(pair: Pair) -> None:
    pair.server.receive_data(build_frame(Opcode.TEXT, b"\xff", mask=MASK))
    (close,) = pair.s2c()
    assert isinstance(close, Close) and close.code == 1007


def test_message_too_big_fails_with_1009() -> None:
    pair = Pair(max_size=100)
    pair.client.send_binary(bytes(101))
    assert pair.c2s() == []
    (close,) = pair.s2c()
    assert isinstance(close, Close) and close.code == 1009


def test_compressed_message_too_big_fails_with_1009() -> None:
    pair = Pair(max_size=10_000)
    pair.client.send_binary(bytes(1_000_000))  # deflates to about a kilobyte
    assert len(b"".join(pair.client._out)) < 10_000
    assert pair.c2s() == []
    (close,) = pair.s2c()
    assert isinstance(close, Close) and close.code == 1009


def test_eof_without_close_is_abnormal(pair: Pair) -> None:
    pair.client.receive_eof()
    exc = pair.client.close_exc()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.code == 1006 and exc.rcvd is None and exc.sent is None


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_send_close_rejects_codes_not_allowed_on_the_wire(pair: Pair, code: int) -> None:
    if code == 1005:
        with pytest.raises(ValueError):
            pair.client.send_close(code, "a reason without a code")
        return
    with pytest.raises(ValueError):
        pair.client.send_close(code)


def test_send_close_rejects_long_reason(pair: Pair) -> None:
    with pytest.raises(ValueError):
        pair.client.send_close(1000, "x" * 124)


def test_client_frames_are_masked_and_server_frames_are_not(pair: Pair) -> None:
    pair.client.send_binary(b"abc")
    pair.server.send_binary(b"abc")
    assert wire(pair.client)[1] & 0x80
    assert not wire(pair.server)[1] & 0x80


def test_every_client_frame_gets_a_fresh_masking_key(pair: Pair) -> None:
    keys = []
    for i in range(300):  # several draws of keys ahead
        pair.client.send_binary(b"%d" % i)
        frame = wire(pair.client)
        keys.append(frame[2:6])  # after a 2-byte header: payloads are small
        pair.server.receive_data(frame)
    assert len(set(keys)) == len(keys)
    assert pair.server.events_received() == [b"%d" % i for i in range(300)]


def test_deferred_failure_lets_earlier_messages_be_answered(pair: Pair) -> None:
    pair.server.defer_failures = True
    good = build_frame(Opcode.TEXT, b"first", mask=MASK)
    bad = bytes([0xA1, 0x80]) + MASK  # RSV2 set
    pair.server.receive_data(good + bad + build_frame(Opcode.PING, b"", mask=MASK))
    assert pair.server.events_received() == ["first"]
    assert pair.server.pending_failure is not None
    assert not pair.server.close_expected()
    pair.server.send_text(b"first")  # the application answers
    pair.server.fail_pending()
    assert pair.server.close_expected()
    assert pair.s2c() == ["first", Close(1002, "reserved bits RSV2 or RSV3 set")]
