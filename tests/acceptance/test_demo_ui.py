"""The demo chat's page in use: phone width, Back, the message box's hints, the left
pane's title, the stream id and the copy buttons; and what the app sends and logs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect

from example_chat.db import Turn
from example_chat.models import QUIET_LOGGERS, OpenAIModel
from tests.support.demo import (
    Browser as HTTPBrowser,
)
from tests.support.demo import (
    Demo,
    FakeOpenAI,
    ScriptedModel,
    run_demo,
    serve_fake_openai,
    wait_finished,
)
from tests.support.demo_browser import (
    PHONE,
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


# Everything the page shows must fit the viewport's width: an element is checked
# unless a scrolling (or clipping) box holds it, and that box is checked instead.
_OVERFLOWS = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    let clipped = false;
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") { clipped = true; break; }
    }
    if (clipped) continue;
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 && rect.height === 0) continue;
    if (rect.left < -0.5 || rect.right > width + 0.5) {
      const where = Math.round(rect.left) + ".." + Math.round(rect.right);
      out.push(el.tagName + "." + el.className + " " + where);
    }
  }
  return {width: width, scrollWidth: document.documentElement.scrollWidth, out: out};
}"""

WIDE = (
    "A long word: Donaudampfschifffahrtsgesellschaftskapitänswitwenrentenversicherung, "
    "a long link https://example.org/" + "a" * 120 + " and a wide code block:\n\n"
    "```py\nprint('" + "x" * 200 + "')\n```\n\n| a | b | c | d | e | f | g | h |\n"
    "|---|---|---|---|---|---|---|---|\n| " + " | ".join(["wide cell content"] * 8) + " |\n"
)


async def _fits(tab: Tab) -> None:
    layout = await tab.page.evaluate(_OVERFLOWS)
    assert layout["scrollWidth"] <= layout["width"], layout
    assert layout["out"] == [], layout


async def test_at_phone_width_nothing_overflows_and_the_title_shows(
    db_url: str, browser: Browser
) -> None:
    model = ScriptedModel(WIDE, hold_at=40)
    async with run_demo(db_url, model) as demo:
        context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        tab = await Tab.open(context)
        await tab.new_chat(demo.url)
        await _fits(tab)
        question = "How wide can a question be before the title on a phone gives up? " * 2
        await tab.send(question)
        await held(model)
        await tab.expect_status("streaming")
        title = tab.page.locator("#chat-title")
        await expect(title).to_contain_text("How wide can a question be")
        await expect(title).to_be_in_viewport()
        box = await title.bounding_box()
        assert box is not None
        assert box["width"] > 100
        assert box["height"] > 10
        await expect(tab.page.get_by_test_id("share-link")).to_be_in_viewport()
        await expect(tab.page.get_by_test_id("copy-share")).to_be_in_viewport()
        await _fits(tab)
        await tab.screenshot("demo-phone-mid-answer.png")
        model.release()
        await tab.expect_status("done")
        await tab.settled()
        await _fits(tab)
        await tab.send("And the history?")
        await expect(tab.page.get_by_test_id("history-answer")).to_have_count(1)
        await tab.expect_status("done")
        await tab.settled()
        await _fits(tab)
        await tab.screenshot("demo-phone.png", full_page=True)
        await tab.page.goto(demo.url + "/")
        await _fits(tab)
        assert tab.errors == []
        await context.close()


async def test_back_shows_the_chat_as_it_is_now(db_url: str, browser: Browser) -> None:
    async with run_demo(db_url, ScriptedModel("The answer.\n")) as demo:
        context = await browser.new_context(viewport=VIEWPORT)
        tab = await Tab.open(context)
        chat_url = await tab.new_chat(demo.url)
        await expect(tab.page.locator(".empty")).to_be_visible()  # no messages yet
        await tab.send("Remember me after Back")
        await tab.expect_status("done")
        await tab.page.locator(".brand").click()
        await tab.page.wait_for_url(demo.url + "/")
        response = await tab.page.go_back()
        assert tab.page.url == chat_url
        assert response is None or response.headers.get("cache-control") == "no-store"
        await expect(tab.page.locator(".bubble.user")).to_have_text("Remember me after Back")
        await tab.expect_status("done")
        await expect(tab.page.locator(".empty")).to_have_count(0)
        assert tab.errors == []
        await context.close()


async def test_the_message_box_says_why_nothing_was_sent(db_url: str, browser: Browser) -> None:
    model = ScriptedModel(hold_at=5)
    async with run_demo(db_url, model) as demo:
        context = await browser.new_context(viewport=VIEWPORT)
        tab = await Tab.open(context)
        chat_url = await tab.new_chat(demo.url)
        box = tab.page.get_by_test_id("message-input")
        error = tab.page.get_by_test_id("send-error")
        await box.fill("   \n  ")
        await box.press("Enter")
        await expect(error).to_contain_text("empty")
        await tab.page.get_by_test_id("send-button").click()
        await expect(error).to_contain_text("empty")
        assert demo.chat_streams(chat_id_of(chat_url)) == []

        await box.fill("A real question")
        await expect(error).to_have_text("")
        await box.press("Enter")
        await held(model)
        await tab.expect_status("streaming")
        await box.fill("Too early")
        await box.press("Enter")
        await expect(error).to_contain_text("Wait for the answer to finish")
        await expect(box).to_have_value("Too early")  # kept for later
        model.release()
        await tab.expect_status("done")
        assert len(demo.chat_streams(chat_id_of(chat_url))) == 1
        assert tab.errors == []
        await context.close()


async def test_the_left_pane_says_what_it_does_and_the_stream_id_is_shown_and_copied(
    db_url: str, browser: Browser
) -> None:
    model = ScriptedModel(hold_at=20)
    async with run_demo(db_url, model) as demo:
        context = await browser.new_context(
            viewport=VIEWPORT, permissions=["clipboard-read", "clipboard-write"]
        )
        tab = await Tab.open(context)
        chat_url = await tab.new_chat(demo.url)
        await tab.send("Which stream is this?")
        await held(model)
        title = tab.page.get_by_test_id("driven-title")
        await expect(title).to_contain_text("Driving browser")
        stream_id = only_stream(demo, chat_id_of(chat_url))
        await expect(tab.page.get_by_test_id("stream-id")).to_have_text(str(stream_id))
        await expect(tab.page.get_by_test_id("tail-command")).to_have_text(f"pts tail {stream_id}")

        await tab.page.get_by_test_id("copy-tail").click()
        await expect(tab.page.get_by_test_id("copy-tail")).to_have_text("Copied")
        copied = await tab.page.evaluate("() => navigator.clipboard.readText()")
        assert copied == f"pts tail {stream_id}"
        await tab.page.get_by_test_id("copy-share").click()
        await expect(tab.page.get_by_test_id("copy-share")).to_have_text("Copied")
        share = await tab.page.get_by_test_id("share-link").input_value()
        assert "?share=" in share
        assert await tab.page.evaluate("() => navigator.clipboard.readText()") == share

        await tab.page.reload()
        await tab.expect_driving_pane("following")
        await expect(title).not_to_contain_text("Driving")
        await expect(title).to_contain_text("following, not driving")
        model.release()
        await tab.expect_status("done")
        await tab.page.reload()
        await expect(title).to_contain_text("loaded from the database")
        assert tab.errors == []
        await context.close()


# -- over HTTP ------------------------------------------------------------------------------


async def test_pages_are_never_cached_and_blank_messages_are_told_apart(db_url: str) -> None:
    async with (
        run_demo(db_url, ScriptedModel("Fine.\n")) as demo,
        HTTPBrowser(demo.url) as browser,
    ):
        chat_id = await browser.new_chat()
        index = await browser.client.get("/")
        page = await browser.client.get(f"/chats/{chat_id}")
        missing = await browser.client.get("/chats/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404
        sent = await browser.send(chat_id, "hello")
        assert sent.status_code == 200
        await wait_finished_or_drive(browser, chat_id, demo)
        polled = await browser.client.get(f"/chats/{chat_id}/conversation?after=0")
        assert polled.status_code == 200
        for response in (index, page, missing, sent, polled):
            assert response.headers["cache-control"] == "no-store", response.url

        blank = await browser.send(chat_id, "  \n\t ")
        assert blank.status_code == 400
        assert blank.json()["error"] == "invalid_input"
        assert "empty" in blank.json()["detail"]
        long = await browser.send(chat_id, "x" * 4001)
        assert long.status_code == 400
        assert "at most 4000 characters" in long.json()["detail"]


async def wait_finished_or_drive(browser: HTTPBrowser, chat_id: str, demo: Demo) -> None:
    stream_id = await browser.latest_stream(chat_id, demo)
    assert (await browser.drive(chat_id, stream_id)).status_code == 200
    assert await wait_finished(demo, stream_id) == "done"


async def test_the_openai_model_does_not_log_every_http_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fake = FakeOpenAI(["Quiet", " please."])
    async with serve_fake_openai(fake) as base_url:
        model = OpenAIModel("fake-model", base_url=base_url)
        try:
            received = [d async for d in model.stream([Turn("user", "hi")])]
        finally:
            await model.aclose()
    assert received == ["Quiet", " please."]
    noisy = [r.getMessage() for r in caplog.records if r.name.split(".")[0] in QUIET_LOGGERS]
    assert noisy == []
