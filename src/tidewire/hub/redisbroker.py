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

Redis may be one server or the master that Sentinel names (``redisurl``). A
master promoted from replica starts a new epoch in each channel, since it may
lack what the old master accepted last.

``healthy`` is true only while the node's own probes, published every
``probe_interval``, come back on its pub/sub connection. Otherwise every call
raises ``BrokerUnavailable`` and the pub/sub connection is made again, with
backoff. Once it is back, the node subscribes again and fills the gap of each
channel from history. A gap history can't fill (or a new epoch, when Redis lost
its data or a replica took over) is a ``Reset``: the hub then asks those
subscribers to reconnect and recover.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import secrets
import time
from collections.abc import Sequence
from typing import Any

try:
    from redis.asyncio.connection import AbstractConnection
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
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
    ToPublish,
    select_history,
)
from .redisurl import hide_password, redis_client

__all__ = ["RedisBroker"]

logger = logging.getLogger("tidewire.hub.redis")

META_TTL = 7 * 24 * 3600.0  # seconds an unpublished channel keeps its epoch and offset
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0  # seconds between reconnection attempts
# With Sentinel an attempt first asks a sentinel where the master is (cheap):
# ask at least this often, to follow a failover soon after it is done.
SENTINEL_BACKOFF_MAX = 1.0

# The start of the publish and history scripts: the channel's epoch, a new one
# (ARGV[1]) if the channel is new or if this Redis was promoted from replica
# since the channel's last write. Replication is asynchronous: the old master
# may have acknowledged, and delivered, publications that never reached this
# one, and a new epoch keeps their offsets from being given to others. Each
# write records the replication history it was made in (``run``); a restart
# from disk starts a new one without a promotion (no ``master_replid2``), and
# keeps the epoch. KEYS: meta, history.
_EPOCH = """
local info = redis.call('INFO', 'replication')
local run = string.match(info, 'master_replid:(%x+)') or ''
local before = string.match(info, 'master_replid2:(%x+)') or ''
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seen = redis.call('HGET', KEYS[1], 'run')
local fresh = not epoch
if epoch and seen ~= run and before ~= '' and before ~= string.rep('0', #before) then
  fresh = true
end
if fresh then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0, 'run', run)
elseif seen ~= run then
  redis.call('HSET', KEYS[1], 'run', run)
end
"""

# ARGV: epoch if new, pub/sub channel, body, size, ttl ms, meta ttl ms.
_PUBLISH = _EPOCH + """
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
redis.call('PUBLISH', ARGV[2], 'p\\n' .. epoch .. '\\n' .. offset .. '\\n' .. ARGV[3])
return {epoch, offset}
"""

# ARGV: epoch if new, whether to read entries, meta ttl ms.
# Returns epoch, offset, Redis's time in ms, then the entries.
_HISTORY = _EPOCH + """
if fresh then
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
# for one. Mode "read" returns the live clients' JSON; the others return
# nothing, so that an add costs the same however many clients are present.
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
  elseif ARGV[3] == 'read' then
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

    ``url`` is ``redis://[[user]:password@]host[:port][/db]``,
    ``unix:///path/to/redis.sock[?db=N]``, or
    ``redis+sentinel://[[user]:password@]host:port,host:port/<service>[/db]``
    (see ``redisurl``). A node's clients vanish from presence at most
    ``presence_ttl`` seconds after the node stops renewing them (it renews
    every third of that).

    The node knows its pub/sub connection delivers by publishing to a probe
    channel of its own every ``probe_interval`` seconds: it is ``healthy``
    only while the probes come back, and a connection whose probe isn't back
    within three intervals is dropped and made again.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tidewire",
        presence_ttl: float = 30.0,
        timeout: float = 5.0,
        max_connections: int = 64,
        probe_interval: float = 1.0,
    ) -> None:
        if presence_ttl <= 0:
            raise ValueError("presence_ttl must be above 0")
        if probe_interval <= 0:
            raise ValueError("probe_interval must be above 0")
        self.url = url
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.probe_interval = probe_interval
        self.node = secrets.token_hex(4)
        self._timeout = timeout
        self._redis, self._sentinel = redis_client(
            url, max_connections=max_connections, timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            # No silent retries: a publish retried after its reply was lost
            # would be published twice. The caller gets 503 and decides.
            retry=Retry(NoBackoff(), 0),
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
        self._probe_key = f"{prefix}:probe:{self.node}"
        self._since = 0.0  # monotonic time the pub/sub connection was subscribed
        self._probed = 0.0  # monotonic time the last probe that came back was sent
        self._probing: asyncio.Task[None] | None = None  # a probe being published
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
            await asyncio.wait_for(self._tried.wait(), self._timeout)
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
        return hide_password(self.url)

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
        if self._sentinel is not None:
            await self._sentinel.aclose()

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
        item = ToPublish(channel, data, sender, history_size, history_ttl)
        keys, args = self._publish_args(item, time.time())
        epoch, offset = await self._call(self._publish(keys=keys, args=args), "publish")
        return Position(epoch, int(offset))

    def _publish_args(self, item: ToPublish, at: float) -> tuple[list[str], list[Any]]:
        """The publish script's KEYS and ARGV for ``item``, accepted at ``at``."""
        channel = item.channel
        return [self._key("m", channel), self._key("h", channel)], [
            secrets.token_urlsafe(6), self._key("c", channel),
            _body(at, item.sender, item.data), item.history_size,
            int(item.history_ttl * 1000), int(META_TTL * 1000),
        ]

    async def publish_many(
        self, batch: Sequence[ToPublish]
    ) -> list[Position | BrokerUnavailable]:
        """One pipeline on one connection: Redis runs the scripts in the
        batch's order, for one round trip instead of one each."""
        if len(batch) < 2:
            return await super().publish_many(batch)
        at = time.time()
        answers = await self._publish_pipeline(batch, at)
        lost = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if lost:
            # Redis forgot the script (restarted, or SCRIPT FLUSH): none of
            # those ran, so they are sent again once it is loaded.
            try:
                await self._call(self._redis.script_load(_PUBLISH), "publish")
            except BrokerUnavailable as exc:
                for i in lost:
                    answers[i] = BrokerUnavailable(str(exc))
            else:
                again = await self._publish_pipeline([batch[i] for i in lost], at)
                for i, answer in zip(lost, again, strict=True):
                    answers[i] = answer
        out: list[Position | BrokerUnavailable] = []
        for answer in answers:
            if isinstance(answer, BrokerUnavailable):
                out.append(answer)
            elif isinstance(answer, Exception):
                logger.warning("Redis refused to publish: %s", answer)
                out.append(BrokerUnavailable(f"Redis refused to publish: {answer}"))
            else:
                out.append(Position(answer[0], int(answer[1])))
        return out

    async def _publish_pipeline(self, batch: Sequence[ToPublish], at: float) -> list[Any]:
        """Each publication's answer: the script's, or the exception it got."""
        sha = self._publish.sha
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in batch:
                    keys, args = self._publish_args(item, at)
                    # evalsha, not the script object: a pipeline of those
                    # would first ask Redis whether it has the script.
                    pipe.evalsha(sha, len(keys), *keys, *args)
                answers: list[Any] = await self._call(
                    pipe.execute(raise_on_error=False), "publish"
                )
                return answers
        except BrokerUnavailable as exc:
            return [BrokerUnavailable(str(exc)) for _ in batch]

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
            await asyncio.wait_for(asyncio.shield(confirmed), self._timeout)
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
        if self._conn is not None:
            try:
                await self._conn.send_command("UNSUBSCRIBE", self._key("c", channel))
            except (RedisError, OSError):
                pass  # the connection is lost; it won't subscribe again

    async def _pubsub_forever(self) -> None:
        delay = BACKOFF_FIRST
        pool = self._redis.connection_pool
        while not self._closing:
            # With Sentinel, connect() asks the sentinels where the master is.
            conn = pool.connection_class(
                **pool.connection_kwargs, client_name=f"tidewire-{self.node}-pubsub"
            )
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
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
            delay = min(delay * 2, SENTINEL_BACKOFF_MAX if self._sentinel else BACKOFF_MAX)

    def _down(self) -> None:
        self._healthy = False
        self._conn = None
        for waiting in self._confirms.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(BrokerUnavailable("the Redis connection was lost"))
        self._confirms.clear()

    async def _resubscribe(self, conn: AbstractConnection) -> None:
        """Subscribe again to every channel listened to, then to the probe
        channel; return once Redis has confirmed them all (it answers in
        order), with what came meanwhile held to fill each channel's gap."""
        channels = sorted(self._listened)
        self._syncing = {channel: [] for channel in channels if channel in self._last}
        # Control messages first, confirmed before the node counts as up.
        await conn.send_command("SUBSCRIBE", self._control_key)
        await conn.read_response(timeout=self._timeout, push_request=True)
        if channels:
            await conn.send_command("SUBSCRIBE", *(self._key("c", c) for c in channels))
        await conn.send_command("SUBSCRIBE", self._probe_key)
        while True:
            message = await conn.read_response(timeout=self._timeout, push_request=True)
            if isinstance(message, list):
                if message[0] == "subscribe" and message[1] == self._probe_key:
                    break
                self._dispatch(message)
        # The pool's connections may date from before Redis went away (or to
        # a master that is gone): each would fail its next command. Start afresh.
        await self._redis.connection_pool.disconnect()
        self._conn = conn

    def _up(self) -> None:
        """The first probe came back: pub/sub delivers, the node is healthy."""
        self._healthy = True
        if self._tried is not None:
            self._tried.set()
        logger.info("connected to Redis at %s", self.safe_url)
        if self._syncing:
            self._spawn(self._fill_gaps())
        if self._present or self._listened:
            self._spawn(self.heartbeat(restore=True))  # Redis may have lost them

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        prober = asyncio.get_running_loop().create_task(self._probe(conn))
        try:
            while True:
                message = await conn.read_response(timeout=math.inf, push_request=True)
                if isinstance(message, list):
                    self._dispatch(message)
        finally:
            prober.cancel()

    async def _probe(self, conn: AbstractConnection) -> None:
        """Publish a probe now and every ``probe_interval``; drop ``conn``
        when the last one back was sent more than three intervals ago, not
        counting the time the event loop itself was stalled."""
        if self._probing is not None:
            self._probing.cancel()  # sent before this connection: it can't count
        self._since = self._probed = time.monotonic()
        while True:
            now = time.monotonic()
            if now - self._probed > 3 * self.probe_interval:
                logger.warning("Redis at %s stopped delivering on pub/sub (no probe back "
                               "in %.1f s); reconnecting", self.safe_url, now - self._probed)
                self._healthy = False
                await conn.disconnect(nowait=True)
                return
            if self._probing is None or self._probing.done():
                self._probing = self._spawn(self._send_probe(now))
            await asyncio.sleep(self.probe_interval)
            # Woken late: the loop was blocked (a long callback, a swapped-out
            # process), so nothing read the probes that came back meanwhile.
            # That time says nothing of pub/sub: the deadline moves past it.
            late = time.monotonic() - now - self.probe_interval
            if late > 0:
                self._probed += late

    async def _send_probe(self, at: float) -> None:
        try:
            await asyncio.wait_for(
                self._redis.publish(self._probe_key, repr(at)), 3 * self.probe_interval
            )
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            logger.debug("probe not published: %r", exc)

    def _probe_back(self, text: str) -> None:
        try:
            at = float(text)
        except ValueError:
            return  # not ours
        if at < self._since:
            return  # sent before this connection was subscribed
        self._probed = max(self._probed, at)
        if not self._healthy and self._conn is not None:
            self._up()

    def _dispatch(self, message: list[Any]) -> None:
        kind = message[0]
        if message[1] == self._control_key:
            if kind == "message":
                self._emit("", Control(message[2]))
        elif kind == "message":
            if message[1] == self._probe_key:
                self._probe_back(message[2])
                return
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
