"""The asyncio message queue: a waiting get() is handed the next message."""

from __future__ import annotations

import asyncio

import pytest

from tidewire.asyncio.messages import MessageQueue


class Ended(Exception):
    pass


def end() -> BaseException:
    return Ended()


def queue(high: int | None = None) -> tuple[MessageQueue, list[str]]:
    calls: list[str] = []
    q = MessageQueue(high, None, lambda: calls.append("pause"), lambda: calls.append("resume"))
    return q, calls


async def waiting_get(q: MessageQueue) -> asyncio.Task[str | bytes]:
    task = asyncio.ensure_future(q.get(end))
    await asyncio.sleep(0)
    assert q.waiting
    return task


async def test_a_waiting_get_returns_the_next_message_and_later_ones_queue() -> None:
    q, _ = queue()
    task = await waiting_get(q)
    q.put("a")
    q.put("b")
    assert len(q) == 2  # "a" is handed over but not yet returned
    assert await task == "a"
    assert len(q) == 1
    assert await q.get(end) == "b"
    assert len(q) == 0 and not q.waiting


async def test_a_get_cancelled_after_its_message_came_loses_nothing() -> None:
    # As with wait_for(recv(), timeout) when the timeout and the message come
    # together: the task is cancelled before it could return what it was given.
    q, _ = queue()
    task = await waiting_get(q)
    q.put("a")
    q.put("b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not q.waiting
    assert [await q.get(end), await q.get(end)] == ["a", "b"]


async def test_a_get_cancelled_before_any_message_leaves_the_queue_empty() -> None:
    q, _ = queue()
    task = await waiting_get(q)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(q) == 0 and not q.waiting
    q.put("a")
    assert await q.get(end) == "a"


async def test_close_wakes_a_waiting_get_with_the_end() -> None:
    q, _ = queue()
    task = await waiting_get(q)
    q.close()
    with pytest.raises(Ended):
        await task


async def test_a_message_handed_over_before_close_is_still_returned() -> None:
    q, _ = queue()
    task = await waiting_get(q)
    q.put("last")
    q.close()
    assert await task == "last"
    with pytest.raises(Ended):
        await q.get(end)


async def test_reading_pauses_at_high_and_resumes_at_low() -> None:
    q, calls = queue(high=4)  # low is 1
    for i in range(4):
        q.put(str(i))
    assert calls == ["pause"]
    assert [await q.get(end) for _ in range(3)] == ["0", "1", "2"]
    assert calls == ["pause", "resume"]


async def test_a_waiting_get_makes_its_future_on_the_queues_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On Python 3.11 asyncio.get_running_loop() makes a getpid() system call:
    # a get() that waits, once per message, must not call it.
    q, _ = queue()

    def looked_up() -> asyncio.AbstractEventLoop:
        raise AssertionError("get() looked up the running loop")

    monkeypatch.setattr(asyncio, "get_running_loop", looked_up)
    task = await waiting_get(q)
    q.put("a")
    assert await task == "a"
