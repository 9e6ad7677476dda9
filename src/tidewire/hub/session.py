"""One client on ``/ws``: its requests, its subscriptions, its pushes.

Requests are handled one at a time, in order, so replies come in the order of
the requests. Everything is written without waiting (``broadcast`` to one
connection): a client whose buffer is full is a slow consumer whether the bytes
were replies or pushes. After each request the session waits for the buffer to
drain, so that a client that sends without reading is paced by TCP.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from .. import asyncio as tw
from ..exceptions import ConnectionClosed
from .auth import InvalidToken, channel_allowed, check_api_key, check_token, encode_info
from .broker import BrokerUnavailable, ClientInfo, History, Join, Leave, Publication
from .config import Namespace
from .wire import (
    Close,
    Code,
    Request,
    RequestError,
    dumps,
    error_reply,
    parse_request,
    position_json,
    presence_push,
    publication_push,
    publications_json,
    reply,
)

if TYPE_CHECKING:
    from .app import Hub

__all__ = ["Session"]

logger = logging.getLogger("tidewire.hub")

Event = Publication | Join | Leave


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
        self.pending: dict[str, list[tuple[str, Event]]] = {}  # events held while subscribing
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
                metrics.messages_in += 1
                metrics.bytes_in += len(message.encode() if isinstance(message, str) else message)
                await self._handle(message)
                await self.ws.drain()
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == Close.SLOW_CONSUMER:
                metrics.slow_consumers += 1
                logger.info("closed slow consumer %s (%s)", self.client.client,
                            self.ws.remote_address)
        finally:
            if self._timer is not None:
                self._timer.cancel()
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

    async def _handle(self, message: str | bytes) -> None:
        rid: Any = None
        what = "a request"
        try:
            if isinstance(message, bytes):
                raise RequestError(Code.BAD_REQUEST, "binary frames aren't part of the protocol; "
                                   "send JSON in text frames")
            request = parse_request(message)
            rid = request.id
            what = f"{request.op[:40]!r} request"
            handler = _HANDLERS.get(request.op)
            if handler is None:
                raise RequestError(
                    Code.BAD_REQUEST,
                    f"unknown op {request.op[:40]!r}; known: {', '.join(_HANDLERS)}",
                )
            if not self.connected and request.op != "connect":
                raise RequestError(Code.UNAUTHORIZED, "not connected: send connect first")
            result = await handler(self, request)
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
            self._failed(what, exc)
            self.write(error_reply(rid, Code.INTERNAL, "internal error; see the hub's log"))

    async def _connect(self, request: Request) -> str | None:
        if self.connected:
            raise RequestError(Code.CONFLICT, "already connected")
        body = request.body
        config = self.hub.config
        user, expires, info = "", None, None
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
        if token is not None:
            if not isinstance(token, str):
                raise RequestError(Code.BAD_REQUEST, "token must be a string")
            try:
                creds = check_token(token, config.token_secret)
            except InvalidToken as exc:
                self._refuse(request, str(exc))
            user, expires, self.allowed = creds.user, creds.expires, creds.channels
            info = creds.info if creds.info is not None else info
        elif api_key is not None:
            if not isinstance(api_key, str) or not check_api_key(api_key, config.api_key):
                self._refuse(request, "invalid api_key")
            self.backend = True
        self.client = ClientInfo(self.client.client, user, info)
        self.connected = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if expires is not None:
            delay = max(0.0, expires - time.time())
            self._timer = asyncio.get_running_loop().call_later(
                delay, self._close_soon, Close.TOKEN_EXPIRED, "token expired"
            )
        self.hub.register(self)
        result = (
            f'{{"client":{dumps(self.client.client)},"user":{dumps(user)},'
            f'"version":{dumps(self.hub.version)},"heartbeat":{self.hub.config.heartbeat:g}'
        )
        if expires is not None:
            result += f',"expires":{expires}'
        return result + "}"

    def _refuse(self, request: Request, message: str) -> NoReturn:
        """A bad credential: say why, then close with 4500 (don't reconnect)."""
        self.write(error_reply(request.id, Code.UNAUTHORIZED, message))
        self._close_soon(Close.INVALID_TOKEN, message[:120])
        raise _Answered

    def _namespace(self, channel: str, *, subscribe: bool) -> Namespace:
        ns = self.hub.config.namespace(channel)
        if ns is None:
            raise RequestError(Code.NOT_FOUND, f"no namespace for channel {channel}")
        if subscribe and not self.backend:
            if not channel_allowed(self.allowed, channel):
                raise RequestError(Code.FORBIDDEN, f"the token doesn't grant {channel}")
            if not self.client.user and not ns.anonymous:
                raise RequestError(
                    Code.FORBIDDEN, f"anonymous clients may not subscribe to {channel}"
                )
        return ns

    async def _subscribe(self, request: Request) -> str | None:
        channel = request.channel()
        ns = self._namespace(channel, subscribe=True)
        since = request.since()
        want_presence = request.body.get("presence") is True
        if want_presence and not ns.presence:
            raise RequestError(Code.FORBIDDEN, f"presence is off for {channel}")
        if channel in self.channels:
            raise RequestError(Code.CONFLICT, f"already subscribed to {channel}")
        if len(self.channels) >= self.hub.config.max_subscriptions:
            raise RequestError(
                Code.TOO_MANY, f"at most {self.hub.config.max_subscriptions} subscriptions"
            )
        self.channels.add(channel)
        self.pending[channel] = []
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
        result = f'{{"channel":{dumps(channel)},{position_json(history.top)}'
        if since is not None:
            result += (
                f',"recovered":{"true" if history.complete else "false"}'
                f',"publications":{publications_json(history.publications)}'
            )
        if clients is not None:
            result += f',"presence":[{",".join(c.to_json() for c in clients)}]'
        # The reply, then what came meanwhile, then the live stream: all
        # written in this turn of the loop, so nothing can come between.
        self.write(reply(request.id, result + "}"))
        last = history.publications[-1].offset if history.publications else history.top.offset
        for text, event in self.pending.pop(channel, ()):
            if not isinstance(event, Publication) or event.offset > last:
                self.write(text)
        self.hub.subscribed(channel, self)
        return None  # replied already

    async def _unsubscribe_request(self, request: Request) -> str:
        channel = request.channel()
        await self._unsubscribe(channel)
        return "{}"

    async def _unsubscribe(self, channel: str) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
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

    async def _publish(self, request: Request) -> str:
        channel = request.channel()
        ns = self._namespace(channel, subscribe=False)
        if not self.backend:
            if not ns.publish:
                raise RequestError(Code.FORBIDDEN, f"clients may not publish to {channel}")
            self._namespace(channel, subscribe=True)  # must be allowed to read it, too
        if "data" not in request.body:
            raise RequestError(Code.BAD_REQUEST, "publish needs data")
        data = dumps(request.body["data"])
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
    "history": Session._history,
    "ping": Session._ping,
}


def push_for(channel: str, event: Event) -> str:
    """The JSON push of ``event``, made once for every subscriber."""
    if isinstance(event, Publication):
        return publication_push(channel, event)
    return presence_push("join" if isinstance(event, Join) else "leave", channel, event.client)
