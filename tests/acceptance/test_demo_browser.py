"""The demo chat in a real headless browser (Playwright driving Debian's Chromium).

Each test holds the scripted model mid-answer at a gate, so "mid-answer" is a
state the test controls, not a moment it races for. Screenshots of the
side-by-side view go to ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect

from tests.support.demo import ScriptedModel, run_demo, wait_persisted
from tests.support.demo_browser import (
    SOMETHING,
    VIEWPORT,
    Tab,
    chat_id_of,
    chromium,
    held,
    only_stream,
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


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
        await tab.expect_rendered("driven-text", full)
        await tab.expect_rendered("subscriber-text", full)
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
        await tab.expect_rendered("driven-text", persisted)
        await tab.expect_rendered("subscriber-text", persisted)
        await tab.screenshot("demo-after-reload.png")

        model.release()
        await tab.expect_status("done")
        await tab.expect_driving_pane("complete")
        (full,) = model.answers
        assert full.startswith(persisted)
        assert len(full) > len(persisted)
        await tab.expect_rendered("driven-text", full)
        await tab.expect_rendered("subscriber-text", full)
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
        before = await second.source("subscriber-text")

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
            await tab.expect_rendered("subscriber-text", full)
            await tab.expect_rendered("driven-text", full)
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
            await tab.expect_rendered("subscriber-text", partial)
            await tab.expect_rendered("driven-text", partial)
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
            await tab.expect_rendered("driven-text", full)
            await tab.expect_rendered("subscriber-text", full)
            assert await tab.page.locator("main script, main img, main b").count() == 0
            # Raw HTML in an answer is shown as the text it is.
            for pane in ("driven-text", "subscriber-text"):
                shown = await tab.text(pane)
                assert "<script>window.__ptsPwned = 1; alert('script')</script>" in shown
                assert "<b onmouseover=alert('b')>bold?</b> & <" in shown
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
        await tab.expect_rendered("subscriber-text", full)
        await tab.expect_rendered("driven-text", full)
        assert model.calls == 1
        assert tab.errors == []
        await context.close()
