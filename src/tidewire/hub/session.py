"""One client on ``/ws``: its requests, its subscriptions, its pushes.

Requests are handled one at a time, in order, so replies come in the order of
the requests. Everything is written without waiting (``broadcast`` to one
connection): a client whose buffer is full is a slow consumer whether the bytes
were replies or pushes. After each request the session waits for the buffer to
drain, so that a client that sends without reading is paced by TCP.

Server-side subscriptions (made by the HTTP API on any node) run as tasks of
the session; one lock keeps them and the client's requests from interleaving,
so that each subscription begins and ends whole.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from .. import asyncio as tw
from ..exceptions import ConnectionClosed
from .answers import Answer, ConnectResult, DataResult, Disconnect, RefreshResult, Refusal
from .auth import (
    InvalidToken,
    channel_allowed,
    check_api_key,
    check_subscription_token,
    check_token,
    encode_info,
)
from .broker import (
    BrokerUnavailable,
    ClientInfo,
    History,
    Join,
    Leave,
    Position,
    Publication,
    ToPublish,
)
from .config import Namespace
from .proxy import UNAVAILABLE, BackendUnavailable, headers_of
from .wire import (
    Close,
    Code,
    Request,
    RequestError,
    channel_name,
    dumps,
    error_reply,
    number,
    parse_request,
    position_from,
    position_json,
    presence_push,
    publication_push,
    publications_json,
    refresh_push,
    reply,
    subscribe_push,
    subscribed_json,
    unsubscribe_push,
)

if TYPE_CHECKING:
    from .app import Hub

__all__ = ["Session"]

logger = logging.getLogger("tidewire.hub")

Event = Publication | Join | Leave
Held = list[tuple[str, Event]]

TRANSPORT = "websocket"  # the proxy requests' `transport`
REFRESH_BEFORE = 10.0  # seconds before expiry to ask the refresh proxy, at most
REFRESH_RETRY, REFRESH_RETRY_MAX = 1.0, 30.0  # seconds between tries after a failure


class Session:
    """The hub's side of one client connection."""

    def __init__(self, hub: Hub, ws: tw.ServerConnection) -> None:
        self.hub = hub
        self.ws = ws
        self.client = ClientInfo(secrets.token_hex(8), "")
        self.connected = False
        self.backend = False
        self.allowed: tuple[str, ...] | None = None  # from the token
        self.channels: set[str] = set()  # subscribed, including in progress
        self.pending: dict[str, Held] = {}  # events held while subscribing
        self.server_side: set[str] = set()  # subscribed by the server, not by a request
        self.expires: float | None = None  # Unix time when the connection expires
        self._expired = "token expired"  # the close reason then
        self._lock = asyncio.Lock()  # one request or server-side subscription at a time
        self._tasks: set[asyncio.Task[None]] = set()  # server-side subscriptions, refresh
        self._timer: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None  # held: the loop keeps weak refs

    # The connection's life.

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(
            self.hub.config.connect_timeout,
            self._close_soon, Close.CONNECT_TIMEOUT, "no connect request in time",
        )
        metrics = self.hub.metrics
        try:
            async for message in self.ws:
                # With what came along (at most the queue's high-water mark),
                # so that publishes that came together go to the broker together.
                queued = self.ws.messages.take_all()
                async with self._lock:
                    await self._serve([message, *queued] if queued else [message])
                await self.ws.drain()
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == Close.SLOW_CONSUMER:
                metrics.slow_consumers += 1
                logger.info("closed slow consumer %s (%s)", self.client.client,
                            self.ws.remote_address)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await self._leave_all()
            except Exception as exc:
                self._failed("leaving its channels", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        """Log an internal error as one line naming the client (the request
        isn't logged: it may hold a token or the API key); its traceback
        only at DEBUG."""
        logger.error("client %s: %s failed: %.300r", self.client.client, what, exc)
        logger.debug("the traceback of that failure", exc_info=exc)

    def _close_soon(self, code: int, reason: str) -> None:
        self._timer = None
        if self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(self.ws.close(code, reason))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except ConnectionClosed:
            pass
        except Exception as exc:
            self._failed("a background task", exc)

    async def _leave_all(self) -> None:
        for channel in list(self.channels):
            await self._unsubscribe(channel)

    # Writing.

    def write(self, text: str) -> None:
        """Send now, without waiting; a slow consumer is closed instead."""
        if tw.broadcast((self.ws,), text, slow="close", slow_code=Close.SLOW_CONSUMER):
            self.hub.metrics.messages_out += 1
            self.hub.metrics.bytes_out += len(text.encode())

    # Requests.

    async def _serve(self, messages: list[str | bytes]) -> None:
        """Answer ``messages``, in order. Consecutive publishes that can go
        straight to the broker wait in ``batch`` and go to it in one call (one
        round trip on Redis); a reply already known, an error, waits there
        too, so that replies keep the order of the requests."""
        metrics = self.hub.metrics
        batch: list[_Publish | str] = []
        for message in messages:
            metrics.messages_in += 1
            metrics.bytes_in += len(message.encode() if isinstance(message, str) else message)
            request = self._request(message)
            if isinstance(request, str):
                batch.append(request)
                continue
            if request.op == "publish":
                item = self._publish_now(request)
                if item is not None:
                    batch.append(item)
                    continue
            if batch:
                await self._publish_batch(batch)
                batch = []
            await self._handle(request)
        if batch:
            await self._publish_batch(batch)

    def _request(self, message: str | bytes) -> Request | str:
        """The request, or the error reply to a message that isn't one."""
        try:
            if isinstance(message, bytes):
                raise RequestError(Code.BAD_REQUEST, "binary frames aren't part of the protocol; "
                                   "send JSON in text frames")
            request = parse_request(message)
        except RequestError as exc:
            return error_reply(exc.request_id, exc.code, exc.message)
        except Exception as exc:
            self._failed("a request", exc)
            return error_reply(None, Code.INTERNAL, "internal error; see the hub's log")
        if request.op not in _HANDLERS:
            return error_reply(request.id, Code.BAD_REQUEST, f"unknown op {request.op[:40]!r}; "
                               f"known: {', '.join(_HANDLERS)}")
        if not self.connected and request.op != "connect":
            return error_reply(request.id, Code.UNAUTHORIZED, "not connected: send connect first")
        return request

    async def _handle(self, request: Request) -> None:
        rid = request.id
        try:
            result = await _HANDLERS[request.op](self, request)
            if result is not None:
                self.write(reply(rid, result))
        except _Answered:
            return
        except RequestError as exc:
            self.write(error_reply(rid if rid is not None else exc.request_id, exc.code,
                                   exc.message))
        except BrokerUnavailable as exc:
            self.write(error_reply(rid, Code.UNAVAILABLE, f"broker unavailable: {exc}"))
        except ConnectionClosed:
            raise
        except Exception as exc:
            self._failed(f"{request.op[:40]!r} request", exc)
            self.write(error_reply(rid, Code.INTERNAL, "internal error; see the hub's log"))

    def _publish_now(self, request: Request) -> _Publish | str | None:
        """A publish for the batch, or its error reply; ``None`` when the
        publish proxy must be asked first (``_handle`` does it)."""
        try:
            channel, ns, data = self._publish_checked(request)
        except RequestError as exc:
            return error_reply(request.id, exc.code, exc.message)
        except Exception as exc:
            self._failed("'publish' request", exc)
            return error_reply(request.id, Code.INTERNAL, "internal error; see the hub's log")
        if ns.publish_proxy and not self.backend:
            return None
        sender = None if self.backend else self.client
        return _Publish(request.id, ToPublish(channel, data, sender, ns.history_size,
                                              ns.history_ttl))

    async def _publish_batch(self, batch: list[_Publish | str]) -> None:
        """Publish the batch's publishes at once, then write every reply in order."""
        todo = [item.publication for item in batch if isinstance(item, _Publish)]
        results: list[Position | BrokerUnavailable | None] = []  # None: an internal error
        if todo:
            try:
                results += await self.hub.publish_many(todo)
            except Exception as exc:
                self._failed("'publish' request", exc)
                results = [None] * len(todo)
        answers = iter(results)
        for item in batch:
            if isinstance(item, str):
                self.write(item)
                continue
            result = next(answers)
            if isinstance(result, Position):
                self.write(reply(item.id, "{" + position_json(result) + "}"))
            elif isinstance(result, BrokerUnavailable):
                self.write(error_reply(item.id, Code.UNAVAILABLE, f"broker unavailable: {result}"))
            else:
                self.write(error_reply(item.id, Code.INTERNAL, "internal error; see the hub's log"))

    async def _connect(self, request: Request) -> str | None:
        if self.connected:
            raise RequestError(Code.CONFLICT, "already connected")
        body = request.body
        config = self.hub.config
        user, info, data = "", None, None
        expires: float | None = None
        channels: tuple[str, ...] = ()
        token, api_key = body.get("token"), body.get("api_key")
        if token is not None and api_key is not None:
            raise RequestError(Code.BAD_REQUEST, "give a token or an api_key, not both")
        raw_info = body.get("info")
        if raw_info is not None:
            if not isinstance(raw_info, dict):
                raise RequestError(Code.BAD_REQUEST, "info must be an object")
            try:
                info = encode_info(raw_info)
            except ValueError as exc:
                raise RequestError(Code.BAD_REQUEST, str(exc)) from None
        positions = _positions(body.get("server_subs"), config.max_subscriptions)
        if token is not None:
            if not isinstance(token, str):
                raise RequestError(Code.BAD_REQUEST, "token must be a string")
            try:
                creds = check_token(token, config.token_secret)
                channels = _known_channels(creds.subscribe, self.hub)
            except InvalidToken as exc:
                self._refuse(request, str(exc))
            user, expires, self.allowed = creds.user, creds.expires, creds.channels
            info = creds.info if creds.info is not None else info
        elif api_key is not None:
            if not isinstance(api_key, str) or not check_api_key(api_key, config.api_key):
                self._refuse(request, "invalid api_key")
            self.backend = True
        elif self.hub.proxy.has("connect"):
            asked: dict[str, Any] = {"client": self.client.client, "transport": TRANSPORT}
            if "data" in body:
                asked["data"] = body["data"]
            answer = await self._ask("connect", asked)
            assert isinstance(answer, ConnectResult)
            user, expires, data, channels = (
                answer.user, answer.expire_at, answer.data, answer.channels
            )
            info = answer.info if answer.info is not None else info
            self._expired = "connection expired"
        self.client = ClientInfo(self.client.client, user, info)
        # Server-side subscriptions are made before the reply, so that a
        # failure fails the connect, and pushed right after it.
        joined: list[tuple[str, Held, History, bool]] = []
        try:
            for channel in channels:
                since = positions.get(channel)
                held, history, _ = await self._join(channel, self.hub.namespace(channel), since)
                joined.append((channel, held, history, since is not None))
        except BaseException:
            for channel, *_ in joined:
                await self._unsubscribe(channel)
            self.client = ClientInfo(self.client.client, "")
            raise
        self.connected = True
        self.expires = expires
        self._arm_expiry()
        self.hub.register(self)
        result = (
            f'{{"client":{dumps(self.client.client)},"user":{dumps(user)},'
            f'"version":{dumps(self.hub.version)},"heartbeat":{self.hub.config.heartbeat:g}'
        )
        if expires is not None:
            result += f',"expires":{number(expires)}'
        if data is not None:
            result += f',"data":{data}'
        self.write(reply(request.id, result + "}"))
        for channel, held, history, recovering in joined:
            self.server_side.add(channel)
            self._go_live(channel, held, history,
                          subscribe_push(subscribed_json(channel, history, recovering)))
        for channel in positions:
            if channel not in self.channels:
                self.write(unsubscribe_push(channel))  # not granted again
        return None  # replied already

    def _arm_expiry(self) -> None:
        """Close the connection at its expiry, or ask the refresh proxy before."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.expires is None:
            return
        left = self.expires - time.time()
        if left <= 0:
            self._close_soon(Close.TOKEN_EXPIRED, self._expired)
        elif self.hub.proxy.has("refresh"):
            self._timer = asyncio.get_running_loop().call_later(
                left - min(REFRESH_BEFORE, left / 2), self._refresh_soon
            )
        else:
            self._timer = asyncio.get_running_loop().call_later(
                left, self._close_soon, Close.TOKEN_EXPIRED, self._expired
            )

    def _refresh_soon(self) -> None:
        self._timer = None
        self._spawn(self._refresh())

    async def _refresh(self) -> None:
        """Ask the refresh proxy; after a failure, again after 1 s, 2 s, 4 s...
        while that is before the expiry; else close at the expiry."""
        delay = REFRESH_RETRY
        while True:
            try:
                answer = await self.hub.proxy.call("refresh", self._asked(), self._headers())
            except BackendUnavailable:
                if self.expires is None or time.time() + delay >= self.expires:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, REFRESH_RETRY_MAX)
                continue
            if isinstance(answer, Disconnect):
                self._close_soon(answer.code, answer.reason)
                return
            if isinstance(answer, RefreshResult):
                self.expires = answer.expire_at
                if answer.info is not None:
                    self.client = ClientInfo(self.client.client, self.client.user, answer.info)
                self.write(refresh_push(self.expires))
                self._arm_expiry()
                return
            break  # refused: the connection ends at its expiry
        if self.expires is not None:
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, self.expires - time.time()),
                self._close_soon, Close.TOKEN_EXPIRED, self._expired,
            )

    # The backend proxy.

    def _headers(self) -> dict[str, str]:
        request = self.ws.request
        return headers_of(None if request is None else request.headers,
                          self.hub.config.proxy.headers)

    def _asked(self, **fields: Any) -> dict[str, Any]:
        """The body of a proxy request about this client."""
        return {"client": self.client.client, "user": self.client.user, "transport": TRANSPORT,
                **fields}

    async def _ask(self, event: str, body: dict[str, Any]) -> Answer:
        """The backend's result for ``event``; its error becomes this
        request's error reply, its disconnect closes the connection."""
        try:
            answer = await self.hub.proxy.call(event, body, self._headers())
        except BackendUnavailable:
            raise RequestError(Code.UNAVAILABLE, UNAVAILABLE) from None
        if isinstance(answer, Refusal):
            raise RequestError(answer.code, answer.message)
        if isinstance(answer, Disconnect):
            self._close_soon(answer.code, answer.reason)
            raise _Answered
        return answer

    def _refuse(self, request: Request, message: str) -> NoReturn:
        """A bad credential: say why, then close with 4500 (don't reconnect)."""
        self.write(error_reply(request.id, Code.UNAUTHORIZED, message))
        # A close reason is at most 123 bytes: cut by bytes, not characters.
        self._close_soon(Close.INVALID_TOKEN, message.encode()[:123].decode(errors="ignore"))
        raise _Answered

    def _namespace(self, channel: str, *, subscribe: bool) -> Namespace:
        ns = self.hub.config.namespace(channel)
        if ns is None:
            raise RequestError(Code.NOT_FOUND, f"no namespace for channel {channel}")
        if subscribe and not self.backend and channel not in self.channels:
            if ns.private:
                raise RequestError(
                    Code.FORBIDDEN, f"{channel} is private: subscribing needs a subscription token"
                )
            if not channel_allowed(self.allowed, channel):
                raise RequestError(Code.FORBIDDEN, f"the token doesn't grant {channel}")
            if not self.client.user and not ns.anonymous:
                raise RequestError(
                    Code.FORBIDDEN, f"anonymous clients may not subscribe to {channel}"
                )
        return ns

    async def _subscribe(self, request: Request) -> str | None:
        channel = request.channel()
        token = request.body.get("token")
        if token is not None:
            ns = self._namespace(channel, subscribe=False)
            if not isinstance(token, str):
                raise RequestError(Code.BAD_REQUEST, "token must be a string")
            try:
                check_subscription_token(
                    token, self.hub.config.token_secret, self.client.user, channel
                )
            except InvalidToken as exc:
                raise RequestError(Code.UNAUTHORIZED, str(exc)) from None
        else:
            ns = self._namespace(channel, subscribe=True)
        since = request.since()
        want_presence = request.body.get("presence") is True
        if want_presence and not ns.presence:
            raise RequestError(Code.FORBIDDEN, f"presence is off for {channel}")
        if channel in self.channels:
            by = " (server-side)" if channel in self.server_side else ""
            raise RequestError(Code.CONFLICT, f"already subscribed to {channel}{by}")
        if len(self.channels) >= self.hub.config.max_subscriptions:
            raise RequestError(
                Code.TOO_MANY, f"at most {self.hub.config.max_subscriptions} subscriptions"
            )
        if ns.subscribe_proxy and token is None and not self.backend:
            await self._ask("subscribe", self._asked(channel=channel))
        held, history, clients = await self._join(channel, ns, since, want_presence)
        self._go_live(channel, held, history, reply(
            request.id, subscribed_json(channel, history, since is not None, clients)
        ))
        return None  # replied already

    async def _join(
        self, channel: str, ns: Namespace, since: Position | None, want_presence: bool = False
    ) -> tuple[Held, History, list[ClientInfo] | None]:
        """Become a subscriber of ``channel``, its events held until
        ``_go_live``: listen, read the history ``since``, enter presence."""
        self.channels.add(channel)
        held: Held = []
        self.pending[channel] = held
        try:
            await self.hub.add_subscriber(channel, self)
            history = await self.hub.broker.history(
                channel, since=since, limit=None if since is not None else 0
            )
            await self.hub.broker.presence_add(channel, self.client, notify=ns.join_leave)
            clients = await self.hub.broker.presence(channel) if want_presence else None
        except BaseException:
            self.pending.pop(channel, None)
            await self._unsubscribe(channel)
            raise
        return held, history, clients

    def _go_live(self, channel: str, held: Held, history: History, first: str) -> None:
        """Write ``first`` (the reply or push that begins the subscription),
        then what came meanwhile, then join the live stream: all in this turn
        of the loop, so that nothing can come between."""
        self.write(first)
        last = history.publications[-1].offset if history.publications else history.top.offset
        self.pending.pop(channel, None)
        for text, event in held:
            if not isinstance(event, Publication) or event.offset > last:
                self.write(text)
        self.hub.subscribed(channel, self)

    # Server-side subscriptions, from the HTTP API of any node.

    def server_subscribe(self, channel: str) -> None:
        if self.connected:
            self._spawn(self._server_subscribe(channel))

    def server_unsubscribe(self, channel: str) -> None:
        if self.connected:
            self._spawn(self._server_unsubscribe(channel))

    async def _server_subscribe(self, channel: str) -> None:
        async with self._lock:
            ns = self.hub.config.namespace(channel)
            if channel in self.channels or ns is None:
                return
            try:
                held, history, _ = await self._join(channel, ns, None)
            except BrokerUnavailable as exc:
                logger.warning("server-side subscription of %s to %s failed: %s",
                               self.client.client, channel, exc)
                return
            self.server_side.add(channel)
            self._go_live(channel, held, history,
                          subscribe_push(subscribed_json(channel, history, False)))

    async def _server_unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel in self.channels:
                await self._unsubscribe(channel)
                self.write(unsubscribe_push(channel))

    async def _unsubscribe_request(self, request: Request) -> str:
        channel = request.channel()
        await self._unsubscribe(channel)
        return "{}"

    async def _unsubscribe(self, channel: str) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        self.server_side.discard(channel)
        self.pending.pop(channel, None)
        ns = self.hub.config.namespace(channel)
        try:
            await self.hub.broker.presence_remove(
                channel, self.client, notify=ns is not None and ns.join_leave
            )
        except BrokerUnavailable:
            pass  # presence expires by itself where the broker is shared
        finally:
            await self.hub.remove_subscriber(channel, self)

    def _publish_checked(self, request: Request) -> tuple[str, Namespace, str]:
        """A publish request's channel, namespace and data (JSON text), once
        this client may publish there."""
        channel = request.channel()
        ns = self._namespace(channel, subscribe=False)
        if not self.backend:
            if not ns.publish:
                raise RequestError(Code.FORBIDDEN, f"clients may not publish to {channel}")
            self._namespace(channel, subscribe=True)  # must be allowed to read it, too
        if "data" not in request.body:
            raise RequestError(Code.BAD_REQUEST, "publish needs data")
        return channel, ns, dumps(request.body["data"])

    async def _publish(self, request: Request) -> str:
        """A publish one at a time: the one the publish proxy is asked about
        (``_publish_now`` batches the others)."""
        channel, ns, data = self._publish_checked(request)
        if ns.publish_proxy and not self.backend:
            answer = await self._ask(
                "publish", self._asked(channel=channel, data=request.body["data"])
            )
            assert isinstance(answer, DataResult)
            if answer.data is not None:
                data = answer.data  # the backend's replacement
        sender = None if self.backend else self.client
        pos = await self.hub.publish(channel, data, sender=sender)
        return "{" + position_json(pos) + "}"

    async def _presence(self, request: Request) -> str:
        channel = request.channel()
        ns = self._namespace(channel, subscribe=True)
        if not ns.presence and not self.backend:
            raise RequestError(Code.FORBIDDEN, f"presence is off for {channel}")
        clients = await self.hub.broker.presence(channel)
        return f'{{"clients":[{",".join(c.to_json() for c in clients)}]}}'

    async def _presence_stats(self, request: Request) -> str:
        channel = request.channel()
        ns = self._namespace(channel, subscribe=True)
        if not ns.presence and not self.backend:
            raise RequestError(Code.FORBIDDEN, f"presence is off for {channel}")
        clients, users = await self.hub.presence_stats(channel)
        return f'{{"num_clients":{clients},"num_users":{users}}}'

    async def _rpc(self, request: Request) -> str:
        method = request.body.get("method")
        if not isinstance(method, str) or not method or len(method) > 255:
            raise RequestError(Code.BAD_REQUEST, "method must be a string of 1 to 255 characters")
        if not self.hub.proxy.has("rpc"):
            raise RequestError(Code.NOT_IMPLEMENTED, "rpc is off: the hub has no [proxy] rpc URL")
        answer = await self._ask(
            "rpc", self._asked(method=method, data=request.body.get("data"))
        )
        assert isinstance(answer, DataResult)
        return f'{{"data":{answer.data if answer.data is not None else "null"}}}'

    async def _history(self, request: Request) -> str:
        channel = request.channel()
        ns = self._namespace(channel, subscribe=True)
        history = await self.hub.history(channel, ns, request.body.get("limit"), request.since())
        return _history_json(history, request.since() is not None)

    async def _ping(self, request: Request) -> str:
        return "{}"

    # Delivery, called by the hub for channels in `pending`.

    def hold(self, channel: str, text: str, event: Event) -> None:
        held = self.pending.get(channel)
        if held is not None:
            held.append((text, event))

    def __repr__(self) -> str:
        return f"<Session {self.client.client} user={self.client.user!r}>"


class _Answered(Exception):
    """The handler wrote its own reply."""


@dataclass(slots=True)
class _Publish:
    """A publish request of a batch: its id and what it publishes."""

    id: Any
    publication: ToPublish


def _positions(value: Any, most: int) -> dict[str, Position]:
    """The connect request's ``server_subs``: channel -> last position seen."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > most:
        raise RequestError(
            Code.BAD_REQUEST, f"server_subs must be an object of at most {most} channels"
        )
    out = {}
    for channel, position in value.items():
        name = channel_name(channel)
        where = f"server_subs[{name!r}]"
        if position is None:
            raise RequestError(Code.BAD_REQUEST, f"{where} must be a position")
        pos = position_from(position, where)
        assert pos is not None
        out[name] = pos
    return out


def _known_channels(names: tuple[str, ...], hub: Hub) -> tuple[str, ...]:
    for name in names:
        try:
            channel_name(name)
        except RequestError as exc:
            raise InvalidToken(f"invalid token: channels_subscribe: {exc.message}") from None
        if hub.config.namespace(name) is None:
            raise InvalidToken(f"invalid token: channels_subscribe: no namespace for {name}")
    return names


def _history_json(history: History, since: bool) -> str:
    pubs = publications_json(history.publications)
    text = f'{{{position_json(history.top)},"publications":{pubs}'
    if since:
        text += f',"recovered":{"true" if history.complete else "false"}'
    return text + "}"


_HANDLERS: dict[str, Callable[[Session, Request], Awaitable[str | None]]] = {
    "connect": Session._connect,
    "subscribe": Session._subscribe,
    "unsubscribe": Session._unsubscribe_request,
    "publish": Session._publish,
    "presence": Session._presence,
    "presence_stats": Session._presence_stats,
    "history": Session._history,
    "rpc": Session._rpc,
    "ping": Session._ping,
}


def push_for(channel: str, event: Event) -> str:
    """The JSON push of ``event``, made once for every subscriber."""
    if isinstance(event, Publication):
        return publication_push(channel, event)
    return presence_push("join" if isinstance(event, Join) else "leave", channel, event.client)
