"""Clients through real proxies on loopback: HTTP CONNECT (proxy.py from PyPI) and
SOCKS5 (microsocks, a Debian package that `make test` installs)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import tidewire
from tests.conftest import timeout
from tidewire import ProxyError
from tidewire.protocol import parse_uri
from tidewire.proxy import choose_proxy

from .test_connection import echo, within


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which(args[0], path=f"{Path(sys.executable).parent}:/usr/bin:/usr/local/bin")
    if exe is None:
        pytest.fail(f"{args[0]} is not installed: run `make test`, which installs it "
                    "(or: apt-get install microsocks; pip install proxy.py)")
    proc = subprocess.Popen(
        [exe, *args[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout(30)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{args[0]} didn't listen on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout(10))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
async def server() -> AsyncIterator[tidewire.Server]:
    async with tidewire.serve(echo, "127.0.0.1", 0) as srv:
        yield srv


async def test_http_connect_proxy_with_basic_auth(http_proxy: int, server: tidewire.Server) -> None:
    proxy = f"http://user:s3cret@127.0.0.1:{http_proxy}"
    async with tidewire.connect(f"ws://127.0.0.1:{server.port}/", proxy=proxy) as ws:
        assert ws.remote_address[1] == http_proxy  # the socket goes to the proxy
        await ws.send("through the tunnel")
        assert await within(ws.recv()) == "through the tunnel"


async def test_http_proxy_with_wrong_password_is_a_proxy_error(
    http_proxy: int, server: tidewire.Server
) -> None:
    proxy = f"http://user:wrong@127.0.0.1:{http_proxy}"
    with pytest.raises(ProxyError, match="refused the tunnel") as info:
        await tidewire.connect(f"ws://127.0.0.1:{server.port}/", proxy=proxy)
    assert "wrong" not in str(info.value)  # the password never reaches a message


async def test_socks5_proxy(socks_proxy: int, server: tidewire.Server) -> None:
    proxy = f"socks5://127.0.0.1:{socks_proxy}"
    async with tidewire.connect(f"ws://127.0.0.1:{server.port}/", proxy=proxy) as ws:
        assert ws.remote_address[1] == socks_proxy
        await ws.send(b"\x00" * 100_000)
        assert await within(ws.recv()) == b"\x00" * 100_000


async def test_proxy_from_environment_and_no_proxy(
    socks_proxy: int, server: tidewire.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("all_proxy", f"socks5://127.0.0.1:{socks_proxy}")
    async with tidewire.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert ws.remote_address[1] == socks_proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    async with tidewire.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert ws.remote_address[1] == server.port
    async with tidewire.connect(f"ws://127.0.0.1:{server.port}/", proxy=None) as ws:
        assert ws.remote_address[1] == server.port


def test_choose_proxy_follows_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    ws, wss = parse_uri("ws://example.com/"), parse_uri("wss://example.com/")
    assert choose_proxy(ws, True) is None
    monkeypatch.setenv("https_proxy", "http://secure-proxy:3128")
    monkeypatch.setenv("all_proxy", "socks5://any-proxy:1080")
    assert choose_proxy(wss, True) == "http://secure-proxy:3128"
    assert choose_proxy(ws, True) == "socks5://any-proxy:1080"
    monkeypatch.setenv("no_proxy", "example.com")
    assert choose_proxy(wss, True) is None
    assert choose_proxy(wss, "http://explicit:8080") == "http://explicit:8080"
    with pytest.raises(ProxyError, match="unsupported proxy"):
        choose_proxy(ws, "ftp://nope:21")
