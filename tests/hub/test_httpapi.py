"""The HTTP side of the hub: the API for backends, health, metrics, static files."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tidewire.hub import Hub

from .conftest import MakeHub
from .helpers import API_KEY, Client, http_client, token, within

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def http(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(hub) as client:
        yield client


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


async def test_publish_reaches_websocket_subscribers(hub: Hub, http: httpx.AsyncClient) -> None:
    client = await Client.open(hub)
    sub = await client.request("subscribe", channel="chat:api")
    response = await http.post(
        "/api/publish", headers=AUTH, json={"channel": "chat:api", "data": {"text": "hi"}}
    )
    assert response.status_code == 200
    assert response.json() == {"channel": "chat:api", "epoch": sub["epoch"], "offset": 1}
    push = await client.push("pub")
    assert push["data"] == {"text": "hi"} and "from" not in push
    await client.close()


async def test_broadcast_publishes_to_many_channels(hub: Hub, http: httpx.AsyncClient) -> None:
    client = await Client.open(hub)
    for name in ("chat:a", "chat:b"):
        await client.request("subscribe", channel=name)
    response = await http.post(
        "/api/broadcast", headers=AUTH, json={"channels": ["chat:a", "chat:b"], "data": 7}
    )
    assert response.status_code == 200
    assert [r["channel"] for r in response.json()["results"]] == ["chat:a", "chat:b"]
    got = {(await client.push("pub"))["channel"] for _ in range(2)}
    assert got == {"chat:a", "chat:b"}
    await client.close()


async def test_broadcast_with_an_unknown_namespace_publishes_nothing(
    hub: Hub, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        "/api/broadcast", headers=AUTH, json={"channels": ["chat:ok", "nowhere:x"], "data": 1}
    )
    assert response.status_code == 404 and "nowhere:x" in error_of(response)
    history = await http.get("/api/history", headers=AUTH, params={"channel": "chat:ok"})
    assert history.json()["publications"] == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": API_KEY},
     {"Authorization": f"Basic {API_KEY}"}],
    ids=["none", "wrong", "no-scheme", "basic"],
)
async def test_wrong_or_missing_key_is_401(http: httpx.AsyncClient, headers: dict[str, str]
                                           ) -> None:
    response = await http.post("/api/publish", headers=headers, json={"channel": "chat:x",
                                                                      "data": 1})
    assert response.status_code == 401
    assert "API key" in error_of(response)
    assert (await http.get("/api/channels", headers=headers)).status_code == 401


async def test_api_is_off_without_a_key(make_hub: MakeHub) -> None:
    hub = await make_hub(api_key=None)
    async with http_client(hub) as http:
        response = await http.get("/api/channels", headers={"Authorization": "Bearer x"})
    assert response.status_code == 401 and "--api-key" in error_of(response)


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "no body"),
        (b"{not json", "isn't JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"data": 1}', "channel"),
        (b'{"channel": "chat:x"}', "missing data"),
        (b'{"channel": 5, "data": 1}', "channel"),
        (b'{"channel": "chat:x", "data": Infinity}', "Infinity isn't JSON"),
    ],
)
async def test_bad_publish_bodies_are_400(
    http: httpx.AsyncClient, content: bytes, needle: str
) -> None:
    response = await http.post(
        "/api/publish", headers={**AUTH, "Content-Type": "application/json"}, content=content
    )
    assert response.status_code == 400
    assert needle in error_of(response)


async def test_non_json_content_type_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/publish", headers=AUTH, data={"channel": "chat:x"})
    assert response.status_code == 400 and "JSON" in error_of(response)


async def test_body_over_the_limit_is_413(make_hub: MakeHub) -> None:
    hub = await make_hub(max_message_size=1000)
    async with http_client(hub) as http:
        response = await http.post(
            "/api/publish", headers=AUTH, json={"channel": "chat:x", "data": "x" * 2000}
        )
    assert response.status_code == 413 and "over 1000 bytes" in response.text


async def test_unknown_namespace_is_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/publish", headers=AUTH,
                               json={"channel": "nowhere:x", "data": 1})
    assert response.status_code == 404 and "nowhere:x" in error_of(response)
    response = await http.get("/api/presence", headers=AUTH, params={"channel": "nowhere:x"})
    assert response.status_code == 404


async def test_unknown_path_is_404_and_wrong_method_405(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/nothing", headers=AUTH)
    assert response.status_code == 404 and "/api/nothing" in error_of(response)
    response = await http.get("/api/publish", headers=AUTH)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    response = await http.delete("/")
    assert response.status_code == 405


async def test_websocket_upgrade_on_another_path_is_404(hub: Hub) -> None:
    import tidewire

    with pytest.raises(tidewire.InvalidStatus) as info:
        await within(tidewire.connect(f"ws://127.0.0.1:{hub.port}/chat"))
    assert info.value.response.status == 404
    assert b"/ws" in info.value.response.body


async def test_channels_and_presence(hub: Hub, http: httpx.AsyncClient) -> None:
    alice = await Client.open(hub, token=token("alice"), info={"name": "Alice"})
    await alice.request("subscribe", channel="chat:lobby")
    bob = await Client.open(hub, token=token("bob"))
    await bob.request("subscribe", channel="chat:lobby")
    await bob.request("subscribe", channel="news:today")
    response = await http.get("/api/channels", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["channels"] == [
        {"channel": "chat:lobby", "subscribers": 2},
        {"channel": "news:today", "subscribers": 1},
    ]
    response = await http.get("/api/presence", headers=AUTH, params={"channel": "chat:lobby"})
    clients = response.json()["clients"]
    assert sorted(c["user"] for c in clients) == ["alice", "bob"]
    assert {"client": alice.connected["client"], "user": "alice", "info": {"name": "Alice"}} in (
        clients
    )
    await alice.close()
    await bob.close()


async def test_history_with_limit_and_since(hub: Hub, http: httpx.AsyncClient) -> None:
    for i in range(4):
        await http.post("/api/publish", headers=AUTH, json={"channel": "chat:h", "data": i})
    response = await http.get("/api/history", headers=AUTH,
                              params={"channel": "chat:h", "limit": "2"})
    body = response.json()
    assert [p["data"] for p in body["publications"]] == [2, 3] and body["offset"] == 4
    response = await http.get("/api/history", headers=AUTH,
                              params={"channel": "chat:h", "epoch": body["epoch"], "offset": "1"})
    body = response.json()
    assert body["recovered"] is True
    assert [p["offset"] for p in body["publications"]] == [2, 3, 4]
    response = await http.get("/api/history", headers=AUTH,
                              params={"channel": "chat:h", "limit": "many"})
    assert response.status_code == 400 and "limit" in error_of(response)
    response = await http.get("/api/history", headers=AUTH)
    assert response.status_code == 400 and "channel" in error_of(response)


async def test_disconnect_a_user_closes_all_its_connections_with_4501(
    hub: Hub, http: httpx.AsyncClient
) -> None:
    first = await Client.open(hub, token=token("mallory"))
    second = await Client.open(hub, token=token("mallory"))
    other = await Client.open(hub, token=token("trent"))
    response = await http.post("/api/disconnect", headers=AUTH, json={"user": "mallory"})
    assert response.json() == {"disconnected": 2}
    for client in (first, second):
        assert (await client.closed())[0] == 4501
    assert await other.request("ping") == {}
    response = await http.post("/api/disconnect", headers=AUTH, json={"client": "nobody"})
    assert response.json() == {"disconnected": 0}
    response = await http.post("/api/disconnect", headers=AUTH, json={})
    assert response.status_code == 400
    await other.close()


async def test_healthz(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_count_connections_messages_and_latency(
    hub: Hub, http: httpx.AsyncClient
) -> None:
    clients = [await Client.open(hub) for _ in range(3)]
    for c in clients:
        await c.request("subscribe", channel="news:m")
    for i in range(5):
        await http.post("/api/publish", headers=AUTH, json={"channel": "news:m", "data": i})
    for c in clients:
        await c.pubs(5)
    response = await http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert metric(text, "tidewire_hub_connections_open") == 3
    assert metric(text, "tidewire_hub_connections_total") == 3
    assert metric(text, "tidewire_hub_subscriptions") == 3
    assert metric(text, "tidewire_hub_publications_total") == 5
    # 3 connects + 3 subscribes in, and their 6 replies + 15 pushes out
    assert metric(text, "tidewire_hub_messages_in_total") == 6
    assert metric(text, "tidewire_hub_messages_out_total") == 6 + 15
    assert metric(text, "tidewire_hub_bytes_out_total") > 15 * len('{"push":"pub"}')
    assert metric(text, "tidewire_hub_delivery_latency_seconds_count") == 5
    assert metric(text, "tidewire_hub_slow_consumers_total") == 0
    for c in clients:
        await c.close()


@pytest.mark.parametrize(
    "path, content_type, needle",
    [
        ("/", "text/html", b"<html"),
        ("/tidewire.js", "text/javascript", b"export"),
        ("/tidewire.d.ts", "text/plain", b"export"),
        ("/demo.js", "text/javascript", b"tidewire.js"),
        ("/demo.css", "text/css", b"{"),
    ],
)
async def test_static_files(
    http: httpx.AsyncClient, path: str, content_type: str, needle: bytes
) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert needle in response.content
    head = await http.head(path)
    assert head.status_code == 200 and head.content == b""


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_chunked_body_is_411_and_the_hub_goes_on(hub: Hub, http: httpx.AsyncClient
                                                        ) -> None:
    import asyncio

    data = (b"POST /api/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n")
    answer = await asyncio.get_running_loop().run_in_executor(None, raw_request, hub.port, data)
    assert answer.startswith(b"HTTP/1.1 411 ")
    assert b"Content-Length" in answer
    assert (await http.get("/healthz")).status_code == 200


async def test_hub_logs_no_traceback_for_bad_http(
    hub: Hub, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    bad: list[tuple[str, str, Any]] = [
        ("POST", "/api/publish", b"\xff\xfe"),
        ("GET", "/api/presence?channel=%00", None),
        ("POST", "/api/disconnect", b'{"user": 5}'),
        ("GET", "/api/history?channel=chat:x&epoch=e", None),
    ]
    for method, path, body in bad:
        response = await http.request(
            method, path, headers={**AUTH, "Content-Type": "application/json"}, content=body
        )
        assert 400 <= response.status_code < 500, (path, response.text)
        json.loads(response.text)
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
