"""Unix sockets and TLS (wss://) on both sides."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

import tidewire
from tidewire import ServerConnection

from .test_connection import echo, within


async def test_unix_socket_echo(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    async with tidewire.unix_serve(echo, path):
        async with tidewire.unix_connect(path, "ws://localhost/chat") as ws:
            await ws.send("over a unix socket")
            assert await within(ws.recv()) == "over a unix socket"
            assert ws.request is None and ws.response is not None


async def test_unix_socket_request_carries_host_and_path(tmp_path: Path) -> None:
    async def report(ws: ServerConnection) -> None:
        assert ws.request is not None
        await ws.send(f"{ws.request.headers['Host']} {ws.request.path}")

    path = str(tmp_path / "ws.sock")
    async with tidewire.unix_serve(report, path):
        async with tidewire.unix_connect(path, "ws://app.internal/room?id=7") as ws:
            assert await within(ws.recv()) == "app.internal /room?id=7"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_wss_echo(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    async with tidewire.serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        uri = f"wss://localhost:{server.port}/"
        async with tidewire.connect(uri, ssl=client_context) as ws:
            await ws.send(b"\x00secret" * 10_000)
            assert await within(ws.recv()) == b"\x00secret" * 10_000


async def test_wss_client_verifies_by_default(server_context: ssl.SSLContext) -> None:
    async with tidewire.serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await tidewire.connect(f"wss://localhost:{server.port}/")


async def test_wss_client_checks_hostname(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with tidewire.serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            await tidewire.connect(
                f"wss://127.0.0.1:{server.port}/", ssl=client_context,
                server_hostname="wrong.example",
            )


async def test_unix_socket_with_tls(
    tmp_path: Path, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    path = str(tmp_path / "wss.sock")
    async with tidewire.unix_serve(echo, path, ssl=server_context):
        async with tidewire.unix_connect(path, "wss://localhost/", ssl=client_context) as ws:
            await ws.send("tls over unix")
            assert await within(ws.recv()) == "tls over unix"


def test_ssl_for_ws_uri_is_a_clear_error(client_context: ssl.SSLContext) -> None:
    with pytest.raises(ValueError, match="use wss://"):
        tidewire.connect("ws://localhost/", ssl=client_context)
