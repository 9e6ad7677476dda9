"""Unix sockets and TLS (wss://) with the threaded client and server."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import timeout
from tests.sync.helpers import running
from tidewire.sync import Server, ServerConnection, connect, unix_connect


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def test_unix_socket_echo(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    with running(echo, unix_path=path), unix_connect(path, "ws://localhost/chat") as ws:
        ws.send("over a unix socket")
        assert ws.recv(timeout(5)) == "over a unix socket"
        assert ws.request is None and ws.response is not None


def test_unix_socket_request_carries_host_and_path(tmp_path: Path) -> None:
    def report(ws: ServerConnection) -> None:
        assert ws.request is not None
        ws.send(f"{ws.request.headers['Host']} {ws.request.path}")

    path = str(tmp_path / "ws.sock")
    with running(report, unix_path=path):
        with unix_connect(path, "ws://app.internal/room?id=7") as ws:
            assert ws.recv(timeout(5)) == "app.internal /room?id=7"
        # A second server on the same path replaces the stale socket file.
    with running(report, unix_path=path), unix_connect(path) as ws:
        assert ws.recv(timeout(5)) == "localhost /"


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


@pytest.fixture
def wss_server(server_context: ssl.SSLContext) -> Iterator[Server]:
    with running(echo, ssl=server_context) as server:
        yield server


def test_wss_echo(wss_server: Server, client_context: ssl.SSLContext) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, with the reader and a writer on TLS at once
    with connect(f"wss://localhost:{wss_server.port}/", ssl=client_context) as ws:
        ws.send(b"\x00secret" * 10_000)
        assert ws.recv(timeout(5)) == b"\x00secret" * 10_000
        sender = threading.Thread(target=lambda: [ws.send(big) for _ in range(4)])
        sender.start()
        for _ in range(4):
            assert ws.recv(timeout(20)) == big
        sender.join(timeout(20))
    assert ws.close_code == 1000


def test_wss_client_verifies_by_default(wss_server: Server) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        connect(f"wss://localhost:{wss_server.port}/")


def test_wss_client_checks_hostname(wss_server: Server, client_context: ssl.SSLContext) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        connect(
            f"wss://127.0.0.1:{wss_server.port}/",
            ssl=client_context,
            server_hostname="wrong.example",
        )


def test_unix_socket_with_tls(
    tmp_path: Path, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    path = str(tmp_path / "wss.sock")
    with running(echo, unix_path=path, ssl=server_context):
        with unix_connect(path, "wss://localhost/", ssl=client_context) as ws:
            ws.send("tls over unix")
            assert ws.recv(timeout(5)) == "tls over unix"


def test_ssl_for_ws_uri_is_a_clear_error(client_context: ssl.SSLContext) -> None:
    with pytest.raises(ValueError, match="use wss://"):
        connect("ws://localhost/", ssl=client_context)
