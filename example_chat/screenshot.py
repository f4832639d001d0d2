"""Take the README's screenshot of a running demo, mid-answer.

    uv run pts demo &                                   # in one terminal
    uv run python -m example_chat.screenshot docs/demo.png [--url http://127.0.0.1:8000]

Opens a new chat in headless Chromium (``/usr/bin/chromium``, or
``PTS_TEST_CHROMIUM``), asks a question and saves the page once the driving
pane has received ``--bytes`` bytes, while the answer still streams. Fonts for
CJK and emoji (Debian: ``fonts-noto-cjk``, ``fonts-noto-color-emoji``) make it
look right.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from playwright.async_api import async_playwright, expect

QUESTION = "How can a reload continue an answer without asking the model again?"


async def take(url: str, path: Path, min_bytes: int) -> None:
    """Save the screenshot to ``path``; raises TimeoutError if the answer ends too soon."""
    chromium = os.environ.get("PTS_TEST_CHROMIUM", "/usr/bin/chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(url.rstrip("/") + "/")
            await page.get_by_test_id("new-chat").click()
            await expect(page.get_by_test_id("message-input")).to_be_visible()
            await page.get_by_test_id("message-input").fill(QUESTION)
            await page.get_by_test_id("send-button").click()
            received = page.get_by_test_id("driven-bytes")
            for _ in range(100_000):  # the caller's timeout ends it sooner
                text = await received.text_content() or "0"
                if int(text.replace(",", "")) >= min_bytes:
                    break
                await asyncio.sleep(0.02)
            status = await page.get_by_test_id("stream-status").text_content()
            if status != "streaming":
                raise TimeoutError(f"the answer is {status!r} already: use a smaller --bytes")
            path.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=path)
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="where to save the PNG")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running demo")
    parser.add_argument("--bytes", type=int, default=700, help="driving pane bytes to wait for")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait at most")
    args = parser.parse_args()
    asyncio.run(asyncio.wait_for(take(args.url, args.path, args.bytes), args.timeout))
    print(f"saved {args.path}")


if __name__ == "__main__":
    main()
