"""The Redis broker: many hub nodes behave as one, with Redis between them.

Per channel, Redis holds (``prefix`` is ``tidewire`` by default):

- ``{prefix}:m:{channel}``: a hash of the epoch and the last offset;
- ``{prefix}:h:{channel}``: the history, a list bounded by count, each entry
  stamped with its expiry;
- ``{prefix}:p:{channel}``: presence, a hash of client id to an entry that
  expires unless its node renews it (``presence_ttl``);
- ``{prefix}:c:{channel}``: the pub/sub channel of its events.

and ``{prefix}:control`` is the pub/sub channel of the messages between nodes,
which every node listens to.

A Lua script gives each publication its offset, keeps it in history and
publishes it, all at once, so every node sees one order per channel. A node
subscribes (on one connection of its own) only to channels it has subscribers
for. Time is Redis's clock (``TIME``), so the nodes' clocks don't matter.

While Redis can't be reached every call raises ``BrokerUnavailable`` and
``healthy`` is false; the pub/sub connection retries with backoff. Once it is
back, the node subscribes again and fills the gap of each channel from history.
A gap history can't fill (or a new epoch, when Redis lost its data) is a
``Reset``: the hub then asks those subscribers to reconnect and recover.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import secrets
import time
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.asyncio.connection import AbstractConnection, parse_url
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the Redis broker needs redis-py: pip install 'tidewire[redis]'"
    ) from exc

from .broker import (
    Broker,
    BrokerUnavailable,
    ClientInfo,
    Control,
    Event,
    EventSink,
    History,
    Join,
    Leave,
    Position,
    Publication,
    Reset,
    select_history,
)

__all__ = ["RedisBroker"]

logger = logging.getLogger("tidewire.hub.redis")

META_TTL = 7 * 24 * 3600.0  # seconds an unpublished channel keeps its epoch and offset
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0  # seconds between reconnection attempts

# KEYS: meta, history. ARGV: pub/sub channel, epoch if new, body, size, ttl ms.
_PUBLISH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local size, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.max(ttl, tonumber(ARGV[6])))
if size > 0 and ttl > 0 then
  local t = redis.call('TIME')
  local expiry = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000) + ttl)
  redis.call('RPUSH', KEYS[2], offset .. '\\n' .. expiry .. '\\n' .. ARGV[3])
  redis.call('LTRIM', KEYS[2], -size, -1)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PUBLISH', ARGV[1], 'p\\n' .. epoch .. '\\n' .. offset .. '\\n' .. ARGV[3])
return {epoch, offset}
"""

# KEYS: meta, history. ARGV: epoch if new, whether to read entries, meta ttl ms.
# Returns epoch, offset, Redis's time in ms, then the entries.
_HISTORY = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local offset = redis.call('HGET', KEYS[1], 'offset') or '0'
local t = redis.call('TIME')
local out = {epoch, offset, string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000))}
if ARGV[2] == '1' then
  for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    out[#out + 1] = entry
  end
end
return out
"""

# Presence entries are "<expiry ms>\n<notify 0|1>\n<client JSON>".
# KEYS: presence. ARGV: pub/sub channel, ttl ms, mode, join push or '', then
# pairs of client id and "<notify>\n<client JSON>". Mode "add" writes them,
# "renew" only those still there (a client removed meanwhile stays removed).
# Then expired entries are dropped, with a leave push for those that asked
# for one. Returns the live clients' JSON.
_PRESENCE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[2])
local expiry = string.format('%.0f', now + ttl)
for i = 5, #ARGV, 2 do
  if ARGV[3] == 'add' or redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], expiry .. '\\n' .. ARGV[i + 1])
  end
end
if #ARGV > 4 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[4])
end
local live = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local entry = all[i + 1]
  local cut = string.find(entry, '\\n', 1, true)
  if tonumber(string.sub(entry, 1, cut - 1)) <= now then
    redis.call('HDEL', KEYS[1], all[i])
    if string.sub(entry, cut + 1, cut + 1) == '1' then
      redis.call('PUBLISH', ARGV[1], 'l\\n' .. string.sub(entry, cut + 3))
    end
  else
    live[#live + 1] = string.sub(entry, cut + 3)
  end
end
return live
"""

# KEYS: presence. ARGV: pub/sub channel, client id, leave push or ''.
_PRESENCE_REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[2]) == 1 and ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[3])
end
return 0
"""


class RedisBroker(Broker):
    """Channels, history and presence in Redis, shared by every hub node.

    ``url`` is ``redis://[[user]:password@]host[:port][/db]`` or
    ``unix:///path/to/redis.sock[?db=N]``. A node's clients vanish from
    presence at most ``presence_ttl`` seconds after the node stops renewing
    them (it renews every third of that).
    """

    ping_interval = 2.0  # seconds between pings on the pub/sub connection

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tidewire",
        presence_ttl: float = 30.0,
        timeout: float = 5.0,
        max_connections: int = 64,
    ) -> None:
        try:
            self._params: dict[str, Any] = dict(parse_url(url))
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {url!r}: {exc}") from None
        if presence_ttl <= 0:
            raise ValueError("presence_ttl must be above 0")
        self.url = url
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.node = secrets.token_hex(4)
        options: dict[str, Any] = dict(
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            # No silent retries: a publish retried after its reply was lost
            # would be published twice. The caller gets 503 and decides.
            retry=Retry(NoBackoff(), 0),
        )
        self._options = options
        self._redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool(
                max_connections=max_connections, timeout=timeout, **self._params, **options
            )
        )
        self._publish = self._redis.register_script(_PUBLISH)
        self._history = self._redis.register_script(_HISTORY)
        self._presence = self._redis.register_script(_PRESENCE)
        self._presence_remove = self._redis.register_script(_PRESENCE_REMOVE)
        self._sink: EventSink | None = None
        self._healthy = False
        self._tried: asyncio.Event | None = None  # the first connection attempt is over
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conn: AbstractConnection | None = None  # pub/sub, while connected
        self._heard = 0.0  # monotonic time of the pub/sub connection's last reply
        self._listened: set[str] = set()
        self._confirms: dict[str, list[asyncio.Future[None]]] = {}  # awaiting SUBSCRIBE
        self._last: dict[str, Position] = {}  # the last publication delivered
        self._syncing: dict[str, list[list[str]]] = {}  # channel -> messages held
        self._present: dict[str, dict[str, str]] = {}  # this node's presence entries
        self._control_key = f"{prefix}:control"

    # Keys.

    def _key(self, kind: str, channel: str) -> str:
        return f"{self.prefix}:{kind}:{channel}"

    # Life.

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self, sink: EventSink) -> None:
        """Connect (waiting up to the timeout for Redis) and start listening.

        A node starts even if Redis is down: it is then degraded, and
        reconnects in the background.
        """
        self._sink = sink
        self._tried = asyncio.Event()
        self._spawn(self._pubsub_forever())
        self._spawn(self._heartbeat_forever())
        try:
            await asyncio.wait_for(self._tried.wait(), self._options["socket_connect_timeout"])
        except asyncio.TimeoutError:
            pass
        if not self._healthy:
            logger.warning("Redis at %s is unreachable; running degraded until it is back",
                           self.safe_url)

    @property
    def name(self) -> str:
        return self.safe_url

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        scheme, sep, rest = self.url.partition("://")
        creds, at, host = rest.rpartition("@")
        if not at:
            return self.url
        user = creds.partition(":")[0]
        return f"{scheme}{sep}{user + ':' if user else ''}***@{host}"

    async def close(self) -> None:
        self._closing = True
        self._sink = None
        self._healthy = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._redis.aclose()
        await self._redis.connection_pool.aclose()  # given, so not closed by aclose()

    # Commands.

    async def _call(self, coro: Any, what: str) -> Any:
        if not self._healthy:
            coro.close()
            raise BrokerUnavailable(
                f"Redis at {self.safe_url} is unreachable (reconnecting); nothing was done"
            )
        try:
            return await coro
        except (RedisTimeoutError, asyncio.TimeoutError):
            logger.warning("Redis didn't answer in time to %s", what)
            raise BrokerUnavailable(
                f"Redis didn't answer in time to {what}; it may or may not have been done"
            ) from None
        except (RedisConnectionError, OSError) as exc:
            # Most often a connection refused, before anything was sent; but
            # one lost mid-call leaves it unknown, as a timeout does.
            logger.warning("Redis failed to %s: %s", what, exc)
            raise BrokerUnavailable(
                f"the connection to Redis failed during {what} ({exc}); it may or may not "
                "have been done"
            ) from None
        except RedisError as exc:
            logger.warning("Redis refused to %s: %s", what, exc)
            raise BrokerUnavailable(f"Redis refused to {what}: {exc}") from None

    async def publish(
        self,
        channel: str,
        data: str,
        *,
        sender: ClientInfo | None = None,
        history_size: int = 0,
        history_ttl: float = 0.0,
    ) -> Position:
        body = _body(time.time(), sender, data)
        epoch, offset = await self._call(self._publish(
            keys=[self._key("m", channel), self._key("h", channel)],
            args=[self._key("c", channel), secrets.token_urlsafe(6), body, history_size,
                  int(history_ttl * 1000), int(META_TTL * 1000)],
        ), "publish")
        return Position(epoch, int(offset))

    async def history(
        self, channel: str, *, since: Position | None = None, limit: int | None = None
    ) -> History:
        read = since is not None or limit != 0
        out = await self._call(self._history(
            keys=[self._key("m", channel), self._key("h", channel)],
            args=[secrets.token_urlsafe(6), "1" if read else "0", int(META_TTL * 1000)],
        ), "read history")
        now = int(out[2])
        kept = []
        for entry in out[3:]:
            offset, expiry, body = entry.split("\n", 2)
            if int(expiry) > now:
                kept.append(_publication(int(offset), body))
        return select_history(Position(out[0], int(out[1])), kept, since, limit)

    # Presence.

    def _presence_call(self, channel: str, mode: str, entries: dict[str, str],
                       join: str = "", client: Any = None) -> Any:
        args: list[Any] = [self._key("c", channel), int(self.presence_ttl * 1000), mode, join]
        for client_id, entry in entries.items():
            args += [client_id, entry]
        return self._presence(keys=[self._key("p", channel)], args=args, client=client)

    async def presence_add(self, channel: str, client: ClientInfo, *, notify: bool) -> None:
        entry = f"{int(notify)}\n{client.to_json()}"
        self._present.setdefault(channel, {})[client.client] = entry
        join = "j\n" + client.to_json() if notify else ""
        await self._call(self._presence_call(channel, "add", {client.client: entry}, join),
                         "add presence")

    async def presence_remove(self, channel: str, client: ClientInfo, *, notify: bool) -> None:
        entries = self._present.get(channel)
        if entries is not None:
            entries.pop(client.client, None)
            if not entries:
                del self._present[channel]
        leave = "l\n" + client.to_json() if notify else ""
        await self._call(self._presence_remove(
            keys=[self._key("p", channel)],
            args=[self._key("c", channel), client.client, leave],
        ), "remove presence")

    async def presence(self, channel: str) -> list[ClientInfo]:
        live = await self._call(self._presence_call(channel, "read", {}), "read presence")
        return [_client(text) for text in live]

    async def control(self, message: str) -> None:
        await self._call(self._redis.publish(self._control_key, message), "send a control message")

    async def channels(self) -> dict[str, int]:
        out: dict[str, int] = {}
        cut = len(self.prefix) + 3
        async for key in self._scan(f"{self.prefix}:h:*"):
            out[key[cut:]] = 0
        names = [key[cut:] async for key in self._scan(f"{self.prefix}:p:*")]
        for start in range(0, len(names), 500):
            batch = names[start:start + 500]
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in batch:
                    await self._presence_call(name, "read", {}, client=pipe)
                counts = await self._call(pipe.execute(), "count subscribers")
            for name, live in zip(batch, counts, strict=True):
                if live:
                    out[name] = len(live)
        return out

    async def _scan(self, match: str) -> Any:
        cursor = 0
        while True:
            cursor, keys = await self._call(
                self._redis.scan(cursor, match=match, count=500), "list channels"
            )
            for key in keys:
                yield key
            if cursor == 0:
                return

    async def _heartbeat_forever(self) -> None:
        """Renew this node's presence entries; drop expired ones of the
        channels it listens to (their leave pushes included)."""
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            if self._healthy:
                await self.heartbeat()

    async def heartbeat(self, *, restore: bool = False) -> None:
        """Renew this node's presence entries (``restore``: write them again,
        for a Redis that lost them) and sweep the channels it listens to."""
        channels = set(self._present) | self._listened
        if not channels:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel in channels:
                    entries = self._present.get(channel, {})
                    mode = "add" if restore else "renew"
                    await self._presence_call(channel, mode, entries, client=pipe)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("Redis failed to renew presence: %s", exc)

    # Pub/sub.

    async def listen(self, channel: str) -> None:
        """Subscribe; return once Redis has confirmed it, so that every
        publication after this call reaches the sink."""
        if not self._healthy or self._conn is None:
            raise BrokerUnavailable(f"Redis at {self.safe_url} is unreachable, reconnecting")
        self._listened.add(channel)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirms.setdefault(channel, []).append(confirmed)
        try:
            await self._conn.send_command("SUBSCRIBE", self._key("c", channel))
            await asyncio.wait_for(asyncio.shield(confirmed), self._options["socket_timeout"])
        except BaseException as exc:
            self._listened.discard(channel)
            waiting = self._confirms.get(channel, [])
            if confirmed in waiting:
                waiting.remove(confirmed)
            await self.unlisten(channel)  # in case Redis did subscribe
            if isinstance(exc, (RedisError, OSError, asyncio.TimeoutError)):
                raise BrokerUnavailable(f"Redis failed to subscribe: {exc!r}") from None
            raise

    async def unlisten(self, channel: str) -> None:
        self._listened.discard(channel)
        self._last.pop(channel, None)
        self._syncing.pop(channel, None)
        if self._conn is not None and self._healthy:
            try:
                await self._conn.send_command("UNSUBSCRIBE", self._key("c", channel))
            except (RedisError, OSError):
                pass  # the connection is lost; it won't subscribe again

    async def _pubsub_forever(self) -> None:
        delay = BACKOFF_FIRST
        while not self._closing:
            conn = self._redis.connection_pool.connection_class(
                **self._params, **self._options, client_name=f"tidewire-{self.node}-pubsub"
            )
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                self._heard = time.monotonic()
                await self._resubscribe(conn)
                delay = BACKOFF_FIRST
                await self._read(conn)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                if self._healthy:
                    logger.warning("lost Redis at %s (%s); reconnecting", self.safe_url, exc)
            finally:
                self._down()
                if self._tried is not None:
                    self._tried.set()
                await conn.disconnect(nowait=True)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)

    def _down(self) -> None:
        self._healthy = False
        self._conn = None
        for waiting in self._confirms.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(BrokerUnavailable("the Redis connection was lost"))
        self._confirms.clear()

    async def _resubscribe(self, conn: AbstractConnection) -> None:
        """Subscribe again to every channel listened to, then fill each one's
        gap from history before its live stream goes on."""
        channels = sorted(self._listened)
        self._syncing = {channel: [] for channel in channels if channel in self._last}
        # Control messages first, confirmed before the node counts as up.
        await conn.send_command("SUBSCRIBE", self._control_key)
        await conn.read_response(timeout=self._options["socket_timeout"], push_request=True)
        if channels:
            await conn.send_command("SUBSCRIBE", *(self._key("c", c) for c in channels))
        # The pool's connections may date from before Redis went away: each
        # would fail its next command. Start afresh.
        await self._redis.connection_pool.disconnect()
        self._conn = conn
        self._healthy = True
        if self._tried is not None:
            self._tried.set()
        logger.info("connected to Redis at %s", self.safe_url)
        if self._syncing:
            self._spawn(self._fill_gaps())
        if self._present or self._listened:
            self._spawn(self.heartbeat(restore=True))  # Redis may have lost them

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill_gaps(self) -> None:
        syncing = self._syncing
        for channel in list(syncing):
            last = self._last.get(channel)
            history: History | None = None
            try:
                if last is not None:
                    history = await self.history(channel, since=last)
            except BrokerUnavailable:
                pass  # the gap can't be filled: a Reset
            if syncing is not self._syncing:
                return  # reconnected meanwhile: that connection fills the gaps
            held = syncing.pop(channel, None)
            if held is None or channel not in self._listened:
                continue
            if history is not None and history.complete:
                for pub in history.publications:
                    self._deliver_pub(channel, history.top.epoch, pub)
            else:
                self._last.pop(channel, None)
                self._emit(channel, Reset())
            for message in held:
                self._dispatch(message)

    async def _read(self, conn: AbstractConnection) -> None:
        pinger = asyncio.get_running_loop().create_task(self._ping(conn))
        try:
            while True:
                message = await conn.read_response(timeout=math.inf, push_request=True)
                self._heard = time.monotonic()
                if isinstance(message, list):
                    self._dispatch(message)
        finally:
            pinger.cancel()

    async def _ping(self, conn: AbstractConnection) -> None:
        """Ping, and drop a connection that stops answering."""
        while True:
            await asyncio.sleep(self.ping_interval)
            if time.monotonic() - self._heard > 3 * self.ping_interval:
                logger.warning("Redis at %s stopped answering", self.safe_url)
                await conn.disconnect(nowait=True)
                return
            await conn.send_command("PING")

    def _dispatch(self, message: list[Any]) -> None:
        kind = message[0]
        if message[1] == self._control_key:
            if kind == "message":
                self._emit("", Control(message[2]))
        elif kind == "message":
            channel = message[1][len(self.prefix) + 3:]
            held = self._syncing.get(channel)
            if held is not None:
                held.append(message)
            elif channel in self._listened:
                self._on_message(channel, message[2])
        elif kind == "subscribe":
            waiting = self._confirms.get(message[1][len(self.prefix) + 3:])
            if waiting:
                future = waiting.pop(0)
                if not future.done():
                    future.set_result(None)

    def _on_message(self, channel: str, text: str) -> None:
        kind, _, rest = text.partition("\n")
        if kind == "p":
            epoch, offset, body = rest.split("\n", 2)
            self._deliver_pub(channel, epoch, _publication(int(offset), body))
        elif kind == "j":
            self._emit(channel, Join(_client(rest)))
        elif kind == "l":
            self._emit(channel, Leave(_client(rest)))

    def _deliver_pub(self, channel: str, epoch: str, pub: Publication) -> None:
        last = self._last.get(channel)
        if last is not None and last.epoch == epoch and pub.offset <= last.offset:
            return  # already delivered (a gap being filled overlaps the stream)
        self._last[channel] = Position(epoch, pub.offset)
        if last is not None and (last.epoch != epoch or pub.offset != last.offset + 1):
            self._emit(channel, Reset())  # a new epoch or a gap: continuity is lost
        self._emit(channel, pub)

    def _emit(self, channel: str, event: Event) -> None:
        if self._sink is not None:
            self._sink(channel, event)


def _body(at: float, sender: ClientInfo | None, data: str) -> str:
    return f"{at!r}\n{sender.to_json() if sender is not None else ''}\n{data}"


def _publication(offset: int, body: str) -> Publication:
    at, sender, data = body.split("\n", 2)
    return Publication(offset, data, _client(sender) if sender else None, float(at))


def _client(text: str) -> ClientInfo:
    value = json.loads(text)
    info = value.get("info")
    # Encoded as auth.encode_info does, so that it reads the same on every node.
    return ClientInfo(value["client"], value["user"], None if info is None else
                      json.dumps(info, separators=(",", ":"), ensure_ascii=False))
