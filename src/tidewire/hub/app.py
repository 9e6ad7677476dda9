"""``Hub``: the real-time server behind ``tidewire serve``.

One tidewire server on one port: ``/ws`` upgrades to the client protocol
(``session.py``), every other path is the HTTP API, the metrics or a static file
(``httpapi.py``). The hub keeps, per channel, the connections of this node that
are subscribed, and fans each event the broker delivers out to them with
``broadcast()``: the push is serialized once and framed once for all.
Control messages between nodes (server-side subscriptions) come through the
same broker and act on the matching sessions of every node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from .. import __version__
from .. import asyncio as tw
from ..protocol import DeflateOptions, Request, Response
from .broker import (
    Broker,
    BrokerUnavailable,
    ClientInfo,
    Control,
    Event,
    History,
    Position,
    Publication,
    Reset,
    ToPublish,
)
from .config import ConfigError, HubConfig, Namespace
from .httpapi import HttpApi
from .memory import MemoryBroker
from .metrics import Metrics
from .proxy import Proxy
from .session import Session, push_for
from .wire import Close, Code, RequestError, dumps

__all__ = ["Hub", "make_broker", "SHUTDOWN_REASON"]

logger = logging.getLogger("tidewire.hub")

SHUTDOWN_REASON = "server shutting down, reconnect"
WS_PATH = "/ws"


def make_broker(spec: str, *, presence_ttl: float = 30.0, probe_interval: float = 1.0) -> Broker:
    """The broker named by ``--broker``: ``memory``, or a Redis URL
    (``redis://host:port/db``, ``unix:///path/redis.sock``,
    ``redis+sentinel://host:port,host:port/<service>/<db>``)."""
    if spec == "memory":
        return MemoryBroker()
    if spec.lower().startswith(("redis://", "unix://", "redis+sentinel:")):
        try:
            from .redisbroker import RedisBroker
        except ImportError as exc:
            raise ConfigError(str(exc)) from None
        try:
            return RedisBroker(spec, presence_ttl=presence_ttl, probe_interval=probe_interval)
        except ValueError as exc:
            raise ConfigError(f"broker: {exc}") from None
    raise ConfigError(
        f"unknown broker {spec!r}; known: memory, redis://host:port/db, unix:///path, "
        "redis+sentinel://host:port,host:port/<service>/<db>"
    )


class Hub:
    """Channels, presence and history over WebSocket, with an HTTP API.

    ``async with Hub(config) as hub`` listens on ``config.host`` and
    ``config.port`` (0 picks a free port: see ``hub.port``) until the block
    ends, then shuts down gracefully.
    """

    def __init__(self, config: HubConfig | None = None, *, broker: Broker | None = None) -> None:
        self.config = config or HubConfig()
        self.broker = broker or make_broker(
            self.config.broker, presence_ttl=self.config.presence_ttl,
            probe_interval=self.config.probe_interval,
        )
        self.version = __version__
        self.metrics = Metrics(self._gauges)
        self.http = HttpApi(self)
        self.proxy = Proxy(self.config, self.metrics)
        self.sessions: set[Session] = set()
        self._by_user: dict[str, set[Session]] = {}
        # Per channel: live subscribers' connections (for broadcast), sessions
        # still subscribing (their events are held), and the broker listen.
        self._live: dict[str, set[tw.ServerConnection]] = {}
        self._joining: dict[str, set[Session]] = {}
        self._listens: dict[str, asyncio.Future[None]] = {}
        self._server: tw.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started = time.time()

    # Life.

    async def start(self) -> None:
        config = self.config
        await self.broker.start(self._on_event)
        try:
            await self.proxy.start()
            self._server = await tw.serve(
                self._handler,
                config.host,
                config.port,
                process_request=self._process_request,
                origins=config.origins,
                # Without context takeover a publication is compressed once
                # for every subscriber, instead of once per subscriber.
                compression="deflate" if config.compression else None,
                deflate_options=DeflateOptions(server_no_context_takeover=True),
                max_size=config.max_message_size,
                max_request_body=config.max_message_size,
                # Backends publish many times over one connection (HTTP/1.1).
                http_keepalive=True,
                http_idle_timeout=config.http_idle_timeout,
                http_max_requests=config.http_max_requests,
                write_limit=config.client_buffer,
                ping_interval=config.ping_interval,
                close_timeout=config.shutdown_timeout,
            )
        except BaseException:
            await self.proxy.close()
            await self.broker.close()
            raise
        if config.demo:
            from .demo import ticker

            self.spawn(ticker(self))

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the hub first"
        return self._server.port

    def spawn(self, coro: Any) -> None:
        """Run a background task for the hub's life."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop accepting, close every client with 1001 and a reconnect hint,
        wait for them, then close the broker."""
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close(reason=SHUTDOWN_REASON)
            await self._server.wait_closed()
        await self.proxy.close()
        await self.broker.close()

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() the hub first"
        await self._server.serve_forever()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Connections.

    async def _process_request(
        self, conn: tw.ServerConnection, request: Request
    ) -> Response | None:
        if request.path.partition("?")[0] == WS_PATH:
            return None  # the upgrade, checked by the library
        return await self.http.handle(conn, request)

    async def _handler(self, ws: tw.ServerConnection) -> None:
        self.metrics.connections += 1
        session = Session(self, ws)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            users = self._by_user.get(session.client.user)
            if users is not None:
                users.discard(session)
                if not users:
                    del self._by_user[session.client.user]

    def register(self, session: Session) -> None:
        """``session`` has connected as its user."""
        self._by_user.setdefault(session.client.user, set()).add(session)

    def _targets(self, user: str | None, client: str | None) -> set[Session]:
        """The connected sessions of ``user``, or the one of ``client``, on this node."""
        if user is not None:
            return set(self._by_user.get(user, ()))
        return {s for s in self.sessions if s.client.client == client and s.connected}

    async def disconnect(self, *, user: str | None = None, client: str | None = None) -> int:
        """Close the connections of ``user`` or of ``client`` with 4501."""
        targets = self._targets(user, client)
        await asyncio.gather(
            *(s.ws.close(Close.DISCONNECTED, "disconnected by the server") for s in targets)
        )
        return len(targets)

    async def server_subscription(
        self, op: str, channel: str, *, user: str | None = None, client: str | None = None
    ) -> None:
        """Subscribe (``op`` "subscribe") or unsubscribe the connections of
        ``user`` or of ``client`` to ``channel``, on every node: a control
        message through the broker, acted on when each node receives it."""
        self.namespace(channel)
        target = {"user": user} if user is not None else {"client": client}
        await self.broker.control(dumps({"op": op, "channel": channel, **target}))

    def _on_control(self, text: str) -> None:
        try:
            message = json.loads(text)
            op, channel = message["op"], message["channel"]
            sessions = self._targets(message.get("user"), message.get("client"))
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a control message that isn't one: %.200s", text)
            return
        for session in sessions:
            if op == "subscribe":
                session.server_subscribe(channel)
            elif op == "unsubscribe":
                session.server_unsubscribe(channel)

    # Channels.

    def namespace(self, channel: str) -> Namespace:
        ns = self.config.namespace(channel)
        if ns is None:
            raise RequestError(Code.NOT_FOUND, f"no namespace for channel {channel}")
        return ns

    async def publish(self, channel: str, data: str, *, sender: ClientInfo | None = None
                      ) -> Position:
        """Publish ``data`` (JSON text) to ``channel`` under its namespace's rules
        of history; raise ``RequestError`` (404) for an unknown namespace."""
        ns = self.namespace(channel)
        pos = await self.broker.publish(
            channel, data, sender=sender,
            history_size=ns.history_size, history_ttl=ns.history_ttl,
        )
        self.metrics.publications += 1
        return pos

    async def publish_many(self, batch: Sequence[ToPublish]) -> list[Position | BrokerUnavailable]:
        """Publish each of ``batch`` in order, in one batch of the broker's; a
        failure is its entry in the list."""
        results = await self.broker.publish_many(batch)
        self.metrics.publications += sum(isinstance(r, Position) for r in results)
        return results

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """How many clients are subscribed to ``channel``, and how many distinct
        users they are (anonymous clients are no user)."""
        clients = await self.broker.presence(channel)
        return len(clients), len({c.user for c in clients if c.user})

    async def history(
        self, channel: str, ns: Namespace, limit: Any, since: Position | None
    ) -> History:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise RequestError(Code.BAD_REQUEST, "limit must be an integer >= 0")
        if since is not None:
            return await self.broker.history(channel, since=since)
        size = ns.history_size if limit is None else min(limit, ns.history_size)
        return await self.broker.history(channel, limit=size)

    async def add_subscriber(self, channel: str, session: Session) -> None:
        """``session`` begins to subscribe: hold its events until ``subscribed``.

        The first local subscriber makes the node listen to the channel; the
        others wait until that listen is done before they read history, so
        that no publication falls between history and the live stream.
        """
        self._joining.setdefault(channel, set()).add(session)
        ready = self._listens.get(channel)
        if ready is None:
            ready = self._listens[channel] = asyncio.ensure_future(self.broker.listen(channel))
        try:
            await asyncio.shield(ready)
        except BaseException:
            if self._listens.get(channel) is ready and ready.done():
                del self._listens[channel]  # the next subscriber tries again
            raise

    def subscribed(self, channel: str, session: Session) -> None:
        """``session``'s reply is written: it joins the live stream."""
        joining = self._joining.get(channel)
        if joining is not None:
            joining.discard(session)
            if not joining:
                del self._joining[channel]
        self._live.setdefault(channel, set()).add(session.ws)

    async def remove_subscriber(self, channel: str, session: Session) -> None:
        for table, member in ((self._joining, session), (self._live, session.ws)):
            members: Any = table.get(channel)
            if members is not None:
                members.discard(member)
                if not members:
                    del table[channel]
        if channel in self._joining or channel in self._live:
            return  # other local subscribers remain
        ready = self._listens.pop(channel, None)
        if ready is not None:
            try:
                await self.broker.unlisten(channel)
            except Exception as exc:
                logger.warning("broker failed to stop listening to %s: %.300r", channel, exc)

    def _on_event(self, channel: str, event: Event) -> None:
        """Fan an event out to this node's subscribers of ``channel``."""
        if isinstance(event, Reset):
            self._interrupt(channel)
            return
        if isinstance(event, Control):
            self._on_control(event.message)
            return
        text = push_for(channel, event)
        conns = self._live.get(channel)
        if conns:
            sent = tw.broadcast(conns, text, slow="close", slow_code=Close.SLOW_CONSUMER)
            metrics = self.metrics
            metrics.messages_out += sent
            metrics.bytes_out += sent * len(text.encode())
        joining = self._joining.get(channel)
        if joining:
            for session in joining:
                session.hold(channel, text, event)
        if isinstance(event, Publication) and event.time:
            self.metrics.latency.observe(max(0.0, time.time() - event.time))

    def _interrupt(self, channel: str) -> None:
        """Close the connections subscribed to ``channel`` with 4003: their
        stream has a gap, and a client recovers it by reconnecting. Nothing
        more of ``channel`` is pushed to them: the close comes right after the
        last publication before the gap."""
        live = self._live.pop(channel, set())
        sessions = {s for s in self.sessions if s.ws in live}
        sessions |= self._joining.get(channel, set())
        logger.warning("stream of %s interrupted: %d subscribers asked to recover",
                       channel, len(sessions))
        self.metrics.interrupted += len(sessions)
        for session in sessions:
            self.spawn(session.ws.close(Close.INTERRUPTED, "stream interrupted, reconnect"))

    def _gauges(self) -> dict[str, tuple[str, float]]:
        return {
            "connections_open": ("WebSocket connections open now", len(self.sessions)),
            "subscriptions": (
                "subscriptions on this node", sum(len(s.channels) for s in self.sessions)
            ),
            "channels": ("channels with subscribers on this node", len(self._listens)),
            "broker_up": (
                "1 while the broker delivers (Redis: this node's pub/sub probes come back)",
                1.0 if self.broker.healthy else 0.0,
            ),
        }
