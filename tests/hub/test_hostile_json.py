"""JSON that Python reads but the hub can't carry gets a 400 saying why, on /ws
and on the HTTP API; what the hub does carry reaches subscribers intact.

Every reply and push read here goes through ``strict_json`` (helpers.py), and
the suite's ``hub_tracebacks`` fixture fails a test whose input left a
traceback in the log.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest

from tidewire.hub import Hub, MemoryBroker

from ..conftest import HubTracebacks
from .conftest import config
from .helpers import API_KEY, Client, ReplyError, http_client, token, within

AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
CHANNEL = "chat:hostile"


def nested(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


def publish(data: str, rid: str = "1") -> str:
    return f'{{"id":{rid},"op":"publish","channel":"{CHANNEL}","data":{data}}}'


# (request text, what the error message says, whether the reply names the id)
REFUSED = {
    "nesting-beyond-the-parser": (publish(nested(30_000)), "nests deeper than 32 levels", False),
    "nesting-33-levels": (publish(nested(33)), "data nests deeper than 32 levels", True),
    "nesting-in-an-object": (publish('{"a":' * 40 + "1" + "}" * 40),
                             "data nests deeper than 32 levels", True),
    "float-overflow": (publish("1e400"), "number 1e400 is out of range", True),
    "negative-float-overflow": (publish('{"x":[-1e999]}'), "number -1e999 is out of range",
                                True),
    "long-mantissa-overflow": (publish("1" + "0" * 400 + ".5"), "is out of range", True),
    "integer-2**53": (publish("9007199254740992"),
                      "number 9007199254740992 is out of range", True),
    "integer-minus-2**53": (publish("[-9007199254740992]"), "send it as a string", True),
    "integer-of-400-digits": (publish("1" * 400), "out of range", True),
    "integer-over-4300-digits": (publish("9" * 5000), "out of range", False),
    "lone-high-surrogate": (publish('"\\ud800"'), "data holds a lone surrogate", True),
    "lone-low-surrogate-in-a-key": (publish('{"ok":1,"\\udc00":1}'),
                                    "data holds a lone surrogate", True),
    "surrogates-in-the-wrong-order": (publish('["\\udc00\\ud800"]'), "lone surrogate", True),
    "surrogate-deep-in-data": (publish('{"a":[{"b":"x\\udfffy"}]}'), "lone surrogate", True),
    "surrogate-in-a-channel": ('{"id":1,"op":"subscribe","channel":"chat:\\ud800"}',
                               "channel holds a lone surrogate", True),
    "surrogate-in-an-epoch": ('{"id":1,"op":"subscribe","channel":"chat:e",'
                              '"since":{"epoch":"\\ud800","offset":1}}',
                              "since holds a lone surrogate", True),
    "surrogate-in-op": ('{"id":1,"op":"\\ud800"}', "op holds a lone surrogate", True),
    "surrogate-in-an-unknown-field": ('{"id":1,"op":"ping","x":"\\udbff"}',
                                      "lone surrogate", True),
    "offset-beyond-2**53": ('{"id":1,"op":"subscribe","channel":"chat:e",'
                            '"since":{"epoch":"e","offset":18446744073709551616}}',
                            "out of range", True),
    "limit-beyond-2**53": ('{"id":1,"op":"history","channel":"chat:e",'
                           '"limit":100000000000000000000}', "out of range", True),
    "surrogate-in-the-id": ('{"id":"\\ud800","op":"ping"}', "id holds a lone surrogate", False),
    "id-beyond-2**53": ('{"id":9007199254740993,"op":"ping"}', "id: number", False),
    "id-float-overflow": ('{"id":-1e309,"op":"ping"}', "id must be", False),
    "id-of-300-characters": ('{"id":"' + "x" * 300 + '","op":"ping"}',
                             "id is at most 255 characters", False),
}


@pytest.mark.parametrize("text, needle, echoed", REFUSED.values(), ids=REFUSED)
async def test_uncarriable_requests_get_400_and_nothing_is_published(
    hub: Hub, text: str, needle: str, echoed: bool
) -> None:
    watcher = await Client.open(hub, api_key=API_KEY)
    await watcher.request("subscribe", channel=CHANNEL)
    client = await Client.open(hub, api_key=API_KEY)
    await client.send(text)
    reply = await client._read()
    assert reply["error"]["code"] == 400, reply
    assert needle in reply["error"]["message"], reply
    assert reply["id"] == (1 if echoed else None), reply
    assert await client.request("ping") == {}  # the connection goes on
    await hub.publish(CHANNEL, '"after"')
    assert (await watcher.push("pub"))["data"] == "after"  # nothing came before it
    history = await client.request("history", channel=CHANNEL)
    assert [p["data"] for p in history["publications"]] == ["after"]
    await client.close()
    await watcher.close()


# What is within the limits goes through, exactly.
CARRIED = {
    "nesting-32-levels": nested(32),
    "nesting-32-levels-of-objects": '{"a":' * 32 + "1" + "}" * 32,
    "largest-safe-integer": "9007199254740991",
    "smallest-safe-integer": "-9007199254740991",
    "largest-double": "1.7976931348623157e308",
    "surrogate-pair": '"\\ud83d\\ude00 \\u00e9"',
    "astral-text": json.dumps("\U0001f600 and \u2028", ensure_ascii=False),
    "nul-and-controls": '"\\u0000\\u001f"',
}


@pytest.mark.parametrize("data", CARRIED.values(), ids=CARRIED)
async def test_data_within_the_limits_reaches_subscribers_intact(hub: Hub, data: str) -> None:
    watcher = await Client.open(hub)
    await watcher.request("subscribe", channel=CHANNEL)
    client = await Client.open(hub)
    await client.send(publish(data))
    assert "result" in await client.reply(1)
    assert await watcher.pubs(1) == [json.loads(data)]
    history = await client.request("history", channel=CHANNEL)
    assert [p["data"] for p in history["publications"]] == [json.loads(data)]
    await client.close()
    await watcher.close()


CONNECT_REFUSED = {
    "surrogate-in-info": ('{"id":1,"op":"connect","info":{"name":"\\ud800"}}',
                          "info holds a lone surrogate"),
    "float-overflow-in-info": ('{"id":1,"op":"connect","info":{"x":1e400}}',
                               "number 1e400 is out of range"),
    "big-integer-in-info": ('{"id":1,"op":"connect","info":{"x":12345678901234567890}}',
                            "out of range"),
    "deep-info": ('{"id":1,"op":"connect","info":{"a":' + nested(40) + "}}",
                  "info nests deeper than 32 levels"),
    "surrogate-in-api-key": ('{"id":1,"op":"connect","api_key":"\\ud800"}',
                             "api_key holds a lone surrogate"),
    "surrogate-in-token": ('{"id":1,"op":"connect","token":"ey\\udc00"}',
                           "token holds a lone surrogate"),
}


@pytest.mark.parametrize("text, needle", CONNECT_REFUSED.values(), ids=CONNECT_REFUSED)
async def test_uncarriable_connect_gets_400_and_may_connect_again(
    hub: Hub, text: str, needle: str
) -> None:
    client = await Client.open(hub, connect=False)
    await client.send(text)
    reply = await client._read()
    assert reply["error"]["code"] == 400 and needle in reply["error"]["message"], reply
    await client.request("connect", info={"name": "fine"})
    await client.close()


# Claims of a token the hub's secret did sign: odd values are still refused.
BAD_CLAIMS = {
    "surrogate-in-sub": (lambda: token("\ud800"), "'sub' holds a lone surrogate"),
    "sub-of-300-characters": (lambda: token("u" * 300), "'sub' is at most 255 characters"),
    "nan-in-info": (lambda: token("x", info={"v": float("nan")}), "NaN"),
    "infinity-in-info": (lambda: token("x", info={"v": float("inf")}), "out of range"),
    "surrogate-in-info": (lambda: token("x", info={"v": "\udc00"}), "lone surrogate"),
    "deep-info": (lambda: token("x", info={"a": json.loads(nested(40))}),
                  "'info' nests deeper than 32 levels"),
    "big-integer-in-info": (lambda: token("x", info={"v": 2**64}), "out of range"),
    "exp-as-a-string": (lambda: token("x", exp="99999999999"), "'exp' must be a number"),
    "exp-beyond-2**53": (lambda: token("x", exp=2**60), "'exp' is out of range"),
    "surrogate-in-channels": (lambda: token("x", channels=["chat:\ud800"]),
                              "'channels' holds a lone surrogate"),
}


@pytest.mark.parametrize("make, needle", BAD_CLAIMS.values(), ids=BAD_CLAIMS)
async def test_signed_token_with_uncarriable_claims_gets_401_then_4500(
    hub: Hub, make: object, needle: str
) -> None:
    client = await Client.open(hub, connect=False)
    await client.send({"id": 1, "op": "connect", "token": make()})  # type: ignore[operator]
    reply = await client._read()
    assert reply["error"]["code"] == 401, reply
    assert needle in reply["error"]["message"], reply
    assert (await client.closed())[0] == 4500


async def test_token_within_the_limits_connects(hub: Hub) -> None:
    info = {"name": "\U0001f600", "n": 2**53 - 1, "deep": json.loads(nested(30))}
    client = await Client.open(hub, token=token("u" * 255, info=info, exp=2**40))
    assert client.connected["expires"] == 2**40
    result = await client.request("subscribe", channel="chat:ok", presence=True)
    assert result["presence"][0]["info"] == info
    await client.close()


# The HTTP API.


def body(data: str) -> bytes:
    return f'{{"channel":"{CHANNEL}","data":{data}}}'.encode()


HTTP_REFUSED = {
    "nesting-beyond-the-parser": ("/api/publish", body(nested(30_000)), "nests deeper"),
    "nesting-33-levels": ("/api/publish", body(nested(33)), "data nests deeper than 32 levels"),
    "float-overflow": ("/api/publish", body("1e400"), "number 1e400 is out of range"),
    "integer-2**53": ("/api/publish", body("-9007199254740992"), "out of range"),
    "integer-over-4300-digits": ("/api/publish", body("9" * 5000), "out of range"),
    "escaped-surrogate": ("/api/publish", body('"\\ud800"'), "data holds a lone surrogate"),
    "surrogate-in-a-key": ("/api/publish", body('{"\\udc00":1}'), "lone surrogate"),
    "encoded-surrogate": ("/api/publish", b'{"channel":"chat:x","data":"\xed\xa0\x80"}',
                          "isn't UTF-8"),
    "utf-16-body": ("/api/publish", '{"channel":"chat:x","data":1}'.encode("utf-16"),
                    "isn't UTF-8"),
    "broadcast-surrogate-channel": (
        "/api/broadcast", b'{"channels":["chat:\\ud800"],"data":1}',
        "channels holds a lone surrogate"),
    "broadcast-float-overflow": (
        "/api/broadcast", f'{{"channels":["{CHANNEL}"],"data":[1e999]}}'.encode(),
        "number 1e999 is out of range"),
    "disconnect-surrogate-user": ("/api/disconnect", b'{"user":"\\ud800"}',
                                  "user holds a lone surrogate"),
}


@pytest.mark.parametrize("path, content, needle", HTTP_REFUSED.values(), ids=HTTP_REFUSED)
async def test_uncarriable_http_bodies_get_400_and_nothing_is_published(
    hub: Hub, path: str, content: bytes, needle: str
) -> None:
    watcher = await Client.open(hub, api_key=API_KEY)
    await watcher.request("subscribe", channel=CHANNEL)
    async with http_client(hub) as http:
        response = await http.post(path, headers=AUTH, content=content)
        assert response.status_code == 400, response.text
        assert needle in response.json()["error"], response.text
        await hub.publish(CHANNEL, '"after"')
        assert (await watcher.push("pub"))["data"] == "after"
        history = await http.get("/api/history", headers=AUTH, params={"channel": CHANNEL})
        assert [p["data"] for p in history.json()["publications"]] == ["after"]
    await watcher.close()


HTTP_BAD_QUERIES = {
    "superscript-digit-limit": ("/api/history?channel=chat:q&limit=%C2%B2", "limit"),
    "limit-of-5000-digits": ("/api/history?channel=chat:q&limit=" + "9" * 5000, "limit"),
    "limit-beyond-2**53": ("/api/history?channel=chat:q&limit=9007199254740992", "limit"),
    "offset-of-5000-digits": ("/api/history?channel=chat:q&epoch=e&offset=" + "9" * 5000,
                              "offset"),
    "arabic-digit-offset": ("/api/history?channel=chat:q&epoch=e&offset=%D9%A3", "offset"),
}


@pytest.mark.parametrize("url, needle", HTTP_BAD_QUERIES.values(), ids=HTTP_BAD_QUERIES)
async def test_bad_numbers_in_query_strings_get_400(hub: Hub, url: str, needle: str) -> None:
    async with http_client(hub) as http:
        response = await http.get(url, headers=AUTH)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]


async def test_http_data_within_the_limits_is_published_intact(hub: Hub) -> None:
    watcher = await Client.open(hub)
    await watcher.request("subscribe", channel=CHANNEL)
    data = [nested(31), "9007199254740991", '"\\ud83d\\ude00"', "-1.7976931348623157e308"]
    async with http_client(hub) as http:
        for item in data:
            response = await http.post("/api/publish", headers=AUTH, content=body(item))
            assert response.status_code == 200, response.text
        history = await http.get("/api/history", headers=AUTH, params={"channel": CHANNEL})
    expected = [json.loads(item) for item in data]
    assert await watcher.pubs(len(data)) == expected
    assert [p["data"] for p in history.json()["publications"]] == expected
    await watcher.close()


# Internal errors: one line in the log, naming the connection.


class FailingBroker(MemoryBroker):
    async def publish(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise RuntimeError("the disk\nis on fire")

    async def publish_many(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise RuntimeError("the disk\nis on fire")

    async def channels(self) -> dict[str, int]:
        raise RuntimeError("no channels today")

    async def presence_remove(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("can't forget")


async def test_internal_errors_are_one_line_naming_the_connection(
    caplog: pytest.LogCaptureFixture, hub_tracebacks: HubTracebacks
) -> None:
    async with Hub(config(), broker=FailingBroker()) as hub:
        client = await Client.open(hub, api_key=API_KEY)
        await client.request("subscribe", channel=CHANNEL)
        with pytest.raises(ReplyError) as info:
            await client.request("publish", channel=CHANNEL, data=1)
        assert info.value.code == 500 and "internal error" in info.value.message
        assert await client.request("ping") == {}
        async with http_client(hub) as http:
            response = await within(http.get("/api/channels", headers=AUTH))
        assert response.status_code == 500
        await client.close()
    errors = [r for r in caplog.records
              if r.name.startswith("tidewire.hub") and r.levelno >= logging.ERROR]
    assert len(errors) == 3, errors
    ws_line, http_line, leave_line = (r.getMessage() for r in errors)
    assert client.connected["client"] in ws_line
    assert "publish" in ws_line and "RuntimeError" in ws_line and "disk" in ws_line
    assert "\n" not in ws_line
    assert "/api/channels" in http_line and "no channels today" in http_line
    assert client.connected["client"] in leave_line and "can't forget" in leave_line
    assert not any(r.exc_info for r in errors)
    # The traceback is there for an operator who asks for DEBUG.
    assert len(hub_tracebacks.records) == 3
    assert all(r.levelno == logging.DEBUG for r in hub_tracebacks.records)
    hub_tracebacks.records.clear()


def test_the_reader_of_these_tests_refuses_non_strict_json() -> None:
    # The checks above are only as good as the reader they use.
    from ..jsoncheck import NotStrictJSON, strict_json

    for text in ["NaN", "[Infinity]", "1e400", "9007199254740992", '"\\ud800"',
                 b'"\xed\xa0\x80"', '{"a":1,"a":2}', '"\udc00"']:
        with pytest.raises(NotStrictJSON):
            strict_json(text)
    assert strict_json('["\\ud83d\\ude00", 9007199254740991, 1e308]') == [
        "\U0001f600", 2**53 - 1, 1e308]


def test_the_traceback_guard_tells_the_hubs_tracebacks_from_others() -> None:
    # The suite's guard (tests/conftest.py) is only as good as its filter.
    from tidewire.hub import strictjson

    guard = HubTracebacks()

    def record(name: str, raise_in_hub: bool) -> logging.LogRecord:
        try:
            if raise_in_hub:
                strictjson.check("\ud800", "x")
            raise RuntimeError("elsewhere")
        except (ValueError, RuntimeError):
            exc_info = sys.exc_info()
        return logging.LogRecord(name, logging.ERROR, __file__, 1, "failed", None, exc_info)

    guard.handle(record("tidewire.server", raise_in_hub=False))  # a library user's handler
    assert guard.records == []
    guard.handle(record("tidewire.server", raise_in_hub=True))  # the hub's handler
    guard.handle(record("tidewire.hub.http", raise_in_hub=False))
    assert len(guard.records) == 2
