"""``Subscription``: a client's subscription to one channel, kept across
reconnections, read with ``async for``.

It keeps the channel's position (the epoch of the last subscribe reply, the
offset of the last publication) and subscribes again ``since`` it after a
reconnection, so the hub sends what was missed. Offsets at or below the
position are duplicates and are skipped: each publication comes out once, in
the channel's order. The rules are those of tidewire.js's ``Subscription``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .errors import HubClientError
from .models import (
    ClientInfo,
    HistoryResult,
    Join,
    Leave,
    Position,
    PresenceStats,
    Publication,
    SubscribedContext,
    SubscriptionEvent,
    SubscriptionState,
    Unsubscribed,
)

if TYPE_CHECKING:
    from .client import HubClient

__all__ = ["Subscription", "SubscriptionTokenGetter"]

SubscriptionTokenGetter = Callable[[str], Awaitable["str | None"]]


class _End:
    """The last item of a subscription's queue: it ended, with ``error`` if
    the hub refused it."""

    def __init__(self, error: HubClientError | None) -> None:
        self.error = error


class Subscription:
    """Made by ``HubClient.subscribe()``; lasts until ``unsubscribe()``, a
    refusal by the hub, or the hub's ``unsubscribe`` push.

    ``async for pub in sub`` yields its publications; ``sub.events()`` yields
    them together with the other events of the channel, in the order they
    happened: a ``SubscribedContext`` each time the subscription is
    (re)established (its ``recovered`` says whether a gap may precede the
    next publication), ``Join``, ``Leave``, and ``Unsubscribed``. Both end
    when the subscription ends; they raise the hub's ``HubError`` when it
    refused the subscription. Events wait in memory until read: read one of
    the two.
    """

    def __init__(self, client: HubClient, channel: str, *, since: Position | None,
                 presence: bool, token: str | None,
                 get_token: SubscriptionTokenGetter | None) -> None:
        self.client = client
        self.channel = channel
        self._state: SubscriptionState = "subscribing"
        self._position: Position | None = since
        self.context: SubscribedContext | None = None
        """The last ``SubscribedContext``: None before the first subscribe reply."""
        self.presence_wanted = presence
        self.token = token
        self.get_token = get_token
        self._queue: asyncio.Queue[SubscriptionEvent | _End] = asyncio.Queue()
        self._end: _End | None = None
        self._waiters: list[asyncio.Future[SubscribedContext]] = []
        self._resubscribe = False
        self.attempt = 0  # bumped by each subscribe sent, to ignore stale replies
        self.failures = 0  # 5xx in a row, for the retry's backoff
        self.fetched = False  # get_token() gave the current token (None: none)
        self.refreshed = False  # a refused subscription token was replaced
        self.retry: asyncio.TimerHandle | None = None

    @property
    def state(self) -> SubscriptionState:
        """"subscribing" until the hub confirms (and again while the client
        reconnects), "subscribed", then "unsubscribed"."""
        return self._state

    @property
    def position(self) -> Position | None:
        """The last position seen; None before the first subscribe reply
        (or the ``since`` given)."""
        return self._position

    # For the application.

    def __aiter__(self) -> AsyncIterator[Publication]:
        return self._publications()

    async def _publications(self) -> AsyncIterator[Publication]:
        async for event in self.events():
            if isinstance(event, Publication):
                yield event

    async def events(self) -> AsyncIterator[SubscriptionEvent]:
        """Every event of the subscription, in order; see the class."""
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._queue.put_nowait(item)  # for every other reader, and the next one
                if item.error is not None:
                    raise item.error
                return
            yield item

    async def wait_subscribed(self) -> SubscribedContext:
        """Wait until the hub confirms the subscription; its context. Raise
        the hub's ``HubError`` if it refused; ``HubClientError`` if the
        subscription ended first."""
        if self._state == "subscribed" and self.context is not None:
            return self.context
        if self._end is not None:
            raise self._end.error or HubClientError(f"the subscription to {self.channel} ended")
        waiter: asyncio.Future[SubscribedContext] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    async def unsubscribe(self) -> None:
        """End the subscription: the iterators stop once they have read what
        came before. Returns when the hub confirms, or at once when not
        connected; never raises for the hub's sake."""
        if self._state == "unsubscribed":
            return
        self._finish(None)
        await self.client._unsubscribe(self)

    async def presence(self) -> list[ClientInfo]:
        """Who is subscribed to the channel now."""
        return await self.client.presence(self.channel)

    async def presence_stats(self) -> PresenceStats:
        return await self.client.presence_stats(self.channel)

    async def history(self, *, limit: int | None = None,
                      since: Position | None = None) -> HistoryResult:
        """The channel's latest publications; see ``HubClient.history``."""
        return await self.client.history(self.channel, limit=limit, since=since)

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} {self._state} at {self._position}>"

    # For the client.

    def reset(self) -> None:
        """The connection ended: subscribe again on the next one."""
        self.cancel_retry()
        if self._state == "subscribed":
            self._state = "subscribing"

    def cancel_retry(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None

    def since(self) -> Position | None:
        return self._position

    def subscribed(self, result: dict[str, Any], with_since: bool) -> None:
        """The hub's subscribe result: take what it recovered, move on."""
        epoch: str = result["epoch"]
        previous = self._position
        # Offsets restart in a new epoch: only the old epoch's are duplicates.
        same_epoch = previous is not None and previous.epoch == epoch
        self._position = Position(epoch, previous.offset if same_epoch and previous else 0)
        self._state = "subscribed"
        self.failures = 0
        self.refreshed = False
        presence = result.get("presence")
        ctx = SubscribedContext(
            self.channel, epoch, result["offset"], self._resubscribe,
            with_since and result.get("recovered") is True,
            [ClientInfo.parse(c) for c in presence] if isinstance(presence, list) else None,
        )
        self._resubscribe = True
        self.context = ctx
        self._queue.put_nowait(ctx)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(ctx)
        for p in result.get("publications") or ():
            self.publication(p)
        if self._position.offset < result["offset"]:
            self._position = Position(epoch, result["offset"])

    def publication(self, p: dict[str, Any]) -> None:
        position = self._position
        if self._state != "subscribed" or position is None:
            return
        offset = p.get("offset")
        if isinstance(offset, int):
            if offset <= position.offset:
                return  # seen already
            self._position = Position(position.epoch, offset)
        self._queue.put_nowait(Publication.parse(self.channel, position.epoch, p))

    def presence_event(self, kind: str, client: dict[str, Any]) -> None:
        info = ClientInfo.parse(client)
        self._queue.put_nowait(Join(self.channel, info) if kind == "join"
                               else Leave(self.channel, info))

    def ended_by_hub(self) -> None:
        """The hub's ``unsubscribe`` push."""
        self._queue.put_nowait(Unsubscribed(self.channel))
        self._finish(None)

    def refused(self, error: HubClientError) -> None:
        self._finish(error)

    def _finish(self, error: HubClientError | None) -> None:
        self._state = "unsubscribed"
        self.cancel_retry()
        self.client._forget(self)
        if self._end is None:
            self._end = _End(error)
            self._queue.put_nowait(self._end)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(
                    error or HubClientError(f"the subscription to {self.channel} ended"))
