"""The backend proxy against a real HTTP backend: requests, answers, failures.

docs/proxy.md is the specification. A backend that is down, slow, answers 500,
garbage or closes mid-answer makes every event fail the same way: error 503
"backend unavailable, retry", the connection kept, nothing published, the
failure counted in /metrics, no traceback in the log.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tidewire.hub import Hub, HubConfig, Namespace, ProxyConfig

from .backend import Backend, down_url
from .conftest import NAMESPACES, MakeHub
from .helpers import API_KEY, Client, token, within
from .test_httpapi import metric

UNAVAILABLE = (503, "backend unavailable, retry")
EVENTS = ("connect", "refresh", "rpc", "subscribe", "publish")

PROXIED = {
    **NAMESPACES,
    "room": Namespace(history_size=10, history_ttl=300, presence=True, publish=True,
                      anonymous=True, subscribe_proxy=True, publish_proxy=True),
}

Proxied = Callable[..., Awaitable[Hub]]


@pytest.fixture
def proxied(make_hub: MakeHub, backend: Backend) -> Proxied:
    """A hub whose every proxy URL points at ``backend`` (``urls`` replaces some)."""

    # A second, not less: on a loaded machine a healthy backend can take
    # a few hundred milliseconds to answer.
    async def make(timeout: float = 1.0, headers: tuple[str, ...] = ("Cookie",),
                   urls: dict[str, str | None] | None = None, **changes: Any) -> Hub:
        proxy = ProxyConfig(**{**backend.urls(*EVENTS), **(urls or {})},
                            timeout=timeout, headers=headers)
        changes.setdefault("namespaces", PROXIED)
        return await make_hub(proxy=proxy, **changes)

    return make


async def metrics_text(hub: Hub) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}") as http:
        return (await http.get("/metrics")).text


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


# Connect.


async def test_connect_asks_the_backend_with_the_allowed_headers(
    proxied: Proxied, backend: Backend
) -> None:
    hub = await proxied(headers=("Cookie", "X-Forwarded-For"))
    backend.answers["connect"] = {"result": {
        "user": "42", "expire_at": 4102444800, "info": {"name": "Ada"},
        "data": {"greeting": "hello Ada"},
    }}
    client = await Client.open(
        hub, data={"page": "/home"},
        headers={"Cookie": "session=s3cret", "X-Forwarded-For": "10.1.2.3",
                 "X-Other": "not copied"},
    )
    result = client.connected
    assert result["user"] == "42" and result["expires"] == 4102444800
    assert result["data"] == {"greeting": "hello Ada"}
    call = await within(backend.next("connect"))
    assert call.body == {"client": result["client"], "transport": "websocket",
                         "data": {"page": "/home"}}
    assert call.headers["Cookie"] == "session=s3cret"
    assert call.headers["X-Forwarded-For"] == "10.1.2.3"
    assert "X-Other" not in call.headers
    assert call.headers["Content-Type"] == "application/json"
    presence = await client.request("subscribe", channel="chat:x", presence=True)
    assert presence["presence"] == [
        {"client": result["client"], "user": "42", "info": {"name": "Ada"}}
    ]
    await client.close()


async def test_connect_with_a_token_or_the_api_key_asks_no_backend(
    proxied: Proxied, backend: Backend
) -> None:
    hub = await proxied()
    with_token = await Client.open(hub, token=token("tess"))
    assert with_token.connected["user"] == "tess"
    with_key = await Client.open(hub, api_key=API_KEY)
    assert backend.count.get("connect", 0) == 0
    await with_token.close()
    await with_key.close()


async def test_cookies_set_by_the_backend_reach_no_other_call(
    proxied: Proxied, backend: Backend
) -> None:
    hub = await proxied()
    backend.answers["connect"] = {"result": {"user": "u"}}
    backend.headers["connect"] = {"Set-Cookie": "session=of-the-first-user; Path=/"}
    first = await Client.open(hub, headers={"Cookie": "session=first"})
    second = await Client.open(hub)
    assert (await within(backend.next("connect"))).headers["Cookie"] == "session=first"
    assert "Cookie" not in (await within(backend.next("connect"))).headers
    await first.close()
    await second.close()


async def test_connect_refused_by_the_backend_gets_its_error_and_stays_open(
    proxied: Proxied, backend: Backend
) -> None:
    hub = await proxied()
    backend.answers["connect"] = {"error": {"code": 403, "message": "log in first"}}
    client = await Client.open(hub, connect=False)
    assert await client.error("connect") == (403, "log in first")
    backend.answers["connect"] = {"result": {"user": "ann"}}
    assert (await client.request("connect"))["user"] == "ann"
    await client.close()


async def test_backend_disconnect_closes_with_its_code(proxied: Proxied, backend: Backend
                                                       ) -> None:
    hub = await proxied()
    backend.answers["connect"] = {"disconnect": {"code": 4403, "reason": "banned"}}
    client = await Client.open(hub, connect=False)
    await client.send({"id": 1, "op": "connect"})
    assert await client.closed() == (4403, "banned")


# The failures, for each event a client's request starts.

FAILURES = ["slow", "stall", "down", "500", "garbage", "cut"]


async def _fail(backend: Backend, event: str, mode: str) -> dict[str, str | None]:
    if mode == "down":
        return {event: down_url(event)}
    backend.modes[event] = mode
    return {}


REASONS = {"slow": "timeout", "stall": "timeout", "down": "unreachable", "500": "status",
           "garbage": "malformed", "cut": "broken"}


@pytest.mark.parametrize("broker_url", ["memory"], indirect=True)
@pytest.mark.parametrize("mode", FAILURES)
async def test_connect_to_a_failing_backend_gets_503_and_may_try_again(
    proxied: Proxied, backend: Backend, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    urls = await _fail(backend, "connect", mode)
    hub = await proxied(urls=urls)
    client = await Client.open(hub, connect=False)
    assert await client.error("connect") == UNAVAILABLE
    assert await client.error("ping") == (401, "not connected: send connect first")
    text = await metrics_text(hub)
    assert metric(text, f'tidewire_hub_proxy_failures_total{{event="connect",'
                        f'reason="{REASONS[mode]}"}}') == 1
    assert metric(text, 'tidewire_hub_proxy_calls_total{event="connect"}') == 1
    no_traceback(caplog)
    await client.close()


@pytest.mark.parametrize("broker_url", ["memory"], indirect=True)
@pytest.mark.parametrize("mode", FAILURES)
@pytest.mark.parametrize("event", ["rpc", "subscribe", "publish"])
async def test_requests_to_a_failing_backend_get_503_and_keep_the_connection(
    proxied: Proxied, backend: Backend, event: str, mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    urls = await _fail(backend, event, mode)
    hub = await proxied(urls=urls)
    client = await Client.open(hub, token=token("ann"))
    watcher = await Client.open(hub, api_key=API_KEY)
    await watcher.request("subscribe", channel="room:1")
    fields: dict[str, Any] = {
        "rpc": {"method": "add", "data": [1, 2]},
        "subscribe": {"channel": "room:1"},
        "publish": {"channel": "room:1", "data": "never published"},
    }[event]
    assert await client.error(event, **fields) == UNAVAILABLE
    assert await client.request("ping") == {}  # the connection goes on
    history = await client.request("history", channel="room:1") if event != "subscribe" else None
    if history is not None:
        assert history["publications"] == [] and history["offset"] == 0
    presence = await watcher.request("presence", channel="room:1")
    assert [c["user"] for c in presence["clients"]] == [""]  # ann never subscribed
    text = await metrics_text(hub)
    assert metric(text, f'tidewire_hub_proxy_failures_total{{event="{event}",'
                        f'reason="{REASONS[mode]}"}}') == 1
    no_traceback(caplog)
    await client.close()
    await watcher.close()


# What a backend may answer, checked.

BAD_ANSWERS: list[tuple[str, Any, str]] = [
    ("rpc", b"", "malformed"),
    ("rpc", b"[1, 2]", "malformed"),
    ("rpc", b'{"result": {"data": NaN}}', "malformed"),
    ("rpc", b'{"result": {"data": 1e999}}', "invalid"),
    ("connect", b'{"result": {"user": "u", "expire_at": 1e999}}', "invalid"),
    ("connect", b'{"result": {"user": "u", "info": {"x": -1e999}}}', "invalid"),
    ("rpc", b"\xff\xfe{}", "malformed"),
    ("rpc", b"[" * 100_000 + b"]" * 100_000, "malformed"),
    ("rpc", b'{"result": {"data": "\\ud800"}}', "invalid"),
    ("rpc", {}, "invalid"),
    ("rpc", {"result": {}, "error": {"code": 400, "message": "both"}}, "invalid"),
    ("rpc", {"answer": 42}, "invalid"),
    ("rpc", {"result": [1]}, "invalid"),
    ("rpc", {"result": {"data": 1, "extra": 2}}, "invalid"),
    ("rpc", {"error": {"code": 200, "message": "fine?"}}, "invalid"),
    ("rpc", {"error": {"code": 1000, "message": "app code"}}, "invalid"),
    ("rpc", {"error": {"code": "404", "message": "a string code"}}, "invalid"),
    ("rpc", {"error": {"code": True, "message": "a boolean code"}}, "invalid"),
    ("rpc", {"error": {"code": 400}}, "invalid"),
    ("rpc", {"error": {"code": 400, "message": "x" * 2000}}, "invalid"),
    ("rpc", {"error": {"code": 400, "message": "m", "details": 1}}, "invalid"),
    ("rpc", {"disconnect": {"code": 1000, "reason": "normal?"}}, "invalid"),
    ("rpc", {"disconnect": {"code": 5000, "reason": "too high"}}, "invalid"),
    ("rpc", {"disconnect": {"code": 4000, "reason": "é" * 62}}, "invalid"),
    ("rpc", {"disconnect": {"code": 4000, "reason": 7}}, "invalid"),
    ("subscribe", {"result": {"data": 1}}, "invalid"),
    ("publish", {"result": {"channel": "room:other"}}, "invalid"),
    ("connect", {"result": {}}, "invalid"),
    ("connect", {"result": {"user": 42}}, "invalid"),
    ("connect", {"result": {"user": "u", "expire_at": "soon"}}, "invalid"),
    ("connect", {"result": {"user": "u", "expire_at": -1}}, "invalid"),
    # Finite, but beyond what the connect reply's "expires" can carry exactly.
    ("connect", {"result": {"user": "u", "expire_at": 1.7976931348623157e308}}, "invalid"),
    ("connect", {"result": {"user": "u", "expire_at": 2**53}}, "invalid"),
    ("connect", {"result": {"user": "u", "info": "Ada"}}, "invalid"),
    ("connect", {"result": {"user": "u", "info": {"blob": "x" * 2000}}}, "invalid"),
    ("connect", {"result": {"user": "u", "channels": "chat:x"}}, "invalid"),
    ("connect", {"result": {"user": "u", "channels": ["nowhere:x"]}}, "invalid"),
    ("connect", {"result": {"user": "u", "channels": [""]}}, "invalid"),
    ("connect", {"result": {"user": "u", "roles": ["admin"]}}, "invalid"),
]


@pytest.mark.parametrize("broker_url", ["memory"], indirect=True)
@pytest.mark.parametrize("event, answer, reason", BAD_ANSWERS)
async def test_answers_of_the_wrong_shape_are_503_and_counted(
    proxied: Proxied, backend: Backend, event: str, answer: Any, reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = await proxied()
    backend.answers[event] = answer
    fields: dict[str, Any] = {
        "connect": {}, "rpc": {"method": "m"}, "subscribe": {"channel": "room:1"},
        "publish": {"channel": "room:1", "data": 1},
    }[event]
    client = await Client.open(hub, connect=False)
    if event != "connect":
        await client.request("connect", token=token("ann"))
    assert await client.error(event, **fields) == UNAVAILABLE
    if event == "connect":
        assert (await client.error("ping"))[0] == 401  # not connected, still open
    else:
        assert await client.request("ping") == {}
    text = await metrics_text(hub)
    assert metric(text, f'tidewire_hub_proxy_failures_total{{event="{event}",'
                        f'reason="{reason}"}}') == 1
    assert f"{event} proxy: answered" in caplog.text
    no_traceback(caplog)
    await client.close()


async def test_answers_over_1_mib_are_refused(proxied: Proxied, backend: Backend) -> None:
    hub = await proxied(timeout=5)
    backend.answers["rpc"] = {"result": {"data": "x" * (1024 * 1024)}}
    client = await Client.open(hub, token=token("ann"))
    assert await client.error("rpc", method="big") == UNAVAILABLE
    backend.answers["rpc"] = {"result": {"data": "x" * (1000 * 1000)}}
    assert len((await client.request("rpc", method="big"))["data"]) == 1000 * 1000
    await client.close()


# RPC.


async def test_rpc_goes_to_the_backend_and_its_data_comes_back(
    proxied: Proxied, backend: Backend
) -> None:
    hub = await proxied()
    backend.answers["rpc"] = lambda body: {"result": {"data": sum(body["data"])}}
    client = await Client.open(hub, token=token("ann"), headers={"Cookie": "a=1"})
    assert await client.request("rpc", method="add", data=[1, 2, 3]) == {"data": 6}
    call = await within(backend.next("rpc"))
    assert call.body == {"client": client.connected["client"], "user": "ann",
                         "transport": "websocket", "method": "add", "data": [1, 2, 3]}
    assert call.headers["Cookie"] == "a=1"
    backend.answers["rpc"] = {"result": {}}
    assert await client.request("rpc", method="nothing") == {"data": None}
    backend.answers["rpc"] = {"error": {"code": 422, "message": "bad numbers"}}
    assert await client.error("rpc", method="add") == (422, "bad numbers")
    backend.answers["rpc"] = {"disconnect": {"code": 4501, "reason": "go away"}}
    await client.send({"id": 9, "op": "rpc", "method": "add"})
    assert await client.closed() == (4501, "go away")


async def test_rpc_needs_a_method_and_a_configured_proxy(
    make_hub: MakeHub, proxied: Proxied
) -> None:
    hub = await proxied()
    client = await Client.open(hub)
    for fields in ({}, {"method": ""}, {"method": 5}, {"method": "m" * 256}):
        code, message = await client.error("rpc", **fields)
        assert code == 400 and "method" in message
    plain = await make_hub()
    other = await Client.open(plain)
    assert await other.error("rpc", method="m") == (
        501, "rpc is off: the hub has no [proxy] rpc URL")
    await client.close()
    await other.close()


# Subscribe and publish proxies.


async def test_subscribe_proxy_decides_in_its_namespace_only(
    proxied: Proxied, backend: Backend
) -> None:
    hub = await proxied()
    client = await Client.open(hub, token=token("ann"))
    backend.answers["subscribe"] = lambda body: (
        {"result": {}} if body["channel"] == "room:open"
        else {"error": {"code": 403, "message": "members only"}}
    )
    await client.request("subscribe", channel="room:open")
    call = await within(backend.next("subscribe"))
    assert call.body == {"client": client.connected["client"], "user": "ann",
                         "transport": "websocket", "channel": "room:open"}
    assert await client.error("subscribe", channel="room:closed") == (403, "members only")
    await client.request("subscribe", channel="chat:free")  # chat has no proxy
    assert backend.count["subscribe"] == 2
    backend_conn = await Client.open(hub, api_key=API_KEY)
    await backend_conn.request("subscribe", channel="room:closed")  # backends aren't asked
    assert backend.count["subscribe"] == 2
    await client.close()
    await backend_conn.close()


async def test_publish_proxy_may_rewrite_or_refuse(proxied: Proxied, backend: Backend
                                                   ) -> None:
    hub = await proxied()
    client = await Client.open(hub, token=token("ann"))
    await client.request("subscribe", channel="room:1")

    def moderate(body: dict[str, Any]) -> dict[str, Any]:
        text = body["data"]["text"]
        if "spam" in text:
            return {"error": {"code": 403, "message": "no spam"}}
        if "darn" in text:
            return {"result": {"data": {"text": text.replace("darn", "****")}}}
        return {"result": {}}

    backend.answers["publish"] = moderate
    await client.request("publish", channel="room:1", data={"text": "hello"})
    await client.request("publish", channel="room:1", data={"text": "darn it"})
    assert await client.error("publish", channel="room:1", data={"text": "spam!"}) == (
        403, "no spam")
    assert await client.pubs(2) == [{"text": "hello"}, {"text": "**** it"}]
    call = await within(backend.next("publish"))
    assert call.body == {"client": client.connected["client"], "user": "ann",
                         "transport": "websocket", "channel": "room:1",
                         "data": {"text": "hello"}}
    history = await client.request("history", channel="room:1")
    assert [p["data"]["text"] for p in history["publications"]] == ["hello", "**** it"]
    await client.close()


# Refresh.


async def test_refresh_extends_the_connection(proxied: Proxied, backend: Backend) -> None:
    hub = await proxied()
    expires = time.time() + 2
    backend.answers["connect"] = {"result": {"user": "ann", "expire_at": expires}}
    backend.answers["refresh"] = {"result": {"expire_at": 4102444800, "info": {"v": 2}}}
    client = await Client.open(hub)
    call = await within(backend.next("refresh"))  # before the expiry
    assert call.body == {"client": client.connected["client"], "user": "ann",
                         "transport": "websocket"}
    push = await client.push("refresh")
    assert push == {"push": "refresh", "expires": 4102444800}
    result = await client.request("subscribe", channel="chat:r", presence=True)
    assert result["presence"][0]["info"] == {"v": 2}
    await client.close()


async def test_refresh_may_disconnect(proxied: Proxied, backend: Backend) -> None:
    hub = await proxied()
    backend.answers["connect"] = {"result": {"user": "ann",
                                             "expire_at": time.time() + 1}}
    backend.answers["refresh"] = {"disconnect": {"code": 4500, "reason": "logged out"}}
    client = await Client.open(hub)
    assert await client.closed() == (4500, "logged out")


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refresh tries again after 0.05 s, 0.1 s, 0.2 s... instead of 1 s, 2 s..."""
    from tidewire.hub import session

    monkeypatch.setattr(session, "REFRESH_RETRY", 0.05)


@pytest.mark.parametrize("broker_url", ["memory"], indirect=True)
async def test_refresh_tries_again_after_a_failure(
    proxied: Proxied, backend: Backend, quick_retries: None
) -> None:
    hub = await proxied()
    backend.answers["connect"] = {"result": {"user": "ann", "expire_at": time.time() + 3}}
    backend.modes["refresh"] = ["500", "ok"]
    backend.answers["refresh"] = {"result": {"expire_at": 4102444800}}
    client = await Client.open(hub)
    assert await within(client.push("refresh")) == {"push": "refresh", "expires": 4102444800}
    assert backend.count["refresh"] == 2
    await client.close()


@pytest.mark.parametrize("broker_url", ["memory"], indirect=True)
@pytest.mark.parametrize("mode", ["500", "error"])
async def test_refresh_failing_keeps_the_connection_until_its_expiry(
    proxied: Proxied, backend: Backend, mode: str, quick_retries: None
) -> None:
    hub = await proxied()
    expires = time.time() + 2.5
    backend.answers["connect"] = {"result": {"user": "ann", "expire_at": expires}}
    if mode == "500":
        backend.modes["refresh"] = "500"
    else:
        backend.answers["refresh"] = {"error": {"code": 403, "message": "no"}}
    client = await Client.open(hub)
    assert await client.request("ping") == {}
    code, reason = await within(client.closed(), 10)
    assert (code, reason) == (4001, "connection expired")
    assert time.time() >= expires - 0.05
    if mode == "500":
        assert backend.count["refresh"] >= 2  # tried again while time was left
    else:
        assert backend.count["refresh"] == 1  # a refusal isn't asked again


async def test_without_a_refresh_proxy_the_connection_closes_at_its_expiry(
    proxied: Proxied, backend: Backend
) -> None:
    hub = await proxied(urls={"refresh": None})
    backend.answers["connect"] = {"result": {"user": "ann",
                                             "expire_at": time.time() + 1}}
    client = await Client.open(hub)
    assert await within(client.closed()) == (4001, "connection expired")
    assert backend.count.get("refresh", 0) == 0


# Config and metrics.


def test_proxy_config_is_checked() -> None:
    from tidewire.hub import ConfigError

    with pytest.raises(ConfigError, match="proxy.rpc must be an http"):
        ProxyConfig(rpc="ftp://x")
    with pytest.raises(ConfigError, match="belongs to the proxy request"):
        ProxyConfig(headers=("Content-Length",))
    with pytest.raises(ConfigError, match="isn't a header name"):
        ProxyConfig(headers=("Bad Header",))
    with pytest.raises(ConfigError, match="subscribe_proxy = true"):
        HubConfig(namespaces={"x": Namespace(subscribe_proxy=True)})


async def test_metrics_list_every_event_and_reason(proxied: Proxied, backend: Backend) -> None:
    hub = await proxied()
    client = await Client.open(hub, token=token("ann"))
    await client.request("rpc", method="m")
    text = await metrics_text(hub)
    assert metric(text, 'tidewire_hub_proxy_calls_total{event="rpc"}') == 1
    assert metric(text, 'tidewire_hub_proxy_duration_seconds_count{event="rpc"}') == 1
    for event in EVENTS:
        assert metric(text, f'tidewire_hub_proxy_failures_total{{event="{event}",'
                            'reason="timeout"}') == 0
    await client.close()
