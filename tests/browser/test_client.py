"""tidewire.js in Chromium: requests, reconnection, recovery, heartbeat, tokens.

Against the real hub where it can show the behaviour, and against
``FakeSocket`` (fake_socket.js), a WebSocket double scripted by the test,
where the hub would have to misbehave on cue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page

from .conftest import WAIT, Api, HubProcess, Pages

pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])

# Local error codes of tidewire.js.
TIMEOUT, CONNECTION_LOST, NOT_CONNECTED = 1, 2, 3


async def test_backoff_stays_within_min_and_max_with_jitter(pages: Pages) -> None:
    page = await pages.blank()
    result = await page.evaluate("""() => {
        const { backoff } = window.tw;
        const out = { outside: [], ceilings: [], samples: [] };
        for (let attempt = 0; attempt < 60; attempt++) {
            for (const r of [0, 0.3, 0.999999]) {
                const delay = backoff(attempt, 500, 20000, () => r);
                if (!(delay >= 500 && delay <= 20000)) out.outside.push([attempt, r, delay]);
            }
            out.ceilings.push(backoff(attempt, 500, 20000, () => 0.999999));
        }
        for (let i = 0; i < 300; i++) out.samples.push(backoff(3, 500, 20000));
        return out;
    }""")
    assert result["outside"] == []
    ceilings = result["ceilings"]
    for attempt, expected in enumerate([1000, 2000, 4000, 8000, 16000]):
        assert ceilings[attempt] == pytest.approx(expected, rel=1e-3)
    assert all(c == pytest.approx(20000, rel=1e-3) for c in ceilings[5:])
    samples = result["samples"]
    assert all(500 <= s <= 8000 for s in samples)
    # Full jitter: spread over the whole range, not clustered.
    assert len(set(samples)) > 250
    assert min(samples) < 1500 and max(samples) > 7000


async def test_reconnection_delays_grow_within_bounds(pages: Pages, hub: HubProcess) -> None:
    page = await pages.blank()
    # /nope isn't a WebSocket endpoint: every attempt fails.
    events = await page.evaluate("""(url) => new Promise((resolve) => {
        const client = new tw.Client(url, { minDelay: 20, maxDelay: 100 });
        const events = [];
        client.on("disconnect", (event) => {
            events.push(event);
            if (events.length === 7) {
                client.disconnect();
                resolve(events);
            }
        });
        client.connect();
    })""", f"ws://127.0.0.1:{hub.port}/nope")
    failures, last = events[:7], events[7]
    for attempt, event in enumerate(failures):
        assert event["code"] == 1006 and event["reconnect"] is True, event
        assert 20 <= event["delay"] <= min(100, 20 * 2 ** (attempt + 1)), (attempt, event)
    assert last == {"code": 1000, "reason": "disconnect() was called", "reconnect": False,
                    "delay": None}


async def test_request_without_reply_times_out_with_a_code(pages: Pages) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async () => {
        FakeSocket.handler = (socket, request) => {
            if (request.op === "connect") FakeSocket.answer(socket, request);
        };
        const client = new tw.Client("ws://fake.invalid/ws",
            { WebSocket: FakeSocket, timeout: 300 });
        const errors = [];
        client.on("error", (err) => errors.push(err.message));
        client.connect();
        await until(() => client.state === "connected");
        const started = performance.now();
        const err = await client.publish("chat:x", { n: 1 }).then(() => null, (e) => e);
        const elapsed = performance.now() - started;
        // A reply that comes too late is dropped quietly.
        const socket = FakeSocket.last();
        const before = socket.delivered;
        socket.reply(socket.requests("publish")[0], { epoch: "e1", offset: 1 });
        await until(() => socket.delivered === before + 1);
        return {
            name: err.name, code: err.code, message: err.message,
            isTidewireError: err instanceof tw.TidewireError, elapsed,
            state: client.state, errors, TIMEOUT: tw.ErrorCode.TIMEOUT,
        };
    }""")
    assert result["isTidewireError"] and result["name"] == "TidewireError"
    assert result["code"] == result["TIMEOUT"] == TIMEOUT
    assert result["message"] == "no reply to publish in 300 ms"
    assert result["elapsed"] >= 290
    # A slow reply isn't a dead connection: that is the heartbeat's call.
    assert result["state"] == "connected"
    assert result["errors"] == []


async def test_requests_wait_for_the_connection_but_not_for_connect(
    pages: Pages, hub: HubProcess
) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async (url) => {
        const client = new tw.Client(url);
        const before = await client.publish("chat:lobby", { text: "x" })
            .then(() => null, (e) => e.code);
        client.connect();
        const stateThen = client.state;
        const position = await client.publish("chat:lobby", { text: "sent once connected" });
        const history = await client.history("chat:lobby", { limit: 10 });
        client.disconnect();
        const after = await client.presence("chat:lobby").then(() => null, (e) => e.code);
        return { before, stateThen, position, history, after };
    }""", hub.ws_url)
    assert result["before"] == NOT_CONNECTED
    assert result["stateThen"] == "connecting"
    position = result["position"]
    assert position["offset"] == 1 and isinstance(position["epoch"], str)
    assert result["history"]["epoch"] == position["epoch"]
    assert [p["data"] for p in result["history"]["publications"]] == [
        {"text": "sent once connected"}
    ]
    assert result["after"] == NOT_CONNECTED


async def test_state_events_in_order_and_no_reconnect_after_4501(
    pages: Pages, hub: HubProcess, api: Api
) -> None:
    page = await pages.blank()
    client_id = await page.evaluate("""async (url) => {
        window.log = [];
        const client = window.client = new tw.Client(url, { minDelay: 20, maxDelay: 50 });
        client.on("state", (state, previous) => log.push(["state", state, previous]));
        client.on("connect", (session) => log.push(["connect", session.client]));
        client.on("disconnect", (e) => log.push(["disconnect", e.code, e.reason, e.reconnect]));
        client.connect();
        await until(() => client.state === "connected");
        return client.session.client;
    }""", hub.ws_url)
    assert await page.evaluate("log") == [
        ["state", "connecting", "disconnected"],
        ["state", "connected", "connecting"],
        ["connect", client_id],
    ]
    # The backend disconnects it: 4501 means "don't come back".
    assert await api.post("/api/disconnect", {"client": client_id}) == {"disconnected": 1}
    await page.wait_for_function("client.state === 'disconnected'", timeout=WAIT)
    assert (await page.evaluate("log"))[3:] == [
        ["state", "disconnected", "connected"],
        ["disconnect", 4501, "disconnected by the server", False],
    ]
    # Not trying any more: requests fail at once instead of waiting.
    code = await page.evaluate("client.publish('chat:lobby', 1).then(() => null, (e) => e.code)")
    assert code == NOT_CONNECTED
    assert await page.evaluate("client.session") is None

    # The application may connect again, and disconnect.
    await page.evaluate("""async () => {
        log.length = 0;
        client.connect();
        await until(() => client.state === "connected");
        client.disconnect();
    }""")
    log = await page.evaluate("log")
    assert log[:2] == [
        ["state", "connecting", "disconnected"],
        ["state", "connected", "connecting"],
    ]
    assert log[3:] == [
        ["state", "disconnected", "connected"],
        ["disconnect", 1000, "disconnect() was called", False],
    ]


async def test_errors_of_the_hub_carry_the_protocol_code(pages: Pages, hub: HubProcess) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async (url) => {
        const client = new tw.Client(url);
        client.connect();
        const code = (promise) => promise.then(() => null, (e) =>
            e instanceof tw.TidewireError ? [e.code, e.message] : String(e));
        const refused = [];
        const sub = client.subscribe("nope:x", { onError: (e) => refused.push(e.code) });
        await until(() => refused.length > 0);
        return {
            notPublishable: await code(client.publish("ticker:prices", 1)),
            noNamespace: await code(client.publish("nope:x", 1)),
            noPresence: await code(client.presence("ticker:prices")),
            badLimit: await code(client.history("chat:lobby", { limit: "ten" })),
            refused, subState: sub.state, left: client.subscription("nope:x"),
            state: client.state,
        };
    }""", hub.ws_url)
    assert result["notPublishable"] == [403, "clients may not publish to ticker:prices"]
    assert result["noNamespace"][0] == 404
    assert result["noPresence"][0] == 403
    assert result["badLimit"][0] == 400
    assert result["refused"] == [404]
    assert result["subState"] == "unsubscribed" and result["left"] is None
    # Errors never close the connection.
    assert result["state"] == "connected"


async def test_subscription_presence_history_and_unsubscribe(
    pages: Pages, hub: HubProcess
) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async (url) => {
        const client = new tw.Client(url, { info: { name: "Ada" } });
        const first = [], second = [], contexts = [];
        const sub = client.subscribe("chat:lobby", {
            presence: true,
            onSubscribed: (ctx) => contexts.push(ctx),
            onPublication: (pub) => first.push(pub),
        });
        client.connect();
        await until(() => sub.state === "subscribed");
        let twice = null;
        try { client.subscribe("chat:lobby", {}); } catch (err) { twice = err.message; }
        const position = await client.publish("chat:lobby", { n: 1 });
        await until(() => first.length === 1);
        const presence = await sub.presence();
        const history = await sub.history({ limit: 5 });
        const since = await client.history("chat:lobby",
            { since: { epoch: position.epoch, offset: 0 } });
        await sub.unsubscribe();
        await client.publish("chat:lobby", { n: 2 });
        const again = client.subscribe("chat:lobby", { onPublication: (pub) => second.push(pub) });
        await until(() => again.state === "subscribed");
        await client.publish("chat:lobby", { n: 3 });
        await until(() => second.length === 1);
        return {
            me: client.session.client, contexts, first, second, twice, presence, history,
            since, subState: sub.state, position: again.position,
        };
    }""", hub.ws_url)
    me = result["me"]
    [ctx] = result["contexts"]
    assert ctx["channel"] == "chat:lobby" and ctx["offset"] == 0
    assert ctx["recovered"] is False and ctx["resubscribed"] is False
    assert ctx["presence"] == [{"client": me, "user": "", "info": {"name": "Ada"}}]
    assert "already subscribed to chat:lobby" in result["twice"]
    [pub] = result["first"]
    assert pub == {"channel": "chat:lobby", "epoch": ctx["epoch"], "offset": 1, "data": {"n": 1},
                   "from": {"client": me, "user": "", "info": {"name": "Ada"}}}
    assert result["presence"] == ctx["presence"]
    assert [p["data"] for p in result["history"]["publications"]] == [{"n": 1}]
    assert result["since"]["recovered"] is True
    # Nothing after unsubscribe(); the new subscription starts at the channel's end.
    assert result["subState"] == "unsubscribed"
    assert [p["data"] for p in result["second"]] == [{"n": 3}]
    assert result["position"] == {"epoch": ctx["epoch"], "offset": 3}


async def test_duplicates_are_skipped_and_recovered_publications_come_first(
    pages: Pages,
) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async () => {
        let epoch = "e1";
        FakeSocket.handler = (socket, request) => {
            if (request.op !== "subscribe") return FakeSocket.answer(socket, request);
            const n = FakeSocket.instances.indexOf(socket);
            if (n === 0) {
                socket.reply(request, { channel: request.channel, epoch, offset: 5 });
                for (const offset of [6, 7, 7, 6, 8]) {
                    socket.push({ push: "pub", channel: request.channel, offset, data: offset });
                }
            } else if (n === 1) {
                // Recovered, overlapping what was seen, then a duplicate push.
                socket.reply(request, {
                    channel: request.channel, epoch, offset: 10, recovered: true,
                    publications: [7, 8, 9, 10].map((offset) => ({ offset, data: offset })),
                });
                for (const offset of [10, 11]) {
                    socket.push({ push: "pub", channel: request.channel, offset, data: offset });
                }
            } else {
                // The hub lost its history: a new epoch, its offsets from 1 again.
                socket.reply(request, {
                    channel: request.channel, epoch: "e2", offset: 2, recovered: false,
                    publications: [1, 2].map((offset) => ({ offset, data: `e2-${offset}` })),
                });
            }
        };
        const log = [];
        const client = new tw.Client("ws://fake.invalid/ws",
            { WebSocket: FakeSocket, minDelay: 10, maxDelay: 20 });
        const sub = client.subscribe("news", {
            onSubscribed: (ctx) =>
                log.push(["subscribed", ctx.epoch, ctx.recovered, ctx.resubscribed]),
            onPublication: (pub) => log.push([pub.epoch, pub.offset, pub.data]),
        });
        client.connect();
        await until(() => log.length === 4);
        FakeSocket.last().serverClose(1001, "server shutting down, reconnect");
        await until(() => log.length === 8);
        const since1 = FakeSocket.last().requests("subscribe")[0].since;
        FakeSocket.last().serverClose(1006, "");
        await until(() => log.length === 11);
        const since2 = FakeSocket.last().requests("subscribe")[0].since;
        client.disconnect();
        return { log, since1, since2, position: sub.position };
    }""")
    assert result["log"] == [
        ["subscribed", "e1", False, False],
        ["e1", 6, 6], ["e1", 7, 7], ["e1", 8, 8],
        ["subscribed", "e1", True, True],
        ["e1", 9, 9], ["e1", 10, 10], ["e1", 11, 11],
        ["subscribed", "e2", False, True],
        ["e2", 1, "e2-1"], ["e2", 2, "e2-2"],
    ]
    assert result["since1"] == {"epoch": "e1", "offset": 8}
    assert result["since2"] == {"epoch": "e1", "offset": 11}
    assert result["position"] == {"epoch": "e2", "offset": 2}


async def test_subscription_failed_for_now_is_tried_again(pages: Pages) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async () => {
        let failures = 2;
        FakeSocket.handler = (socket, request) => {
            if (request.op === "subscribe" && failures > 0) {
                failures -= 1;
                socket.fail(request, 503, "broker unavailable: redis is down");
            } else {
                FakeSocket.answer(socket, request);
            }
        };
        const errors = [];
        const client = new tw.Client("ws://fake.invalid/ws",
            { WebSocket: FakeSocket, minDelay: 10, maxDelay: 20 });
        const sub = client.subscribe("news", { onError: (err) => errors.push(err.code) });
        client.connect();
        await until(() => sub.state === "subscribed");
        return {
            errors, subscribes: FakeSocket.last().requests("subscribe").length,
            sockets: FakeSocket.instances.length,
        };
    }""")
    # On the same connection: a 503 is the broker's trouble, not the connection's.
    assert result == {"errors": [503, 503], "subscribes": 3, "sockets": 1}


async def test_recovery_after_the_connection_drops(
    pages: Pages, hub: HubProcess, api: Api
) -> None:
    page = await pages.blank()
    await page.evaluate("""async (url) => {
        window.got = [];
        window.contexts = [];
        window.states = [];
        const client = window.client = new tw.Client(url, { minDelay: 50, maxDelay: 200 });
        client.on("state", (state) => states.push(state));
        window.sub = client.subscribe("chat:lobby", {
            onSubscribed: (ctx) => contexts.push(ctx),
            onPublication: (pub) => got.push(pub.data.n),
        });
        client.connect();
        await until(() => sub.state === "subscribed");
    }""", hub.ws_url)

    async def publish(numbers: range) -> None:
        for n in numbers:
            await api.publish("chat:lobby", {"n": n})

    await publish(range(1, 11))
    await page.wait_for_function("got.length === 10", timeout=WAIT)
    # The browser loses the network: the client drops the socket at once.
    await page.context.set_offline(True)
    await page.wait_for_function("states.includes('connecting', 2)", timeout=WAIT)
    await publish(range(11, 31))
    # Publishing goes on while the network comes back and the client reconnects.
    more = asyncio.create_task(publish(range(31, 61)))
    await page.context.set_offline(False)
    await more
    await page.wait_for_function("got.length >= 60", timeout=WAIT)
    result: dict[str, Any] = await page.evaluate("({ got, contexts, states })")
    assert result["got"] == list(range(1, 61))
    first, *later = result["contexts"]
    assert first["resubscribed"] is False
    assert later and all(ctx["recovered"] is True and ctx["resubscribed"] is True
                         and ctx["epoch"] == first["epoch"] for ctx in later), later
    states = result["states"]
    assert states[:2] == ["connecting", "connected"] and states[-1] == "connected", states
    assert "disconnected" not in states


async def test_heartbeat_without_reply_reconnects(pages: Pages) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async () => {
        FakeSocket.handler = (socket, request) => {
            if (request.op === "connect") {
                socket.reply(request, { client: "c", user: "", version: "fake", heartbeat: 0.05 });
            } else if (request.op === "ping" && FakeSocket.instances.indexOf(socket) > 0) {
                socket.reply(request, {});  // the first socket is dead: no pongs
            }
        };
        const disconnects = [];
        const client = new tw.Client("ws://fake.invalid/ws",
            { WebSocket: FakeSocket, heartbeatTimeout: 400, minDelay: 10, maxDelay: 20 });
        client.on("disconnect", (e) => disconnects.push(e));
        client.connect();
        await until(() => FakeSocket.instances.length === 2 && client.state === "connected");
        // The second one answers: it stays up, ping after ping.
        await until(() => FakeSocket.instances[1].requests("ping").length >= 4);
        const [first, second] = FakeSocket.instances;
        const out = {
            pings: first.requests("ping").length, closed: first.closedWith,
            disconnects: [...disconnects], sockets: FakeSocket.instances.length,
            secondOpen: second.readyState,
        };
        client.disconnect();
        return out;
    }""")
    assert result["pings"] == 1
    assert result["closed"]["code"] == 1000
    [event] = result["disconnects"]
    assert event["code"] == 1006 and event["reconnect"] is True
    assert event["reason"] == "no reply to ping in 400 ms"
    assert result["sockets"] == 2 and result["secondOpen"] == 1


async def test_expired_token_gets_a_new_one_and_4500_stops(pages: Pages) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async () => {
        let made = 0;
        const client = new tw.Client("ws://fake.invalid/ws", {
            WebSocket: FakeSocket, minDelay: 10, maxDelay: 20,
            getToken: async () => `token-${++made}`,
        });
        const disconnects = [];
        client.on("disconnect", (e) => disconnects.push([e.code, e.reconnect]));
        const connected = (n) =>
            until(() => FakeSocket.instances.length === n && client.state === "connected");
        client.connect();
        await connected(1);
        FakeSocket.last().serverClose(4001, "token expired");
        await connected(2);
        FakeSocket.last().serverClose(1001, "server shutting down, reconnect");
        await connected(3);
        FakeSocket.last().serverClose(4500, "invalid token");
        await until(() => client.state === "disconnected");
        return {
            tokens: FakeSocket.instances.map((s) => s.requests("connect")[0].token),
            made, disconnects,
        };
    }""")
    # A new token after 4001 only; the hub's restart reuses the valid one.
    assert result["tokens"] == ["token-1", "token-2", "token-2"]
    assert result["made"] == 2
    assert result["disconnects"] == [[4001, True], [1001, True], [4500, False]]


async def test_refused_token_is_replaced_once(pages: Pages) -> None:
    page = await pages.blank()
    result = await page.evaluate("""async () => {
        const good = new Set(["token-2"]);
        FakeSocket.handler = (socket, request) => {
            if (request.op === "connect" && !good.has(request.token)) {
                socket.fail(request, 401, "token expired");
                socket.serverClose(4500, "token expired");
            } else {
                FakeSocket.answer(socket, request);
            }
        };
        let made = 0;
        const errors = [];
        const client = new tw.Client("ws://fake.invalid/ws", {
            WebSocket: FakeSocket, minDelay: 10, maxDelay: 20, token: "token-0",
            getToken: async () => `token-${++made}`,
        });
        client.on("error", (err) => errors.push([err.code, err.message]));
        client.connect();
        // token-0 is refused: getToken() gives token-1, refused too, and the client stops.
        await until(() => client.state === "disconnected");
        const first = { made, errors: [...errors], sockets: FakeSocket.instances.length };
        // The application tries again: a refused token is never sent again.
        client.connect();
        await until(() => client.state === "connected");
        const tokens = FakeSocket.instances.map((s) => s.requests("connect")[0].token);
        return { first, made, tokens };
    }""")
    assert result["first"] == {"made": 1, "errors": [[401, "token expired"]], "sockets": 2}
    assert result["tokens"] == ["token-0", "token-1", "token-2"]
    assert result["made"] == 2


async def test_an_exception_in_a_callback_breaks_nothing(
    pages: Pages, hub: HubProcess, api: Api
) -> None:
    page = await pages.blank()
    await page.evaluate("""async (url) => {
        window.got = [];
        const client = new tw.Client(url);
        client.on("state", () => { throw new Error("a bad state listener"); });
        const sub = client.subscribe("chat:lobby", {
            onPublication: (pub) => {
                got.push(pub.data);
                if (pub.data === 1) throw new Error("a bad publication handler");
            },
        });
        client.connect();
        await until(() => sub.state === "subscribed");
    }""", hub.ws_url)
    await api.publish("chat:lobby", 1)
    await api.publish("chat:lobby", 2)
    await page.wait_for_function("got.length === 2", timeout=WAIT)
    assert await page.evaluate("got") == [1, 2]
    # Reported as the page's uncaught errors, not swallowed.
    await _wait_for_errors(page, pages, 3)
    assert sum("a bad state listener" in e for e in pages.errors) == 2
    assert sum("a bad publication handler" in e for e in pages.errors) == 1
    pages.errors.clear()


async def _wait_for_errors(page: Page, pages: Pages, count: int) -> None:
    # pageerror events reach Python asynchronously: a round trip flushes them.
    for _ in range(100):
        if len(pages.errors) >= count:
            return
        await page.evaluate("0")
    raise AssertionError(f"expected {count} page errors, got {pages.errors}")
