"""docs/asgi.md's gunicorn worker, taken from the page: it carries tidewire's
engine into uvicorn's config, and gunicorn serves WebSockets with it."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest
import uvicorn

import tidewire
from tidewire.asgi import UvicornProtocol
from tidewire.exceptions import InvalidStatus

from ..conftest import timeout
from .conftest import within

DOC = Path(__file__).parents[2] / "docs" / "asgi.md"
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+) ")

# An ASGI app with no framework: echo at /echo, a refusal at /refuse.
APP = '''
async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()
    if scope["path"] == "/refuse":
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({**message, "type": "websocket.send"})
'''


def worker_source() -> str:
    for match in re.finditer(r"```python\n(.*?)```", DOC.read_text(), re.S):
        if "class TidewireWorker" in match.group(1):
            return match.group(1)
    raise AssertionError(f"no TidewireWorker in {DOC}")


def load_workers(directory: Path) -> ModuleType:
    path = directory / "workers.py"
    path.write_text(worker_source())
    spec = importlib.util.spec_from_file_location("tidewire_doc_workers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_worker_gives_uvicorn_tidewires_engine(tmp_path: Path) -> None:
    from uvicorn_worker import UvicornWorker

    worker = load_workers(tmp_path).TidewireWorker
    assert issubclass(worker, UvicornWorker)
    assert worker.CONFIG_KWARGS == {
        **UvicornWorker.CONFIG_KWARGS, "ws": "tidewire.asgi:UvicornProtocol"}
    # log_config=None: uvicorn's own would stop its loggers from reaching the
    # root logger for the rest of this process, where other tests watch them.
    config = uvicorn.Config(lambda scope, receive, send: None, log_config=None,
                            **worker.CONFIG_KWARGS)
    config.load()
    assert config.ws_protocol_class is UvicornProtocol


@pytest.mark.asyncio(loop_factories=["asyncio"])  # gunicorn runs in its own process
async def test_gunicorn_serves_websockets_with_the_documented_worker(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "workers.py").write_text(worker_source())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TIDEWIRE_") or k == "TIDEWIRE_NO_SPEEDUPS"}
    env["HOME"] = str(tmp_path)  # gunicorn's control socket goes under it
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gunicorn", "app:app", "--chdir", str(tmp_path),
        "-k", "workers.TidewireWorker", "-w", "1", "-b", "127.0.0.1:0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    output: list[str] = []

    async def listening() -> int:
        assert proc.stdout is not None
        port = 0
        async for raw in proc.stdout:
            output.append(raw.decode(errors="replace").rstrip("\n"))
            match = _LISTENING.search(output[-1])
            if match:
                port = int(match.group(1))
            if port and "Application startup complete" in output[-1]:
                return port
        raise AssertionError("gunicorn exited:\n" + "\n".join(output))

    try:
        port = await asyncio.wait_for(listening(), timeout(30))
        async with tidewire.connect(f"ws://127.0.0.1:{port}/echo") as ws:
            for message in ("hello", b"\x00\x01"):
                await ws.send(message)
                assert await within(ws.recv()) == message
        # tidewire's own 403, with the body uvicorn's engines don't send.
        with pytest.raises(InvalidStatus) as caught:
            await within(tidewire.connect(f"ws://127.0.0.1:{port}/refuse"))
        assert caught.value.response.status == 403
        assert caught.value.response.body.startswith(b"Forbidden: the application refused")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stdout.read(), timeout(30))
        output.extend(rest.decode(errors="replace").splitlines())
        await asyncio.wait_for(proc.wait(), timeout(10))
    log = "\n".join(output)
    assert proc.returncode == 0, log
    assert "Traceback" not in log and "[ERROR]" not in log, log
