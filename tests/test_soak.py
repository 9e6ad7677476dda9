"""The soak (soak/): first that its checks catch what they must, then its
short version, as ``make soak`` runs the long one: real hub nodes, a real
redis-server, many subscribers, in a subprocess (``python -m soak``).

Each broker's run takes about 25 s: 200 subscribers on 4 channels and 2,000
publications at 100/s (400,000 deliveries). The first quarter of the
publications is the warm-up before the nodes' RSS is judged. The soak's own
criteria decide (soak/report.py): no loss, no reordering, RSS growth under 5%,
descriptors back to their start; its report is the failure message.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from soak.report import judge
from soak.swarm import Crowd, Subscriber, Tally

from .conftest import timeout

REPO = Path(__file__).resolve().parent.parent
RUN_SECONDS = 240  # far beyond the ~25 s of a run: a loaded machine is slow, not wrong
MiB = 2**20


def pub(offset: int, seq: int, channel: str = "soak:0") -> str:
    return json.dumps({"push": "pub", "channel": channel, "offset": offset,
                       "data": {"seq": seq, "pad": ""}})


def test_subscriber_counts_every_departure_from_order() -> None:
    crowd = Crowd(1)
    tally = crowd.tally
    sub = Subscriber(0, ["soak:0"], crowd)
    sub.expect("soak:0", 10, 6)  # offsets 11 to 16 carry seq 0 to 5
    for offset, seq in [(11, 0), (13, 2), (12, 1), (13, 2), (14, 9), (16, 5)]:
        sub.receive(pub(offset, seq))
    sub.receive('{"push": "join", "channel": "soak:0"}')
    sub.settle()
    assert (tally.delivered, tally.reordered, tally.duplicates, tally.mismatched,
            tally.lost) == (6, 1, 1, 1, 1)  # 12 late, 13 twice, 14 wrong, 15 never
    assert crowd.all_done.is_set()  # the last one came
    assert tally.examples["reordered"] == ["subscriber 0 (soak:0): offset 12 after 13"]
    assert tally.examples["mismatched"] == [
        "subscriber 0 (soak:0): offset 14 carries seq 9, not 3"
    ]
    assert "unexpected" in tally.examples


def test_subscriber_counts_what_never_came_on_each_channel() -> None:
    crowd = Crowd(1)
    tally = crowd.tally
    sub = Subscriber(0, ["soak:0", "soak:1"], crowd)
    sub.expect("soak:0", 0, 3)
    sub.expect("soak:1", 7, 3)
    for offset in (1, 2, 3):
        sub.receive(pub(offset, offset - 1))
    sub.receive(pub(8, 0, "soak:1"))
    sub.settle()
    assert (tally.delivered, tally.lost) == (4, 2)
    assert not crowd.all_done.is_set()


async def test_the_publisher_waits_for_subscribers_that_fall_behind() -> None:
    crowd = Crowd(1)
    sub = Subscriber(0, ["soak:0"], crowd)
    sub.expect("soak:0", 0, 3)
    sub.receive(pub(1, 0))
    await crowd.caught_up(1)  # there already
    waiting = asyncio.ensure_future(crowd.caught_up(3))
    await asyncio.sleep(0)  # it is waiting now
    sub.receive(pub(2, 1))
    assert not waiting.done()
    sub.receive(pub(3, 2))
    await asyncio.wait_for(waiting, timeout(5))


def clean_run(rss: list[int]) -> dict[str, Any]:
    """A memory run's result that passes, with the node's RSS samples ``rss``
    (one a second; the warm-up ends at 2 s, the last delivery at 2 + len - 3)."""
    kinds = {"clients": 0, "listening": 1, "redis": 0, "other": 13}
    samples = [{"t": float(t), "phase": "publishing", "rss": {"node": value},
                "fds": {"node": 14}, "progress": {}} for t, value in enumerate(rss)]
    return {
        "plan": {"publications": 100}, "expected": 1000,
        "tally": asdict(Tally(delivered=1000)),
        "publisher": {"replies": 100, "failures": 0, "examples": []},
        "marks": {"warm": 2.0, "delivered": float(len(rss) - 2)},
        "samples": samples, "failures": [],
        "processes": {"node": {
            "fd_kinds": {"start": dict(kinds), "end": dict(kinds)},
            "state": {"connections_open": 0, "presence": 0}, "exit": 0, "tracebacks": 0,
        }},
    }


def test_judge_passes_a_run_that_meets_every_criterion() -> None:
    result = clean_run([40 * MiB] * 2 + [100 * MiB] * 8 + [104 * MiB] * 4)
    assert judge(result) == []
    assert result["processes"]["node"]["growth"] == pytest.approx(0.04)


def test_judge_fails_rss_growth_lingering_descriptors_and_state() -> None:
    result = clean_run([40 * MiB] * 2 + [100 * MiB] * 8 + [106 * MiB] * 4)
    node = result["processes"]["node"]
    node["fd_kinds"]["end"]["clients"] = 3
    node["state"]["presence"] = 2
    failures = judge(result)
    assert failures == [
        "node: RSS grew 6.0% after the warm-up (100.0 -> 106.0 MiB), over 5%",
        "node: presence is 2 after the clients left, not 0",
        "node: descriptors not back after the clients left: 3 client sockets still open",
    ]


def test_judge_allows_a_full_redis_pool_but_no_more() -> None:
    result = clean_run([100 * MiB] * 14)
    result["processes"]["node"]["fd_kinds"]["end"]["redis"] = 65
    assert judge(result) == []
    result = clean_run([100 * MiB] * 14)
    result["processes"]["node"]["fd_kinds"]["end"]["redis"] = 66
    assert judge(result) == ["node: descriptors not back after the clients left: 66 "
                             "connections to Redis, more than the 65 its pool and pub/sub "
                             "may hold"]


def test_judge_wants_enough_samples_after_the_warm_up() -> None:
    result = clean_run([100 * MiB] * 6)
    assert judge(result) == ["node: 3 RSS samples after the warm-up, fewer than 5: "
                             "publish more, or more slowly"]


@pytest.mark.soak
@pytest.mark.timeout(timeout(RUN_SECONDS + 30))
@pytest.mark.cost(30)
@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_soak_loses_nothing_and_leaks_nothing(broker: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "soak", "--broker", broker, "--subscribers", "200",
            "--publications", "2000", "--rate", "100", "--warmup", "0.25",
            "--json", str(tmp_path / "soak.json")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout(RUN_SECONDS))
    report = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, report
    assert "**PASS**" in done.stdout, report
    assert (tmp_path / "soak.json").exists()
