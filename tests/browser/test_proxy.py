"""tidewire.js with the backend proxy: rpc, a connect that fails then works,
server-side subscriptions and their recovery. A real hub (``tidewire serve
--config``) asks a real backend (aiohttp.web, in the test's process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..hub.backend import (
    Backend,
    backend_fixture,  # noqa: F401 - the fixture `backend`
)
from .conftest import WAIT, Api, HubProcess, Pages

pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])

CONFIG = """
[proxy]
connect = "{url}/connect"
rpc = "{url}/rpc"
timeout = 2.0
headers = ["Cookie"]

[namespaces.chat]
history_size = 100
presence = true
publish = true
anonymous = true

[namespaces.news]
history_size = 100
anonymous = true
"""


@pytest.fixture
async def hub(tmp_path: Path, backend: Backend) -> AsyncIterator[HubProcess]:
    path = tmp_path / "hub.toml"
    path.write_text(CONFIG.format(url=f"http://127.0.0.1:{backend.port}"))
    process = HubProcess("--config", str(path), "--no-demo")
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


async def test_rpc_reaches_the_backend_with_the_pages_cookie(
    pages: Pages, hub: HubProcess, backend: Backend
) -> None:
    backend.answers["connect"] = {"result": {"user": "ada", "data": {"plan": "pro"}}}

    def rpc(body: dict[str, Any]) -> dict[str, Any]:
        if body["method"] == "add":
            return {"result": {"data": sum(body["data"])}}
        return {"error": {"code": 422, "message": f"no method {body['method']}"}}

    backend.answers["rpc"] = rpc
    page = await pages.blank()
    await page.context.add_cookies([{"name": "session", "value": "ada-s3cret", "url": hub.base}])
    result = await page.evaluate("""async (url) => {
        const client = new tw.Client(url, { data: { page: "blank" } });
        client.connect();
        const sum = await client.rpc("add", [1, 2, 3]);
        const err = await client.rpc("divide", [1, 0]).then(() => null, (e) => [e.code, e.message]);
        const bad = await client.rpc("").then(() => null, (e) => e.name);
        const session = client.session;
        client.disconnect();
        return { sum, err, bad, session };
    }""", hub.ws_url)
    assert result["sum"] == 6
    assert result["err"] == [422, "no method divide"]
    assert result["bad"] == "TypeError"
    assert result["session"]["user"] == "ada" and result["session"]["data"] == {"plan": "pro"}
    connect = await backend.next("connect")
    assert connect.body["data"] == {"page": "blank"}
    assert connect.headers["Cookie"] == "session=ada-s3cret"
    call = await backend.next("rpc")
    assert call.body["user"] == "ada" and call.headers["Cookie"] == "session=ada-s3cret"


async def test_connect_with_the_backend_unavailable_is_tried_again_with_backoff(
    pages: Pages, hub: HubProcess, backend: Backend
) -> None:
    backend.modes["connect"] = ["500", "garbage", "ok"]
    backend.answers["connect"] = {"result": {"user": "ada"}}
    page = await pages.blank()
    result = await page.evaluate("""async (url) => {
        const client = new tw.Client(url, { minDelay: 20, maxDelay: 100 });
        const disconnects = [], errors = [];
        client.on("disconnect", (e) => disconnects.push(e));
        client.on("error", (e) => errors.push([e.code, e.message]));
        client.connect();
        await until(() => client.state === "connected");
        const user = client.session.user;
        client.disconnect();
        return { disconnects, errors, user };
    }""", hub.ws_url)
    assert result["user"] == "ada"
    assert result["errors"] == [[503, "backend unavailable, retry"]] * 2
    retries, last = result["disconnects"][:2], result["disconnects"][2]
    for attempt, event in enumerate(retries):
        assert event["reconnect"] is True and "backend unavailable" in event["reason"]
        assert 20 <= event["delay"] <= min(100, 20 * 2 ** (attempt + 1))
    assert last["code"] == 1000 and last["reconnect"] is False
    assert backend.count["connect"] == 3


async def test_a_connect_refused_by_the_backend_stops(
    pages: Pages, hub: HubProcess, backend: Backend
) -> None:
    backend.answers["connect"] = {"error": {"code": 401, "message": "log in first"}}
    page = await pages.blank()
    result = await page.evaluate("""async (url) => {
        const client = new tw.Client(url, { minDelay: 20, maxDelay: 50 });
        const disconnects = [];
        client.on("disconnect", (e) => disconnects.push([e.code, e.reason, e.reconnect]));
        client.connect();
        await until(() => disconnects.length > 0);
        return { disconnects, state: client.state };
    }""", hub.ws_url)
    assert result == {"disconnects": [[1000, "connect refused: log in first", False]],
                      "state": "disconnected"}
    assert backend.count["connect"] == 1


async def test_server_side_subscriptions_are_events_and_survive_a_drop(
    pages: Pages, hub: HubProcess, backend: Backend, api: Api
) -> None:
    backend.answers["connect"] = {"result": {"user": "ada", "channels": ["news:ada"]}}
    page = await pages.blank()
    await page.evaluate("""async (url) => {
        window.log = [];
        window.got = [];
        window.states = [];
        const client = window.client = new tw.Client(url, { minDelay: 50, maxDelay: 200 });
        client.on("state", (state) => states.push(state));
        client.on("subscribed", (ctx) =>
            log.push(["subscribed", ctx.channel, ctx.recovered, ctx.resubscribed]));
        client.on("unsubscribed", (ctx) => log.push(["unsubscribed", ctx.channel]));
        client.on("publication", (pub) => got.push([pub.channel, pub.data]));
        client.connect();
        await until(() => log.length === 1);
    }""", hub.ws_url)
    for n in range(1, 6):
        await api.publish("news:ada", n)
    await page.wait_for_function("got.length === 5", timeout=WAIT)
    # The network goes, publications go on, the network comes back.
    await page.context.set_offline(True)
    await page.wait_for_function("states.includes('connecting', 2)", timeout=WAIT)
    for n in range(6, 21):
        await api.publish("news:ada", n)
    more = asyncio.create_task(_publish(api, range(21, 41)))
    await page.context.set_offline(False)
    await more
    await page.wait_for_function("got.length >= 40", timeout=WAIT)
    # The backend subscribes it to one more channel, then ends it.
    await api.post("/api/subscribe", {"user": "ada", "channel": "chat:ada"})
    await page.wait_for_function("log.length >= 3", timeout=WAIT)
    await api.publish("chat:ada", "hello")
    await page.wait_for_function("got.length === 41", timeout=WAIT)
    await api.post("/api/unsubscribe", {"user": "ada", "channel": "chat:ada"})
    await page.wait_for_function("log.length === 4", timeout=WAIT)
    await api.publish("chat:ada", "after")
    await api.publish("news:ada", 41)
    await page.wait_for_function("got.length === 42", timeout=WAIT)
    result = await page.evaluate("""() => ({
        log, got, channels: [...client.serverSubscriptions().keys()],
    })""")
    assert [data for channel, data in result["got"] if channel == "news:ada"] == list(
        range(1, 42))
    assert ["chat:ada", "hello"] in result["got"] and ["chat:ada", "after"] not in result["got"]
    log = result["log"]
    assert log[0] == ["subscribed", "news:ada", False, False]
    assert all(entry == ["subscribed", "news:ada", True, True] for entry in log[1:-2]), log
    assert len(log) == 4 and log[-2:] == [["subscribed", "chat:ada", False, False],
                                          ["unsubscribed", "chat:ada"]]
    assert result["channels"] == ["news:ada"]


async def _publish(api: Api, numbers: range) -> None:
    for n in numbers:
        await api.publish("news:ada", n)


async def test_server_side_positions_are_sent_again_and_duplicates_skipped(
    pages: Pages,
) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async () => {
        FakeSocket.handler = (socket, request) => {
            const n = FakeSocket.instances.indexOf(socket);
            FakeSocket.answer(socket, request);
            if (request.op !== "connect") return;
            if (n === 0) {
                socket.push({ push: "subscribe", channel: "feed", epoch: "e1", offset: 2 });
                for (const offset of [3, 4, 4, 3]) {
                    socket.push({ push: "pub", channel: "feed", offset, data: offset });
                }
                socket.push({ push: "refresh", expires: 2000000000 });
            } else {
                socket.push({ push: "subscribe", channel: "feed", epoch: "e1", offset: 6,
                  recovered: true,
                  publications: [4, 5, 6].map((offset) => ({ offset, data: offset })) });
                socket.push({ push: "pub", channel: "feed", offset: 6, data: 6 });
            }
        };
        const log = [];
        const client = new tw.Client("ws://fake.invalid/ws",
            { WebSocket: FakeSocket, minDelay: 10, maxDelay: 20 });
        client.on("subscribed", (ctx) => log.push(["subscribed", ctx.recovered, ctx.resubscribed]));
        client.on("publication", (pub) => log.push([pub.epoch, pub.offset]));
        client.on("unsubscribed", (ctx) => log.push(["unsubscribed", ctx.channel]));
        client.connect();
        await until(() => client.session !== null && client.session.expires === 2000000000);
        FakeSocket.last().serverClose(1001, "server shutting down, reconnect");
        await until(() => log.length === 6);
        const sent = FakeSocket.last().requests("connect")[0].server_subs;
        client.disconnect();
        return { log, sent };
    }""")
    assert result["sent"] == {"feed": {"epoch": "e1", "offset": 4}}
    assert result["log"] == [
        ["subscribed", False, False], ["e1", 3], ["e1", 4],
        ["subscribed", True, True], ["e1", 5], ["e1", 6],
    ]


async def test_subscription_tokens_from_get_token_and_the_hub_ending_one(
    pages: Pages,
) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async () => {
        FakeSocket.handler = (socket, request) => {
            if (request.op === "subscribe" && request.token !== "token-2") {
                socket.fail(request, 401, "subscription token expired");
            } else {
                FakeSocket.answer(socket, request);
            }
        };
        let made = 0;
        const ended = [];
        const client = new tw.Client("ws://fake.invalid/ws",
            { WebSocket: FakeSocket, minDelay: 10, maxDelay: 20 });
        const sub = client.subscribe("secret:room", {
            getToken: async (channel) => `token-${++made}`,
            onUnsubscribed: (ctx) => ended.push(ctx.channel),
        });
        client.connect();
        await until(() => sub.state === "subscribed");
        const tokens = FakeSocket.last().requests("subscribe").map((r) => r.token);
        // The hub ends it: it is over, and not subscribed again after a drop.
        FakeSocket.last().push({ push: "unsubscribe", channel: "secret:room" });
        await until(() => ended.length === 1);
        FakeSocket.last().serverClose(1001, "server shutting down, reconnect");
        await until(() => FakeSocket.instances.length === 2 && client.state === "connected");
        const again = FakeSocket.last().requests("subscribe").length;
        client.disconnect();
        return { tokens, made, ended, state: sub.state, left: client.subscription("secret:room"),
                 again };
    }""")
    assert result["tokens"] == ["token-1", "token-2"]
    assert result["made"] == 2
    assert result["ended"] == ["secret:room"] and result["state"] == "unsubscribed"
    assert result["left"] is None and result["again"] == 0
