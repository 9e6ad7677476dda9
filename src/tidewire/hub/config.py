"""The hub's settings: one ``HubConfig``, a ``Namespace`` per channel prefix.

A TOML file sets them (``tidewire serve --config hub.toml``)::

    [hub]
    port = 8000
    api_key = "..."            # better from TIDEWIRE_API_KEY

    [proxy]                    # the application's backend, asked over HTTP
    connect = "http://127.0.0.1:9000/tidewire/connect"
    rpc = "http://127.0.0.1:9000/tidewire/rpc"
    timeout = 1.0
    headers = ["Cookie"]

    [namespaces.chat]          # channels "chat:..."
    history_size = 100
    history_ttl = 300
    presence = true
    join_leave = true
    publish = true
    anonymous = true
    subscribe_proxy = true

``[namespaces.""]`` (or ``[default]``) is the namespace of channel names without
a ``:``. Unknown keys and ill-typed values are errors that name the key.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..exceptions import TidewireError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "ConfigError",
    "HubConfig",
    "Namespace",
    "ProxyConfig",
    "PROXY_EVENTS",
    "load_config",
    "DEFAULT_NAMESPACES",
]


class ConfigError(TidewireError, ValueError):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class Namespace:
    """The rules of the channels of one namespace."""

    history_size: int = 0  # publications kept per channel; 0 keeps none
    history_ttl: float = 300.0  # seconds a publication stays in history
    presence: bool = False  # who is subscribed can be asked
    join_leave: bool = False  # subscribers get join and leave pushes
    publish: bool = False  # clients may publish (a backend always may)
    anonymous: bool = False  # clients without a token may subscribe
    private: bool = False  # subscribing needs a subscription token
    subscribe_proxy: bool = False  # ask the backend before each client subscribe
    publish_proxy: bool = False  # ask the backend before each client publish


# Request headers that describe the proxy request itself, never copied into it.
_OWN_HEADERS = frozenset({
    "host", "content-length", "content-type", "transfer-encoding", "connection",
    "keep-alive", "upgrade", "te", "trailer", "expect", "proxy-connection",
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol",
})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
PROXY_EVENTS = ("connect", "refresh", "rpc", "subscribe", "publish")


@dataclass(frozen=True)
class ProxyConfig:
    """Where the hub asks the application's backend, and how (docs/proxy.md)."""

    connect: str | None = None  # a connect without a token
    refresh: str | None = None  # a connection nearing its expiry
    rpc: str | None = None  # the client's rpc op
    subscribe: str | None = None  # a subscribe in a namespace with subscribe_proxy
    publish: str | None = None  # a client publish in a namespace with publish_proxy
    timeout: float = 1.0  # seconds for each call, connecting included
    headers: tuple[str, ...] = ()  # of the client's upgrade request, copied into each call

    def __post_init__(self) -> None:
        for event in PROXY_EVENTS:
            url = getattr(self, event)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ConfigError(f"proxy.{event} must be an http:// or https:// URL, not {url!r}")
        if not self.timeout > 0:
            raise ConfigError("proxy.timeout must be above 0")
        for name in self.headers:
            if not name or not set(name) <= _TOKEN_CHARS:
                raise ConfigError(f"proxy.headers: {name!r} isn't a header name")
            if name.lower() in _OWN_HEADERS:
                raise ConfigError(f"proxy.headers: {name} belongs to the proxy request itself")

    def url(self, event: str) -> str | None:
        """The URL of ``event`` (one of ``PROXY_EVENTS``), or ``None``."""
        url: str | None = getattr(self, event)
        return url


# What `tidewire serve` runs with when no file says otherwise: the demo's chat
# and ticker, and a default namespace open only to backends and tokens.
DEFAULT_NAMESPACES: dict[str, Namespace] = {
    "": Namespace(history_size=100, history_ttl=300),
    "chat": Namespace(
        history_size=100, history_ttl=600, presence=True, join_leave=True,
        publish=True, anonymous=True,
    ),
    "ticker": Namespace(history_size=20, history_ttl=60, anonymous=True),
}


@dataclass(frozen=True)
class HubConfig:
    """Everything ``Hub`` needs; every field has a safe default."""

    host: str = "127.0.0.1"
    port: int = 8000
    broker: str = "memory"  # or redis://host:port/db, redis+sentinel://host:port,.../name/db
    presence_ttl: float = 30.0  # a shared broker forgets a lost node's clients after this
    probe_interval: float = 1.0  # Redis broker: seconds between probes of pub/sub delivery
    api_key: str | None = None  # None: the HTTP API answers 401 to everyone
    origins: tuple[str, ...] | None = None  # Origin values allowed on /ws; None: any
    token_secret: str | None = None  # None: tokens are refused, anonymous only
    demo: bool = True
    namespaces: dict[str, Namespace] = field(default_factory=lambda: dict(DEFAULT_NAMESPACES))
    compression: bool = True  # permessage-deflate, compressed once per publication
    max_message_size: int = 64 * 1024  # a client's frame, and an HTTP API body
    client_buffer: int = 1024 * 1024  # outgoing bytes per client before "slow consumer"
    max_subscriptions: int = 256  # per connection
    connect_timeout: float = 10.0  # for the first request, `connect`
    heartbeat: float = 25.0  # seconds between the client's ping requests
    ping_interval: float = 20.0  # WebSocket pings to find dead clients
    shutdown_timeout: float = 10.0  # for clients to close on SIGTERM
    http_idle_timeout: float = 5.0  # an HTTP API connection kept without a request
    http_max_requests: int = 1000  # HTTP API requests per connection
    proxy: ProxyConfig = field(default_factory=ProxyConfig)

    def __post_init__(self) -> None:
        if self.token_secret is not None and len(self.token_secret.encode()) < 32:
            # RFC 7518 section 3.2: an HS256 key is at least as long as the hash.
            raise ConfigError("token_secret must be at least 32 bytes long")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ConfigError("api_key must be at least 8 characters long")
        if self.presence_ttl <= 0:
            raise ConfigError("presence_ttl must be above 0")
        if self.http_idle_timeout <= 0:
            raise ConfigError("http_idle_timeout must be above 0")
        if self.http_max_requests < 1:
            raise ConfigError("http_max_requests must be at least 1")
        if self.probe_interval <= 0:
            raise ConfigError("probe_interval must be above 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, not {self.port}")
        for name, ns in self.namespaces.items():
            for event in ("subscribe", "publish"):
                if getattr(ns, f"{event}_proxy") and self.proxy.url(event) is None:
                    raise ConfigError(
                        f"namespace {name or '(default)'!r} has {event}_proxy = true, "
                        f"but [proxy] has no {event} URL"
                    )

    def namespace(self, channel: str) -> Namespace | None:
        """The namespace of ``channel``, or ``None`` if it isn't configured."""
        name, sep, _ = channel.partition(":")
        return self.namespaces.get(name if sep else "")


# A field's annotation -> the TOML types it takes, and their name in errors.
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "bool": ((bool,), "true or false"),
    "str": ((str,), "a string"),
    "str | None": ((str,), "a string"),
    "tuple[str, ...] | None": ((list,), "a list of strings"),
    "tuple[str, ...]": ((list,), "a list of strings"),
}


def _convert(section: str, cls: type, table: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    out: dict[str, Any] = {}
    for key, value in table.items():
        f = known.get(key)
        if f is None:
            raise ConfigError(f"unknown key {section}.{key}; known: {', '.join(sorted(known))}")
        kinds, kind_name = _TYPES[str(f.type)]
        ok = isinstance(value, kinds) and not (bool not in kinds and isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{section}.{key} must be {kind_name}, not {value!r}")
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{section}.{key} must be {kind_name}")
            value = tuple(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{section}.{key} must not be negative")
        out[key] = float(value) if str(f.type) == "float" else value
    return out


def load_config(path: str | Path | None = None, **overrides: Any) -> HubConfig:
    """Read ``path`` (TOML), then apply ``overrides`` that aren't ``None``.

    Raise ``ConfigError`` with a message that names the file and the key.
    """
    config = HubConfig()
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"can't read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} isn't valid TOML: {exc}") from exc
        try:
            config = _from_tables(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    values = {k: v for k, v in overrides.items() if v is not None}
    return replace(config, **values) if values else config


def _from_tables(data: dict[str, Any]) -> HubConfig:
    unknown = set(data) - {"hub", "namespaces", "default", "proxy"}
    if unknown:
        raise ConfigError(
            f"unknown table [{sorted(unknown)[0]}]; known: hub, namespaces, default, proxy"
        )
    hub = _convert("hub", HubConfig, _table(data, "hub"), {"namespaces", "proxy"})
    if "proxy" in data:
        hub["proxy"] = ProxyConfig(**_convert("proxy", ProxyConfig, _table(data, "proxy"), set()))
    namespaces: dict[str, Namespace] | None = None
    if "namespaces" in data or "default" in data:
        namespaces = {}
        for name, table in _table(data, "namespaces").items():
            if not isinstance(table, dict):
                raise ConfigError(f"namespaces.{name} must be a table")
            if ":" in name:
                raise ConfigError(f"namespace name {name!r} can't contain ':'")
            namespaces[name] = Namespace(**_convert(f"namespaces.{name}", Namespace, table, set()))
        if "default" in data:
            namespaces[""] = Namespace(**_convert("default", Namespace, _table(data, "default"),
                                                  set()))
    config = HubConfig(**hub)
    if namespaces is not None:
        config = replace(config, namespaces=namespaces)
    return config


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name} must be a table")
    return table
