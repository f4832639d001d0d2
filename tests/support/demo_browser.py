"""The demo chat's browser tests' helpers: Chromium via Playwright, a tab that records
what went wrong in it, and reads of the rendered markdown panes.

Every wait here is a hang guard, never an assertion about speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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

from tests.support.demo import GUARD, Demo, ScriptedModel

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("PTS_TEST_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = Path(CHROMIUM).exists()
VIEWPORT: ViewportSize = {"width": 1280, "height": 960}
PHONE: ViewportSize = {"width": 390, "height": 844}
SOMETHING = re.compile(r"\S")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Debian Chromium (``PTS_TEST_CHROMIUM`` names another binary)."""
    if not HAVE_CHROMIUM:
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` "
            "(or set PTS_TEST_CHROMIUM to a Chromium binary)"
        )
    expect.set_options(timeout=GUARD * 1000)  # a hang guard for every expect()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


# The markdown a pane was given, its rendering, and the same text rendered at once.
_SOURCE = "(id) => document.querySelector(`[data-testid='${id}']`).ptsView.source"
_HTML = "(id) => document.querySelector(`[data-testid='${id}']`).innerHTML"
_REFERENCE = """(text) => {
  const element = document.createElement("div");
  const view = new window.ptsMarkdown.View(element);
  view.setText(text);
  view.flush();
  return element.innerHTML;
}"""


def _first_difference(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


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

    async def settled(self) -> None:
        """Until every markdown view has rendered all the text it was given."""
        await self.page.wait_for_function(
            "() => window.ptsMarkdown && window.ptsMarkdown.idle()"
            " && !document.querySelector('[data-markdown]:not([data-rendered])')",
            timeout=GUARD * 1000,
        )

    async def source(self, test_id: str) -> str:
        """The markdown a pane was given (all its text, in order)."""
        source: str = await self.page.evaluate(_SOURCE, test_id)
        return source

    async def expect_source(self, test_id: str, text: str) -> None:
        """Until the pane has been given exactly ``text`` and has rendered it."""
        try:
            async with asyncio.timeout(GUARD):
                while await self.source(test_id) != text:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            given = await self.source(test_id)
            at = _first_difference(given, text)
            assert given == text, f"{test_id} from {at}: {given[at:][:80]!r} != {text[at:][:80]!r}"
            raise
        await self.settled()

    async def html(self, test_id: str) -> str:
        html: str = await self.page.evaluate(_HTML, test_id)
        return html

    async def reference(self, text: str) -> str:
        """``text`` rendered at once by the page's renderer (what a history bubble shows)."""
        html: str = await self.page.evaluate(_REFERENCE, text)
        return html

    async def expect_rendered(self, test_id: str, text: str) -> None:
        """The pane was given ``text`` and shows it as ``text`` rendered at once would."""
        await self.expect_source(test_id, text)
        shown, reference = await self.html(test_id), await self.reference(text)
        at = _first_difference(shown, reference)
        assert shown == reference, f"{test_id} from {at}: {shown[at - 80 :][:200]!r}"

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.page.evaluate("() => ({...window.ptsMarkdown.stats})")
        return stats

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

    async def screenshot(self, name: str, *, full_page: bool = False) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / name, full_page=full_page)


def chat_id_of(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


async def held(model: ScriptedModel) -> None:
    await asyncio.wait_for(model.held.wait(), GUARD)


def only_stream(demo: Demo, chat_id: str) -> uuid.UUID:
    ((stream_id, _status),) = demo.chat_streams(chat_id)
    return stream_id
