"""The UI message chunk checks: what the AI SDK's ``uiMessageChunkSchema`` reads gets in,
anything else is InvalidChunk (never a chunk that stops the client's parser)."""

from __future__ import annotations

import json
import math
from types import MappingProxyType

import pytest

from pts.errors import InvalidChunk, InvalidInput
from pts.ui.chunks import MAX_DEPTH, SPECS, check_chunk, encode

GOOD: list[dict[str, object]] = [
    {"type": "start"},
    {"type": "start", "messageId": "m1", "messageMetadata": {"model": "x"}},
    {"type": "start-step"},
    {"type": "text-start", "id": "t"},
    {"type": "text-delta", "id": "t", "delta": "héllo \u2028 \n"},
    {"type": "text-end", "id": "t", "providerMetadata": {"openai": {"x": 1}}},
    {"type": "reasoning-start", "id": "r"},
    {"type": "reasoning-delta", "id": "r", "delta": "hm"},
    {"type": "reasoning-end", "id": "r"},
    {"type": "tool-input-start", "toolCallId": "c", "toolName": "w", "inputEncoding": "json"},
    {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": "{"},
    {"type": "tool-input-available", "toolCallId": "c", "toolName": "w", "input": {"a": [1]}},
    {"type": "tool-input-error", "toolCallId": "c", "toolName": "w", "input": 1, "errorText": "e"},
    {"type": "tool-approval-request", "approvalId": "a", "toolCallId": "c"},
    {"type": "tool-output-available", "toolCallId": "c", "output": None, "preliminary": True},
    {"type": "tool-output-error", "toolCallId": "c", "errorText": "boom"},
    {"type": "tool-output-denied", "toolCallId": "c"},
    {"type": "source-url", "sourceId": "s", "url": "https://example.com", "title": "E"},
    {"type": "source-document", "sourceId": "s", "mediaType": "text/plain", "title": "T"},
    {"type": "file", "url": "data:,x", "mediaType": "text/plain"},
    {"type": "data-weather", "data": {"temp": 21.5}, "id": "w1", "transient": False},
    {"type": "message-metadata", "messageMetadata": {"tokens": 3}},
    {"type": "error", "errorText": "oops"},
    {"type": "finish-step"},
    {"type": "finish", "finishReason": "tool-calls"},
    {"type": "abort", "reason": "stopped"},
    {"type": "text-delta", "id": "t", "delta": "x", "extra": "loose objects pass"},
]


@pytest.mark.parametrize("chunk", GOOD, ids=lambda c: str(c["type"]))
def test_every_chunk_the_ai_sdk_reads_gets_in_as_compact_json(chunk: dict[str, object]) -> None:
    kind, message = check_chunk(chunk)
    assert kind == chunk["type"]
    assert json.loads(message) == chunk
    assert b"\n" not in message  # one SSE data line, whatever the strings hold
    assert message == json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode()


def test_the_table_covers_the_ai_sdk_types() -> None:
    assert set(SPECS) == {c["type"] for c in GOOD if not str(c["type"]).startswith("data-")}


def test_a_mapping_that_is_not_a_dict_is_a_chunk_too() -> None:
    assert check_chunk(MappingProxyType({"type": "finish"})) == ("finish", b'{"type":"finish"}')


BAD: list[tuple[object, str]] = [
    ("text", "JSON object"),
    (["finish"], "JSON object"),
    (None, "JSON object"),
    ({}, "string 'type'"),
    ({"type": 1}, "string 'type'"),
    ({"type": "tool-call"}, "not a UI message chunk type"),
    ({"type": "Text-Start", "id": "t"}, "not a UI message chunk type"),
    ({"type": "data-", "data": 1}, "not a UI message chunk type"),
    ({"type": "text-delta", "id": "t"}, "'delta'"),
    ({"type": "text-delta", "id": 3, "delta": "x"}, "'id'"),
    ({"type": "error"}, "'errorText'"),
    ({"type": "tool-input-available", "toolCallId": "c"}, "'toolName'"),
    ({"type": "tool-output-available", "output": 1}, "'toolCallId'"),
    ({"type": "source-document", "sourceId": "s", "mediaType": "m"}, "'title'"),
    ({"type": "finish", "finishReason": "done"}, "'finishReason'"),
    ({"type": "tool-input-start", "toolCallId": "c", "toolName": "w", "dynamic": "yes"}, "boolean"),
    ({"type": "data-x", "data": 1, "transient": 1}, "boolean"),
    ({"type": "abort", "reason": 5}, "string"),
    ({"type": "text-end", "id": "t", "providerMetadata": {"a": 1}}, "providerMetadata"),
    ({"type": "data-x", "data": {1, 2}}, "standard JSON"),
    ({"type": "data-x", "data": object()}, "standard JSON"),
    ({"type": "data-x", "data": math.inf}, "standard JSON"),
    ({"type": "data-x", "data": math.nan}, "standard JSON"),
    ({"type": "data-x", "data": {None: 1}}, "not a string"),
    ({"type": "data-x", "data": [{(1, 2): 1}]}, "not a string"),
    ({"type": "data-x", "data": "\ud800"}, "lone surrogate"),
    ({"type": "text-delta", "id": "t", "delta": "a\udfffb"}, "lone surrogate"),
]


@pytest.mark.parametrize(("chunk", "says"), BAD, ids=lambda v: repr(v)[:40])
def test_anything_else_is_invalid_chunk(chunk: object, says: str) -> None:
    with pytest.raises(InvalidChunk) as caught:
        check_chunk(chunk)
    assert says in str(caught.value)
    assert isinstance(caught.value, InvalidInput)  # 400 where it reaches HTTP


def test_nesting_is_bounded_without_recursion() -> None:
    deep: object = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    encode({"type": "data-x", "data": deep})  # at the bound: fine
    for _ in range(100_000):  # far past Python's recursion limit
        deep = {"a": deep}
    with pytest.raises(InvalidChunk, match="deeper"):
        check_chunk({"type": "data-x", "data": deep})


def test_a_cycle_is_invalid_not_a_hang() -> None:
    data: list[object] = []
    data.append(data)
    with pytest.raises(InvalidChunk):
        check_chunk({"type": "data-x", "data": data})
