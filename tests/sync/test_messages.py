"""The message queue between the reader thread and recv(), and its flow control."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.conftest import timeout
from tidewire.sync.messages import MessageQueue

BRIEF = 0.05  # how long to watch for something that must not happen


def in_thread(call: Callable[[], object]) -> threading.Event:
    """Run ``call`` in a thread; the event is set when it returns."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


def test_messages_come_out_in_order_then_eof() -> None:
    q = MessageQueue(None)
    q.put("a")
    q.put(b"b")
    q.close()
    assert [q.get(), q.get()] == ["a", b"b"]
    with pytest.raises(EOFError):
        q.get()


def test_get_times_out() -> None:
    q = MessageQueue(None)
    with pytest.raises(TimeoutError):
        q.get(timeout=0.01)


def test_get_waits_for_put() -> None:
    q = MessageQueue(None)
    got: list[str | bytes] = []
    done = in_thread(lambda: got.append(q.get(timeout(5))))
    q.put("late")
    assert done.wait(timeout(5)) and got == ["late"]


def test_close_wakes_a_waiting_get() -> None:
    q = MessageQueue(None)
    errors: list[BaseException] = []

    def get() -> None:
        try:
            q.get(timeout(5))
        except EOFError as exc:
            errors.append(exc)

    done = in_thread(get)
    q.close()
    assert done.wait(timeout(5)) and len(errors) == 1


def test_throttle_blocks_from_high_until_low() -> None:
    q = MessageQueue(4)  # low is 1
    for i in range(3):
        q.put(str(i))
    q.throttle()  # below the high watermark: returns at once
    q.put("3")
    done = in_thread(q.throttle)
    assert not done.wait(BRIEF)
    q.get()
    q.get()
    assert not done.wait(BRIEF)  # 2 left, above low
    q.get()
    assert done.wait(timeout(5))


def test_release_and_close_end_throttling() -> None:
    for end in (MessageQueue.release, MessageQueue.close):
        q = MessageQueue(1)
        q.put("x")
        done = in_thread(q.throttle)
        assert not done.wait(BRIEF)
        end(q)
        assert done.wait(timeout(5))


def test_no_limit_never_throttles() -> None:
    q = MessageQueue(None)
    for i in range(1000):
        q.put(str(i))
    q.throttle()


def test_drained_once_the_reader_asks_for_more() -> None:
    """wait_drained() returns when get() finds nothing left: the application
    has read, and could answer, every message."""
    q = MessageQueue(None)
    q.put("a")
    q.put("b")
    done = in_thread(lambda: q.wait_drained(timeout(5)))
    q.get()
    q.get()
    assert not done.wait(BRIEF)  # read, maybe not answered yet
    with pytest.raises(TimeoutError):
        q.get(timeout=0.01)
    assert done.wait(timeout(5))


def test_drained_gives_up_after_its_timeout() -> None:
    q = MessageQueue(None)
    q.put("never read")
    q.wait_drained(0.01)
