"""The memory broker: offsets, bounded history, recovery, presence, delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tidewire.hub import ClientInfo, Join, Leave, MemoryBroker, Position, Publication
from tidewire.hub import memory as memory_module


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(memory_module.time, "monotonic", clock)
    return clock


Events = list[tuple[str, object]]


@pytest.fixture
async def broker() -> AsyncIterator[tuple[MemoryBroker, Events]]:
    events: Events = []
    b = MemoryBroker()
    await b.start(lambda channel, event: events.append((channel, event)))
    yield b, events
    await b.close()


async def test_offsets_increase_from_one_and_epoch_stays(broker: tuple[MemoryBroker, Events]
                                                          ) -> None:
    b, _ = broker
    positions = [await b.publish("c", str(i)) for i in range(3)]
    assert [p.offset for p in positions] == [1, 2, 3]
    assert len({p.epoch for p in positions}) == 1
    assert (await b.publish("other", "x")).offset == 1


async def test_only_listened_channels_are_delivered_in_order(
    broker: tuple[MemoryBroker, Events]
) -> None:
    b, events = broker
    await b.publish("c", "0")
    await b.listen("c")
    for i in range(1, 4):
        await b.publish("c", str(i))
    await b.publish("unheard", "x")
    await b.unlisten("c")
    await b.publish("c", "4")
    assert [(ch, e.data) for ch, e in events if isinstance(e, Publication)] == [
        ("c", "1"), ("c", "2"), ("c", "3")
    ]


async def test_history_is_bounded_by_count(broker: tuple[MemoryBroker, Events]) -> None:
    b, _ = broker
    for i in range(10):
        await b.publish("c", str(i), history_size=3, history_ttl=60)
    history = await b.history("c")
    assert [p.data for p in history.publications] == ["7", "8", "9"]
    assert history.top.offset == 10
    assert [p.data for p in (await b.history("c", limit=1)).publications] == ["9"]
    assert (await b.history("c", limit=0)).publications == []


async def test_history_is_bounded_by_age(broker: tuple[MemoryBroker, Events], clock: Clock
                                         ) -> None:
    b, _ = broker
    await b.publish("c", "old", history_size=10, history_ttl=60)
    clock.now += 30
    await b.publish("c", "new", history_size=10, history_ttl=60)
    clock.now += 31
    assert [p.data for p in (await b.history("c")).publications] == ["new"]
    clock.now += 30
    assert (await b.history("c")).publications == []


async def test_no_history_without_size(broker: tuple[MemoryBroker, Events]) -> None:
    b, _ = broker
    await b.publish("c", "x")
    history = await b.history("c")
    assert history.publications == [] and history.top.offset == 1


async def test_recovery_cases(broker: tuple[MemoryBroker, Events], clock: Clock) -> None:
    b, _ = broker
    for i in range(5):
        await b.publish("c", str(i), history_size=3, history_ttl=60)
    epoch = (await b.history("c")).top.epoch
    # offsets 3, 4, 5 are kept
    ok = await b.history("c", since=Position(epoch, 2))
    assert ok.complete and [p.offset for p in ok.publications] == [3, 4, 5]
    up_to_date = await b.history("c", since=Position(epoch, 5))
    assert up_to_date.complete and up_to_date.publications == []
    too_old = await b.history("c", since=Position(epoch, 1))
    assert not too_old.complete and [p.offset for p in too_old.publications] == [3, 4, 5]
    other_epoch = await b.history("c", since=Position("other", 2))
    assert not other_epoch.complete and len(other_epoch.publications) == 3
    future = await b.history("c", since=Position(epoch, 9))
    assert not future.complete
    clock.now += 61  # everything expired: the gap can't be filled
    expired = await b.history("c", since=Position(epoch, 4))
    assert not expired.complete and expired.publications == []


async def test_presence_and_join_leave(broker: tuple[MemoryBroker, Events]) -> None:
    b, events = broker
    await b.listen("c")
    ann, ben = ClientInfo("1", "ann"), ClientInfo("2", "ben", '{"x":1}')
    await b.presence_add("c", ann, notify=True)
    await b.presence_add("c", ben, notify=False)
    assert sorted(c.user for c in await b.presence("c")) == ["ann", "ben"]
    assert await b.channels() == {"c": 2}
    await b.presence_remove("c", ann, notify=True)
    await b.presence_remove("c", ann, notify=True)  # twice: one Leave only
    assert await b.presence("c") == [ben]
    assert events == [("c", Join(ann)), ("c", Leave(ann))]


async def test_sweep_forgets_idle_channels(broker: tuple[MemoryBroker, Events], clock: Clock
                                           ) -> None:
    b, _ = broker
    await b.publish("c", "x", history_size=5, history_ttl=10)
    await b.publish("kept", "x", history_size=5, history_ttl=100)
    clock.now += 11
    b.sweep()
    assert await b.channels() == {"kept": 0}
    # A forgotten channel starts a new epoch: recovery can tell.
    assert (await b.publish("c", "y")).offset == 1
