"""``Backend`` and ``AsyncBackend``: the hub's HTTP API (docs/hub.md) for your
backend, in threads and in asyncio, with the same methods.

Each keeps one httpx connection pool: publications go over kept-alive
connections, which costs the hub about half the CPU of a new connection each.
Every request is described once, by a function returning a ``_Call`` (the
method, the path, the body or query, and how to read the answer); the two
classes only differ in how they send it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from .errors import BackendError
from .models import ClientInfo, HistoryResult, Position, PresenceStats, Published, presence_list

__all__ = ["Backend", "AsyncBackend"]

T = TypeVar("T")


@dataclass
class _Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[dict[str, Any]], T]
    body: Any = None
    params: dict[str, str | int] = field(default_factory=dict)


def _target(user: str | None, client: str | None) -> dict[str, str]:
    if (user is None) == (client is None):
        raise ValueError("give exactly one of user= and client=")
    return {"user": user} if user is not None else {"client": client}  # type: ignore[dict-item]


def _published(value: dict[str, Any]) -> Published:
    return Published(value["channel"], value["epoch"], value["offset"])


def _nothing(value: dict[str, Any]) -> None:
    return None


def _publish(channel: str, data: Any) -> _Call[Published]:
    return _Call("POST", "/api/publish", _published, {"channel": channel, "data": data})


def _broadcast(channels: Iterable[str], data: Any) -> _Call[list[Published]]:
    return _Call("POST", "/api/broadcast",
                 lambda v: [_published(r) for r in v["results"]],
                 {"channels": list(channels), "data": data})


def _subscribe(channel: str, user: str | None, client: str | None) -> _Call[None]:
    return _Call("POST", "/api/subscribe", _nothing, {**_target(user, client), "channel": channel})


def _unsubscribe(channel: str, user: str | None, client: str | None) -> _Call[None]:
    return _Call("POST", "/api/unsubscribe", _nothing,
                 {**_target(user, client), "channel": channel})


def _disconnect(user: str | None, client: str | None) -> _Call[int]:
    return _Call("POST", "/api/disconnect", lambda v: int(v["disconnected"]),
                 _target(user, client))


def _presence(channel: str) -> _Call[list[ClientInfo]]:
    return _Call("GET", "/api/presence", presence_list, params={"channel": channel})


def _presence_stats(channel: str) -> _Call[PresenceStats]:
    return _Call("GET", "/api/presence_stats",
                 lambda v: PresenceStats(v["num_clients"], v["num_users"]),
                 params={"channel": channel})


def _history(channel: str, limit: int | None, since: Position | None) -> _Call[HistoryResult]:
    params: dict[str, str | int] = {"channel": channel}
    if limit is not None:
        params["limit"] = limit
    if since is not None:
        params.update(epoch=since.epoch, offset=since.offset)
    return _Call("GET", "/api/history", lambda v: HistoryResult.parse(channel, v), params=params)


def _channels() -> _Call[dict[str, int]]:
    return _Call("GET", "/api/channels",
                 lambda v: {c["channel"]: c["subscribers"] for c in v["channels"]})


def _options(url: str, api_key: str, timeout: float) -> dict[str, Any]:
    return {"base_url": url.rstrip("/"), "timeout": timeout,
            "headers": {"Authorization": f"Bearer {api_key}"}}


def _content(call: _Call[Any]) -> dict[str, Any]:
    if call.body is None:
        return {"params": call.params}
    # The hub refuses NaN and infinities: fail here, with Python's message.
    text = json.dumps(call.body, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


def _answer(call: _Call[T], response: httpx.Response) -> T:
    try:
        value = response.json()
    except ValueError:
        value = None
    if response.status_code != 200:
        message = value.get("error") if isinstance(value, dict) else None
        raise BackendError(response.status_code, str(message or response.text[:200]))
    if not isinstance(value, dict):
        raise BackendError(response.status_code, "the hub's answer isn't a JSON object")
    return call.parse(value)


def _unreachable(call: _Call[Any], exc: httpx.HTTPError) -> BackendError:
    return BackendError(None, f"{call.method} {call.path} failed: {exc!r}")


class Backend:
    """The hub's HTTP API, for threads: ``Backend("http://127.0.0.1:8000",
    api_key)``. Use it as a context manager, or ``close()`` it. Every method
    raises ``BackendError`` with the HTTP status and the hub's message, or
    status ``None`` when the hub couldn't be reached."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(**_options(url, api_key, timeout))

    def _do(self, call: _Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, **_content(call))
        except httpx.HTTPError as exc:
            raise _unreachable(call, exc) from exc
        return _answer(call, response)

    def publish(self, channel: str, data: Any) -> Published:
        """Publish ``data`` (any JSON value) to ``channel``; where it landed."""
        return self._do(_publish(channel, data))

    def broadcast(self, channels: Iterable[str], data: Any) -> list[Published]:
        """Publish ``data`` to each of ``channels``; nothing if one is refused."""
        return self._do(_broadcast(channels, data))

    def subscribe(self, channel: str, *, user: str | None = None,
                  client: str | None = None) -> None:
        """Subscribe every connection of ``user``, or the ``client``, to
        ``channel`` server-side, on every node."""
        self._do(_subscribe(channel, user, client))

    def unsubscribe(self, channel: str, *, user: str | None = None,
                    client: str | None = None) -> None:
        """End their subscription to ``channel``, whoever made it."""
        self._do(_unsubscribe(channel, user, client))

    def disconnect(self, *, user: str | None = None, client: str | None = None) -> int:
        """Close the connections of ``user`` or ``client`` (4501, they don't
        come back); how many this node closed."""
        return self._do(_disconnect(user, client))

    def presence(self, channel: str) -> list[ClientInfo]:
        return self._do(_presence(channel))

    def presence_stats(self, channel: str) -> PresenceStats:
        return self._do(_presence_stats(channel))

    def history(self, channel: str, *, limit: int | None = None,
                since: Position | None = None) -> HistoryResult:
        return self._do(_history(channel, limit, since))

    def channels(self) -> dict[str, int]:
        """The channels with subscribers or history: their subscriber counts."""
        return self._do(_channels())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncBackend:
    """The hub's HTTP API, for asyncio: the methods of ``Backend``, awaited."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(**_options(url, api_key, timeout))

    async def _do(self, call: _Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, **_content(call))
        except httpx.HTTPError as exc:
            raise _unreachable(call, exc) from exc
        return _answer(call, response)

    async def publish(self, channel: str, data: Any) -> Published:
        return await self._do(_publish(channel, data))

    async def broadcast(self, channels: Iterable[str], data: Any) -> list[Published]:
        return await self._do(_broadcast(channels, data))

    async def subscribe(self, channel: str, *, user: str | None = None,
                        client: str | None = None) -> None:
        await self._do(_subscribe(channel, user, client))

    async def unsubscribe(self, channel: str, *, user: str | None = None,
                          client: str | None = None) -> None:
        await self._do(_unsubscribe(channel, user, client))

    async def disconnect(self, *, user: str | None = None, client: str | None = None) -> int:
        return await self._do(_disconnect(user, client))

    async def presence(self, channel: str) -> list[ClientInfo]:
        return await self._do(_presence(channel))

    async def presence_stats(self, channel: str) -> PresenceStats:
        return await self._do(_presence_stats(channel))

    async def history(self, channel: str, *, limit: int | None = None,
                      since: Position | None = None) -> HistoryResult:
        return await self._do(_history(channel, limit, since))

    async def channels(self) -> dict[str, int]:
        return await self._do(_channels())

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
