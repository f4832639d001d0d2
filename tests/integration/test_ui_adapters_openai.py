"""``from_openai`` over the ``openai`` package (``AsyncOpenAI``, streaming) against a fake
OpenAI-compatible server: reasoning, text and a tool call split over chunks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openai import AsyncOpenAI

from pts.ui.adapters import from_openai
from tests.support.demo import FakeOpenAI, serve_fake_openai

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


class Recorder:
    def __init__(self) -> None:
        self.calls: list[object] = []

    @property
    def message_id(self) -> str:
        return "msg-1"

    async def text(self, delta: str) -> None:
        self.calls.append(("text", delta))

    async def reasoning(self, delta: str) -> None:
        self.calls.append(("reasoning", delta))

    async def write(self, chunk: Mapping[str, object]) -> None:
        self.calls.append(dict(chunk))


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
