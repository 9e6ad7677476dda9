"""Fixtures of the browser tests: a hub in a subprocess, Chromium driven by Playwright.

The hub runs as users run it, ``python -m tidewire serve``, on a free port of
127.0.0.1, so that a test can stop it and start it again on the same port
(``ServerProcess`` runs other servers the same way).
Pages are always loaded from the hub's own origin: Chromium doesn't let pages
from ``about:blank`` or ``file://`` reach loopback addresses.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import timeout

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "browser-tests-api-key"
HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
FAKE_SOCKET = HERE / "fake_socket.js"

# Milliseconds that Playwright waits for a condition.
WAIT = timeout(15) * 1000

S = TypeVar("S", bound="ServerProcess")

_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")
_INTERNAL_ERROR = re.compile(r" tidewire\.hub\S* (client|connection) \S+: .* failed: ")


class ServerProcess:
    """A server in a subprocess; ``start()`` returns once its output says on
    which port it listens (``LISTENING``'s group 1)."""

    LISTENING: re.Pattern[str]
    cwd: Path | None = None

    def __init__(self) -> None:
        self.port = 0
        self.output: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        """The command that starts the server on ``self.port``."""
        raise NotImplementedError

    def check(self, returncode: int) -> None:
        """Assert that the server stopped as it should, after SIGTERM."""
        raise NotImplementedError

    async def start(self) -> None:
        """Start on ``self.port`` (a free one the first time)."""
        assert self._proc is None, "the server is running"
        # The command line decides everything; nothing from the environment
        # but the switch that the suite's second run sets.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TIDEWIRE_") or k == "TIDEWIRE_NO_SPEEDUPS"}
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv(),
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(self._proc, ready))
        try:
            self.port = await asyncio.wait_for(ready, timeout(20))
        except BaseException:
            await self.stop(check=False)
            raise

    async def _read(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[int]) -> None:
        """Keep the output (so that the pipe never fills) and spot the port."""
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.output.append(line)
            match = self.LISTENING.search(line)
            if match and not ready.done():
                ready.set_result(int(match.group(1)))
        if not ready.done():
            ready.set_exception(RuntimeError(f"the server exited before listening:\n{self.log()}"))

    async def stop(self, *, check: bool = True) -> None:
        """SIGTERM, as a user's Ctrl-C or a service manager does; wait for the exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout(20))
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        finally:
            if self._reader is not None:
                await self._reader
                self._reader = None
        if check:
            assert proc.returncode is not None
            self.check(proc.returncode)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def log(self) -> str:
        return "\n".join(self.output)

    async def __aenter__(self: S) -> S:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class HubProcess(ServerProcess):
    """``tidewire serve`` in a subprocess."""

    LISTENING = _LISTENING

    def __init__(self, *args: str) -> None:
        super().__init__()
        self.args = args  # more options of `tidewire serve`

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "tidewire", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--api-key", API_KEY, *self.args,
        ]

    def check(self, returncode: int) -> None:
        assert returncode == 0, f"the hub exited with {returncode}:\n{self.log()}"
        assert "Traceback" not in self.log(), self.log()
        # An internal error of the hub is one line, its traceback at DEBUG.
        assert not _INTERNAL_ERROR.search(self.log()), self.log()


@pytest.fixture
async def hub() -> AsyncIterator[HubProcess]:
    async with HubProcess() as process:
        yield process


@pytest.fixture
async def api(hub: HubProcess) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=timeout(10)
    ) as http:
        yield Api(hub, http)


class Api:
    """The hub's HTTP API, as a backend uses it."""

    def __init__(self, hub: HubProcess, http: httpx.AsyncClient) -> None:
        self.hub = hub
        self.http = http

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(f"{self.hub.base}{path}", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        return await self.post("/api/publish", {"channel": channel, "data": data})


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: `make test` installs it "
            "(or run `apt-get install -y chromium`)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


class Pages:
    """Pages of the hub's origin, each in its own context (its own storage).

    An uncaught exception in any page fails the test.
    """

    def __init__(self, browser: Browser, hub: ServerProcess) -> None:
        self.browser = browser
        self.hub = hub
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    async def context(self, **options: Any) -> BrowserContext:
        context = await self.browser.new_context(**options)
        context.set_default_timeout(WAIT)
        self.contexts.append(context)
        return context

    async def new_page(self, context: BrowserContext) -> Page:
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        # Shown by pytest when the test fails.
        page.on("console", lambda msg: print(f"console.{msg.type}: {msg.text}"))
        return page

    async def demo(self, name: str | None = None, **options: Any) -> Page:
        """The demo page, its nickname set to ``name`` beforehand."""
        context = await self.context(**options)
        if name is not None:
            # Before the page's scripts run, on the first visit only.
            await context.add_init_script(
                "if (!localStorage.getItem('tidewire-demo:name')) "
                f"localStorage.setItem('tidewire-demo:name', {json.dumps(name)});"
            )
        page = await self.new_page(context)
        await page.goto(f"{self.hub.base}/")
        return page

    async def blank(self) -> Page:
        """A page of the hub's origin that runs nothing, with tidewire.js
        imported as ``window.tw`` and the test double of WebSocket as
        ``window.FakeSocket``.

        It is the hub's ``/healthz``: a page must really come from the hub's
        loopback address (one fulfilled by ``page.route`` fails Chromium's
        Local Network Access checks), and the demo page at ``/`` runs a client.
        """
        page = await self.new_page(await self.context())
        await page.goto(f"{self.hub.base}/healthz")
        await page.add_script_tag(path=FAKE_SOCKET)
        await page.evaluate(
            "async (wait) => { window.WAIT = wait; window.tw = await import('/tidewire.js'); }",
            WAIT,
        )
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()
        self.contexts.clear()


@pytest.fixture
def server(hub: HubProcess) -> ServerProcess:
    """The server whose origin the pages come from: the hub, unless a test
    module overrides this fixture."""
    return hub


@pytest.fixture
async def pages(browser: Browser, server: ServerProcess) -> AsyncIterator[Pages]:
    opened = Pages(browser, server)
    try:
        yield opened
    finally:
        await opened.close()
    assert not opened.errors, "uncaught exceptions in pages:\n" + "\n".join(opened.errors)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
