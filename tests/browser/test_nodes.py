"""The demo page on two hub nodes that share one redis-server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from ..hub.redis_server import RedisServer
from .conftest import WAIT, HubProcess, Pages
from .test_demo import connected, texts

pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[HubProcess, HubProcess]]:
    redis = RedisServer(tmp_path)
    redis.start()
    a = HubProcess("--broker", redis.url)
    b = HubProcess("--broker", redis.url, "--no-demo")  # one ticker is enough
    try:
        await a.start()
        await b.start()
        yield a, b
    finally:
        await a.stop()
        await b.stop()
        redis.kill()


async def test_pages_on_two_nodes_chat_and_see_each_other(
    browser: Browser, nodes: tuple[HubProcess, HubProcess]
) -> None:
    a, b = nodes
    on_a, on_b = Pages(browser, a), Pages(browser, b)
    try:
        ada = await on_a.demo("Ada")
        bob = await on_b.demo("Bob")
        await connected(ada)
        await connected(bob)
        # Presence spans the nodes.
        for page in (ada, bob):
            await expect(page.get_by_test_id("person")).to_have_count(2, timeout=WAIT)
        await expect(ada.get_by_test_id("person")).to_contain_text([re.compile("Bob")])

        await ada.get_by_test_id("message-input").fill("from node A")
        await ada.get_by_test_id("message-input").press("Enter")
        await expect(texts(bob)).to_have_text(["from node A"], timeout=WAIT)
        await bob.get_by_test_id("message-input").fill("from node B")
        await bob.get_by_test_id("message-input").press("Enter")
        for page in (ada, bob):
            await expect(texts(page)).to_have_text(["from node A", "from node B"], timeout=WAIT)
        # Bob leaves: Ada, on the other node, sees it.
        await bob.close()
        await expect(ada.get_by_test_id("person")).to_have_count(1, timeout=WAIT)
    finally:
        await on_a.close()
        await on_b.close()
    assert not on_a.errors + on_b.errors
