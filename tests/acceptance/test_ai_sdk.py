"""A pts app driven by the stock AI SDK (``ai``, pinned in tests/package.json), unchanged.

The app is :mod:`tests.support.ai_app` (the three chat routes on ``stream_ui`` and
``resume_ui``), served in this process; the client is ``ai_sdk/client.mjs`` run by
``node``: ``DefaultChatTransport`` (``sendMessages``, ``reconnectToStream``),
``readUIMessageStream``, ``AbstractChat``'s resume path, and ``@durable-streams/client``
on ``/v1/stream/pts/{id}``. Each scenario prints one JSON line; the tests assert on it
(``-s`` shows them, the persisted text-delta count of the paced answer among them).
Bad input and the protocol's headers are checked over plain HTTP; those tests need no
Node.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pts.core import PersistentTextStreaming
from pts.flush import FlushPolicy
from pts.models import StreamStatus
from pts.stats import Stats
from tests.support.ai_app import Chat, ChatApp
from tests.support.servers import serve_app
from tests.support.sse import parse_events
from tests.support.waiting import until, until_stats

TESTS = Path(__file__).resolve().parents[1]
CLIENT = Path(__file__).resolve().parent / "ai_sdk" / "client.mjs"
PACKAGES = ("ai", "@durable-streams/client")
NODE_GUARD = 45.0
"""Seconds the Node client may take (a hang guard: it waits on conditions, bounded too)."""


def missing() -> str | None:
    """Why the client cannot run here (None: it can). CI installs both (.ci/run)."""
    if shutil.which("node") is None:
        return "needs Node.js (node on PATH)"
    for package in PACKAGES:
        if not (TESTS / "node_modules" / package / "package.json").is_file():
            return f"{package} is not installed (npm ci --prefix tests)"
    return None


needs_node = pytest.mark.skipif(missing() is not None, reason=str(missing()))
"""On the tests that run the Node client (the plain HTTP ones run everywhere)."""


SENTENCES = FlushPolicy(max_delay=5.0)
"""A ``max_delay`` far beyond a sentence's few milliseconds: what is written is cut at
sentence ends, so the count of persisted deltas does not depend on the machine's speed,
and the tail of a held answer stays unstored until the answer goes on or ends."""


@dataclass
class Served:
    app: ChatApp
    url: str


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Served]:
    pts = PersistentTextStreaming(dsn=db_url, flush=SENTENCES, sweeper=False)
    app = ChatApp(pts)
    async with serve_app(app.app()) as url:
        yield Served(app, url)
        # Every answer ended and every read let go once the client is gone: nothing leaks.
        await until_stats(pts, nothing_held, "no answer, writer or live read left")


def nothing_held(stats: Stats) -> bool:
    held = (stats.writers, stats.drives, stats.attached_drives, stats.tails, stats.subscribers)
    return held == (0, 0, 0, 0, 0)


async def run_client(url: str, scenario: str, peer: str | None = None) -> dict[str, Any]:
    """Run one scenario of the Node client against ``url`` (and ``peer``, another process
    of the app); its JSON line."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENT),
        url,
        scenario,
        cwd=TESTS,
        env={**os.environ, "PEER_URL": peer or ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), NODE_GUARD)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"the Node client did not finish {scenario!r} in time") from None
    assert process.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert len(lines) == 1, out.decode() + err.decode()
    result: dict[str, Any] = lines[0]
    assert result["scenario"] == scenario
    assert "failed" not in result, result["failed"]
    print(json.dumps(result))  # the scenario's figures, in the test's output (-s)
    return result


def assert_whole(message: dict[str, Any], expected: dict[str, Any]) -> None:
    """``message`` is the whole answer: its text once, its reasoning, tool call, data part."""
    assert message["role"] == "assistant"
    assert message["text"] == expected["text"]
    assert message["text_parts"] == 1
    assert message["reasoning"] == expected["reasoning"]
    assert message["data"] == [expected["data"]]
    tool = expected["tool"]
    assert message["tools"] == [{**tool, "state": "output-available"}]


TOOL_ORDER = ["tool-input-available", "tool-output-available"]


@needs_node
async def test_a_sent_message_assembles_to_the_exact_answer(served: Served) -> None:
    result = await run_client(served.url, "send")
    assert result["error"] is None
    assert_whole(result["message"], result["expected"])
    assert result["types"][0] == "start"
    assert result["starts"] == 1
    assert result["last"] == "finish"
    assert result["tool_order"] == TOOL_ORDER
    assert (result["generations"], result["status"]) == (1, "done")


@needs_node
async def test_an_aborted_read_reconnects_to_the_whole_answer_once(served: Served) -> None:
    result = await run_client(served.url, "reconnect")
    cut, expected = result["cut"], result["expected"]
    assert cut["error"] == "AbortError"
    assert cut["text"] == expected["partial_text"] != ""
    # The resume replays from `start` (the same message) and goes on live: once, whole.
    assert result["error"] is None
    assert result["starts"] == 1
    assert result["message"]["id"] == cut["message_id"]
    assert_whole(result["message"], expected)
    assert result["last"] == "finish"
    assert result["tool_order"] == TOOL_ORDER
    assert (result["generations"], result["status"]) == (1, "done")


@needs_node
async def test_chat_resume_stream_rebuilds_the_stopped_message(served: Served) -> None:
    result = await run_client(served.url, "chat_resume")
    expected = result["expected"]
    stopped = {"status": "ready", "messages": 2, "text": expected["partial_text"]}
    assert result["after_stop"] == stopped
    assert result["error"] is None
    assert result["status_after"] == "ready"
    assert result["roles"] == ["user", "assistant"]  # the replay replaced the partial message
    assert result["message"]["id"] == result["stopped_message_id"]
    assert_whole(result["message"], expected)
    assert (result["generations"], result["status"]) == (1, "done")


@needs_node
async def test_nothing_to_resume_is_null(served: Served) -> None:
    result = await run_client(served.url, "nothing_to_resume")
    assert (result["never"], result["ended"]) == (True, True)
    assert (result["status"], result["last"]) == ("done", "finish")
    if (at_once := result["at_once"]) is not None:  # not yet marked done: a whole replay
        assert (at_once["starts"], at_once["last"]) == (1, "finish")
        assert at_once["message"] == result["message"]


@needs_node
async def test_stop_ends_the_driving_read_and_a_follower(served: Served) -> None:
    result = await run_client(served.url, "stop")
    held = result["expected"]["partial_text"]
    assert result["stop_status"] == 204
    for read in (result["driving"], result["follower"]):
        assert read["error"] is None
        assert read["message"]["text"] == held
        assert read["last"] == "abort"
        assert "finish" not in read["types"]
        assert read["tool_order"] == TOOL_ORDER
    assert result["driving"]["message"] == result["follower"]["message"]
    assert (result["status"], result["abort_reason"]) == ("aborted", "stopped by the user")
    assert result["generations"] == 1


@needs_node
async def test_the_durable_streams_client_rebuilds_the_message(served: Served) -> None:
    result = await run_client(served.url, "durable")
    assert_whole(result["driving"], result["expected"])
    assert result["rebuilt"]["message"] == result["driving"]
    assert result["rebuilt"]["starts"] == 1
    assert result["rebuilt"]["tool_order"] == TOOL_ORDER
    assert result["driving_text_deltas"] == result["tokens"] == 300
    # Deltas merged and written at sentence ends: about one per sentence, not one per token.
    assert 1 <= result["persisted_text_deltas"] <= result["sentences"] == 12


@needs_node
async def test_a_bad_chunk_fails_the_answer_and_corrupts_nothing(served: Served) -> None:
    result = await run_client(served.url, "bad_chunk")
    partial = result["expected"]["partial_text"]
    assert (result["status"], result["generations"]) == ("error", 1)
    assert result["after_end_null"] is True
    # The driving read, a replay of the finished stream (?replay=true) and the stored
    # chunks through the transport's schema check: the same partial answer, then `error`.
    for name in ("driving", "replayed", "stored"):
        read = result[name]
        assert read["message"]["text"] == partial != "", name
        assert read["last"] == "error", name
        assert read["error"] is not None, name  # readUIMessageStream raises the error chunk
        assert read["tool_order"] == TOOL_ORDER, name
    assert result["replayed"]["message"] == result["driving"]["message"]
    assert result["stored"]["message"] == result["driving"]["message"]
    assert "not-a-chunk" not in result["stored_types"]


@needs_node
async def test_the_apps_own_start_steps_sources_and_finish(served: Served) -> None:
    result = await run_client(served.url, "own_chunks")
    for name in ("driving", "stored", "resumed"):
        read = result[name]
        assert read["error"] is None, name
        assert (read["starts"], read["finishes"], read["last"]) == (1, 1, "finish"), name
        assert_whole(read["message"], result["expected"])
        assert read["message"]["metadata"] == {"model": "scripted", "tokens": 42}, name
        assert read["message"]["part_types"] == [
            "step-start", "reasoning", "tool-weather", "step-start",
            "source-url", "file", "data-weather", "text",
        ], name  # fmt: skip
        assert read["types"].count("tool-input-delta") == 2, name
    assert result["stored"]["message"] == result["driving"]["message"]
    driving, resumed = result["driving"]["message"], result["resumed"]["message"]
    assert {**resumed, "id": None} == {**driving, "id": None}  # another answer, the same parts


async def run_two_processes(db_url: str) -> dict[str, Any]:
    """The ``other_process`` scenario: two apps, each with its own pts, on one database,
    sharing the chats' active stream ids (as two processes would through a table)."""
    chats: dict[str, Chat] = {}
    apps = [
        ChatApp(PersistentTextStreaming(dsn=db_url, flush=SENTENCES, sweeper=False), chats)
        for _ in range(2)
    ]
    async with serve_app(apps[0].app()) as url, serve_app(apps[1].app()) as peer:
        return await run_client(url, "other_process", peer)


@needs_node
async def test_another_process_resumes_and_stops_the_answer(db_url: str) -> None:
    result = await run_two_processes(db_url)
    resumed = result["resumed"]
    for read in (resumed["driving"], resumed["follower"]):
        assert read["error"] is None
        assert (read["starts"], read["last"]) == (1, "finish")
        assert_whole(read["message"], resumed["expected"])
    assert resumed["driving"]["message"] == resumed["follower"]["message"]
    stopped = result["stopped"]
    assert (stopped["stop_status"], stopped["status"]) == (204, "aborted")
    driving, follower = stopped["driving"], stopped["follower"]
    for read in (driving, follower):
        assert read["error"] is None
        assert read["last"] == "abort"
    assert driving["message"]["text"] == stopped["expected"]["partial_text"]
    # What the follower has is stored; the next test: it is all the driving read saw.
    assert driving["message"]["text"].startswith(follower["message"]["text"])
    assert result["generations"] == 2  # one per answer, both in the first process


@needs_node
async def test_a_stop_from_another_process_keeps_the_text_the_driving_read_saw(
    db_url: str,
) -> None:
    stopped = (await run_two_processes(db_url))["stopped"]
    assert stopped["driving"]["message"] == stopped["follower"]["message"]


@needs_node
@pytest.mark.parametrize(
    "scenario",
    [
        # A resume's last read may span pages, each marked closed: only the last is the end.
        "reconnect",
        "stop",
        "durable",
        "bad_chunk",
    ],
)
async def test_small_read_pages_cut_no_chunk(db_url: str, scenario: str) -> None:
    """Reads of 37 bytes and subscribers that fall behind at once: stored messages (and
    the two bytes of an "é") are cut between reads, and a resume must put them together."""
    pts = PersistentTextStreaming(
        dsn=db_url,
        flush=SENTENCES,
        sweeper=False,
        read_page_bytes=37,
        subscriber_buffer=1,
        subscriber_buffer_bytes=64,
    )
    async with serve_app(ChatApp(pts).app()) as url:
        result = await run_client(url, scenario)
    if scenario == "reconnect":
        assert (result["starts"], result["last"]) == (1, "finish")
        assert_whole(result["message"], result["expected"])
    elif scenario == "stop":
        assert result["driving"]["message"] == result["follower"]["message"]
        assert result["follower"]["last"] == "abort"
    elif scenario == "durable":
        assert result["rebuilt"]["message"] == result["driving"]
        assert_whole(result["driving"], result["expected"])
    else:  # a replay of the finished stream: every page of it is read after the end
        assert result["replayed"]["message"] == result["driving"]["message"]
        assert result["replayed"]["last"] == "error"


# -- over plain HTTP -----------------------------------------------------------------------


UI_HEADERS = {
    "cache-control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}


def assert_ui_stream(response: httpx.Response, body: str) -> list[dict[str, Any]]:
    """The protocol's response: 200, its headers, ``data: {json}`` events, ``[DONE]`` last."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert {name: response.headers.get(name) for name in UI_HEADERS} == UI_HEADERS
    data = [event.data for event in parse_events(body)]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert (chunks[0]["type"], chunks[-1]["type"]) == ("start", "finish")
    return chunks


async def test_the_responses_are_ui_message_streams(served: Served) -> None:
    body = {"id": "http", "messages": [], "trigger": "submit-message", "hold_after": 2}
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        async with client.stream("POST", "/api/chat", json=body) as driving:
            pieces = driving.aiter_text()
            text = [await anext(pieces)]  # the answer has started (and holds after two tokens)
            resumed = asyncio.create_task(client.get("/api/chat/http/stream"))
            # The resume is served once its replay has begun: then let the answer go on.
            chat = served.app.chats["http"]
            assert chat.stream_id is not None
            stream_id = chat.stream_id

            def resume_is_live() -> bool:
                live = served.app.pts.live_stream(stream_id)
                return live is not None and live.subscribers >= 1

            await until(resume_is_live, "the resume reads the stream live")
            assert (await client.post("/test/chats/http/release")).status_code == 204
            text += [piece async for piece in pieces]
        driven = assert_ui_stream(driving, "".join(text))
        replay = await resumed
        replayed = assert_ui_stream(replay, replay.text)
        assert replayed[0] == driven[0]  # the same start: the same message id
        # Finished: nothing to resume, an empty 204.
        ended = await client.get("/api/chat/http/stream")
        assert (ended.status_code, ended.content) == (204, b"")


async def test_a_resume_of_an_unknown_stream_is_404(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        assert (await client.post("/test/chats/gone/stale")).status_code == 204
        response = await client.get("/api/chat/gone/stream")
    assert response.status_code == 404
    assert response.json()["error"] == "stream_not_found"
    assert response.json()["detail"]


async def test_stream_ui_on_a_text_stream_is_a_clear_4xx(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        response = await client.post("/test/text-stream", json={})
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "not_a_ui_stream"
    assert "application/json" in response.json()["detail"]
    # Refused before anything changed: no generation, the stream still pending and empty.
    assert served.app.generations == 0
    stream_id = served.app.chats["text-stream"].stream_id
    assert stream_id is not None
    info = await served.app.pts.get_stream(stream_id)
    assert (info.status, info.size) == (StreamStatus.PENDING, 0)
