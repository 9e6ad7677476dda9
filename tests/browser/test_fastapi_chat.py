"""examples/fastapi_chat.py in Chromium: started with the command its
docstring gives (uvicorn with ``--ws tidewire.asgi:UvicornProtocol``), its
page at ``/`` opened in two browser contexts."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

import examples.fastapi_chat
from tests.conftest import timeout

from .conftest import WAIT, Pages

# Playwright drives the browser; uvicorn runs in its own process: nothing here
# gains from running on uvloop too.
pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])

ROOT = Path(__file__).parents[2]
_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+) ")


def documented_command() -> list[str]:
    """The ``uvicorn ...`` line of the example's docstring, as argv."""
    doc = examples.fastapi_chat.__doc__ or ""
    [line] = [line.strip() for line in doc.splitlines() if line.strip().startswith("uvicorn ")]
    return shlex.split(line)


class ChatProcess:
    """The documented command in a subprocess, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.port = 0
        self.output: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        argv = documented_command()
        assert argv[0] == "uvicorn" and "tidewire.asgi:UvicornProtocol" in argv, argv
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TIDEWIRE_") or k == "TIDEWIRE_NO_SPEEDUPS"}
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *argv, "--host", "127.0.0.1", "--port", "0",
            cwd=ROOT,  # where the docstring says to run it
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
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.output.append(line)
            match = _RUNNING.search(line)
            if match and not ready.done():
                ready.set_result(int(match.group(1)))
        if not ready.done():
            ready.set_exception(RuntimeError(f"uvicorn exited before listening:\n{self.log()}"))

    async def stop(self, *, check: bool = True) -> None:
        """SIGTERM, as a service manager does; uvicorn shuts down gracefully
        and then dies of the signal it caught, as it does for every engine."""
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
            assert proc.returncode in (0, -signal.SIGTERM), self.log()
            assert "Finished server process" in self.log(), self.log()
            assert "Traceback" not in self.log(), self.log()
            assert "ERROR" not in self.log(), self.log()

    def log(self) -> str:
        return "\n".join(self.output)


@pytest.fixture
async def chat() -> AsyncIterator[ChatProcess]:
    process = ChatProcess()
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest.fixture
async def pages(browser: Browser, chat: ChatProcess) -> AsyncIterator[Pages]:
    # The hub tests' Pages: context() and new_page() never look at the hub.
    opened = Pages(browser, chat)
    try:
        yield opened
    finally:
        await opened.close()
    assert not opened.errors, "uncaught exceptions in pages:\n" + "\n".join(opened.errors)


async def open_chat(pages: Pages, chat: ChatProcess, name: str) -> Page:
    page = await pages.new_page(await pages.context())
    await page.goto(f"{chat.base}/?name={name}")
    await expect(page.get_by_test_id("state")).to_have_attribute(
        "data-state", "connected", timeout=WAIT
    )
    return page


async def test_a_message_typed_in_one_page_appears_in_both(
    pages: Pages, chat: ChatProcess
) -> None:
    ada = await open_chat(pages, chat, "Ada")
    await expect(ada.get_by_test_id("message")).to_have_text(["* Ada joined"], timeout=WAIT)
    bob = await open_chat(pages, chat, "Bob")
    await expect(ada.get_by_test_id("message")).to_have_text(
        ["* Ada joined", "* Bob joined"], timeout=WAIT
    )

    await ada.get_by_test_id("text").fill("hello from Ada")
    await ada.get_by_test_id("text").press("Enter")
    for page in (ada, bob):
        await expect(page.get_by_test_id("message").last).to_have_text(
            "Ada: hello from Ada", timeout=WAIT
        )
    await expect(ada.get_by_test_id("text")).to_have_value("")

    await bob.get_by_test_id("text").fill("hi Ada, Bob here 🌊")
    await bob.get_by_test_id("send").click()
    await expect(ada.get_by_test_id("message")).to_have_text(
        ["* Ada joined", "* Bob joined", "Ada: hello from Ada", "Bob: hi Ada, Bob here 🌊"],
        timeout=WAIT,
    )
    await expect(bob.get_by_test_id("message")).to_have_text(
        ["* Bob joined", "Ada: hello from Ada", "Bob: hi Ada, Bob here 🌊"], timeout=WAIT
    )

    await bob.context.close()
    await expect(ada.get_by_test_id("message").last).to_have_text("* Bob left", timeout=WAIT)
    # Messages are text, never HTML.
    await ada.get_by_test_id("text").fill("<b>bold?</b>")
    await ada.get_by_test_id("text").press("Enter")
    await expect(ada.get_by_test_id("message").last).to_have_text(
        "Ada: <b>bold?</b>", timeout=WAIT
    )
    await expect(ada.locator("#log b")).to_have_count(0)


async def test_the_page_shows_the_connection_closed_when_the_server_stops(
    pages: Pages, chat: ChatProcess
) -> None:
    ada = await open_chat(pages, chat, "Ada")
    await chat.stop()
    await expect(ada.get_by_test_id("state")).to_have_attribute(
        "data-state", "closed", timeout=WAIT
    )
    await expect(ada.get_by_test_id("text")).to_be_disabled()
