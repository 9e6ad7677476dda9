"""Shared settings: every timeout in the suite is a multiple of one unit."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

# Scale every timeout with TIDEWIRE_TEST_TIMEOUT_FACTOR on a slow machine.
UNIT = float(os.environ.get("TIDEWIRE_TEST_TIMEOUT_FACTOR", "1"))


def timeout(seconds: float) -> float:
    return seconds * UNIT



def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every asyncio test runs on the standard loop and on uvloop."""
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
