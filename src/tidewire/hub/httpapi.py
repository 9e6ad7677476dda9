"""The hub's plain HTTP side: the API for backends, health, metrics, static files.

Every request arrives through the library's ``process_request`` hook, body read
already (up to ``max_message_size``). The library keeps the connection for the
next request (HTTP/1.1 keep-alive) and sets the Connection header.
Errors are JSON ``{"error": "..."}`` with the status: 400 for a bad body
(including JSON the hub can't pass on, see ``strictjson``) or query, 401 for a
wrong or missing API key, 404 for an unknown path or channel namespace, 405 for
a wrong method, 503 while the broker is unavailable, 500 for an internal error,
logged as one line naming the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..protocol import Headers, Request, Response
from .auth import check_api_key
from .broker import BrokerUnavailable
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .strictjson import MAX_INTEGER, Refused, check_members, parse
from .wire import (
    RequestError,
    channel_name,
    dumps,
    position_from,
    position_json,
    publications_json,
)

if TYPE_CHECKING:
    from .. import asyncio as tw
    from .app import Hub

__all__ = ["HttpApi", "HttpError"]

logger = logging.getLogger("tidewire.hub.http")

JSON = "application/json"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/demo.css": ("demo.css", "text/css; charset=utf-8"),
    "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/tidewire.js": ("tidewire.js", "text/javascript; charset=utf-8"),
    "/tidewire.d.ts": ("tidewire.d.ts", "text/plain; charset=utf-8"),  # shown, not downloaded
}


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


Route = Callable[["HttpApi", Request, dict[str, list[str]]], Awaitable[Any]]


class HttpApi:
    """Answers every HTTP request that isn't the upgrade on ``/ws``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._static: dict[str, bytes] = {}

    async def handle(self, conn: tw.ServerConnection, request: Request) -> Response:
        path, _, query = request.path.partition("?")
        method = request.method
        self.hub.metrics.http_requests += 1
        try:
            return await self._answer(request, path, method, query)
        except Exception as exc:
            logger.error("connection %s: %s %.100s failed: %.300r", conn.id, method, path, exc)
            logger.debug("the traceback of that failure", exc_info=True)
            return _json(500, {"error": "internal error; see the hub's log"})

    async def _answer(self, request: Request, path: str, method: str, query: str) -> Response:
        try:
            if "upgrade" in (request.headers.get("Connection") or "").lower():
                raise HttpError(404, f"no WebSocket endpoint at {path}; connect to /ws")
            if path in STATIC:
                if method not in ("GET", "HEAD"):
                    raise HttpError(405, f"{method} not allowed", {"Allow": "GET, HEAD"})
                return self._file(path, head=method == "HEAD")
            routes = ROUTES.get(path)
            if routes is None:
                raise HttpError(404, f"nothing at {path}")
            route = routes.get(method)
            if route is None:
                raise HttpError(405, f"{method} not allowed on {path}",
                                {"Allow": ", ".join(routes)})
            if path.startswith("/api/"):
                self._authorize(request)
            result = await route(self, request, parse_qs(query) if query else {})
        except HttpError as exc:
            return _json(exc.status, {"error": exc.message}, exc.headers)
        except RequestError as exc:
            return _json(int(exc.code), {"error": exc.message})
        except BrokerUnavailable as exc:
            return _json(503, {"error": f"broker unavailable: {exc}"})
        if isinstance(result, Response):
            return result
        return _json(200, result)

    def _authorize(self, request: Request) -> None:
        if self.hub.config.api_key is None:
            raise HttpError(401, "the HTTP API is off: start the hub with --api-key")
        scheme, _, key = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not check_api_key(key.strip(), self.hub.config.api_key):
            raise HttpError(401, "missing or wrong API key; send Authorization: Bearer <key>",
                            {"WWW-Authenticate": 'Bearer realm="tidewire"'})

    def _file(self, path: str, *, head: bool) -> Response:
        name, content_type = STATIC[path]
        body = self._static.get(name)
        if body is None:
            body = self._static[name] = (
                resources.files("tidewire.hub").joinpath("static").joinpath(name).read_bytes()
            )
        response = _response(200, body, content_type, {"Cache-Control": "no-cache"})
        if head:
            response.body = b""
        return response

    # Routes.

    async def _healthz(self, request: Request, query: dict[str, list[str]]) -> Response:
        healthy = self.hub.broker.healthy
        body = {"status": "ok" if healthy else "degraded", "broker": self.hub.broker.name,
                "broker_up": healthy, "connections": len(self.hub.sessions)}
        return _json(200, body)

    async def _metrics(self, request: Request, query: dict[str, list[str]]) -> Response:
        return _response(200, self.hub.metrics.render(), METRICS_TYPE)

    async def _publish(self, request: Request, query: dict[str, list[str]]) -> Any:
        body = _body(request)
        channel = channel_name(body.get("channel"))
        data = _data(body)
        pos = await self.hub.publish(channel, data)
        return _raw_json(f'{{"channel":{dumps(channel)},{position_json(pos)}}}')

    async def _broadcast(self, request: Request, query: dict[str, list[str]]) -> Any:
        body = _body(request)
        channels = body.get("channels")
        if not isinstance(channels, list) or not channels:
            raise HttpError(400, "channels must be a non-empty list of channel names")
        names = [channel_name(c) for c in channels]
        for name in names:
            self.hub.namespace(name)  # all or nothing: 404 before publishing any
        data = _data(body)
        results = []
        for name in names:
            pos = await self.hub.publish(name, data)
            results.append({"channel": name, "epoch": pos.epoch, "offset": pos.offset})
        return {"results": results}

    async def _channels(self, request: Request, query: dict[str, list[str]]) -> Any:
        counts = await self.hub.broker.channels()
        return {"channels": [{"channel": c, "subscribers": n} for c, n in sorted(counts.items())]}

    async def _presence(self, request: Request, query: dict[str, list[str]]) -> Any:
        channel = channel_name(_one(query, "channel"))
        self.hub.namespace(channel)
        clients = await self.hub.broker.presence(channel)
        # Spliced, not decoded and encoded again, as /ws does.
        return _raw_json(f'{{"channel":{dumps(channel)},'
                         f'"clients":[{",".join(c.to_json() for c in clients)}]}}')

    async def _history(self, request: Request, query: dict[str, list[str]]) -> Any:
        channel = channel_name(_one(query, "channel"))
        ns = self.hub.namespace(channel)
        limit = _int(query, "limit")
        since = None
        if "epoch" in query or "offset" in query:
            since = position_from({"epoch": _one(query, "epoch"),
                                   "offset": _int(query, "offset")}, "epoch and offset")
        history = await self.hub.history(channel, ns, limit, since)
        # Publications are spliced in as they were encoded when published.
        text = (f'{{"channel":{dumps(channel)},{position_json(history.top)},'
                f'"publications":{publications_json(history.publications)}')
        if since is not None:
            text += f',"recovered":{"true" if history.complete else "false"}'
        return _raw_json(text + "}")

    async def _presence_stats(self, request: Request, query: dict[str, list[str]]) -> Any:
        channel = channel_name(_one(query, "channel"))
        self.hub.namespace(channel)
        clients, users = await self.hub.presence_stats(channel)
        return {"channel": channel, "num_clients": clients, "num_users": users}

    async def _disconnect(self, request: Request, query: dict[str, list[str]]) -> Any:
        user, client = _target(_body(request))
        return {"disconnected": await self.hub.disconnect(user=user, client=client)}

    async def _subscribe(self, request: Request, query: dict[str, list[str]]) -> Any:
        return await self._server_subscription("subscribe", request)

    async def _unsubscribe(self, request: Request, query: dict[str, list[str]]) -> Any:
        return await self._server_subscription("unsubscribe", request)

    async def _server_subscription(self, op: str, request: Request) -> Any:
        body = _body(request)
        user, client = _target(body)
        channel = channel_name(body.get("channel"))
        await self.hub.server_subscription(op, channel, user=user, client=client)
        return {}


ROUTES: dict[str, dict[str, Route]] = {
    "/healthz": {"GET": HttpApi._healthz},
    "/metrics": {"GET": HttpApi._metrics},
    "/api/publish": {"POST": HttpApi._publish},
    "/api/broadcast": {"POST": HttpApi._broadcast},
    "/api/channels": {"GET": HttpApi._channels},
    "/api/presence": {"GET": HttpApi._presence},
    "/api/presence_stats": {"GET": HttpApi._presence_stats},
    "/api/history": {"GET": HttpApi._history},
    "/api/disconnect": {"POST": HttpApi._disconnect},
    "/api/subscribe": {"POST": HttpApi._subscribe},
    "/api/unsubscribe": {"POST": HttpApi._unsubscribe},
}


_PHRASES = {s.value: s.phrase for s in HTTPStatus}  # an enum lookup costs a call per answer


def _response(
    status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    if extra:
        for name, value in extra.items():
            headers.add(name, value)
    return Response(status, _PHRASES[status], headers, body)


def _json(status: int, value: Any, extra: dict[str, str] | None = None) -> Response:
    return _raw_json(dumps(value), status, extra)


def _raw_json(text: str, status: int = 200, extra: dict[str, str] | None = None) -> Response:
    return _response(status, (text + "\n").encode(), JSON, extra)


def _body(request: Request) -> dict[str, Any]:
    content_type = (request.headers.get("Content-Type") or JSON).split(";")[0].strip().lower()
    if content_type != JSON:
        raise HttpError(400, f"send a JSON body (Content-Type: {JSON}), not {content_type}")
    if not request.body:
        raise HttpError(400, "the request has no body; send a JSON object")
    try:
        # Strictly: json.loads would take UTF-16 or UTF-8-encoded surrogates.
        text = request.body.decode()
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"the body isn't UTF-8: {exc}") from None
    try:
        body = parse(text)
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        check_members(body, text)
    except Refused as exc:
        raise HttpError(400, str(exc)) from None
    except ValueError as exc:
        raise HttpError(400, f"the body isn't JSON: {exc}") from None
    return body


def _target(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The ``user`` or the ``client`` a request acts on: exactly one of them."""
    user, client = body.get("user"), body.get("client")
    if (user is None) == (client is None):
        raise HttpError(400, "give exactly one of user or client")
    for value in (user, client):
        if value is not None and not isinstance(value, str):
            raise HttpError(400, "user and client must be strings")
    return user, client


def _data(body: dict[str, Any]) -> str:
    if "data" not in body:
        raise HttpError(400, "missing data: the JSON value to publish")
    return dumps(body["data"])


def _one(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values:
        raise HttpError(400, f"missing query parameter {name}")
    return values[0]


def _int(query: dict[str, list[str]], name: str) -> int | None:
    if name not in query:
        return None
    value = _one(query, name)
    # ASCII digits only: str.isdigit() takes "²", which int() refuses.
    if not (value.isascii() and value.isdigit() and len(value) <= 16
            and int(value) <= MAX_INTEGER):
        raise HttpError(400, f"{name} must be an integer from 0 to {MAX_INTEGER}")
    return int(value)
