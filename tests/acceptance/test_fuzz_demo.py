"""Fuzzing the demo chat (``pts demo`` in a subprocess): its pages, forms and actions,
and pts's routes behind the demo's own authorize hook.

Browsers here are httpx clients with their cookies: an owner, a stranger, and no
cookies at all. The properties are in :mod:`tests.support.fuzz`; a rejected form
post must not have stored a message, a rejected cancel must leave the answer as it was.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from example_chat.app import SESSION_COOKIE
from tests.support.demo import csrf_token_of
from tests.support.fuzz import (
    REQUESTS,
    TIMEOUT,
    Fuzzer,
    as_bytes,
    bodies,
    check_unchanged,
    demo_server,
    fuzz_settings,
    header_text,
    integers_as_text,
    junk_paths,
    keep_log,
    long_text,
    long_texts,
    optional,
    plugin_snapshot,
    protocol_offsets,
    quoted,
    report,
)
from tests.support.postgres import DatabaseFactory

MODULE = "demo"


@dataclass
class DemoFuzzer(Fuzzer):
    """The demo's fuzzer: browsers with cookies, the demo's own sanity check."""

    dsn: str = ""
    browsers: dict[str, httpx.Client] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    chats: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    share: str = ""

    def browser(self, name: str) -> httpx.Client:
        if name not in self.browsers:
            client = httpx.Client(base_url=self.server.url, timeout=TIMEOUT)
            if name != "none":
                REQUESTS[self.module] += 1
                page = client.get("/")
                assert page.status_code == 200
                # The demo's CSRF token is bound to the session: the page hands it over.
                self.tokens[name] = csrf_token_of(page.text)
                self.sessions[name] = client.cookies.get(SESSION_COOKIE) or ""
            self.browsers[name] = client
        return self.browsers[name]

    def csrf(self, name: str) -> dict[str, str]:
        client = self.browser(name)
        if name == "none":
            return {}
        session = client.cookies.get(SESSION_COOKIE) or ""
        if self.sessions.get(name) != session:
            # A fuzzed request with a junk cookie got this browser a new session:
            # its token is the new session's (bound to it), from a page.
            REQUESTS[self.module] += 1
            page = client.get("/")
            assert page.status_code == 200
            self.tokens[name] = csrf_token_of(page.text)
            self.sessions[name] = client.cookies.get(SESSION_COOKIE) or ""
        return {"x-csrftoken": self.tokens[name]}

    def sanity(self) -> None:
        """A normal page, a new chat and its page: the demo still serves requests."""
        self._since_sanity = 0
        self._check_alive()
        owner = self.browser("owner")
        REQUESTS[self.module] += 3
        assert owner.get("/").status_code == 200
        created = owner.post("/chats", headers=self.csrf("owner"))
        assert created.status_code == 303, created.text
        page = owner.get(created.headers["location"])
        assert page.status_code == 200, page.text

    def messages(self) -> int:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM pts_demo.messages").fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        for client in self.browsers.values():
            client.close()
        super().close()


@pytest.fixture(scope="module")
def fuzzer(databases: DatabaseFactory) -> Iterator[DemoFuzzer]:
    dsn = databases.create()
    try:
        with demo_server(dsn) as server:
            fuzz = DemoFuzzer(server, MODULE, dsn=dsn)
            try:
                owner = fuzz.browser("owner")
                for _ in range(3):
                    created = owner.post("/chats", headers=fuzz.csrf("owner"))
                    assert created.status_code == 303, created.text
                    fuzz.chats.append(created.headers["location"].removeprefix("/chats/"))
                chat = fuzz.chats[0]
                sent = owner.post(
                    f"/chats/{chat}/messages",
                    data={"content": "Hello?"},
                    headers={**fuzz.csrf("owner"), "hx-request": "true"},
                )
                assert sent.status_code == 200, sent.text
                stream_id = re.findall(r'data-stream-id="([0-9a-f-]{36})"', sent.text)[-1]
                driven = owner.post(
                    f"/chats/{chat}/answers/{stream_id}/stream", headers=fuzz.csrf("owner")
                )
                assert driven.status_code == 200, driven.text
                fuzz.streams.append(stream_id)
                page = owner.get(f"/chats/{chat}")
                match = re.search(r"share=([A-Za-z0-9_-]+)", page.text)
                assert match is not None
                fuzz.share = match.group(1)
                yield fuzz
                fuzz.sanity()
                keep_log(server, MODULE)
            finally:
                fuzz.close()
    finally:
        databases.drop(dsn)


BROWSERS = st.sampled_from(["owner", "owner", "owner", "stranger", "none"])


def chat_ids(fuzzer: DemoFuzzer) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda i: fuzzer.chats[i % len(fuzzer.chats)], st.integers(0, 100)),
        st.uuids().map(str),
        st.sampled_from(["%00", "x", "a%0ab", "..", "00000000-0000-0000-0000-00000000000%00"]),
        long_texts((300, 5000)),
    )


def stream_ids(fuzzer: DemoFuzzer) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda i: fuzzer.streams[i % len(fuzzer.streams)], st.integers(0, 100)),
        st.uuids().map(str),
        junk_paths(),
    )


def cookie_headers() -> st.SearchStrategy[dict[str, bytes]]:
    """Nothing extra (mostly), or a planted or junk Cookie header."""
    return st.one_of(
        st.just({}),
        st.just({}),
        long_texts((43,)).map(lambda v: {"cookie": f"{SESSION_COOKIE}={v}".encode()}),
        header_text().map(lambda v: {"cookie": v}),
        header_text().map(lambda v: {"cookie": f"{SESSION_COOKIE}=".encode() + v}),
    )


@st.composite
def pages(draw: st.DrawFn, fuzzer: DemoFuzzer) -> str:
    chat = draw(chat_ids(fuzzer))
    stream = draw(stream_ids(fuzzer))
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return "/"
    if kind == 1:
        share = draw(st.one_of(st.none(), st.just(fuzzer.share), st.text(max_size=50)))
        query = "" if share is None else "?" + urlencode({"share": share})
        return f"/chats/{chat}{query}"
    if kind == 2:
        return f"/chats/{chat}/conversation?after={quoted(draw(integers_as_text()))}"
    if kind == 3:
        return f"/static/{draw(junk_paths())}"
    if kind == 4:
        return f"/streams/{stream}"
    if kind == 5:
        offset = draw(integers_as_text())
        return f"/streams/{stream}/events?offset={quoted(offset)}"
    if kind == 6:
        return f"/v1/stream/pts/{stream}?offset={quoted(draw(protocol_offsets()))}"
    if kind == 7:
        return f"/v1/stream/{draw(junk_paths())}"
    return "/" + draw(junk_paths())


@given(data=st.data())
@fuzz_settings(max_examples=300)
def test_pages(fuzzer: DemoFuzzer, data: st.DataObject) -> None:
    fuzzer.example()
    url = data.draw(pages(fuzzer), label="url")
    browser = data.draw(BROWSERS, label="browser")
    headers = data.draw(cookie_headers(), label="cookies")
    headers |= data.draw(optional("last-event-id", as_bytes(integers_as_text())), label="lei")
    fuzzer.send(
        "GET",
        url,
        headers=headers,
        client=fuzzer.browser(browser),
        stream_first_bytes="/events" in url or "live=" in url,
    )


def message_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=50),
        st.sampled_from(["a\x00b", "\x00", "Hello\r\nthere", "  ", "x" * 4001, "x" * 4000]),
        long_texts((3000, 9000)),
    )


@st.composite
def form_bodies(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """A form as a browser sends it, or raw bytes under some content type."""
    kind = draw(st.integers(0, 3))
    if kind <= 1:
        fields = [("content", draw(message_texts()))]
        if kind == 1:
            fields += [(draw(st.text(max_size=8)), draw(st.text(max_size=8)))]
        body = urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()
        return {"content-type": "application/x-www-form-urlencoded"}, body
    content_type = draw(
        st.sampled_from(
            [
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "multipart/form-data",
                "application/json",
                "text/plain",
            ]
        )
    )
    raw = draw(
        st.one_of(
            bodies(),
            st.sampled_from(
                [
                    b"content=%00",
                    b"content=%ff%fe",
                    b"content=%ed%a0%80",
                    b"content=" + b"%41" * 5000,
                    b"--x\r\nContent-Disposition: form-data; name=content\r\n\r\n"
                    b"hi\x00\r\n--x--\r\n",
                ]
            ),
        )
    )
    return {"content-type": content_type}, raw


@given(data=st.data())
@fuzz_settings(max_examples=250)
def test_posts(fuzzer: DemoFuzzer, data: st.DataObject) -> None:
    fuzzer.example()
    browser = data.draw(BROWSERS, label="browser")
    chat = data.draw(chat_ids(fuzzer), label="chat")
    stream = data.draw(stream_ids(fuzzer), label="stream")
    csrf = data.draw(st.sampled_from(["valid", "valid", "valid", "missing", "wrong"]), label="csrf")
    headers: dict[str, str | bytes] = {}
    if csrf == "valid":
        headers |= fuzzer.csrf(browser)
    elif csrf == "wrong":
        headers["x-csrftoken"] = data.draw(header_text(), label="token")
    if data.draw(st.booleans(), label="htmx"):
        headers["hx-request"] = "true"
    headers |= data.draw(cookie_headers(), label="cookies")
    client = fuzzer.browser(browser)
    action = data.draw(st.sampled_from(["message", "message", "chat", "drive", "cancel", "create"]))
    if action == "message":
        form_headers, body = data.draw(form_bodies(), label="form")
        before = fuzzer.messages()
        response = fuzzer.send(
            "POST",
            f"/chats/{chat}/messages",
            headers={**headers, **form_headers},
            content=body,
            client=client,
        )
        check_unchanged(before, fuzzer.messages(), response)
        if response is not None and response.status_code in (200, 303):
            drive_latest(fuzzer, client, chat)
        return
    if action == "chat":
        fuzzer.send("POST", "/chats", headers=headers, client=client)
        return
    if action == "drive":
        fuzzer.send(
            "POST", f"/chats/{chat}/answers/{stream}/stream", headers=headers, client=client
        )
        return
    if action == "create":
        body = data.draw(bodies(), label="body")
        fuzzer.send("POST", "/streams", headers=headers, content=body, client=client)
        return
    body = data.draw(bodies(), label="body")
    view = f"/streams/{stream}"
    seen = plugin_snapshot(fuzzer, view)
    response = fuzzer.send(
        "POST",
        f"{view}/cancel",
        headers={**headers, "content-type": "application/json"},
        content=body,
        client=client,
    )
    check_unchanged(seen, plugin_snapshot(fuzzer, view), response)


def drive_latest(fuzzer: DemoFuzzer, client: httpx.Client, chat: str) -> None:
    """Drive the answer a message just created, so that its chat takes the next one."""
    with psycopg.connect(fuzzer.dsn) as conn:
        row = conn.execute(
            "SELECT m.stream_id FROM pts_demo.messages m JOIN pts.streams s ON s.id = m.stream_id "
            "WHERE m.chat_id = %s AND s.status = 'pending' ORDER BY m.id DESC LIMIT 1",
            (uuid.UUID(chat),),
        ).fetchone()
    if row is None:
        return
    fuzzer.send(
        "POST",
        f"/chats/{chat}/answers/{row[0]}/stream",
        headers=fuzzer.csrf("owner"),
        client=fuzzer.browser("owner"),
    )


# -- the families found on the way --------------------------------------------------------

FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_known_families(fuzzer: DemoFuzzer) -> None:
    """Each family of failures the fuzzer found, as a fixed request (same properties)."""
    fuzzer.example()
    owner = fuzzer.browser("owner")
    chat = fuzzer.chats[1]
    csrf = fuzzer.csrf("owner")
    stream = fuzzer.streams[0]
    # A NUL in a message: Postgres text cannot hold it.
    for content in ("a\x00b", "\x00"):
        before = fuzzer.messages()
        response = fuzzer.send(
            "POST",
            f"/chats/{chat}/messages",
            headers={**csrf, **FORM, "hx-request": "true"},
            content=urlencode({"content": content}).encode(),
            client=owner,
        )
        check_unchanged(before, fuzzer.messages(), response)
        if response is not None and response.status_code in (200, 303):
            drive_latest(fuzzer, owner, chat)
    for url in [
        # Numbers out of range.
        f"/chats/{chat}/conversation?after=99999999999999999999",
        f"/chats/{chat}/conversation?after=9223372036854775808",
        f"/streams/{stream}/events?offset=99999999999999999999",
        # A file name longer than the file system takes.
        "/static/" + long_text(11, 300),
        # A NUL in a protocol path, under the demo's hook.
        "/v1/stream/a%00b?offset=-1",
        f"/v1/stream/pts/{stream}?offset=-1&live=long-poll&cursor={'9' * 5000}",
    ]:
        fuzzer.send("GET", url, client=owner, stream_first_bytes="/events" in url)


def test_requests_sent(fuzzer: DemoFuzzer, capsys: pytest.CaptureFixture[str]) -> None:
    """The number of requests sent to the demo (runs after the others that use it)."""
    with capsys.disabled():
        print("\n" + report(fuzzer.module, minimum=500))
