"""The threaded client through real proxies on loopback: HTTP CONNECT (proxy.py)
and SOCKS5 (microsocks), started as in ``tests/asyncio/test_proxy.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.asyncio.test_proxy import free_port, start, stop
from tests.conftest import timeout
from tests.sync.helpers import running, url
from tidewire import ProxyError
from tidewire.sync import Server, ServerConnection, connect


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


@pytest.fixture(scope="module")
def http_proxy() -> Iterator[int]:
    port = free_port()
    proc = start(["proxy", "--hostname", "127.0.0.1", "--port", str(port),
                  "--basic-auth", "user:s3cret", "--num-workers", "1"], port)
    yield port
    stop(proc)


@pytest.fixture(scope="module")
def socks_proxy() -> Iterator[int]:
    port = free_port()
    proc = start(["microsocks", "-i", "127.0.0.1", "-p", str(port)], port)
    yield port
    stop(proc)


@pytest.fixture
def server() -> Iterator[Server]:
    with running(echo) as srv:
        yield srv


def test_http_connect_proxy_with_basic_auth(http_proxy: int, server: Server) -> None:
    proxy = f"http://user:s3cret@127.0.0.1:{http_proxy}"
    with connect(url(server), proxy=proxy) as ws:
        assert ws.remote_address[1] == http_proxy  # the socket goes to the proxy
        ws.send("through the tunnel")
        assert ws.recv(timeout(5)) == "through the tunnel"


def test_http_proxy_with_wrong_password_is_a_proxy_error(
    http_proxy: int, server: Server
) -> None:
    proxy = f"http://user:wrong@127.0.0.1:{http_proxy}"
    with pytest.raises(ProxyError, match="refused the tunnel") as info:
        connect(url(server), proxy=proxy)
    assert "wrong" not in str(info.value)  # the password never reaches a message


def test_socks5_proxy(socks_proxy: int, server: Server) -> None:
    with connect(url(server), proxy=f"socks5://127.0.0.1:{socks_proxy}") as ws:
        assert ws.remote_address[1] == socks_proxy
        ws.send(b"\x00" * 100_000)
        assert ws.recv(timeout(5)) == b"\x00" * 100_000


def test_proxy_from_environment_and_no_proxy(
    socks_proxy: int, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("all_proxy", f"socks5://127.0.0.1:{socks_proxy}")
    with connect(url(server)) as ws:
        assert ws.remote_address[1] == socks_proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with connect(url(server)) as ws:
        assert ws.remote_address[1] == server.port
    monkeypatch.delenv("no_proxy")
    with connect(url(server), proxy=None) as ws:
        assert ws.remote_address[1] == server.port
