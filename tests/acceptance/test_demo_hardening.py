"""The demo chat against hostile browsers and closed tabs (issue 10, findings 7, 8 and 11).

Sessions the server never issued are replaced, CSRF tokens belong to one
session, cookies are ``Secure`` over HTTPS, bad input is a 4xx, and an answer
nobody drives is driven by the server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar.testing import AsyncTestClient

from example_chat import db as demo_db
from example_chat.app import SESSION_COOKIE, create_app
from tests.support.demo import (
    GUARD,
    SECRET,
    Browser,
    Demo,
    ScriptedModel,
    run_demo,
    wait_finished,
)

ANSWER = "Nobody drove me. I was answered anyway!\n"

PLANTED = "A" * 43
"""A well-formed session value the server never issued (43 URL-safe characters)."""


@pytest.fixture
async def demo(db_url: str) -> AsyncIterator[Demo]:
    async with run_demo(db_url, ScriptedModel(ANSWER)) as running:
        yield running


def session_cookies(response: httpx.Response) -> list[str]:
    return [
        c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")
    ]


# -- finding 7: sessions and CSRF --------------------------------------------------------


async def test_a_planted_session_cookie_is_replaced_and_its_planter_sees_nothing(
    demo: Demo,
) -> None:
    # A page on another port of this host set the victim's session cookie to a
    # value of its choosing (cookies do not care about ports).
    planted = httpx.Cookies()
    planted.set(SESSION_COOKIE, PLANTED, domain=httpx.URL(demo.url).host)
    async with Browser(demo.url, cookies=planted) as victim:
        jar = victim.client.cookies.get(SESSION_COOKIE)
        assert jar is not None
        assert jar != PLANTED, "the planted session was honoured"
        chat_id = await victim.new_chat()
        sent = await victim.send(chat_id, "my secret question")
        assert sent.status_code == 200, sent.text

    # The planter, holding the value it planted, finds nothing of the victim's.
    headers = {"cookie": f"{SESSION_COOKIE}={PLANTED}"}
    async with httpx.AsyncClient(base_url=demo.url, timeout=GUARD) as planter:
        page = await planter.get(f"/chats/{chat_id}", headers=headers)
        assert page.status_code == 404
        assert "my secret question" not in page.text
        index = await planter.get("/", headers=headers)
        assert chat_id not in index.text
        poll = await planter.get(f"/chats/{chat_id}/conversation?after=0", headers=headers)
        assert poll.status_code == 404
        ((stream_id, _status),) = demo.chat_streams(chat_id)
        assert (await planter.get(f"/streams/{stream_id}", headers=headers)).status_code == 403


async def test_a_tampered_or_foreign_session_is_replaced(demo: Demo) -> None:
    async with httpx.AsyncClient(base_url=demo.url, timeout=GUARD) as client:
        issued = session_cookies(await client.get("/"))[0].split(";", 1)[0].split("=", 1)[1]
        token, _, signature = issued.partition(".")
        assert token
        assert signature
        tampered = {
            f"{token}.{'A' * len(signature)}",  # a forged signature
            f"{'B' * len(token)}.{signature}",  # someone else's signature
            token,  # no signature at all
            issued + "x",
            "",
        }
        for value in tampered:
            response = await client.get("/", headers={"cookie": f"{SESSION_COOKIE}={value}"})
            assert response.status_code == 200
            (fresh,) = session_cookies(response)
            assert not fresh.startswith(f"{SESSION_COOKIE}={value};"), value
        # Bytes no session has: replaced too, never a 500.
        odd = f"{SESSION_COOKIE}={'é' * 43}.{'é' * 43}".encode("latin-1")
        response = await client.get("/", headers={b"cookie": odd})
        assert response.status_code == 200
        assert len(session_cookies(response)) == 1
        token_header = {b"x-csrftoken": "é".encode("latin-1"), b"cookie": odd}
        assert (await client.post("/chats", headers=token_header)).status_code == 403
        # The issued one is kept (no new cookie), even beside a planted one sent first
        # (a planted cookie with a longer Path comes first in the Cookie header).
        both = f"{SESSION_COOKIE}={PLANTED}; {SESSION_COOKIE}={issued}"
        kept = await client.get("/", headers={"cookie": both})
        assert session_cookies(kept) == []


async def test_a_csrf_token_of_one_session_is_refused_in_another(demo: Demo) -> None:
    async with Browser(demo.url) as alice, Browser(demo.url) as mallory:
        assert alice.token != mallory.token
        # Mallory replays Alice's token, with every cookie Alice's browser got
        # besides her session (a double-submit cookie alone would let this through).
        for name, value in alice.client.cookies.items():
            if name != SESSION_COOKIE:
                mallory.client.cookies.set(name, value)
        refused = await mallory.client.post("/chats", headers=alice.csrf)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "forbidden"
        form = await mallory.client.post("/chats", data={"_csrf_token": alice.token})
        assert form.status_code == 403
        # Each token works in its own session.
        assert (await alice.client.post("/chats", headers=alice.csrf)).status_code == 303
        assert (await mallory.client.post("/chats", headers=mallory.csrf)).status_code == 303
    # Without a session, no token is right.
    async with httpx.AsyncClient(base_url=demo.url, timeout=GUARD) as anonymous:
        response = await anonymous.post("/chats", headers=alice.csrf)
        assert response.status_code == 403


async def test_cookies_are_secure_over_https_only(db_url: str) -> None:
    await demo_db.migrate(db_url)
    model = ScriptedModel(ANSWER)
    for scheme, secure in (("https", True), ("http", False)):
        app = create_app(dsn=db_url, secret=SECRET, model=model)
        async with AsyncTestClient(app, base_url=f"{scheme}://demo.test") as client:
            response = await client.get("/")
            assert response.status_code == 200
            cookies = response.headers.get_list("set-cookie")
            assert cookies
            for cookie in cookies:
                assert ("; Secure" in cookie) is secure, cookie


# -- finding 8: bad input is a 4xx ------------------------------------------------------


async def test_messages_postgres_cannot_store_are_a_400(demo: Demo) -> None:
    async with Browser(demo.url) as browser:
        chat_id = await browser.new_chat()
        url = f"/chats/{chat_id}/messages"
        headers = {**browser.csrf, "hx-request": "true"}
        form = {**headers, "content-type": "application/x-www-form-urlencoded"}
        refused = [
            "content=hello%00world",  # NUL: Postgres text cannot hold it
            "content=" + "x" * 1_000_000,  # far too long
        ]
        for body in refused:
            response = await browser.client.post(url, content=body.encode(), headers=form)
            assert response.status_code == 400, (body[:40], response.text)
            assert response.json()["error"] == "invalid_input"
        # The same through multipart, where the field arrives as raw bytes.
        for raw in (b"nul\x00", b"\xed\xa0\x80", b"\xff"):
            response = await browser.client.post(
                url, files={"content": (None, raw)}, headers=headers
            )
            assert response.status_code == 400, (raw, response.text)
            assert response.json()["error"] == "invalid_input"
        # Without the header, the CSRF check reads the same form: a 403, not a 500.
        for raw in (b"\xed\xa0\x80", b"\xff"):
            response = await browser.client.post(
                url, files={"content": (None, raw), "_csrf_token": (None, raw)}
            )
            assert response.status_code == 403, (raw, response.text)
        assert demo.chat_streams(chat_id) == []
        # The chat still works.
        assert (await browser.send(chat_id, "fine")).status_code == 200
        # A form body that is not UTF-8 is decoded leniently (U+FFFD): stored, never a 500.
        for body in ("content=%ED%A0%80", "content=%FF%FEok"):
            other = await browser.new_chat()
            response = await browser.client.post(
                f"/chats/{other}/messages", content=body.encode(), headers=form
            )
            assert response.status_code in (200, 400), (body, response.text)


async def test_odd_query_values_are_never_a_500(demo: Demo) -> None:
    async with Browser(demo.url) as owner, Browser(demo.url) as stranger:
        chat_id = await owner.new_chat()
        for share in ("%00", "%ED%A0%80", "%FF", "x" * 10_000):
            page = await stranger.client.get(f"/chats/{chat_id}?share={share}")
            assert page.status_code == 404, share
        for after in ("9" * 5000, "-1", "1e9", "%00"):
            poll = await owner.client.get(f"/chats/{chat_id}/conversation?after={after}")
            assert poll.status_code < 500, (after[:20], poll.text)
        odd_chat = await owner.client.get("/chats/not-a-uuid")
        assert odd_chat.status_code < 500


async def test_a_static_file_name_the_file_system_refuses_is_a_404(demo: Demo) -> None:
    # A NUL (which no file name holds) made the file system call raise: a 500.
    async with httpx.AsyncClient(base_url=demo.url) as client:
        for name in ("x%00y", "%00", "demo/%00.js", "x" * 300):
            assert (await client.get(f"/static/{name}")).status_code == 404, name


# -- finding 11: an answer nobody drives ---------------------------------------------


async def wait_status(demo: Demo, stream_id: uuid.UUID, status: str) -> None:
    async with asyncio.timeout(GUARD):
        while (await demo.pts.get_stream(stream_id)).status != status:
            await asyncio.sleep(0.02)


async def test_an_answer_no_browser_drives_is_driven_by_the_server(db_url: str) -> None:
    model = ScriptedModel(ANSWER)
    async with run_demo(db_url, model, unclaimed_after=0.2) as demo, Browser(demo.url) as owner:
        chat_id = await owner.new_chat()
        # The tab closes right after sending: nobody POSTs the drive URL.
        assert (await owner.send(chat_id, "then I closed the tab")).status_code == 200
        ((stream_id, _status),) = demo.chat_streams(chat_id)
        assert await wait_finished(demo, stream_id) == "done"
        assert await demo.body(stream_id) == ANSWER
        assert model.calls == 1
        assert [(t.role, t.content) for t in model.turns[0]] == [("user", "then I closed the tab")]
        # A browser that comes back late does not generate it again.
        late = await owner.drive(chat_id, stream_id)
        assert late.status_code == 409
        assert late.json()["error"] == "already_driven"
        assert model.calls == 1
        # The next message goes through as usual.
        assert (await owner.send(chat_id, "and again")).status_code == 200


async def test_a_server_driven_answer_is_watched_and_stopped_like_any_other(
    db_url: str,
) -> None:
    model = ScriptedModel(ANSWER * 3, hold_at=4)
    async with run_demo(db_url, model, unclaimed_after=0.2) as demo, Browser(demo.url) as owner:
        chat_id = await owner.new_chat()
        await owner.send(chat_id, "stop me later")
        ((stream_id, _status),) = demo.chat_streams(chat_id)
        await asyncio.wait_for(model.held.wait(), GUARD)
        await wait_status(demo, stream_id, "streaming")
        stopped = await owner.client.post(
            f"/streams/{stream_id}/cancel", headers=owner.csrf, json={"reason": "enough"}
        )
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["status"] == "aborted"
        model.release()
        assert await wait_finished(demo, stream_id) == "aborted"
        assert (ANSWER * 3).startswith(await demo.body(stream_id))
        assert model.calls == 1
