"""The opening handshake through uvicorn: the scope the app gets, what its
answer (accept, close, denial) looks like to the client, and the requests
refused before the app is called. Each test runs on uvicorn's httptools and
h11 protocols, which hand the upgrade over differently."""

from __future__ import annotations

from typing import Any

import pytest

import tidewire
from tests.asgi.conftest import Probe, bounded
from tests.asyncio.rawclient import RawClient, new_key, upgrade_request

pytestmark = pytest.mark.parametrize("http", ["httptools", "h11"], indirect=True)


def scope_app(probe: Probe) -> Any:
    """Reports its scope, then accepts and waits for the client to leave."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        probe.scope.set_result(scope)
        await receive()
        await send({"type": "websocket.accept"})
        await probe.events.put(await receive())

    return app


async def test_scope_describes_the_request(serve: Any) -> None:
    probe = Probe()
    async with serve(scope_app(probe), root_path="/api", state={"db": "ready"}) as server:
        async with tidewire.connect(
            f"{server.url}/rooms/caf%C3%A9%20bar?x=1&y=%20",
            subprotocols=["chat", "superchat"],
            additional_headers={"X-Custom": "Value"},
        ) as ws:
            scope = await bounded(probe.scope)
            assert scope["type"] == "websocket"
            assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
            assert scope["http_version"] == "1.1"
            assert scope["scheme"] == "ws"
            assert scope["root_path"] == "/api"
            assert scope["path"] == "/api/rooms/café bar"
            assert scope["raw_path"] == b"/api/rooms/caf%C3%A9%20bar"
            assert scope["query_string"] == b"x=1&y=%20"
            assert scope["subprotocols"] == ["chat", "superchat"]
            assert (b"x-custom", b"Value") in scope["headers"]
            assert (b"host", f"127.0.0.1:{server.port}".encode()) in scope["headers"]
            assert all(name == name.lower() for name, _ in scope["headers"])
            assert scope["client"] == ws.local_address[:2]
            assert scope["server"] == ("127.0.0.1", server.port)
            assert scope["state"] == {"db": "ready"}
            assert "websocket.http.response" in scope["extensions"]


async def test_each_connection_gets_its_own_copy_of_the_state(serve: Any) -> None:
    first, second = Probe(), Probe()
    probes = iter([first, second])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        probe = next(probes)
        probe.scope.set_result(dict(scope["state"]))
        scope["state"]["mine"] = True
        await receive()
        await send({"type": "websocket.close"})

    async with serve(app, state={"db": "ready"}) as server:
        for probe in (first, second):
            with pytest.raises(tidewire.InvalidStatus):
                await tidewire.connect(server.url)
            assert await bounded(probe.scope) == {"db": "ready"}


async def test_accept_with_subprotocol_and_headers_reaches_the_client(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({
            "type": "websocket.accept",
            "subprotocol": "superchat",
            "headers": [(b"x-app", b"yes"), (b"set-cookie", b"session=1")],
        })
        await receive()

    async with serve(app) as server:
        async with tidewire.connect(server.url, subprotocols=["chat", "superchat"]) as ws:
            assert ws.subprotocol == "superchat"
            headers = ws.response.headers
            assert headers.get("Sec-WebSocket-Protocol") == "superchat"
            assert headers.get("X-App") == "yes"
            assert headers.get("Set-Cookie") == "session=1"
            assert headers.get("Server") == "uvicorn"  # uvicorn's default headers
            assert headers.get("Date") is not None


async def test_close_before_accept_answers_403(serve: Any) -> None:
    probe = Probe()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 4000})
        await probe.events.put(await receive())

    async with serve(app) as server:
        with pytest.raises(tidewire.InvalidStatus) as caught:
            await tidewire.connect(server.url)
        assert caught.value.response.status == 403
        assert await probe.event() == {"type": "websocket.disconnect", "code": 1006}


async def deny(server: Any) -> Any:
    client = await RawClient.connect(server.port)
    try:
        await client.write(upgrade_request(new_key()))
        return await client.read_refusal()
    finally:
        await client.close()


async def test_denial_response_has_the_apps_status_headers_and_body(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
        })
        await send({"type": "websocket.http.response.body", "body": b"no token"})

    async with serve(app) as server:
        response = await deny(server)
    assert response.status == 401
    assert response.get("Content-Type") == "text/plain"
    assert response.get("WWW-Authenticate") == "Bearer"
    assert response.body == b"no token"


async def test_denial_body_in_parts_is_sent_whole(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 418, "headers": []})
        for part in (b"I'm ", b"a ", b"teapot"):
            await send({"type": "websocket.http.response.body", "body": part,
                        "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"", "more_body": False})

    async with serve(app) as server:
        response = await deny(server)
    assert response.status == 418
    assert response.body == b"I'm a teapot"


def must_not_run(probe: Probe) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        probe.scope.set_result(scope)
        await send({"type": "websocket.accept"})

    return app


async def test_malformed_handshake_gets_400_saying_why_and_app_not_called(serve: Any) -> None:
    probe = Probe()
    async with serve(must_not_run(probe)) as server:
        client = await RawClient.connect(server.port)
        request = upgrade_request("not a key")
        await client.write(request)
        response = await client.read_refusal()
        await client.close()
    assert response.status == 400
    assert b"Sec-WebSocket-Key" in response.body, response.body
    assert not probe.scope.done()


async def test_wrong_version_gets_426_and_app_not_called(serve: Any) -> None:
    probe = Probe()
    async with serve(must_not_run(probe)) as server:
        client = await RawClient.connect(server.port)
        request = upgrade_request(new_key()).replace(
            b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"
        )
        await client.write(request)
        response = await client.read_refusal()
        await client.close()
    assert response.status == 426
    assert response.get("Sec-WebSocket-Version") == "13"
    assert b"version" in response.body.lower(), response.body
    assert not probe.scope.done()


async def test_app_exception_before_accept_answers_500_logged_once(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("boom before accept")

    async with serve(app) as server:
        with pytest.raises(tidewire.InvalidStatus) as caught:
            await tidewire.connect(server.url)
    assert caught.value.response.status == 500
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 1, errors
    assert errors[0].name == "uvicorn.error"
    assert "boom before accept" in str(errors[0].exc_info[1])  # type: ignore[index]
    caplog.records.remove(errors[0])
