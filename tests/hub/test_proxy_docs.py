"""docs/proxy.md's example works: its FastAPI backend under uvicorn, its config
in a hub, and clients doing what the page says."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tidewire.hub import Hub, load_config

from ..conftest import timeout
from .conftest import API_KEY
from .helpers import Client, within
from .redis_server import free_port

DOC = Path(__file__).parents[2] / "docs" / "proxy.md"


def block(language: str, containing: str) -> str:
    for match in re.finditer(rf"```{language}\n(.*?)```", DOC.read_text(), re.S):
        if containing in match.group(1):
            return match.group(1)
    raise AssertionError(f"no {language} block with {containing!r} in {DOC}")


async def listening(port: int, proc: asyncio.subprocess.Process) -> None:
    async def attempt() -> None:
        while True:
            assert proc.returncode is None, "uvicorn exited"
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: socket.create_connection(("127.0.0.1", port), 0.5).close()
                )
                return
            except OSError:
                await asyncio.sleep(0.05)  # a process starting: nothing to await

    await asyncio.wait_for(attempt(), timeout(20))


@pytest.fixture
async def example(tmp_path: Path) -> AsyncIterator[Hub]:
    (tmp_path / "backend.py").write_text(block("python", "FastAPI()"))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "backend:app", "--app-dir", str(tmp_path),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    )
    try:
        await listening(port, proc)
        config_path = tmp_path / "hub.toml"
        config_path.write_text(block("toml", "[proxy]").replace(":9000/", f":{port}/"))
        config = replace(load_config(config_path), port=0, demo=False, api_key=API_KEY)
        async with Hub(config) as hub:
            yield hub
    finally:
        proc.terminate()
        await proc.wait()


def session(user: str) -> dict[str, str]:
    return {"Cookie": f"session=s3cret-of-{user}"}


async def test_the_documented_backend_decides(example: Hub) -> None:
    ada = await Client.open(example, headers=session("ada"))
    assert ada.connected["user"] == "ada"
    assert ada.connected["data"] == {"motd": "welcome back, Ada"}
    assert (await ada.push("subscribe"))["channel"] == "notify:ada"
    await example.publish("notify:ada", '{"n": 1}')
    assert await ada.pubs(1) == [{"n": 1}]
    await ada.request("subscribe", channel="chat:team-red")
    await ada.request("publish", channel="chat:team-red", data={"text": "  hello team  "})
    push = await ada.push("pub")
    assert push["data"] == {"text": "hello team", "by": "ada"}
    assert await ada.request("rpc", method="whoami") == {"data": {"user": "ada"}}
    assert await ada.error("rpc", method="fly") == (404, "no method fly")
    assert await ada.error("publish", channel="chat:team-red", data=5) == (
        400, 'send {"text": "..."}')

    bob = await Client.open(example, headers=session("bob"))
    assert await bob.error("subscribe", channel="chat:team-red") == (
        403, "this room is for its team")
    await bob.request("subscribe", channel="chat:lobby")

    stranger = await Client.open(example, connect=False)
    assert await stranger.error("connect") == (401, "log in first")
    for client in (ada, bob, stranger):
        await within(client.close())
