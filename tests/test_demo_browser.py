"""The demo chat in a real headless browser (Playwright driving Debian's Chromium).

Each test holds the scripted model mid-answer at a gate, so "mid-answer" is a
state the test controls, not a moment it races for. Screenshots of the
side-by-side view go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from tests.demo_support import GUARD, Demo, ScriptedModel, run_demo, wait_persisted

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("PTS_TEST_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = Path(CHROMIUM).exists()
VIEWPORT: ViewportSize = {"width": 1280, "height": 960}
SOMETHING = re.compile(r"\S")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` "
            "(or set PTS_TEST_CHROMIUM to a Chromium binary)"
        )
    expect.set_options(timeout=GUARD * 1000)  # a hang guard for every expect()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


class Tab:
    """A page plus what went wrong in it: script errors and dialogs (alert())."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._on_dialog)

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    @classmethod
    async def open(cls, context: BrowserContext, url: str | None = None) -> Tab:
        tab = cls(await context.new_page())
        if url is not None:
            await tab.page.goto(url)
        return tab

    async def text(self, test_id: str) -> str:
        return await self.page.get_by_test_id(test_id).text_content() or ""

    async def new_chat(self, base_url: str) -> str:
        """Create a chat from the chat list; return the chat page's URL."""
        await self.page.goto(base_url + "/")
        await self.page.get_by_test_id("new-chat").click()
        await self.page.wait_for_url(re.compile(r"/chats/[0-9a-f-]{36}$"))
        return self.page.url

    async def send(self, message: str) -> None:
        await self.page.get_by_test_id("message-input").fill(message)
        await self.page.get_by_test_id("send-button").click()

    async def expect_status(self, status: str) -> None:
        await expect(self.page.get_by_test_id("stream-status")).to_have_text(status)

    async def expect_driving_pane(self, state: str) -> None:
        """``driving``, ``following`` (subscribed instead) or ``complete``."""
        await expect(self.page.locator("[data-answer]")).to_have_attribute("data-driven", state)

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / name)


def chat_id_of(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


async def held(model: ScriptedModel) -> None:
    await asyncio.wait_for(model.held.wait(), GUARD)


def only_stream(demo: Demo, chat_id: str) -> uuid.UUID:
    ((stream_id, _status),) = demo.chat_streams(chat_id)
    return stream_id


async def test_both_panes_end_with_the_same_text_and_done(db_url: str, browser: Browser) -> None:
    model = ScriptedModel(hold_at=90)
    async with run_demo(db_url, model) as demo:
        context = await browser.new_context(viewport=VIEWPORT)
        tab = await Tab.open(context)
        chat_url = await tab.new_chat(demo.url)
        await tab.send("How does pts deliver one answer twice?")
        await held(model)
        await tab.expect_status("streaming")
        await tab.expect_driving_pane("driving")
        # Mid-answer: the driving pane has every token so far; the subscriber
        # what has been flushed (a sentence, or whatever waited 250 ms).
        await expect(tab.page.get_by_test_id("subscriber-text")).to_have_text(SOMETHING)
        await tab.screenshot("demo-side-by-side-mid-answer.png")

        model.release()
        await tab.expect_status("done")
        await tab.expect_driving_pane("complete")
        await tab.screenshot("demo-side-by-side-done.png")

        (full,) = model.answers
        stream_id = only_stream(demo, chat_id_of(chat_url))
        assert await tab.text("driven-text") == full
        assert await tab.text("subscriber-text") == full
        assert await demo.body(stream_id) == full
        size = f"{len(full.encode()):,}"
        assert await tab.text("driven-bytes") == size
        assert await tab.text("subscriber-bytes") == size
        assert int((await tab.text("driven-updates")).replace(",", "")) > 0
        assert int((await tab.text("subscriber-updates")).replace(",", "")) > 0
        assert (await tab.text("driven-ttfb")).endswith(" ms")
        assert model.calls == 1
        # The box takes the next message.
        await expect(tab.page.get_by_test_id("send-button")).to_be_enabled()
        assert tab.errors == []
        await context.close()


async def test_reload_mid_answer_continues_without_a_second_generation(
    db_url: str, browser: Browser
) -> None:
    model = ScriptedModel(hold_at=70)
    async with run_demo(db_url, model) as demo:
        context = await browser.new_context(viewport=VIEWPORT)
        tab = await Tab.open(context)
        chat_url = await tab.new_chat(demo.url)
        await tab.send("Reload me in the middle, please.")
        await held(model)
        chat_id = chat_id_of(chat_url)
        stream_id = only_stream(demo, chat_id)
        # Everything said before the gate gets persisted (within max_delay);
        # from then on the stream holds still until the model is released.
        await wait_persisted(demo, stream_id, model.emitted)
        persisted = model.emitted

        await tab.page.reload()
        await tab.expect_status("streaming")
        # The reloaded page does not drive again: both panes start from the text
        # persisted so far and follow the subscription from its exact byte offset.
        await tab.expect_driving_pane("following")
        offset = len(persisted.encode())
        await expect(tab.page.locator("[data-answer]")).to_have_attribute(
            "data-offset", str(offset)
        )
        await expect(tab.page.get_by_test_id("driven-mode")).to_contain_text(f"from byte {offset}")
        assert await tab.text("driven-text") == persisted
        assert await tab.text("subscriber-text") == persisted
        await tab.screenshot("demo-after-reload.png")

        model.release()
        await tab.expect_status("done")
        await tab.expect_driving_pane("complete")
        (full,) = model.answers
        assert full.startswith(persisted)
        assert len(full) > len(persisted)
        assert await tab.text("driven-text") == full
        assert await tab.text("subscriber-text") == full
        assert await demo.body(stream_id) == full
        # One generation: the model was asked once, and the chat has one answer.
        assert model.calls == 1
        assert demo.chat_streams(chat_id) == [(stream_id, "done")]
        assert tab.errors == []
        await context.close()


async def test_a_second_page_and_a_share_link_see_the_answer_live(
    db_url: str, browser: Browser
) -> None:
    model = ScriptedModel(hold_at=50)
    async with run_demo(db_url, model) as demo:
        context = await browser.new_context(viewport=VIEWPORT)
        first = await Tab.open(context)
        chat_url = await first.new_chat(demo.url)
        # Another tab of the same browser, open before the question is asked:
        # it finds the new answer by itself, and watches it without driving it.
        second = await Tab.open(context, chat_url)
        await first.send("Show this to a second tab.")
        await held(model)
        await second.expect_status("streaming")
        await second.expect_driving_pane("following")
        before = await second.text("subscriber-text")

        # Another browser: nothing without the link, read-only with it.
        other = await browser.new_context(viewport=VIEWPORT)
        stranger = await Tab.open(other, chat_url)
        await expect(stranger.page.locator("h1")).to_have_text("Not found")
        share_link = await first.page.get_by_test_id("share-link").input_value()
        await stranger.page.goto(share_link)
        await stranger.expect_status("streaming")
        await expect(stranger.page.get_by_test_id("message-input")).to_have_count(0)
        await expect(stranger.page.get_by_test_id("stop-button")).to_have_count(0)

        model.release()
        (full,) = model.answers
        for tab in (first, second, stranger):
            await tab.expect_status("done")
            await tab.expect_driving_pane("complete")
            assert await tab.text("subscriber-text") == full
            assert await tab.text("driven-text") == full
            assert tab.errors == []
        # The second page got the rest live, after it had loaded.
        assert len(before) < len(full)
        await second.screenshot("demo-second-tab.png")
        assert model.calls == 1
        await other.close()
        await context.close()


async def test_stop_aborts_the_answer_in_every_page(db_url: str, browser: Browser) -> None:
    model = ScriptedModel(hold_at=40)
    async with run_demo(db_url, model) as demo:
        context = await browser.new_context(viewport=VIEWPORT)
        first = await Tab.open(context)
        chat_url = await first.new_chat(demo.url)
        await first.send("Start, then stop.")
        await held(model)
        second = await Tab.open(context, chat_url)
        await second.expect_status("streaming")

        await first.page.get_by_test_id("stop-button").click()
        await first.expect_status("aborted")
        await second.expect_status("aborted")
        await first.expect_driving_pane("complete")
        await second.expect_driving_pane("complete")
        await expect(first.page.get_by_test_id("stream-reason")).to_have_text(
            "stopped in the browser"
        )
        await expect(first.page.get_by_test_id("stop-button")).to_be_hidden()
        await expect(first.page.get_by_test_id("send-button")).to_be_enabled()

        # The partial text is kept, the same everywhere.
        (full,) = model.answers
        partial = await demo.body(only_stream(demo, chat_id_of(chat_url)))
        assert partial
        assert full.startswith(partial)
        assert partial != full
        for tab in (first, second):
            assert await tab.text("subscriber-text") == partial
            assert await tab.text("driven-text") == partial
            assert tab.errors == []
        assert model.calls == 1
        await context.close()


async def test_markup_in_an_answer_is_shown_as_text_and_never_runs(
    db_url: str, browser: Browser
) -> None:
    payload = (
        "<script>window.__ptsPwned = 1; alert('script')</script>"
        "<img src=x onerror=\"window.__ptsPwned = 2; alert('img')\">"
        "<b onmouseover=alert('b')>bold?</b> &amp; &lt;"
    )
    model = ScriptedModel(f"You said: {payload}\n\nAnd again, split: {payload}. Done.\n")
    async with run_demo(db_url, model) as demo:
        context = await browser.new_context(viewport=VIEWPORT)
        tab = await Tab.open(context)
        await tab.new_chat(demo.url)
        await tab.send(payload)
        await tab.expect_status("done")
        await tab.expect_driving_pane("complete")

        (full,) = model.answers
        for _ in range(2):  # live, then from the history after a reload
            assert await tab.text("driven-text") == full
            assert await tab.text("subscriber-text") == full
            assert await tab.page.locator("main script, main img, main b").count() == 0
            await expect(tab.page.locator(".bubble.user")).to_have_text(payload)
            await tab.page.reload()
            await tab.expect_status("done")
        assert await tab.page.evaluate("() => window.__ptsPwned") is None
        assert tab.dialogs == []
        assert tab.errors == []
        await context.close()


async def test_an_answer_whose_drive_never_arrives_is_answered_by_the_server(
    db_url: str, browser: Browser
) -> None:
    model = ScriptedModel()
    async with run_demo(db_url, model, unclaimed_after=0.5) as demo:
        context = await browser.new_context(viewport=VIEWPORT)
        tab = await Tab.open(context)
        # As if the tab had closed between sending and driving: the drive never arrives.
        await tab.page.route("**/answers/*/stream", lambda route: route.abort())
        chat_url = await tab.new_chat(demo.url)
        await tab.send("Nobody drives this one.")
        await tab.expect_status("done")
        await tab.expect_driving_pane("complete")
        (full,) = model.answers
        stream_id = only_stream(demo, chat_id_of(chat_url))
        assert await demo.body(stream_id) == full
        assert await tab.text("subscriber-text") == full
        assert await tab.text("driven-text") == full
        assert model.calls == 1
        assert tab.errors == []
        await context.close()
