"""``from_openai`` over the ``openai`` package (``AsyncOpenAI``, streaming) against a fake
OpenAI-compatible server: reasoning, text and a tool call split over chunks."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath
from openai import AsyncOpenAI

from pts import PersistentTextStreaming, PTSPlugin, StreamStatus
from pts.ui import UIWriter
from pts.ui.adapters import from_openai
from tests.support.demo import FakeOpenAI, serve_fake_openai
from tests.support.servers import serve_app
from tests.support.sse import parse_events
from tests.support.ui import Recorder

SCRIPT: list[dict[str, Any]] = [
    {"delta": {"role": "assistant", "content": ""}},
    {"delta": {"reasoning_content": "The user wants the weather. "}},
    {"delta": {"content": "Let me look. "}},
    {
        "delta": {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ]
        }
    },
    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}},
    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}},
    {"delta": {}, "finish_reason": "tool_calls"},
]


async def test_from_openai_reads_the_openai_packages_stream() -> None:
    fake = FakeOpenAI([], scripts=[SCRIPT])
    async with serve_fake_openai(fake) as base_url:
        client = AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
        stream = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "Weather?"}], stream=True
        )
        ui = Recorder()
        result = await from_openai(ui, stream)
        await client.close()
    assert ui.calls == [
        ("reasoning", "The user wants the weather. "),
        ("text", "Let me look. "),
        {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "weather"},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '{"city": '},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '"Paris"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "call_1",
            "toolName": "weather",
            "input": {"city": "Paris"},
        },
    ]
    assert result.finish_reason == "tool-calls"
    assert [(c.id, c.name, c.input) for c in result.tool_calls] == [
        ("call_1", "weather", {"city": "Paris"})
    ]
    assert fake.requests[0]["stream"] is True


# -- from_openai feeding stream_ui, served -----------------------------------------------

TEXT_AFTER_TOOL: list[dict[str, Any]] = [
    {"delta": {"role": "assistant", "content": ""}},
    *({"delta": {"content": piece}} for piece in ["It ", "is ", "clear ", "in ", "Paris."]),
    {"delta": {}, "finish_reason": "stop"},
]


def merged(chunks: list[Any]) -> list[Any]:
    """The chunks with consecutive deltas of one part joined (what a message is made of)."""
    out: list[Any] = []
    for chunk in chunks:
        last = out[-1] if out else None
        if (
            isinstance(chunk, dict)
            and chunk.get("type") in ("text-delta", "reasoning-delta")
            and isinstance(last, dict)
            and last.get("type") == chunk["type"]
            and last.get("id") == chunk.get("id")
        ):
            out[-1] = {**last, "delta": last["delta"] + chunk["delta"]}
        else:
            out.append(chunk)
    return out


def ui_chunks(body: str) -> list[Any]:
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in parse_events(body)]


async def test_from_openai_feeds_stream_ui_through_a_tool_loop(db_url: str) -> None:
    fake = FakeOpenAI([], scripts=[SCRIPT, TEXT_AFTER_TOOL])
    pts = PersistentTextStreaming(dsn=db_url)

    @post("/chat/{stream_id:uuid}")
    async def chat(
        request: Request[Any, Any, Any], stream_id: FromPath[uuid.UUID]
    ) -> Response[Any]:
        async def generate(_r: Request[Any, Any, Any], _s: uuid.UUID, ui: UIWriter) -> None:
            history: list[Any] = [{"role": "user", "content": "Weather?"}]
            async with AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0) as client:
                while True:
                    stream = await client.chat.completions.create(
                        model="fake", messages=history, stream=True
                    )
                    result = await from_openai(ui, stream)
                    if not result.tool_calls:
                        break
                    history.append(result.assistant_message())
                    for call in result.tool_calls:
                        output = {"sky": "clear"}
                        await ui.write(
                            {
                                "type": "tool-output-available",
                                "toolCallId": call.id,
                                "output": output,
                            }
                        )
                        history.append(
                            {"role": "tool", "tool_call_id": call.id, "content": json.dumps(output)}
                        )
            await ui.write({"type": "finish", "finishReason": result.finish_reason})

        return await pts.stream_ui(request, stream_id, generate)

    @get("/chat/{stream_id:uuid}/replay")
    async def replay(stream_id: FromPath[uuid.UUID]) -> Response[Any]:
        return await pts.resume_ui(stream_id, replay_finished=True)

    app = Litestar([chat, replay], plugins=[PTSPlugin(pts, authorize=lambda *_: True)])
    async with (
        serve_fake_openai(fake) as base_url,
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as http,
    ):
        stream_id = await pts.create_stream(content_type="application/json")
        answer = await http.post(f"/chat/{stream_id}")
        assert answer.status_code == 200, answer.text
        driven = ui_chunks(answer.text)
        replayed = ui_chunks((await http.get(f"/chat/{stream_id}/replay")).text)
        stored = (await http.get(f"/v1/stream/pts/{stream_id}?offset=-1")).json()
        assert (await pts.get_stream(stream_id)).status == StreamStatus.DONE

    types = [c["type"] for c in driven if c != "[DONE]"]
    assert types[0] == "start"
    assert types.index("reasoning-delta") < types.index("tool-input-start")
    assert types.index("tool-input-available") < types.index("tool-output-available")
    assert types[-1] == "finish"
    assert driven[-1] == "[DONE]"
    assert [c for c in driven if c != "[DONE]" and c["type"] == "finish"] == [
        {"type": "finish", "finishReason": "stop"}
    ]
    texts = ["".join(c["delta"] for c in driven if c != "[DONE]" and c["type"] == "text-delta")]
    assert texts == ["Let me look. It is clear in Paris."]
    # The driving client got every delta; Postgres has them merged, and replayed they
    # make the same message.
    assert merged(replayed) == merged(driven)
    assert merged(stored) == merged(driven[:-1])
    deltas = [c for c in stored if c["type"] == "text-delta"]
    assert len(deltas) < len([c for c in driven if c != "[DONE]" and c["type"] == "text-delta"])
