"""Which proxy a client goes through, and opening a tunnel through it.

By default a client follows the standard environment variables: ``https_proxy``
for wss://, ``http_proxy`` for ws://, then ``all_proxy``; ``no_proxy`` lists the
hosts to reach directly. HTTP proxies are asked for a tunnel with CONNECT (with
basic auth when the URL has credentials); SOCKS5 and SOCKS4 proxies work too.
The tunnels are made by python-socks (``pip install tidewire[proxy]``).
"""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request
from typing import Any, Literal

from .exceptions import ProxyError
from .protocol.uri import WebSocketURI

__all__ = ["ProxySetting", "choose_proxy", "open_tunnel", "open_tunnel_sync"]

# True: from the environment; None: no proxy; a string: that proxy's URL.
ProxySetting = str | Literal[True] | None

_SCHEMES = ("http", "https", "socks5", "socks5h", "socks4", "socks4a")


def choose_proxy(uri: WebSocketURI, setting: ProxySetting) -> str | None:
    """The proxy URL to reach ``uri`` through, or ``None`` to go direct."""
    if setting is None:
        return None
    if setting is True:
        env = urllib.request.getproxies_environment()
        if env.get("no") and urllib.request.proxy_bypass(uri.host):
            return None
        url = env.get("https" if uri.secure else "http") or env.get("all")
        if not url:
            return None
    else:
        url = setting
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ProxyError(f"unsupported proxy {url!r}: use one of {', '.join(_SCHEMES)}")
    return url


async def open_tunnel(
    proxy_url: str, uri: WebSocketURI, timeout: float | None
) -> socket.socket:
    """Connect to ``uri``'s host and port through the proxy; return the socket."""
    socks = _python_socks(proxy_url)
    try:
        proxy = socks.async_.asyncio.Proxy.from_url(_tunnel_url(proxy_url))
        sock: socket.socket = await proxy.connect(uri.host, uri.port, timeout=timeout)
        return sock
    except socks.ProxyTimeoutError as exc:
        raise TimeoutError(f"proxy {_safe(proxy_url)} timed out") from exc
    except socks.ProxyError as exc:
        raise ProxyError(f"proxy {_safe(proxy_url)} refused the tunnel: {exc}") from exc


def open_tunnel_sync(
    proxy_url: str, uri: WebSocketURI, timeout: float | None
) -> socket.socket:
    """``open_tunnel`` for threads: a blocking connect through the proxy."""
    socks = _python_socks(proxy_url)
    try:
        proxy = socks.sync.Proxy.from_url(_tunnel_url(proxy_url))
        sock: socket.socket = proxy.connect(uri.host, uri.port, timeout=timeout)
        return sock
    except socks.ProxyTimeoutError as exc:
        raise TimeoutError(f"proxy {_safe(proxy_url)} timed out") from exc
    except socks.ProxyError as exc:
        raise ProxyError(f"proxy {_safe(proxy_url)} refused the tunnel: {exc}") from exc


def _python_socks(proxy_url: str) -> Any:
    try:
        import python_socks
        import python_socks.async_.asyncio
        import python_socks.sync
    except ImportError:
        raise ProxyError(
            f"connecting through {_safe(proxy_url)} needs python-socks: "
            "pip install 'tidewire[proxy]'"
        ) from None
    return python_socks


def _tunnel_url(proxy_url: str) -> str:
    # An https:// proxy URL names the proxy of https traffic; the CONNECT
    # request itself goes in clear, as curl does.
    return proxy_url.replace("https://", "http://", 1)


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
