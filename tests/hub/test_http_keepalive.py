"""The hub's HTTP API keeps its connections: a backend with a persistent HTTP
client publishes many times over one TCP connection."""

from __future__ import annotations

from typing import Any

import httpx

import tidewire
from tests.asyncio.rawclient import RawClient
from tidewire.hub import Hub

from .conftest import MakeHub
from .helpers import API_KEY, Client, within

AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Accepted:
    """The server-side connections that the hub's HTTP API answered on."""

    def __init__(self, hub: Hub) -> None:
        self.conns: list[tidewire.ServerConnection] = []
        handle = hub.http.handle

        async def counted(conn: tidewire.ServerConnection, request: tidewire.Request) -> Any:
            if conn not in self.conns:
                self.conns.append(conn)
            return await handle(conn, request)

        hub.http.handle = counted  # type: ignore[method-assign]


def client_port(response: httpx.Response) -> int:
    """The local port of the TCP connection a response came on."""
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


async def test_a_backend_publishes_many_times_over_one_connection(hub: Hub) -> None:
    accepted = Accepted(hub)
    subscriber = await Client.open(hub)
    await subscriber.request("subscribe", channel="chat:kept")
    ports = set()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}", timeout=5) as http:
        for i in range(50):
            response = await http.post(
                "/api/publish", headers=AUTH, json={"channel": "chat:kept", "data": i}
            )
            assert response.status_code == 200 and response.json()["offset"] == i + 1
            assert response.headers["connection"] == "keep-alive"
            ports.add(client_port(response))
        health = await http.get("/healthz")
        assert health.status_code == 200
        ports.add(client_port(health))
    assert len(ports) == 1
    assert len(accepted.conns) == 1
    assert [(await subscriber.push("pub"))["data"] for _ in range(50)] == list(range(50))
    await subscriber.close()


async def test_an_api_error_keeps_the_connection(hub: Hub) -> None:
    accepted = Accepted(hub)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}", timeout=5) as http:
        bad = await http.post("/api/publish", headers=AUTH, json={"channel": "chat:x"})
        assert bad.status_code == 400 and bad.headers["connection"] == "keep-alive"
        unknown = await http.get("/api/nothing", headers=AUTH)
        assert unknown.status_code == 404
        good = await http.post("/api/publish", headers=AUTH, json={"channel": "chat:x", "data": 1})
        assert good.status_code == 200
    assert len(accepted.conns) == 1


async def test_malformed_http_closes_only_its_connection(hub: Hub) -> None:
    accepted = Accepted(hub)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}", timeout=5) as http:
        first = await http.get("/healthz")
        # Another connection: a good request, then a malformed one, then one
        # that is never read.
        data = (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6"
            b"\r\n\r\nhello!"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        raw = await RawClient.connect(hub.port)
        await raw.write(data)
        answer = await raw.read_to_eof()
        await raw.close()
        assert answer.count(b"HTTP/1.1 200 OK") == 1
        assert b"HTTP/1.1 400 Bad Request" in answer and b"invalid Content-Length" in answer
        second = await http.get("/healthz")
        assert client_port(first) == client_port(second)
    assert len(accepted.conns) == 2


async def test_an_idle_connection_closes_after_the_configured_timeout(
    make_hub: MakeHub,
) -> None:
    hub = await make_hub(http_idle_timeout=0.2)
    accepted = Accepted(hub)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}", timeout=5) as http:
        first = await http.get("/healthz")
        assert first.headers["keep-alive"] == "timeout=0, max=999"
        await within(accepted.conns[0].wait_closed())
        second = await http.get("/healthz")  # httpx opens a new connection
        assert second.status_code == 200
    assert len(accepted.conns) == 2


async def test_the_request_limit_is_configurable(make_hub: MakeHub) -> None:
    hub = await make_hub(http_max_requests=3)
    accepted = Accepted(hub)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}", timeout=5) as http:
        answers = [await http.get("/healthz") for _ in range(7)]
    assert [r.headers["connection"] for r in answers[:3]] == ["keep-alive"] * 2 + ["close"]
    assert all(r.status_code == 200 for r in answers)
    assert len(accepted.conns) == 3
