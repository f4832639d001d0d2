"""The UI writer's state machine (start, part boundaries, the end), the buffer that merges
deltas per sentence, and the resume's message splitter: no database, no server."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pts.errors import InvalidChunk
from pts.flush import FlushPolicy
from pts.models import StreamInfo, StreamStatus
from pts.ui.buffer import UIBuffer
from pts.ui.resume import Ending, MessageSplitter
from pts.ui.writer import UIStreamWriter, delta_head

POLICY = FlushPolicy(max_bytes=4096, max_delay=3600)


def info_with(status: StreamStatus) -> StreamInfo:
    now = datetime.now(UTC)
    return StreamInfo(
        id=uuid.uuid4(),
        status=status,
        size=0,
        closed=True,
        content_type="application/json",
        client_id=None,
        path=None,
        abort_reason=None,
        error=None,
        created_at=now,
        updated_at=now,
        heartbeat_at=None,
        finished_at=now,
        expires_at=None,
    )


class Sink:
    """Records what the writer sends, and stores it in a UIBuffer as the drive does."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.buffer = UIBuffer()
        self.now = 0.0
        self.paces = 0

    def put(self, message: bytes, head: bytes | None, delta: str) -> None:
        self.sent.append(json.loads(message))
        if head is None:
            self.buffer.add(message, self.now)
        else:
            assert message.startswith(head)
            self.buffer.add_delta(head, delta, self.now)

    async def pace(self) -> None:
        self.paces += 1

    def stored(self) -> list[dict[str, Any]]:
        data = self.buffer.take_all()
        value = json.loads(b"[" + data[:-1] + b"]")
        assert isinstance(value, list)
        return value


def end(
    writer: UIStreamWriter, sink: Sink, status: StreamStatus, reason: str | None = None
) -> None:
    for message in writer.close(status, reason):
        sink.put(message, None, "")


def types(chunks: list[dict[str, Any]]) -> list[str]:
    return [str(c["type"]) for c in chunks]


async def test_text_and_reasoning_get_start_boundaries_one_id_per_part_and_finish() -> None:
    sink = Sink()
    ui = UIStreamWriter("msg-1", sink)
    await ui.reasoning("a")
    await ui.reasoning("b")
    await ui.text("c")
    await ui.text("")  # nothing
    await ui.text("d")
    await ui.reasoning("e")
    end(ui, sink, StreamStatus.DONE)
    assert sink.sent == [
        {"type": "start", "messageId": "msg-1"},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "a"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "b"},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "c"},
        {"type": "text-delta", "id": "text-2", "delta": "d"},
        {"type": "text-end", "id": "text-2"},
        {"type": "reasoning-start", "id": "reasoning-3"},
        {"type": "reasoning-delta", "id": "reasoning-3", "delta": "e"},
        {"type": "reasoning-end", "id": "reasoning-3"},
        {"type": "finish"},
    ]
    assert ui.message_id == "msg-1"


async def test_any_other_chunk_closes_the_open_part_first() -> None:
    sink = Sink()
    ui = UIStreamWriter("m", sink)
    await ui.text("Let me look. ")
    await ui.write(
        {"type": "tool-input-available", "toolCallId": "c", "toolName": "w", "input": {}}
    )
    await ui.write({"type": "tool-output-available", "toolCallId": "c", "output": 1})
    await ui.text("Found it.")
    end(ui, sink, StreamStatus.DONE)
    assert types(sink.sent) == [
        "start",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-available",
        "tool-output-available",
        "text-start",
        "text-delta",
        "text-end",
        "finish",
    ]


async def test_the_apps_own_start_is_used_and_given_our_message_id_if_it_has_none() -> None:
    sink = Sink()
    ui = UIStreamWriter("m", sink)
    await ui.write({"type": "start", "messageMetadata": {"model": "x"}})
    await ui.text("hi")
    assert sink.sent[0] == {"type": "start", "messageMetadata": {"model": "x"}, "messageId": "m"}
    assert types(sink.sent).count("start") == 1
    sink2 = Sink()
    ui2 = UIStreamWriter("m", sink2)
    await ui2.write({"type": "start", "messageId": "theirs"})
    end(ui2, sink2, StreamStatus.DONE)
    assert ui2.message_id == "theirs"
    assert sink2.sent == [{"type": "start", "messageId": "theirs"}, {"type": "finish"}]


async def test_boundaries_the_app_wrote_are_never_written_twice() -> None:
    sink = Sink()
    ui = UIStreamWriter("m", sink)
    await ui.write({"type": "text-start", "id": "mine"})
    await ui.write({"type": "text-delta", "id": "mine", "delta": "x"})
    await ui.write({"type": "text-end", "id": "mine"})
    await ui.text("ours")
    await ui.write({"type": "data-x", "data": 1})  # closes ours
    await ui.write({"type": "text-end", "id": "text-1"})  # the app's late end of it: dropped
    await ui.write({"type": "finish", "finishReason": "stop"})
    end(ui, sink, StreamStatus.DONE)
    assert types(sink.sent) == [
        "start",
        "text-start",
        "text-delta",
        "text-end",
        "text-start",
        "text-delta",
        "text-end",
        "data-x",
        "finish",
    ]
    assert sink.sent[-1] == {"type": "finish", "finishReason": "stop"}


async def test_finish_step_and_the_end_close_every_open_part() -> None:
    sink = Sink()
    ui = UIStreamWriter("m", sink)
    await ui.write({"type": "start-step"})
    await ui.write({"type": "reasoning-start", "id": "r"})
    await ui.write({"type": "text-start", "id": "t"})
    await ui.write({"type": "finish-step"})
    await ui.write({"type": "text-start", "id": "u"})
    end(ui, sink, StreamStatus.DONE)
    assert types(sink.sent) == [
        "start",
        "start-step",
        "reasoning-start",
        "text-start",
        "reasoning-end",
        "text-end",
        "finish-step",
        "text-start",
        "text-end",
        "finish",
    ]


async def test_a_delta_or_end_of_no_open_part_is_invalid() -> None:
    ui = UIStreamWriter("m", Sink())
    with pytest.raises(InvalidChunk, match="not an open text part"):
        await ui.write({"type": "text-delta", "id": "x", "delta": "a"})
    with pytest.raises(InvalidChunk, match="not an open reasoning part"):
        await ui.write({"type": "reasoning-end", "id": "x"})
    await ui.write({"type": "text-start", "id": "x"})
    with pytest.raises(InvalidChunk, match="not an open reasoning part"):
        await ui.write({"type": "reasoning-delta", "id": "x", "delta": "a"})
    with pytest.raises(InvalidChunk, match="string"):
        await ui.text(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidChunk, match="lone surrogate"):
        await ui.text("\ud800")


@pytest.mark.parametrize(
    ("status", "reason", "last"),
    [
        (StreamStatus.DONE, None, {"type": "finish"}),
        (StreamStatus.ABORTED, None, {"type": "abort"}),
        (StreamStatus.ABORTED, "user", {"type": "abort", "reason": "user"}),
        (StreamStatus.ERROR, "boom", {"type": "error", "errorText": "boom"}),
    ],
)
async def test_the_end_says_how_it_ended_once(
    status: StreamStatus, reason: str | None, last: dict[str, str]
) -> None:
    sink = Sink()
    ui = UIStreamWriter("m", sink)
    await ui.text("partial")
    end(ui, sink, status, reason)
    assert sink.sent[-2:] == [{"type": "text-end", "id": "text-1"}, last]
    assert ui.close(status, reason) == []  # once


async def test_an_empty_answer_still_starts_and_finishes() -> None:
    sink = Sink()
    end(UIStreamWriter("m", sink), sink, StreamStatus.DONE)
    assert sink.sent == [{"type": "start", "messageId": "m"}, {"type": "finish"}]


async def test_an_app_that_wrote_abort_gets_no_finish() -> None:
    sink = Sink()
    ui = UIStreamWriter("m", sink)
    await ui.write({"type": "abort"})
    end(ui, sink, StreamStatus.DONE)
    assert types(sink.sent) == ["start", "abort"]


# -- the buffer: deltas merged per sentence, other chunks at once ----------------------------


async def test_the_stored_chunks_rebuild_the_sent_message_with_deltas_merged() -> None:
    sink = Sink()
    ui = UIStreamWriter("m", sink)
    for token in ["One", " two", ". Three", " four", ".", " Five"]:
        await ui.text(token)
    await ui.write({"type": "data-x", "data": 1})
    await ui.reasoning("r1")
    await ui.reasoning("r2")
    await ui.write({"type": "text-start", "id": "app"})
    await ui.write({"type": "text-delta", "id": "app", "delta": "a"})
    await ui.write({"type": "text-delta", "id": "app", "delta": "b"})
    await ui.write({"type": "text-delta", "id": "app", "delta": "c", "providerMetadata": {}})
    end(ui, sink, StreamStatus.DONE)
    stored = sink.stored()
    assert stored == [
        {"type": "start", "messageId": "m"},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "One two. Three four. Five"},
        {"type": "text-end", "id": "text-1"},
        {"type": "data-x", "data": 1},
        {"type": "reasoning-start", "id": "reasoning-2"},
        {"type": "reasoning-delta", "id": "reasoning-2", "delta": "r1r2"},
        {"type": "reasoning-end", "id": "reasoning-2"},
        {"type": "text-start", "id": "app"},
        {"type": "text-delta", "id": "app", "delta": "ab"},
        {"type": "text-delta", "id": "app", "delta": "c", "providerMetadata": {}},
        {"type": "text-end", "id": "app"},
        {"type": "finish"},
    ]


def test_the_buffer_cuts_a_delta_on_sentence_ends_and_sends_other_chunks_at_once() -> None:
    buffer = UIBuffer()
    head = delta_head("text", "t")
    buffer.add(b'{"type":"text-start","id":"t"}', 1.0)
    assert buffer.oldest == 1.0
    buffer.add_delta(head, "Hello", 2.0)
    assert buffer.take_due(POLICY, 2.0) == b'{"type":"text-start","id":"t"},'
    assert buffer.take_due(POLICY, 2.0) == b""  # no sentence end yet
    assert buffer.oldest == 2.0
    buffer.add_delta(head, ' "world". And', 3.0)
    assert buffer.take_due(POLICY, 3.0) == head + b'"Hello \\"world\\". "},'
    assert buffer.nbytes > 0
    assert buffer.take_due(POLICY, 3.0) == b""
    buffer.add(b'{"type":"text-end","id":"t"}', 4.0)
    assert buffer.take_due(POLICY, 4.0) == head + b'"And"},{"type":"text-end","id":"t"},'
    assert buffer.nbytes == 0
    assert buffer.oldest is None
    assert buffer.take_all() == b""


def test_the_buffer_persists_a_delta_without_sentence_ends_after_max_delay_or_max_bytes() -> None:
    buffer = UIBuffer()
    head = delta_head("reasoning", "r")
    policy = FlushPolicy(max_bytes=10, max_delay=0.5)
    buffer.add_delta(head, "abc", 1.0)
    assert buffer.take_due(policy, 1.2) == b""
    assert buffer.take_due(policy, 1.5) == head + b'"abc"},'
    buffer.add_delta(head, "0123456789", 2.0)
    assert buffer.take_due(policy, 2.0) == head + b'"0123456789"},'


# -- resume: whole messages only, the end made up once ----------------------------------------


def test_the_splitter_yields_whole_messages_from_any_pieces() -> None:
    stored = '{"type":"text-delta","id":"t","delta":"é, }{\\"x"},7,{"type":"finish"},'.encode()
    for size in (1, 2, 3, 7, len(stored)):
        splitter = MessageSplitter()
        out: list[tuple[str, object]] = []
        for i in range(0, len(stored), size):
            out.extend(splitter.feed(stored[i : i + size]))
        assert [value for _, value in out] == [
            {"type": "text-delta", "id": "t", "delta": 'é, }{"x'},
            7,
            {"type": "finish"},
        ]
        assert ",".join(text for text, _ in out) + "," == stored.decode()


@pytest.mark.parametrize(
    ("seen", "status", "made_up"),
    [
        (["start", "text-start:t"], StreamStatus.DONE, ["text-end", "finish"]),
        (["start", "text-start:t", "text-end:t", "finish"], StreamStatus.DONE, []),
        (["start", "abort"], StreamStatus.ABORTED, []),
        (["start", "text-start:t"], StreamStatus.ABORTED, ["text-end", "abort"]),
        (["start", "error"], StreamStatus.ERROR, []),
        (["start", "error", "text-start:t"], StreamStatus.TIMEOUT, ["text-end", "error"]),
        (["start", "finish-step"], StreamStatus.TIMEOUT, ["error"]),
        ([], StreamStatus.ERROR, ["start", "error"]),
    ],
)
def test_the_end_is_made_up_only_when_the_stream_did_not_store_it(
    seen: list[str], status: StreamStatus, made_up: list[str]
) -> None:
    ending = Ending()
    for item in seen:
        kind, _, part = item.partition(":")
        ending.see({"type": kind, **({"id": part} if part else {})})
    last = [json.loads(m)["type"] for m in ending.last_words(info_with(status))]
    assert last == made_up
