"""The demo's publisher: a ticker of made-up prices on ``ticker:prices``.

It publishes like a backend would, through ``Hub.publish``. ``tidewire serve``
runs it unless ``--no-demo``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from .broker import BrokerUnavailable
from .wire import dumps

if TYPE_CHECKING:
    from .app import Hub

__all__ = ["ticker", "TICKER_CHANNEL"]

logger = logging.getLogger("tidewire.hub")

TICKER_CHANNEL = "ticker:prices"
SYMBOLS = {"TIDE": 42.0, "WAVE": 17.5, "REEF": 103.2, "KELP": 8.4, "GULL": 61.9, "SURF": 29.3}


async def ticker(hub: Hub, interval: float = 1.0) -> None:
    """Move each price by a small random step and publish them all, forever."""
    prices = dict(SYMBOLS)
    rng = random.Random()
    while True:
        quotes = []
        for symbol, price in prices.items():
            change = price * rng.gauss(0, 0.004)
            prices[symbol] = max(0.01, price + change)
            quotes.append({"symbol": symbol, "price": round(prices[symbol], 2),
                           "change": round(change, 2)})
        try:
            await hub.publish(TICKER_CHANNEL, dumps({"quotes": quotes}))
        except BrokerUnavailable:
            logger.warning("demo ticker: broker unavailable, skipping a tick")
        await asyncio.sleep(interval)
