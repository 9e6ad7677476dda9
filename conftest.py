"""The order of the suite, for pytest-xdist's ``worksteal`` scheduling.

worksteal gives each worker an equal run of consecutive tests, then moves
tests from the end of a busy worker's run to an idle one. A long test left in
the middle of a run can only wait its turn there, so the tests marked
``cost(seconds)`` (the Autobahn runs, the soak, the short fuzz runs) are
shared out first, the longest to the least loaded worker, and each worker's
run starts with its share. Run without workers, the long tests come first.
"""

from __future__ import annotations

import os

import pytest


def _cost(item: pytest.Item) -> float:
    marker = item.get_closest_marker("cost")
    return float(marker.args[0]) if marker is not None else 0.0


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    long = sorted((i for i in items if _cost(i)), key=_cost, reverse=True)
    short = [i for i in items if not _cost(i)]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    shares: list[list[pytest.Item]] = [[] for _ in range(max(workers, 1))]
    loads = [0.0] * len(shares)
    for item in long:
        k = loads.index(min(loads))
        shares[k].append(item)
        loads[k] += _cost(item)
    # worksteal hands the k-th worker the next len(pending) // (workers - k) tests.
    ordered: list[pytest.Item] = []
    left = len(items)
    for k, share in enumerate(shares):
        size = left // (len(shares) - k)
        take = max(size - len(share), 0)
        ordered += share + short[:take]
        del short[:take]
        left -= len(share) + take
    items[:] = ordered + short
