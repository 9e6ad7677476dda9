"""The demo page at ``/``, in Chromium: chat, presence, ticker, reconnection."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from .conftest import WAIT, Api, HubProcess, Pages

# Playwright drives the browser; the hub runs in its own process: nothing here
# gains from running on uvloop too.
pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])


async def connected(page: Page) -> None:
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "connected", timeout=WAIT
    )


def texts(page: Page) -> Locator:
    return page.get_by_test_id("message-text")


async def test_two_pages_chat_with_each_other(pages: Pages) -> None:
    ada = await pages.demo("Ada")
    bob = await pages.demo("Bob")
    await connected(ada)
    await connected(bob)
    # Both are subscribed once each sees the other.
    await expect(ada.get_by_test_id("person")).to_have_count(2, timeout=WAIT)
    await expect(bob.get_by_test_id("person")).to_have_count(2, timeout=WAIT)

    await ada.get_by_test_id("message-input").fill("hello from Ada")
    await ada.get_by_test_id("message-input").press("Enter")
    message = bob.get_by_test_id("message").filter(has_text="hello from Ada")
    await expect(message).to_have_count(1, timeout=WAIT)
    await expect(message.get_by_test_id("message-name")).to_have_text("Ada")
    await expect(ada.get_by_test_id("message-input")).to_have_value("")

    await bob.get_by_test_id("message-input").fill("hi Ada, Bob here")
    await bob.get_by_test_id("send").click()
    await expect(texts(ada)).to_have_text(["hello from Ada", "hi Ada, Bob here"], timeout=WAIT)
    await expect(texts(bob)).to_have_text(["hello from Ada", "hi Ada, Bob here"], timeout=WAIT)
    # Each page tells its own messages apart.
    await expect(ada.locator(".msg.mine")).to_have_text(re.compile("hello from Ada"))
    await expect(bob.locator(".msg.mine")).to_have_text(re.compile("Bob here"))


async def test_presence_shows_a_second_page_join_and_leave(pages: Pages) -> None:
    ada = await pages.demo("Ada")
    people = ada.get_by_test_id("person")
    await expect(people).to_have_count(1, timeout=WAIT)
    await expect(people).to_have_text([re.compile(r"Ada\s*\(you\)")])
    await expect(ada.get_by_test_id("online-count")).to_have_text("1")

    bob = await pages.demo("Bob")
    await expect(people).to_have_count(2, timeout=WAIT)
    await expect(people.filter(has_text="Bob")).to_have_count(1)
    await expect(ada.get_by_test_id("online-count")).to_have_text("2")

    await bob.context.close()
    await expect(people).to_have_count(1, timeout=WAIT)
    await expect(people.filter(has_text="Bob")).to_have_count(0)
    await expect(ada.get_by_test_id("online-count")).to_have_text("1")


async def test_a_new_name_shows_in_presence(pages: Pages) -> None:
    ada = await pages.demo("Ada")
    bob = await pages.demo("Bob")
    await expect(ada.get_by_test_id("person")).to_have_count(2, timeout=WAIT)

    await bob.get_by_test_id("name-input").fill("Robert")
    await bob.get_by_test_id("name-save").click()
    await expect(ada.get_by_test_id("person").filter(has_text="Robert")).to_have_count(
        1, timeout=WAIT
    )
    await expect(ada.get_by_test_id("person")).to_have_count(2, timeout=WAIT)
    # The name is kept for the next visit.
    await bob.reload()
    await expect(bob.get_by_test_id("name-input")).to_have_value("Robert")


async def test_http_publish_reaches_the_page(pages: Pages, api: Api) -> None:
    page = await pages.demo("Ada")
    await expect(page.get_by_test_id("person")).to_have_count(1, timeout=WAIT)

    result = await api.publish("chat:lobby", {"text": "hello from the backend", "name": "ops"})
    assert result["channel"] == "chat:lobby" and result["offset"] >= 1
    message = page.get_by_test_id("message").filter(has_text="hello from the backend")
    await expect(message).to_have_count(1, timeout=WAIT)
    await expect(message.get_by_test_id("message-name")).to_have_text("ops")
    await expect(message).to_have_class(re.compile(r"\bbackend\b"))


async def test_user_text_is_shown_as_text_never_as_html(pages: Pages, api: Api) -> None:
    page = await pages.demo("<b>Mallory</b>")
    await expect(page.get_by_test_id("person")).to_have_count(1, timeout=WAIT)
    attack = '<img src="x" onerror="window.pwned = 1">'
    await api.publish("chat:lobby", {"text": attack, "name": "<i>evil</i>"})
    await page.get_by_test_id("message-input").fill("<script>window.pwned = 2</script>")
    await page.get_by_test_id("message-input").press("Enter")

    await expect(texts(page)).to_have_text(
        [attack, "<script>window.pwned = 2</script>"], timeout=WAIT
    )
    await expect(page.get_by_test_id("message-name")).to_have_text(["<i>evil</i>",
                                                                      "<b>Mallory</b>"])
    await expect(page.get_by_test_id("person")).to_have_text([re.compile("<b>Mallory</b>")])
    injected = page.locator("#messages img, #messages script, #messages i, #online b")
    assert await injected.count() == 0
    assert await page.evaluate("window.pwned") is None


async def test_earlier_messages_show_on_arrival(pages: Pages, api: Api) -> None:
    for n in range(3):
        await api.publish("chat:lobby", {"text": f"earlier {n}", "name": "ops"})
    page = await pages.demo("Ada")
    await expect(texts(page)).to_have_text(["earlier 0", "earlier 1", "earlier 2"], timeout=WAIT)
    await api.publish("chat:lobby", {"text": "live", "name": "ops"})
    await expect(texts(page)).to_have_text(
        ["earlier 0", "earlier 1", "earlier 2", "live"], timeout=WAIT
    )


async def test_ticker_updates_live(pages: Pages) -> None:
    page = await pages.demo("Ada")
    ticker = page.get_by_test_id("ticker")
    # The hub's demo publisher sends six quotes every second.
    await expect(page.get_by_test_id("quote")).to_have_count(6, timeout=WAIT)
    await expect(page.get_by_test_id("quote-symbol")).to_contain_text(["TIDE", "WAVE", "REEF"])
    first = int(await ticker.get_attribute("data-ticks") or "0")
    await page.wait_for_function(
        "n => Number(document.getElementById('ticker').dataset.ticks) >= n + 2",
        arg=first, timeout=WAIT,
    )
    for price in await page.get_by_test_id("quote-price").all_text_contents():
        assert re.fullmatch(r"\d+\.\d\d", price), price
    for change in await page.get_by_test_id("quote-change").all_text_contents():
        assert re.fullmatch(r"[▲▼•] \d+\.\d\d", change), change
    await expect(page.get_by_test_id("ticker-updated")).to_have_text(re.compile("^updated "))


async def test_page_reconnects_after_the_hub_restarts(
    pages: Pages, api: Api, hub: HubProcess
) -> None:
    page = await pages.demo("Ada")
    await expect(page.get_by_test_id("person")).to_have_count(1, timeout=WAIT)
    await page.evaluate("""() => {
        window.states = [];
        window.tidewireDemo.client.on('state', (s) => window.states.push(s));
    }""")
    await api.publish("chat:lobby", {"text": "before the restart", "name": "ops"})
    await expect(texts(page)).to_have_text(["before the restart"], timeout=WAIT)

    port = hub.port
    await hub.restart()
    assert hub.port == port
    # Published as soon as the hub is back: before or after the page
    # resubscribes, it must show, once.
    await api.publish("chat:lobby", {"text": "after the restart 1", "name": "ops"})
    await api.publish("chat:lobby", {"text": "after the restart 2", "name": "ops"})
    await expect(texts(page)).to_have_text(
        ["before the restart", "after the restart 1", "after the restart 2"], timeout=WAIT
    )
    await connected(page)
    states = await page.evaluate("window.states")
    assert states[0] == "connecting" and states[-1] == "connected", states
    assert "disconnected" not in states, states
    # The memory broker's new epoch: the page can't know what it missed, and says so.
    await expect(page.get_by_test_id("notice")).to_have_count(1, timeout=WAIT)
    # And it is live again.
    await api.publish("chat:lobby", {"text": "live again", "name": "ops"})
    await expect(texts(page)).to_have_count(4, timeout=WAIT)
    await expect(page.get_by_test_id("quote")).to_have_count(6, timeout=WAIT)


async def test_page_recovers_messages_sent_while_offline(pages: Pages, api: Api) -> None:
    page = await pages.demo("Ada")
    await expect(page.get_by_test_id("person")).to_have_count(1, timeout=WAIT)
    await api.publish("chat:lobby", {"text": "m0", "name": "ops"})
    await expect(texts(page)).to_have_text(["m0"], timeout=WAIT)

    await page.context.set_offline(True)
    await expect(page.get_by_test_id("connection-state")).not_to_have_attribute(
        "data-state", "connected", timeout=WAIT
    )
    for n in range(1, 6):
        await api.publish("chat:lobby", {"text": f"m{n}", "name": "ops"})
    await page.context.set_offline(False)
    await expect(texts(page)).to_have_text([f"m{n}" for n in range(6)], timeout=WAIT)
    await connected(page)
    await expect(page.get_by_test_id("notice")).to_have_count(0)


async def test_disconnect_button_stops_and_starts_the_connection(pages: Pages) -> None:
    page = await pages.demo("Ada")
    await connected(page)
    toggle = page.get_by_test_id("connection-toggle")
    await toggle.click()
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "disconnected"
    )
    await expect(toggle).to_have_text("Connect")
    await toggle.click()
    await connected(page)
    await expect(toggle).to_have_text("Disconnect")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("desktop", {"viewport": {"width": 1280, "height": 860}}),
        ("phone", {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                   "is_mobile": True, "has_touch": True}),
        ("phone-dark", {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                        "has_touch": True, "color_scheme": "dark"}),
    ],
)
async def test_screenshot_of_the_demo_page(
    pages: Pages, api: Api, artifacts: Path, name: str, options: dict[str, Any]
) -> None:
    ada = await pages.demo("Ada", **options)
    await pages.demo("Grace", viewport={"width": 800, "height": 600})
    await expect(ada.get_by_test_id("person")).to_have_count(2, timeout=WAIT)
    await api.publish("chat:lobby", {"text": "Deploy finished: v2.4.1 is live.",
                                     "name": "backend"})
    await ada.get_by_test_id("message-input").fill("Nice! Prices look lively today.")
    await ada.get_by_test_id("message-input").press("Enter")
    await expect(texts(ada)).to_have_count(2, timeout=WAIT)
    await expect(ada.get_by_test_id("quote")).to_have_count(6, timeout=WAIT)
    await connected(ada)
    # Readable on a phone: nothing wider than the screen.
    overflow = await ada.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow} px wider than the {name} screen"
    path = artifacts / f"demo-{name}.png"
    await ada.screenshot(path=str(path), full_page=True, animations="disabled")
    assert path.stat().st_size > 10_000
