"""The demo chat over real HTTP (no browser): storage, sessions, access, CSRF, driving."""

from __future__ import annotations

import asyncio
import hashlib
import html
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from example_chat import db as demo_db
from example_chat.app import SECURITY_HEADERS, SESSION_COOKIE
from tests.support.demo import GUARD, Browser, Demo, ScriptedModel, run_demo, wait_finished
from tests.support.servers import free_port, server_process
from tests.support.sse import collect

ANSWER = "First sentence. Second one!\n\n- a list\n\n```py\nx = 1\n```\nVoilà 你好 🎉.\n"


@pytest.fixture
async def demo(db_url: str) -> AsyncIterator[Demo]:
    async with run_demo(db_url, ScriptedModel(ANSWER)) as running:
        yield running


async def test_a_message_is_answered_over_http_and_persisted(demo: Demo) -> None:
    async with Browser(demo.url) as browser:
        chat_id = await browser.new_chat()
        sent = await browser.send(chat_id, "Hello <b>there</b>")
        assert sent.status_code == 200, sent.text
        # The htmx partial: the conversation with the new answer, ready to be driven.
        assert 'id="conversation"' in sent.text
        assert "Hello &lt;b&gt;there&lt;/b&gt;" in sent.text
        ((stream_id, status),) = demo.chat_streams(chat_id)
        assert status == "pending"
        assert f'data-drive-url="/chats/{chat_id}/answers/{stream_id}/stream"' in sent.text

        driven = await browser.drive(chat_id, stream_id)
        assert driven.status_code == 200
        assert driven.headers["content-type"] == "text/plain; charset=utf-8"
        assert driven.text == ANSWER
        assert await wait_finished(demo, stream_id) == "done"
        assert await demo.body(stream_id) == ANSWER
        assert demo.model.calls == 1

        # The model got the conversation so far: the user's message.
        assert isinstance(demo.model, ScriptedModel)
        assert [(t.role, t.content) for t in demo.model.turns[0]] == [
            ("user", "Hello <b>there</b>")
        ]

        # History reloads from the database, escaped; the chat got its title.
        page = await browser.client.get(f"/chats/{chat_id}")
        assert page.status_code == 200
        assert html.escape(ANSWER, quote=False) in page.text
        assert "<title>Hello &lt;b&gt;there&lt;/b&gt; · pts demo chat</title>" in page.text
        index = await browser.client.get("/")
        assert f'href="/chats/{chat_id}"' in index.text


async def test_the_second_message_sees_the_whole_history(demo: Demo) -> None:
    async with Browser(demo.url) as browser:
        chat_id = await browser.new_chat()
        for question in ("one?", "two?"):
            assert (await browser.send(chat_id, question)).status_code == 200
            stream_id = await browser.latest_stream(chat_id, demo)
            assert (await browser.drive(chat_id, stream_id)).text == ANSWER
            assert await wait_finished(demo, stream_id) == "done"
    assert isinstance(demo.model, ScriptedModel)
    assert [(t.role, t.content) for t in demo.model.turns[1]] == [
        ("user", "one?"),
        ("assistant", ANSWER),
        ("user", "two?"),
    ]


async def test_an_answer_is_driven_once(demo: Demo) -> None:
    async with Browser(demo.url) as browser:
        chat_id = await browser.new_chat()
        await browser.send(chat_id, "once")
        stream_id = await browser.latest_stream(chat_id, demo)
        assert (await browser.drive(chat_id, stream_id)).status_code == 200
        again = await browser.drive(chat_id, stream_id)
        assert again.status_code == 409
        assert again.json()["error"] == "already_driven"
        assert demo.model.calls == 1


async def test_no_second_message_while_an_answer_streams(db_url: str) -> None:
    model = ScriptedModel(ANSWER, hold_at=3)
    async with run_demo(db_url, model) as demo, Browser(demo.url) as browser:
        chat_id = await browser.new_chat()
        await browser.send(chat_id, "first")
        busy = await browser.send(chat_id, "too early")
        assert busy.status_code == 409
        assert busy.json()["error"] == "busy"
        assert len(demo.chat_streams(chat_id)) == 1
        model.release()


async def test_open_pages_poll_for_new_messages(demo: Demo) -> None:
    async with Browser(demo.url) as owner, Browser(demo.url) as stranger:
        chat_id = await owner.new_chat()
        poll = f"/chats/{chat_id}/conversation?after=0"
        assert (await owner.client.get(poll)).status_code == 204
        assert (await stranger.client.get(poll)).status_code == 404
        await owner.send(chat_id, "anything new?")
        stream_id = await owner.latest_stream(chat_id, demo)
        fresh = await owner.client.get(poll)
        assert fresh.status_code == 200
        assert f'data-stream-id="{stream_id}"' in fresh.text
        assert 'hx-swap-oob="true"' in fresh.text  # the title, named after the question
        # A polled answer is never driven by the page that polled it.
        assert "data-drive-url" not in fresh.text
        last = max(int(n) for n in re.findall(r"conversation\?after=(\d+)", fresh.text))
        quiet = await owner.client.get(f"/chats/{chat_id}/conversation?after={last}")
        assert quiet.status_code == 204


async def test_messages_are_validated(demo: Demo) -> None:
    async with Browser(demo.url) as browser:
        chat_id = await browser.new_chat()
        assert (await browser.send(chat_id, "   ")).status_code == 400
        assert (await browser.send(chat_id, "x" * 4001)).status_code == 400
        assert demo.chat_streams(chat_id) == []


async def test_plain_form_post_redirects_to_the_chat(demo: Demo) -> None:
    async with Browser(demo.url) as browser:
        chat_id = await browser.new_chat()
        response = await browser.send(chat_id, "no htmx here", htmx=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/chats/{chat_id}"
        # The page then drives the pending answer (the owner's browser does).
        page = await browser.client.get(f"/chats/{chat_id}")
        assert "data-drive-url=" in page.text


async def test_sessions_cookies_and_security_headers(demo: Demo) -> None:
    async with httpx.AsyncClient(base_url=demo.url, timeout=GUARD) as client:
        response = await client.get("/")
        assert response.status_code == 200
        cookies = response.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith(f"{SESSION_COOKIE}="))
        assert "HttpOnly" in session
        assert "SameSite=lax" in session
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
        # The cookie is kept: no new session on the next request.
        again = await client.get("/")
        assert not any(
            c.startswith(f"{SESSION_COOKIE}=") for c in again.headers.get_list("set-cookie")
        )
        static = await client.get("/static/demo/chat.js")
        assert static.status_code == 200
        assert "set-cookie" not in static.headers


async def test_forms_and_fetches_need_the_csrf_token(demo: Demo) -> None:
    async with Browser(demo.url) as browser:
        assert (await browser.client.post("/chats")).status_code == 403
        forged = await browser.client.post("/chats", headers={"x-csrftoken": "0" * 128})
        assert forged.status_code == 403
        assert (await browser.client.post("/chats", headers=browser.csrf)).status_code == 303
        # A form field works as well as the header (the pages' forms use it).
        token = browser.csrf["x-csrftoken"]
        form = await browser.client.post("/chats", data={"_csrf_token": token})
        assert form.status_code == 303
        chat_id = await browser.new_chat()
        no_token = await browser.client.post(f"/chats/{chat_id}/messages", data={"content": "hi"})
        assert no_token.status_code == 403
        assert demo.chat_streams(chat_id) == []


async def test_chats_are_visible_to_their_owner_and_share_link_holders(db_url: str) -> None:
    model = ScriptedModel(ANSWER, hold_at=5)
    async with (
        run_demo(db_url, model) as demo,
        Browser(demo.url) as owner,
        Browser(demo.url) as stranger,
        Browser(demo.url) as friend,
    ):
        chat_id = await owner.new_chat()
        await owner.send(chat_id, "secret question")
        stream_id = await owner.latest_stream(chat_id, demo)
        async with owner.client.stream(
            "POST", f"/chats/{chat_id}/answers/{stream_id}/stream", headers=owner.csrf
        ) as driving:
            assert driving.status_code == 200
            page = await owner.client.get(f"/chats/{chat_id}")
            share = next(
                line.split('value="', 1)[1].split('"', 1)[0]
                for line in page.text.splitlines()
                if 'data-testid="share-link"' in line
            )
            share = html.unescape(share)
            assert share.startswith(f"{demo.url}/chats/{chat_id}?share=")

            # A stranger sees nothing, not even through pts's routes.
            assert (await stranger.client.get(f"/chats/{chat_id}")).status_code == 404
            wrong = await stranger.client.get(f"/chats/{chat_id}?share=nope")
            assert wrong.status_code == 404
            assert (await stranger.client.get(f"/streams/{stream_id}")).status_code == 403
            events = await stranger.client.get(f"/streams/{stream_id}/events")
            assert events.status_code == 403
            cancel = await stranger.client.post(
                f"/streams/{stream_id}/cancel", headers=stranger.csrf
            )
            assert cancel.status_code == 403
            created = await stranger.client.post("/streams", headers=stranger.csrf)
            assert created.status_code == 403
            durable = await stranger.client.get(f"/v1/stream/pts/{stream_id}")
            assert durable.status_code == 403, durable.text
            owned = await owner.client.get(f"/v1/stream/pts/{stream_id}")
            assert owned.status_code == 200, owned.text

            # The share link makes a viewer: it watches, read-only.
            shared = await friend.client.get(share.removeprefix(demo.url))
            assert shared.status_code == 200
            assert "secret question" in shared.text
            assert 'data-testid="message-input"' not in shared.text
            assert 'data-testid="stop-button"' not in shared.text
            assert 'data-testid="share-link"' not in shared.text
            later = await friend.client.get(f"/chats/{chat_id}")  # no token needed any more
            assert later.status_code == 200
            assert "shared with you" in (await friend.client.get("/")).text
            view = await friend.client.get(f"/streams/{stream_id}")
            assert view.status_code == 200
            assert view.json()["status"] == "streaming"
            denied = await friend.client.post(f"/streams/{stream_id}/cancel", headers=friend.csrf)
            assert denied.status_code == 403
            assert (await friend.send(chat_id, "may I?")).status_code == 403
            assert (await friend.drive(chat_id, stream_id)).status_code == 403

            model.release()
            body = (await driving.aread()).decode()
        assert body == ANSWER
        # The viewer's subscription replays the whole answer from byte 0.
        received = await collect(friend.client, f"/streams/{stream_id}/events?offset=0")
        text = "".join(e.data for e in received if e.event == "text")
        assert text == ANSWER
        assert received[-1].event == "status"
        assert '"done"' in received[-1].data


async def test_the_owner_stops_an_answer_for_everyone(db_url: str) -> None:
    model = ScriptedModel(ANSWER, hold_at=6)
    async with run_demo(db_url, model) as demo, Browser(demo.url) as owner:
        chat_id = await owner.new_chat()
        await owner.send(chat_id, "stop me")
        stream_id = await owner.latest_stream(chat_id, demo)
        async with owner.client.stream(
            "POST", f"/chats/{chat_id}/answers/{stream_id}/stream", headers=owner.csrf
        ) as driving:
            await asyncio.wait_for(model.held.wait(), GUARD)
            stopped = await owner.client.post(
                f"/streams/{stream_id}/cancel", headers=owner.csrf, json={"reason": "enough"}
            )
            assert stopped.status_code == 200, stopped.text
            assert stopped.json()["status"] == "aborted"
            assert stopped.json()["abort_reason"] == "enough"
            partial = (await driving.aread()).decode()
        assert partial
        assert ANSWER.startswith(partial)
        assert partial != ANSWER
        assert await demo.body(stream_id) == partial  # the text so far is kept
        # A new message may follow a stopped answer.
        assert (await owner.send(chat_id, "next")).status_code == 200
        model.release()


async def test_demo_migration_is_idempotent_and_answers_reference_streams(db_url: str) -> None:
    applied = await demo_db.migrate(db_url)
    assert [(m.version, m.name) for m in applied] == [(1, "chats")]
    assert await demo_db.migrate(db_url) == []
    secret = await demo_db.load_secret(db_url)
    assert len(secret) == 64
    assert await demo_db.load_secret(db_url) == secret  # kept across restarts

    with psycopg.connect(db_url, autocommit=True) as conn:
        chat = conn.execute(
            "INSERT INTO pts_demo.chats (owner, share_token) VALUES ('o', 't') RETURNING id"
        ).fetchone()
        assert chat is not None
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO pts_demo.messages (chat_id, role, stream_id) "
                "VALUES (%s, 'assistant', %s)",
                (chat[0], uuid.uuid4()),
            )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO pts_demo.messages (chat_id, role) VALUES (%s, 'assistant')",
                (chat[0],),
            )
        stream = conn.execute("INSERT INTO pts.streams DEFAULT VALUES RETURNING id").fetchone()
        assert stream is not None
        conn.execute(
            "INSERT INTO pts_demo.messages (chat_id, role, stream_id) VALUES (%s, 'assistant', %s)",
            (chat[0], stream[0]),
        )
        conn.execute("DELETE FROM pts.streams WHERE id = %s", (stream[0],))
        left = conn.execute("SELECT count(*) FROM pts_demo.messages").fetchone()
        assert left == (0,)


@pytest.mark.timeout(90)
def test_pts_demo_command_serves_the_chat(db_url: str) -> None:
    port = free_port()
    command = [sys.executable, "-m", "pts.cli", "demo", "--port", str(port)]
    env = {"PTS_DATABASE_URL": db_url, "PTS_DEMO_MODEL": "demo"}
    with server_process(command, port, env=env) as server:  # once /healthz answers
        first = server.output().splitlines()[0]
        assert f"pts demo chat on http://127.0.0.1:{port}" in first, first
        with httpx.Client(base_url=server.url, timeout=2) as client:
            page = client.get("/")
            assert page.status_code == 200
            assert "model: demo (offline" in page.text
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM pts_demo.schema_migrations").fetchone()
            assert row == (1,)


def test_pts_demo_rejects_an_unknown_model() -> None:
    env = {**os.environ, "PTS_DEMO_MODEL": "gpt-please"}
    result = subprocess.run(
        [sys.executable, "-m", "pts.cli", "demo", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "PTS_DEMO_MODEL='gpt-please'" in result.stderr
    assert "Traceback" not in result.stderr


WEB = Path(__file__).resolve().parents[2] / "web"


def test_vendored_scripts_are_the_pinned_releases_with_licenses() -> None:
    vendor = WEB / "static" / "vendor"
    table = (vendor / "README.md").read_text(encoding="utf-8")
    pinned = re.findall(
        r"^\| `([\w.-]+)/` \| `[\w.@-]+` \| `(?:dist|lib)/([\w.]+)` \| `(\w{64})` \|$",
        table,
        re.M,
    )
    # htmx, its SSE extension, marked and DOMPurify.
    assert [d for d, _, _ in pinned] == [
        "htmx-2.0.11",
        "htmx-ext-sse-2.2.4",
        "marked-18.2.1",
        "dompurify-3.5.0",
    ]
    base = (WEB / "templates" / "demo" / "base.html").read_text(encoding="utf-8")
    for directory, name, digest in pinned:
        script = vendor / directory / name
        assert hashlib.sha256(script.read_bytes()).hexdigest() == digest
        assert (vendor / directory / "LICENSE").read_text(encoding="utf-8").strip()
        assert f'src="/static/vendor/{directory}/{name}"' in base


def test_templates_need_no_inline_script_or_style() -> None:
    # The Content-Security-Policy allows scripts and styles from /static only.
    for template in (WEB / "templates" / "demo").glob("*.html"):
        text = re.sub(r"\{#.*?#\}", "", template.read_text(encoding="utf-8"), flags=re.S)
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert not re.search(r"\sstyle\s*=|<style", text), template.name
        assert "|safe" not in text, template.name
