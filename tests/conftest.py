"""Shared settings: every timeout in the suite is a multiple of one unit."""

from __future__ import annotations

import os

# Scale every timeout with TIDEWIRE_TEST_TIMEOUT_FACTOR on a slow machine.
UNIT = float(os.environ.get("TIDEWIRE_TEST_TIMEOUT_FACTOR", "1"))


def timeout(seconds: float) -> float:
    return seconds * UNIT
