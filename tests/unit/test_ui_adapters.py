"""``from_text`` and ``from_openai`` against a UIWriter that records what it is given.

No Postgres, no server: the chunks of a chat-completions stream, as dicts (an
OpenAI-compatible server's JSON) and as the ``openai`` package's objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from pts.errors import InvalidInput
from pts.ui.adapters import OpenAIResult, finish_reason_of, from_openai, from_text
from tests.support.ui import Recorder


async def aiter(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    """A chat-completions stream chunk as JSON would have it."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }


def call(
    index: int, *, id: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    piece: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        piece.update(id=id, type="function")
    return piece


def objects(chunks: Iterable[dict[str, Any]]) -> list[ChatCompletionChunk]:
    """The same chunks as the openai package parses them (attributes, not keys)."""
    return [ChatCompletionChunk.model_validate(c) for c in chunks]


async def run(chunks: list[dict[str, Any]], form: str = "dict") -> tuple[Recorder, OpenAIResult]:
    ui = Recorder()
    stream = objects(chunks) if form == "objects" else chunks
    result = await from_openai(ui, aiter(stream))
    return ui, result


FORMS = pytest.mark.parametrize("form", ["dict", "objects"])


async def test_from_text_writes_every_piece_as_text_and_skips_empty_ones() -> None:
    ui = Recorder()
    await from_text(ui, aiter(["Hello", "", ", world."]))
    assert ui.calls == [("text", "Hello"), ("text", ", world.")]


@FORMS
async def test_text_deltas_go_to_ui_text(form: str) -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo."}),
        chunk({}, finish="stop"),
    ]
    ui, result = await run(chunks, form)
    assert ui.calls == [("text", "Hel"), ("text", "lo.")]
    assert (result.text, result.reasoning, result.tool_calls) == ("Hello.", "", [])
    assert (result.finish_reason, result.raw_finish_reason) == ("stop", "stop")
    assert result.assistant_message() == {"role": "assistant", "content": "Hello."}


@FORMS
async def test_reasoning_content_and_reasoning_go_to_ui_reasoning(form: str) -> None:
    chunks = [
        chunk({"reasoning_content": "Think"}),  # DeepSeek, vLLM
        chunk({"reasoning": "ing."}),  # OpenRouter, Ollama, newer vLLM
        chunk({"reasoning_content": "", "content": "Answer."}),
        chunk({}, finish="stop"),
    ]
    ui, result = await run(chunks, form)
    assert ui.calls == [("reasoning", "Think"), ("reasoning", "ing."), ("text", "Answer.")]
    assert (result.reasoning, result.text) == ("Thinking.", "Answer.")


@FORMS
async def test_a_tool_call_streamed_in_pieces(form: str) -> None:
    chunks = [
        chunk({"content": "Let me look."}),
        chunk({"tool_calls": [call(0, id="call_a", name="weather", args="")]}),
        chunk({"tool_calls": [call(0, args='{"city": ')]}),
        chunk({"tool_calls": [call(0, args='"Paris"}')]}),
        chunk({}, finish="tool_calls"),
    ]
    ui, result = await run(chunks, form)
    assert ui.calls == [
        ("text", "Let me look."),
        {"type": "tool-input-start", "toolCallId": "call_a", "toolName": "weather"},
        {"type": "tool-input-delta", "toolCallId": "call_a", "inputTextDelta": '{"city": '},
        {"type": "tool-input-delta", "toolCallId": "call_a", "inputTextDelta": '"Paris"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "call_a",
            "toolName": "weather",
            "input": {"city": "Paris"},
        },
    ]
    assert result.finish_reason == "tool-calls"
    [tool] = result.tool_calls
    assert (tool.id, tool.name, tool.input, tool.error) == (
        "call_a",
        "weather",
        {"city": "Paris"},
        None,
    )
    assert result.assistant_message() == {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }


@FORMS
async def test_two_parallel_tool_calls_interleaved(form: str) -> None:
    chunks = [
        chunk({"tool_calls": [call(0, id="call_a", name="weather", args='{"ci')]}),
        chunk({"tool_calls": [call(1, id="call_b", name="time", args='{"tz"')]}),
        chunk({"tool_calls": [call(0, args='ty": "Oslo"}')]}),
        chunk({"tool_calls": [call(1, args=': "UTC"}')]}),
        chunk({}, finish="tool_calls"),
    ]
    ui, result = await run(chunks, form)
    starts = [(c["toolCallId"], c["toolName"]) for c in ui.chunks("tool-input-start")]
    assert starts == [("call_a", "weather"), ("call_b", "time")]
    deltas = [(c["toolCallId"], c["inputTextDelta"]) for c in ui.chunks("tool-input-delta")]
    assert deltas == [
        ("call_a", '{"ci'),
        ("call_b", '{"tz"'),
        ("call_a", 'ty": "Oslo"}'),
        ("call_b", ': "UTC"}'),
    ]
    available = [(c["toolCallId"], c["input"]) for c in ui.chunks("tool-input-available")]
    assert available == [("call_a", {"city": "Oslo"}), ("call_b", {"tz": "UTC"})]
    assert [(t.id, t.input) for t in result.tool_calls] == available


async def test_several_calls_in_one_delta_without_an_index() -> None:
    """A server that sends whole calls at once, without ``index``: their position is it."""
    pieces = [
        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "b", "arguments": '{"x": 1}'}},
    ]
    ui, result = await run([chunk({"tool_calls": pieces}), chunk({}, finish="tool_calls")])
    assert [(t.id, t.name, t.input) for t in result.tool_calls] == [
        ("c1", "a", {}),
        ("c2", "b", {"x": 1}),
    ]
    assert len(ui.chunks("tool-input-available")) == 2


async def test_a_server_that_reuses_index_zero_for_the_next_call() -> None:
    chunks = [
        chunk({"tool_calls": [call(0, id="c1", name="a", args='{"n": 1}')]}),
        chunk({"tool_calls": [call(0, id="c2", name="b", args='{"n": 2}')]}),
        chunk({}, finish="tool_calls"),
    ]
    ui, result = await run(chunks)
    assert [(t.id, t.name, t.input) for t in result.tool_calls] == [
        ("c1", "a", {"n": 1}),
        ("c2", "b", {"n": 2}),
    ]
    types = [c["type"] for c in ui.calls if isinstance(c, dict)]
    assert types == ["tool-input-start", "tool-input-delta", "tool-input-available"] * 2


@FORMS
@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        ('{"city": "Par', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"x": NaN}', "not valid JSON"),
    ],
)
async def test_invalid_arguments_are_a_tool_input_error(
    form: str, arguments: str, why: str
) -> None:
    chunks = [
        chunk({"tool_calls": [call(0, id="call_a", name="weather", args=arguments)]}),
        chunk({}, finish="tool_calls"),
    ]
    ui, result = await run(chunks, form)
    assert not ui.chunks("tool-input-available")
    [error] = ui.chunks("tool-input-error")
    assert (error["toolCallId"], error["toolName"], error["input"]) == (
        "call_a",
        "weather",
        arguments,
    )
    assert why in str(error["errorText"])
    [tool] = result.tool_calls
    assert tool.input is None
    assert tool.error is not None
    assert why in tool.error


async def test_no_arguments_at_all_are_an_empty_object() -> None:
    ui, result = await run([chunk({"tool_calls": [call(0, id="c", name="now")]})])
    assert ui.chunks("tool-input-available")[0]["input"] == {}
    assert not ui.chunks("tool-input-delta")
    assert result.tool_calls[0].input == {}


async def test_a_call_without_an_id_gets_one() -> None:
    ui, result = await run([chunk({"tool_calls": [call(0, name="now", args="{}")]})])
    [start] = ui.chunks("tool-input-start")
    assert str(start["toolCallId"]).startswith("call_")
    assert result.tool_calls[0].id == start["toolCallId"]


@FORMS
async def test_empty_deltas_and_chunks_without_choices_write_nothing(form: str) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({}),
        chunk({"content": None, "reasoning_content": None, "tool_calls": None}),
        chunk({}, finish="stop"),
        {**chunk(), "choices": [], "usage": usage},
    ]
    ui, result = await run(chunks, form)
    assert ui.calls == []
    assert result.finish_reason == "stop"
    assert result.usage is not None
    assert result.assistant_message() == {"role": "assistant", "content": None}


@FORMS
async def test_a_stream_that_ends_without_finish_reason(form: str) -> None:
    """Cut off: what arrived is written, open tool calls are completed, the reason is other."""
    chunks = [
        chunk({"content": "Partial"}),
        chunk({"tool_calls": [call(0, id="call_a", name="weather", args='{"city": "Rome"}')]}),
    ]
    ui, result = await run(chunks, form)
    assert ui.calls[0] == ("text", "Partial")
    assert ui.chunks("tool-input-available")[0]["input"] == {"city": "Rome"}
    assert (result.finish_reason, result.raw_finish_reason) == ("other", None)


async def test_an_empty_stream() -> None:
    ui, result = await run([])
    assert ui.calls == []
    assert result == OpenAIResult()


@pytest.mark.parametrize(
    ("raw", "mapped"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool-calls"),
        ("function_call", "tool-calls"),
        ("content_filter", "content-filter"),
        ("error", "error"),
        ("eos", "other"),
        (None, "other"),
    ],
)
def test_finish_reasons_map_to_the_ai_sdk_values(raw: str | None, mapped: str) -> None:
    assert finish_reason_of(raw) == mapped


async def test_fields_of_the_wrong_type_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="content"):
        await run([chunk({"content": 42})])
    with pytest.raises(InvalidInput, match="tool arguments"):
        await run(
            [
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": "c", "function": {"name": "a", "arguments": {}}}
                        ]
                    }
                )
            ]
        )


async def test_a_tool_call_that_never_gets_a_name_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="without a name"):
        await run([chunk({"tool_calls": [call(0, id="c", args="{}")]}), chunk(finish="stop")])


async def test_a_call_whose_name_comes_after_its_first_arguments() -> None:
    """tool-input-start waits for the name; the arguments so far follow it as one delta."""
    chunks = [
        chunk({"tool_calls": [call(0, id="c", args='{"a"')]}),
        chunk({"tool_calls": [call(0, name="f", args=": 1")]}),
        chunk({"tool_calls": [call(0, args="}")]}),
        chunk(finish="tool_calls"),
    ]
    ui, result = await run(chunks)
    assert ui.calls == [
        {"type": "tool-input-start", "toolCallId": "c", "toolName": "f"},
        {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": '{"a": 1'},
        {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": "}"},
        {"type": "tool-input-available", "toolCallId": "c", "toolName": "f", "input": {"a": 1}},
    ]
    assert result.tool_calls[0].arguments == '{"a": 1}'


async def test_a_stream_stopped_early_is_closed() -> None:
    """An error (or a cancel) inside from_openai closes the model's stream."""
    closed = asyncio.Event()

    async def model() -> AsyncIterator[dict[str, Any]]:
        try:
            yield chunk({"content": "Hel"})
            yield chunk({"content": 42})  # refused
            yield chunk({"content": "never read"})
        finally:
            closed.set()

    stream = model()
    with pytest.raises(InvalidInput):
        await from_openai(Recorder(), stream)
    assert closed.is_set()

    class Stream:  # the openai package's AsyncStream: close() is a coroutine
        def __init__(self) -> None:
            self.closed = False

        def __aiter__(self) -> Stream:
            return self

        async def __anext__(self) -> dict[str, Any]:
            raise asyncio.CancelledError

        async def close(self) -> None:
            self.closed = True

    openai_like = Stream()
    with pytest.raises(asyncio.CancelledError):
        await from_openai(Recorder(), openai_like)
    assert openai_like.closed
