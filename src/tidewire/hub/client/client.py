"""``HubClient``: the Python client of the hub, the twin of tidewire.js.

One WebSocket to the hub's ``/ws`` with the JSON protocol of docs/protocol.md:
requests matched to their replies by id, pushes dispatched to subscriptions.
A background task keeps the connection up until ``close()``: it reconnects
with exponential backoff and full jitter, subscribes again ``since`` each
subscription's last position, and sends the ``ping`` requests the hub
expects, dropping a connection whose hub doesn't answer them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from ... import asyncio as tw
from ...exceptions import InvalidURI
from .backoff import backoff
from .errors import (
    ConnectionLost,
    HubClientError,
    HubError,
    NotConnected,
    RequestTimeout,
    TokenError,
)
from .models import (
    ClientInfo,
    DisconnectEvent,
    HistoryResult,
    Join,
    Leave,
    Position,
    PresenceStats,
    Publication,
    Session,
    State,
    SubscribedContext,
    SubscriptionEvent,
    Unsubscribed,
    presence_list,
)
from .subscription import Subscription, SubscriptionTokenGetter

__all__ = ["HubClient", "TokenGetter"]

logger = logging.getLogger("tidewire.hub.client")

TokenGetter = Callable[[], Awaitable["str | None"]]
OnReply = Callable[["dict[str, Any] | None", "HubClientError | None"], None]

LOST = 1006  # the close code of a connection that ended without a close frame
_UNSET: Any = object()


def _ws_url(url: str) -> str:
    """``ws(s)://`` for ``http(s)://``; the path ``/ws`` when there is none."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not channel:
        raise TypeError("channel must be a non-empty string")


class _ServerSub:
    """A server-side subscription: its position, for recovery."""

    def __init__(self, position: Position) -> None:
        self.position = position


class HubClient:
    """A connection to the hub, kept up until ``close()``.

    ``url`` is the hub's ``ws://host:port/ws`` (``http://host:port`` works
    too). Identify with one of: ``token`` (a JWT from your backend),
    ``get_token`` (an async function returning one, called before the first
    connection when there is no ``token``, after the hub closed with 4001,
    when the token's expiry has passed, and once after the hub refused a
    token), ``api_key`` (the hub's API key: a backend connection), or none
    (anonymous, or the hub's connect proxy decides). Delays and timeouts are
    in seconds. ``connect_options`` go to ``tidewire.connect()`` (TLS, extra
    headers such as a session cookie for the connect proxy...).

    Use ``async with HubClient(url) as client:`` or ``await
    client.connect()`` ... ``await client.close()``.

    Requests (``publish``, ``rpc``, ``presence``, ``history``...) made while
    the client reconnects wait for the connection within ``timeout``; made
    while it is disconnected, they raise ``NotConnected``. A request in flight
    when the connection is lost raises ``ConnectionLost`` and is not sent again.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        get_token: TokenGetter | None = None,
        api_key: str | None = None,
        info: dict[str, Any] | None = None,
        data: Any = _UNSET,
        min_delay: float = 0.5,
        max_delay: float = 20.0,
        timeout: float = 10.0,
        heartbeat_timeout: float = 5.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in [("min_delay", min_delay), ("max_delay", max_delay),
                            ("timeout", timeout), ("heartbeat_timeout", heartbeat_timeout)]:
            if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if max_delay < min_delay:
            raise ValueError("max_delay must be >= min_delay")
        if api_key is not None and (token is not None or get_token is not None):
            raise ValueError("give api_key or a token, not both")
        self.url = _ws_url(url)
        self.info = info
        """Sent with each connect: shown in presence and in the sender of
        this client's publications."""
        self.data = data
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.heartbeat_timeout = heartbeat_timeout
        self._connect_options = dict(connect_options or {})
        self._api_key = api_key
        self._token = token or None
        self._get_token = get_token
        self._refreshed = False  # get_token() was called after a refusal
        self._expires: float | None = None
        self._state: State = "disconnected"
        self._wanted = False
        self._task: asyncio.Task[None] | None = None
        self._ws: tw.ClientConnection | None = None
        self._drop_reason: str | None = None
        self._refusal: HubError | None = None  # connect's 401, before the hub closes
        self._session: Session | None = None
        self._next_id = 1
        # Each request waiting for its reply: called with its result or its error,
        # in the order of the messages (a subscribe result before the pushes after it).
        self._inflight: dict[int, OnReply] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._stop_error: HubClientError | None = None
        self._subs: dict[str, Subscription] = {}
        self._server_subs: dict[str, _ServerSub] = {}
        self._server_events: asyncio.Queue[SubscriptionEvent] = asyncio.Queue()
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._attempt = 0

    # State and events.

    @property
    def state(self) -> State:
        """"disconnected" (not trying: before ``connect()``, after ``close()``
        or a "don't come back" close code 4500-4999), "connecting" (opening,
        or waiting to try again), "connected" (the hub answered ``connect``)."""
        return self._state

    @property
    def session(self) -> Session | None:
        """The hub's answer to ``connect`` while connected, else None."""
        return self._session

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` on each ``event``; returns a function that removes it.

        - ``state`` ``(state, previous)``;
        - ``connect`` ``(session)``: the hub answered ``connect``;
        - ``disconnect`` ``(DisconnectEvent)``: a connection or an attempt ended;
        - ``error`` ``(exc)``: what no request or subscription reports: a
          refused connect, ``get_token`` failing, a malformed message.
        """
        if event not in ("state", "connect", "disconnect", "error"):
            raise ValueError(f"unknown event {event!r}")
        callbacks = self._listeners.setdefault(event, [])
        callbacks.append(callback)
        return lambda: callbacks.remove(callback) if callback in callbacks else None

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._listeners.get(event, ())):
            try:
                callback(*args)
            except Exception:
                logger.exception("the %r callback failed", event)

    def _set_state(self, state: State) -> None:
        previous, self._state = self._state, state
        if previous != state:
            self._emit("state", state, previous)

    # The connection's life.

    async def connect(self) -> Session:
        """Start connecting (if not already), and wait until connected.

        Keep trying while the hub is unreachable (wrap in a timeout to give
        up); raise the hub's ``HubError`` when it refuses for good (a 4xx
        to ``connect``, or a close code 4500-4999: ``NotConnected``)."""
        if not self._wanted:
            self._wanted = True
            self._attempt = 0
            self._refreshed = False
            self._stop_error = None
            self._set_state("connecting")
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._task.add_done_callback(self._run_ended)
        await self._wait_connected()
        assert self._session is not None
        return self._session

    async def close(self) -> None:
        """Close the connection (the closing handshake, at most
        ``connect_options["close_timeout"]``, 1 s by default) and don't
        reconnect. Requests waiting for a reply raise ``ConnectionLost``;
        those waiting for the connection ``NotConnected``. Subscriptions
        stay: ``connect()`` subscribes them again."""
        ws = self._ws
        self._stop(1000, "close() was called", close=False)
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        for child in list(self._tasks):
            child.cancel()
        if ws is not None:
            await ws.close(1000, "close() was called")

    async def __aenter__(self) -> HubClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _stop(self, code: int, reason: str, error: HubClientError | None = None, *,
              close: bool = True) -> None:
        """Stop for good: the application asked, or the hub said not to come back."""
        self._wanted = False
        ws = self._ws
        self._teardown(reason)
        if ws is not None and close:
            ws.fail(1000, reason[:120])
        self._stop_error = error or NotConnected(reason)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._stop_error)
        if self._state != "disconnected":
            self._set_state("disconnected")
            self._emit("disconnect", DisconnectEvent(code, reason, False, None))

    async def _wait_connected(self) -> None:
        if self._state == "connected":
            return
        if not self._wanted:
            raise self._stop_error or NotConnected("the client is disconnected; call connect()")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _run_ended(self, task: asyncio.Task[None]) -> None:
        """A failure of the client itself ends it, loudly, rather than leave
        its callers waiting."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        logger.error("the hub client failed: %r", exc)  # the traceback is the error's cause
        error = HubClientError(f"the client failed: {exc!r}")
        error.__cause__ = exc
        self._stop(LOST, str(error), error)

    async def _run(self) -> None:
        while self._wanted:
            code, reason = await self._connection()
            if not self._wanted:
                return
            if code == 4001 and self._get_token is not None:
                self._token = None  # expired: get a new one
            if 4500 <= code <= 4999:  # the hub said not to come back
                self._stop(code, reason, self._refusal)
                return
            delay = backoff(self._attempt, self.min_delay, self.max_delay)
            self._attempt += 1
            self._set_state("connecting")
            self._emit("disconnect", DisconnectEvent(code, reason, True, delay))
            await asyncio.sleep(delay)

    async def _connection(self) -> tuple[int, str]:
        """One connection, from opening to its end; its close code and reason."""
        try:
            token = await self._current_token()
        except Exception as exc:
            token_error = TokenError(f"get_token() failed: {exc!r}")
            token_error.__cause__ = exc
            self._emit("error", token_error)
            return LOST, "get_token() failed"
        options: dict[str, Any] = {"open_timeout": self.timeout, "close_timeout": 1.0}
        options.update(self._connect_options)
        try:
            ws = await tw.connect(self.url, **options)
        except (InvalidURI, ValueError, TypeError) as exc:
            error = NotConnected(f"can't open {self.url}: {exc}")
            self._emit("error", error)
            self._stop(LOST, str(error), error)
            return LOST, str(error)
        except Exception as exc:  # refused, unreachable, a failed handshake: try again
            return LOST, f"can't connect: {exc!r}"
        if not self._wanted:
            ws.fail(1000, "close() was called")
            return 1000, "close() was called"
        self._ws = ws
        self._drop_reason = None
        self._refusal = None
        ws.on_message(lambda message: self._receive(ws, message))
        heartbeat: asyncio.Task[None] | None = None
        try:
            heartbeat = await self._handshake(ws, token)
            await ws.wait_closed()
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
        code = ws.close_code if self._drop_reason is None else None
        reason = self._drop_reason or ws.close_reason or ""
        code = LOST if code is None else code
        self._teardown(f"connection closed ({code} {reason})".strip())
        return code, reason

    async def _current_token(self) -> str | None:
        if self._get_token is not None and self._expires is not None \
                and time.time() >= self._expires:
            self._token = None  # it would be refused
        if self._token is None and self._get_token is not None:
            self._token = (await self._get_token()) or None
            self._expires = None
        return self._token

    async def _handshake(self, ws: tw.ClientConnection,
                         token: str | None) -> asyncio.Task[None] | None:
        """Send ``connect`` and handle its reply; the heartbeat task once connected."""
        body: dict[str, Any] = {}
        if token:
            body["token"] = token
        if self._api_key is not None:
            body["api_key"] = self._api_key
        if self.info is not None:
            body["info"] = self.info
        if self.data is not _UNSET:
            body["data"] = self.data
        if self._server_subs:
            body["server_subs"] = {c: s.position.wire() for c, s in self._server_subs.items()}
        try:
            result = await self._call(ws, "connect", body, self.timeout)
        except RequestTimeout:
            self._drop(ws, f"no reply to connect in {self.timeout} s")
            return None
        except ConnectionLost:
            return None
        except HubError as exc:
            self._refused(ws, exc, bool(token))
            return None
        self._connected(result)
        return asyncio.get_running_loop().create_task(self._heartbeat(ws))

    def _refused(self, ws: tw.ClientConnection, exc: HubError, with_token: bool) -> None:
        if exc.code == 401 and self._get_token is not None and not self._refreshed:
            # Most likely the token expired while we were away: get a new one, once.
            self._refreshed = True
            self._token = None
            self._drop(ws, f"connect refused ({exc.message}); trying with a new token")
            return
        self._emit("error", exc)
        if exc.code == 401 and with_token:
            self._refusal = exc
            if self._get_token is not None:
                self._token = None  # never send a refused token again
            return  # the hub closes with 4500: don't come back
        if exc.code >= 500:
            self._drop(ws, f"connect failed: {exc.message}")  # try again, with backoff
            return
        # 400, 403 (your backend said no), 409...: trying again gets the same answer.
        self._stop(1000, f"connect refused: {exc.message}", exc)

    def _connected(self, result: dict[str, Any]) -> None:
        session = Session.parse(result)
        self._session = session
        self._expires = session.expires
        self._attempt = 0
        self._refreshed = False
        # Subscriptions first, then what waited for the connection: on the wire too.
        for sub in list(self._subs.values()):
            if sub.state == "subscribing":
                self._send_subscribe(sub)
        self._set_state("connected")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._emit("connect", session)

    async def _heartbeat(self, ws: tw.ClientConnection) -> None:
        session = self._session
        if session is None or not session.heartbeat or session.heartbeat <= 0:
            return
        while self._ws is ws:
            await asyncio.sleep(session.heartbeat)
            try:
                await self._call(ws, "ping", {}, self.heartbeat_timeout)
            except RequestTimeout:
                self._drop(ws, f"no reply to ping in {self.heartbeat_timeout} s")
                return
            except HubClientError:
                return

    def _drop(self, ws: tw.ClientConnection, reason: str) -> None:
        """Give up on ``ws``: its connection ends as lost (1006), then reconnects."""
        if self._ws is ws and self._drop_reason is None:
            self._drop_reason = reason
            ws.fail(1000, reason[:120])

    def _teardown(self, reason: str) -> None:
        """Forget the current connection: its requests, its subscriptions' state."""
        self._ws = None
        self._session = None
        inflight, self._inflight = self._inflight, {}
        for sub in self._subs.values():
            sub.reset()
        for on_reply in inflight.values():
            on_reply(None, ConnectionLost(reason))

    # Requests.

    def _send(self, ws: tw.ClientConnection, op: str, body: dict[str, Any],
              on_reply: OnReply) -> int:
        """Send a request on ``ws`` now; its id. ``on_reply`` gets the reply."""
        rid = self._next_id
        text = json.dumps({"id": rid, "op": op, **body}, allow_nan=False,
                          ensure_ascii=False, separators=(",", ":"))
        self._next_id += 1
        try:
            ws.send_nowait(text)
        except Exception as exc:
            raise ConnectionLost(f"{op} not sent: {exc}") from exc
        self._inflight[rid] = on_reply
        return rid

    async def _call(self, ws: tw.ClientConnection, op: str, body: dict[str, Any],
                    timeout: float) -> dict[str, Any]:
        """Send a request on ``ws``; its result, within ``timeout``."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def on_reply(result: dict[str, Any] | None, error: HubClientError | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result or {})

        rid = self._send(ws, op, body, on_reply)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self._inflight.pop(rid, None)
            future.cancel()
            raise RequestTimeout(f"no reply to {op} in {timeout} s") from None

    async def request(self, op: str, **body: Any) -> dict[str, Any]:
        """Send any request of the protocol (docs/protocol.md) once connected,
        within ``timeout``; its result. Raise ``HubError`` for an error reply."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if self._state != "connected":
            if not self._wanted:
                raise NotConnected(f"{op} not sent: the client is disconnected; call connect()")
            try:
                await asyncio.wait_for(self._wait_connected(), self.timeout)
            except asyncio.TimeoutError:
                raise RequestTimeout(f"{op} not sent: not connected in {self.timeout} s") from None
            except HubClientError as exc:
                raise NotConnected(f"{op} not sent: {exc}") from exc
        ws = self._ws
        if ws is None:
            raise ConnectionLost(f"{op} not sent: no connection")
        return await self._call(ws, op, body, max(deadline - loop.time(), 0.001))

    async def publish(self, channel: str, data: Any) -> Position:
        """Publish ``data`` (any JSON value) where the namespace lets clients
        (a backend connection always may); the publication's position."""
        _check_channel(channel)
        result = await self.request("publish", channel=channel, data=data)
        return Position(result["epoch"], result["offset"])

    async def rpc(self, method: str, data: Any = None) -> Any:
        """Call ``method`` on your backend through the hub's rpc proxy; the
        backend's ``data``. Its error, or 503 when it is unavailable, raises
        ``HubError``."""
        if not isinstance(method, str) or not method:
            raise TypeError("method must be a non-empty string")
        result = await self.request("rpc", method=method, data=data)
        return result.get("data")

    async def presence(self, channel: str) -> list[ClientInfo]:
        """Who is subscribed to ``channel`` now (where presence is on)."""
        _check_channel(channel)
        return presence_list(await self.request("presence", channel=channel))

    async def presence_stats(self, channel: str) -> PresenceStats:
        """How many clients are subscribed, and how many distinct users."""
        _check_channel(channel)
        result = await self.request("presence_stats", channel=channel)
        return PresenceStats(result["num_clients"], result["num_users"])

    async def history(self, channel: str, *, limit: int | None = None,
                      since: Position | None = None) -> HistoryResult:
        """The latest publications of ``channel``, oldest first: at most
        ``limit``, or those after ``since`` (then ``recovered`` says whether
        they are all of them)."""
        _check_channel(channel)
        body: dict[str, Any] = {"channel": channel}
        if limit is not None:
            body["limit"] = limit
        if since is not None:
            body["since"] = since.wire()
        return HistoryResult.parse(channel, await self.request("history", **body))

    # Incoming messages.

    def _receive(self, ws: tw.ClientConnection, message: str | bytes) -> None:
        if self._ws is not ws:
            return
        value: Any = None
        if isinstance(message, str):
            try:
                value = json.loads(message)
            except ValueError:
                pass
        if not isinstance(value, dict):
            self._emit("error", HubClientError(
                f"the hub sent something that isn't a JSON object: {message[:80]!r}"))
            return
        if isinstance(value.get("push"), str):
            self._push(value)
            return
        rid = value.get("id")
        on_reply = self._inflight.pop(rid, None) if isinstance(rid, int) else None
        error = value.get("error")
        if on_reply is None:
            if rid is None and isinstance(error, dict):
                self._emit("error", _hub_error(error))
            return
        if isinstance(error, dict):
            on_reply(None, _hub_error(error))
        else:
            result = value.get("result")
            on_reply(result if isinstance(result, dict) else {}, None)

    def _push(self, msg: dict[str, Any]) -> None:
        kind, channel = msg["push"], msg.get("channel")
        if kind == "refresh":
            expires = msg.get("expires")
            self._expires = expires if isinstance(expires, (int, float)) else None
            if self._session is not None:
                self._session = Session(**{**self._session.__dict__, "expires": self._expires})
            return
        if not isinstance(channel, str):
            return
        if kind == "subscribe":
            self._server_subscribed(msg)
            return
        server = self._server_subs.get(channel)
        if server is not None:
            self._server_push(msg, server)
            return
        sub = self._subs.get(channel)
        if sub is None or sub.state != "subscribed":
            return  # unsubscribed meanwhile
        if kind == "pub":
            sub.publication(msg)
        elif kind in ("join", "leave"):
            sub.presence_event(kind, msg.get("client") or {})
        elif kind == "unsubscribe":
            sub.ended_by_hub()

    # Server-side subscriptions.

    async def server_events(self) -> AsyncIterator[SubscriptionEvent]:
        """The events of the server-side subscriptions (those the hub made,
        not ``subscribe()``), in order: a ``SubscribedContext`` when one
        begins or is re-established after a reconnection, its
        ``Publication``s (once each, in order), ``Join``, ``Leave``, and
        ``Unsubscribed`` when the hub ends one. Events wait until read."""
        while True:
            yield await self._server_events.get()

    def server_subscriptions(self) -> dict[str, Position]:
        """The channels of the server-side subscriptions, with the last
        position seen in each."""
        return {channel: s.position for channel, s in self._server_subs.items()}

    def _server_subscribed(self, msg: dict[str, Any]) -> None:
        channel, epoch = msg["channel"], msg["epoch"]
        known = self._server_subs.get(channel)
        previous = known.position if known is not None else None
        same_epoch = previous is not None and previous.epoch == epoch
        state = _ServerSub(Position(epoch, previous.offset if same_epoch and previous else 0))
        self._server_subs[channel] = state
        self._server_events.put_nowait(SubscribedContext(
            channel, epoch, msg["offset"], known is not None, msg.get("recovered") is True))
        for p in msg.get("publications") or ():
            self._server_publication(channel, state, p)
        if msg["offset"] > state.position.offset:
            state.position = Position(epoch, msg["offset"])

    def _server_push(self, msg: dict[str, Any], state: _ServerSub) -> None:
        channel, kind = msg["channel"], msg["push"]
        if kind == "pub":
            self._server_publication(channel, state, msg)
        elif kind in ("join", "leave"):
            info = ClientInfo.parse(msg.get("client") or {})
            self._server_events.put_nowait(
                Join(channel, info) if kind == "join" else Leave(channel, info))
        elif kind == "unsubscribe":
            del self._server_subs[channel]
            self._server_events.put_nowait(Unsubscribed(channel))

    def _server_publication(self, channel: str, state: _ServerSub, p: dict[str, Any]) -> None:
        offset = p.get("offset")
        if isinstance(offset, int):
            if offset <= state.position.offset:
                return  # seen already
            state.position = Position(state.position.epoch, offset)
        self._server_events.put_nowait(Publication.parse(channel, state.position.epoch, p))

    # Subscriptions.

    def subscribe(self, channel: str, *, since: Position | None = None, presence: bool = False,
                  token: str | None = None,
                  get_token: SubscriptionTokenGetter | None = None) -> Subscription:
        """Subscribe to ``channel``, now if connected, else once the client is;
        the subscription lasts across reconnections until its ``unsubscribe()``.

        ``since`` recovers from a saved position on the first subscription;
        ``presence`` asks for the presence list with each subscribe (in the
        ``SubscribedContext``); ``token`` is a subscription token (needed in a
        private namespace), or ``get_token(channel)`` an async function giving
        one, called before subscribing and once more after the hub refused one.
        Raise ``ValueError`` when this client already has a subscription to it.
        """
        _check_channel(channel)
        if channel in self._subs:
            raise ValueError(f"already subscribed to {channel}: use client.subscription(), "
                             "or unsubscribe() it first")
        sub = Subscription(self, channel, since=since, presence=presence, token=token,
                           get_token=get_token)
        self._subs[channel] = sub
        if self._state == "connected":
            self._send_subscribe(sub)
        return sub

    def subscription(self, channel: str) -> Subscription | None:
        """This client's subscription to ``channel``, if it has one."""
        return self._subs.get(channel)

    def _forget(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]

    async def _unsubscribe(self, sub: Subscription) -> None:
        ws = self._ws
        if self._state != "connected" or ws is None:
            return
        try:
            await self._call(ws, "unsubscribe", {"channel": sub.channel}, self.timeout)
        except HubClientError:
            pass  # gone with the connection, or the hub's trouble: not subscribed either way

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_subscribe(self, sub: Subscription) -> None:
        sub.cancel_retry()
        ws = self._ws
        if ws is None:
            return
        if sub.token is None and sub.get_token is not None and not sub.fetched:
            sub.attempt += 1
            self._spawn(self._fetch_subscription_token(sub, sub.attempt))
            return
        body: dict[str, Any] = {"channel": sub.channel}
        if sub.token is not None:
            body["token"] = sub.token
        since = sub.since()
        if since is not None:
            body["since"] = since.wire()
        if sub.presence_wanted:
            body["presence"] = True
        sub.attempt += 1
        attempt, with_since = sub.attempt, since is not None
        loop = asyncio.get_running_loop()

        def on_reply(result: dict[str, Any] | None, error: HubClientError | None) -> None:
            timer.cancel()
            self._subscribe_reply(sub, attempt, result, error, with_since)

        def on_timeout() -> None:
            if self._inflight.pop(rid, None) is not None:
                on_reply(None, RequestTimeout(f"no reply to subscribe in {self.timeout} s"))

        timer = loop.call_later(self.timeout, on_timeout)
        try:
            rid = self._send(ws, "subscribe", body, on_reply)
        except ConnectionLost:
            timer.cancel()  # subscribes again on the next connection

    async def _fetch_subscription_token(self, sub: Subscription, attempt: int) -> None:
        assert sub.get_token is not None
        try:
            token = await sub.get_token(sub.channel)
        except Exception as exc:
            if sub.attempt == attempt and sub.state == "subscribing":
                logger.warning("get_token(%r) failed: %r; trying again", sub.channel, exc)
                self._retry_subscribe(sub)
            return
        if sub.attempt != attempt or sub.state != "subscribing":
            return
        sub.token = token or None
        sub.fetched = True
        if self._state == "connected":
            self._send_subscribe(sub)

    def _retry_subscribe(self, sub: Subscription) -> None:
        delay = backoff(sub.failures, self.min_delay, self.max_delay)
        sub.failures += 1

        def again() -> None:
            sub.retry = None
            if self._state == "connected" and sub.state == "subscribing":
                self._send_subscribe(sub)

        sub.retry = asyncio.get_running_loop().call_later(delay, again)

    def _subscribe_reply(self, sub: Subscription, attempt: int, result: dict[str, Any] | None,
                         error: HubClientError | None, with_since: bool) -> None:
        if sub.attempt != attempt or sub.state != "subscribing":
            return  # stale: unsubscribed, or subscribing again
        if result is not None:
            sub.subscribed(result, with_since)
        elif isinstance(error, RequestTimeout):
            # Replies come in order: a stuck subscribe means a stuck connection.
            logger.warning("%s; reconnecting", error)
            if self._ws is not None:
                self._drop(self._ws, str(error))
        elif not isinstance(error, HubError):
            return  # the connection is gone: subscribes again on the next one
        elif error.code >= 500:
            logger.warning("subscribe to %s failed: %s; trying again", sub.channel, error)
            self._retry_subscribe(sub)
        elif error.code == 401 and sub.get_token is not None and not sub.refreshed:
            # The subscription token expired, most likely: get a new one, once.
            sub.refreshed = True
            sub.token = None
            sub.fetched = False
            self._send_subscribe(sub)
        else:
            sub.refused(error)  # 400, 401, 403, 404, 409, 429: asking again won't help


def _hub_error(error: dict[str, Any]) -> HubError:
    code = error.get("code")
    return HubError(code if isinstance(code, int) else 500,
                    str(error.get("message", "the hub failed")))
