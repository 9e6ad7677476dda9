"""examples/fastapi_chat.py in Chromium: started with the command its
docstring gives (uvicorn with ``--ws tidewire.asgi:UvicornProtocol``), its
page at ``/`` opened in two browser contexts."""

from __future__ import annotations

import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

import examples.fastapi_chat

from .conftest import WAIT, Pages, ServerProcess

# Playwright drives the browser; uvicorn runs in its own process: nothing here
# gains from running on uvloop too.
pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])

ROOT = Path(__file__).parents[2]


def documented_command() -> list[str]:
    """The ``uvicorn ...`` line of the example's docstring, as argv."""
    doc = examples.fastapi_chat.__doc__ or ""
    [line] = [line.strip() for line in doc.splitlines() if line.strip().startswith("uvicorn ")]
    return shlex.split(line)


class ChatProcess(ServerProcess):
    """The documented command in a subprocess, on a free port of 127.0.0.1."""

    LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+) ")
    cwd = ROOT  # where the docstring says to run it

    def argv(self) -> list[str]:
        argv = documented_command()
        assert argv[0] == "uvicorn" and "tidewire.asgi:UvicornProtocol" in argv, argv
        return [sys.executable, "-m", *argv, "--host", "127.0.0.1", "--port", str(self.port)]

    def check(self, returncode: int) -> None:
        # uvicorn shuts down gracefully, then dies of the signal it caught, as
        # it does with every engine.
        assert returncode in (0, -signal.SIGTERM), self.log()
        assert "Finished server process" in self.log(), self.log()
        assert "Traceback" not in self.log(), self.log()
        assert "ERROR" not in self.log(), self.log()


@pytest.fixture
async def chat() -> AsyncIterator[ChatProcess]:
    async with ChatProcess() as process:
        yield process


@pytest.fixture
def server(chat: ChatProcess) -> ServerProcess:
    """Pages (conftest's fixture) come from the chat's origin."""
    return chat


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
