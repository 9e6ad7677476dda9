"""Shared settings: every timeout in the suite is a multiple of one unit; no
test may let the hub log a traceback."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

import tidewire

# Scale every timeout with TIDEWIRE_TEST_TIMEOUT_FACTOR on a slow machine.
UNIT = float(os.environ.get("TIDEWIRE_TEST_TIMEOUT_FACTOR", "1"))


def timeout(seconds: float) -> float:
    return seconds * UNIT


HUB_SOURCES = str(Path(tidewire.__file__).parent / "hub")


class HubTracebacks(logging.Handler):
    """Keeps every log record that carries a traceback from the hub: logged
    under ``tidewire.hub``, or by anyone about an exception raised in the
    hub's code (the library's "connection handler failed", for one)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and (
            record.name == "tidewire.hub" or record.name.startswith("tidewire.hub.")
            or _raised_in_hub(record.exc_info[2])
        ):
            self.records.append(record)


def _raised_in_hub(tb: TracebackType | None) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(HUB_SOURCES):
            return True
        tb = tb.tb_next
    return False


@pytest.fixture(autouse=True)
def hub_tracebacks() -> Iterator[HubTracebacks]:
    """Fail any test during which the hub logs a traceback, even at DEBUG
    (where the hub logs the traceback of an internal error). A test that
    provokes one on purpose checks ``records`` and then clears them."""
    handler = HubTracebacks()
    root, hub_logger = logging.getLogger(), logging.getLogger("tidewire.hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        hub_logger.setLevel(level)
    if handler.records:
        shown = "\n".join(
            logging.Formatter().format(record) for record in handler.records[:3]
        )
        pytest.fail(f"the hub logged {len(handler.records)} traceback(s):\n{shown}",
                    pytrace=False)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every asyncio test runs on the standard loop and on uvloop."""
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
