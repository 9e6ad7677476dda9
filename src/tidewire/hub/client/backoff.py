"""The delay before a reconnection: exponential backoff with full jitter."""

from __future__ import annotations

import random as _random
from collections.abc import Callable

__all__ = ["backoff"]


def backoff(attempt: int, min_delay: float, max_delay: float,
            random: Callable[[], float] = _random.random) -> float:
    """Seconds to wait before attempt number ``attempt`` (0 for the first).

    The ceiling doubles with each attempt (2, 4, 8... times ``min_delay``) up
    to ``max_delay``; the delay is drawn uniformly between ``min_delay`` and
    that ceiling, so that clients dropped together don't come back together.
    The same rule as tidewire.js's ``backoff()``.
    """
    ceiling = max(min_delay, min(max_delay, min_delay * 2.0 ** min(attempt + 1, 64)))
    return min_delay + random() * (ceiling - min_delay)
