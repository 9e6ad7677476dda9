"""The backend proxy: the hub asks the application's backend over HTTP.

Each event (connect, refresh, rpc, subscribe, publish) is a POST of a JSON
body to the URL that ``[proxy]`` gives it, over one pool of kept-alive
connections (aiohttp), within ``timeout`` seconds for the whole call. The
answer is checked by ``answers.parse_answer``. A backend that can't be
reached, is slow past the timeout, answers with another status than 200 or
with something that isn't a valid answer raises ``BackendUnavailable``:
counted per event and reason in ``/metrics``, logged in one line, and
answered to the client with 503 "backend unavailable, retry".
docs/proxy.md is the specification.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from .. import __version__
from ..protocol import Headers
from .answers import Answer, InvalidAnswer, parse_answer
from .config import PROXY_EVENTS, HubConfig
from .metrics import Metrics
from .wire import dumps

__all__ = ["Proxy", "BackendUnavailable", "UNAVAILABLE", "MAX_ANSWER", "POOL_SIZE", "headers_of"]

logger = logging.getLogger("tidewire.hub.proxy")

UNAVAILABLE = "backend unavailable, retry"
MAX_ANSWER = 1024 * 1024  # bytes of an answer's body
POOL_SIZE = 100  # connections to the backend at once; more calls wait for one


class BackendUnavailable(Exception):
    """The backend gave no usable answer. ``reason`` is the metric's label:
    ``unreachable``, ``timeout``, ``broken`` (the connection failed during
    the call), ``status``, ``malformed`` or ``invalid``."""

    def __init__(self, event: str, reason: str, message: str) -> None:
        super().__init__(f"{event} proxy: {message}")
        self.event = event
        self.reason = reason


def headers_of(request_headers: Headers | None, names: tuple[str, ...]) -> dict[str, str]:
    """The allow-listed ``names`` of the client's upgrade request, as the
    proxy's calls carry them (repeated fields joined, as HTTP allows)."""
    out: dict[str, str] = {}
    if request_headers is None:
        return out
    for name in names:
        values = request_headers.get_all(name)
        if values:
            out[name] = ("; " if name.lower() == "cookie" else ", ").join(values)
    return out


class Proxy:
    """The pool of connections to the backend, and one call per event."""

    def __init__(self, config: HubConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return self._session is not None

    def has(self, event: str) -> bool:
        """Is there a URL for ``event``?"""
        return self.config.proxy.url(event) is not None

    async def start(self) -> None:
        proxy = self.config.proxy
        if not any(proxy.url(event) for event in PROXY_EVENTS):
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE),
            timeout=aiohttp.ClientTimeout(total=proxy.timeout),
            # Cookies a backend sets must never travel to another user's call.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": f"tidewire-hub/{__version__}"},
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def call(self, event: str, body: dict[str, Any], headers: Mapping[str, str]) -> Answer:
        """POST ``body`` to ``event``'s URL; the checked answer, or raise
        ``BackendUnavailable`` (already counted and logged)."""
        url = self.config.proxy.url(event)
        session = self._session
        assert url is not None and session is not None, f"no {event} proxy"
        metrics = self.metrics
        metrics.proxy_calls[event] += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            raw = await self._post(session, url, event, dumps(body).encode(), headers)
            return parse_answer(event, raw, self.config)
        except InvalidAnswer as exc:
            raise self._failed(event, exc.reason, f"answered {exc}") from None
        finally:
            metrics.proxy_latency.labels(event).observe(loop.time() - started)

    async def _post(self, session: aiohttp.ClientSession, url: str, event: str, data: bytes,
                    headers: Mapping[str, str]) -> bytes:
        try:
            async with session.post(
                url, data=data, allow_redirects=False,
                headers={**headers, "Content-Type": "application/json"},
            ) as response:
                if response.status != 200:
                    raise self._failed(event, "status", f"answered HTTP {response.status}")
                body = bytearray()
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        raise self._failed(event, "malformed",
                                           f"answered over {MAX_ANSWER} bytes")
                return bytes(body)
        except asyncio.TimeoutError:
            raise self._failed(
                event, "timeout", f"no answer within {self.config.proxy.timeout:g} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise self._failed(event, "unreachable", f"can't connect: {exc.os_error}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._failed(event, "broken", f"failed mid-call: {exc!r}"[:300]) from None

    def _failed(self, event: str, reason: str, message: str) -> BackendUnavailable:
        self.metrics.proxy_failures[event, reason] += 1
        exc = BackendUnavailable(event, reason, message)
        logger.warning("%s", exc)
        return exc
