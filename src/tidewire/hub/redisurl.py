"""Where the Redis broker finds Redis: the URLs it takes, and a client for each.

- ``redis://[[user]:password@]host[:port][/db]`` and
  ``unix:///path/to/redis.sock[?db=N]``: one server, as redis-py reads them;
- ``redis+sentinel://[[user]:password@]host[:port],host[:port]/<service>[/db]``:
  the master of ``service`` as Redis Sentinel names it, asked of the sentinels
  listed (port 26379 unless given) each time a connection is made, so that
  the broker follows a failover. The password is the Redis servers'; the
  sentinels are asked without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

__all__ = [
    "SENTINEL_SCHEME", "SentinelTarget", "hide_password", "parse_sentinel_url", "redis_client"
]

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
_FORM = f"{SENTINEL_SCHEME}://host:port,host:port/<service>/<db>"


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def hide_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: for logs and errors."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.partition(":")[0]
    return f"{scheme}{sep}{user + ':' if user else ''}***@{host}"


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Read a ``redis+sentinel://`` URL; raise ``ValueError`` saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SENTINEL_SCHEME or not url.partition(":")[2].startswith("//"):
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}://")
    if parts.query or parts.fragment:
        raise ValueError(f"a Sentinel URL takes no ?query or #fragment: use {_FORM}")
    creds, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = creds.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(item) for item in hosts.split(","))
    names = parts.path.split("/")[1:]  # "/mymaster/0" -> ["mymaster", "0"]
    if not names or not names[0]:
        raise ValueError(f"no service name (the master's name in Sentinel): use {_FORM}")
    if len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ValueError(f"the path must be /<service>/<db> with db a number, not {parts.path}")
    db = int(names[1]) if len(names) == 2 else 0
    return SentinelTarget(sentinels, unquote(names[0]), db, username, password)


def _host_port(item: str) -> tuple[str, int]:
    if not item:
        raise ValueError(f"no sentinel address (an empty host in the list): use {_FORM}")
    if item.startswith("["):  # [::1]:26379
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad sentinel address {item!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"bad sentinel address {item!r}: no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad sentinel address {item!r}: the port must be 1-65535")
    return host, int(port_text)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that waits for a free connection, as the single-server
    one does, rather than failing at once when all are busy."""


def redis_client(
    url: str, *, max_connections: int, timeout: float, **options: Any
) -> tuple[aioredis.Redis, Sentinel | None]:
    """A client of the Redis that ``url`` names, on a pool of up to
    ``max_connections`` that waits ``timeout`` for a free one; with the
    ``Sentinel`` that finds its master, if the URL is a Sentinel URL.
    ``options`` go to every connection to Redis. Raise ``ValueError`` for a
    bad URL."""
    if url.lower().startswith(SENTINEL_SCHEME + ":"):
        try:
            target = parse_sentinel_url(url)
        except ValueError as exc:
            raise ValueError(f"invalid Sentinel URL {hide_password(url)!r}: {exc}") from None
        sentinel = Sentinel(
            list(target.sentinels),
            sentinel_kwargs={k: v for k, v in options.items() if k.startswith("socket_")},
        )
        client = sentinel.master_for(
            target.service, connection_pool_class=_BlockingSentinelPool,
            max_connections=max_connections, timeout=timeout, db=target.db,
            username=target.username, password=target.password, **options,
        )
        return client, sentinel
    try:
        params = parse_url(url)
    except ValueError as exc:
        raise ValueError(f"invalid Redis URL {hide_password(url)!r}: {exc}") from None
    pool = BlockingConnectionPool(
        max_connections=max_connections, timeout=timeout, **params, **options
    )
    return aioredis.Redis(connection_pool=pool), None
