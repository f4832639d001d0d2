"""A chat app for the stock AI SDK front end, on :meth:`PersistentTextStreaming.stream_ui`.

The three routes an app adds (the README's "AI SDK front ends"), as a user writes them:

- ``POST /api/chat``: the AI SDK's body (``{id, messages, trigger, messageId, ...}``);
  creates a JSON stream, remembers it as the chat's active stream and drives it;
- ``GET /api/chat/{id}/stream``: resumes the chat's active stream (204 if none, or done;
  ``?replay=true`` replays a finished one too);
- ``POST /api/chat/{id}/stop``: cancels it (a client's ``stop()`` is only a disconnect).

The answer is scripted, so a test knows exactly what the client must assemble: a
reasoning part, a tool call and its result, a ``data-weather`` part, then ``sentences``
sentences of ``words`` tokens each. The request body (the transport's ``body`` option)
shapes it: ``sentences``, ``words``, ``pace_ms`` (a pause after each token) and
``hold_after`` (after that many text tokens the answer waits until the test releases it)
and ``bad_chunk_after`` (after that many text tokens it writes a chunk that is not one).

Test-only routes: ``GET /test/chats/{id}`` (the active stream id, the generations run for
the chat and the expected message), ``POST /test/chats/{id}/release`` (lets a held answer
go on), ``POST /test/chats/{id}/stale`` (points the chat at a stream that does not exist)
and ``POST /test/text-stream`` (``stream_ui`` on a text stream: a typed error, not a 500).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery
from litestar.status_codes import HTTP_204_NO_CONTENT

from pts.core import PersistentTextStreaming
from pts.plugin import PTSPlugin, allow_everything
from pts.ui.types import GenerateUI, UIWriter

AnyRequest = Request[Any, Any, Any]

REASONING = ("Let me ", "look that ", "up first.")
TOOL_CALL_ID = "call-weather-1"
TOOL_NAME = "weather"
TOOL_INPUT: dict[str, object] = {"city": "Zürich"}
TOOL_OUTPUT: dict[str, object] = {"celsius": 21, "sky": "clear"}
DATA_PART: dict[str, object] = {"type": "data-weather", "id": "w-1", "data": {"celsius": 21}}
START_METADATA: dict[str, object] = {"model": "scripted"}
FINISH_METADATA: dict[str, object] = {"tokens": 42}
STREAMED_TOOL_INPUT: tuple[dict[str, object], ...] = (
    {"type": "tool-input-start", "toolCallId": TOOL_CALL_ID, "toolName": TOOL_NAME},
    {"type": "tool-input-delta", "toolCallId": TOOL_CALL_ID, "inputTextDelta": '{"city": '},
    {"type": "tool-input-delta", "toolCallId": TOOL_CALL_ID, "inputTextDelta": '"Zürich"}'},
)
SOURCES: tuple[dict[str, object], ...] = (
    {"type": "source-url", "sourceId": "src-1", "url": "https://example.org/w", "title": "W"},
    {"type": "file", "url": "data:text/plain;base64,aGk=", "mediaType": "text/plain"},
)


def sentence_tokens(index: int, words: int) -> list[str]:
    """Sentence ``index`` (from 1) as ``words`` tokens; it ends with ". " (a sentence end)."""
    first = [f"Café{index} "] if words > 1 else []
    return [*first, *(f"S{index}w{j} " for j in range(2, words)), f"end{index}. "]


@dataclass(frozen=True, slots=True)
class Script:
    """What one answer says, and how fast."""

    sentences: int = 6
    words: int = 8
    pace_ms: float = 1.0
    hold_after: int | None = None
    bad_chunk_after: int | None = None
    own_chunks: bool = False
    """The app writes its own ``start`` (with metadata), steps, a streamed tool input,
    a source and a file, and its own ``finish``, as an agent framework's adapter does."""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Script:
        """The script the request asks for; the defaults for what it leaves out."""
        default = cls()
        hold, bad = body.get("hold_after"), body.get("bad_chunk_after")
        return cls(
            sentences=int(body.get("sentences", default.sentences)),
            words=int(body.get("words", default.words)),
            pace_ms=float(body.get("pace_ms", default.pace_ms)),
            hold_after=None if hold is None else int(hold),
            bad_chunk_after=None if bad is None else int(bad),
            own_chunks=bool(body.get("own_chunks", False)),
        )

    def tokens(self) -> list[str]:
        """The text's tokens, sentence after sentence."""
        return [t for i in range(1, self.sentences + 1) for t in sentence_tokens(i, self.words)]

    @property
    def stop_point(self) -> int:
        """The tokens before the answer holds or fails (all of them if neither)."""
        points = [p for p in (self.hold_after, self.bad_chunk_after) if p is not None]
        return min(points, default=len(self.tokens()))

    def expected(self) -> dict[str, object]:
        """The message a client must assemble from the whole answer."""
        return {
            "reasoning": "".join(REASONING),
            "text": "".join(self.tokens()),
            "data": DATA_PART,
            "tool": {
                "toolCallId": TOOL_CALL_ID,
                "type": f"tool-{TOOL_NAME}",
                "input": TOOL_INPUT,
                "output": TOOL_OUTPUT,
            },
            "partial_text": "".join(self.tokens()[: self.stop_point]),  # where it holds or fails
        }


@dataclass
class Chat:
    """What the app keeps per chat: the active stream id (the one thing an app must
    keep), and for the tests the script, the gate and the count of generations."""

    stream_id: uuid.UUID | None = None
    script: Script = field(default_factory=Script)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    generations: int = 0


class ChatApp:
    """The app's state and its Litestar app."""

    def __init__(self, pts: PersistentTextStreaming, chats: dict[str, Chat] | None = None) -> None:
        self.pts = pts
        self.chats: dict[str, Chat] = {} if chats is None else chats
        """Per chat; two apps given one dict stand for two processes of one app that keep
        the active stream id in a shared table."""

    def chat(self, chat_id: str) -> Chat:
        """The chat's record, made on first use."""
        return self.chats.setdefault(chat_id, Chat())

    @property
    def generations(self) -> int:
        """Generations run, all chats together."""
        return sum(chat.generations for chat in self.chats.values())

    def answer(self, chat: Chat) -> GenerateUI:
        """``generate`` for one chat: the scripted answer (the model an app would call)."""

        async def generate(_request: AnyRequest, _stream_id: uuid.UUID, ui: UIWriter) -> None:
            chat.generations += 1
            script = chat.script
            pause = script.pace_ms / 1000
            if script.own_chunks:
                await ui.write({"type": "start", "messageMetadata": START_METADATA})
                await ui.write({"type": "start-step"})
            for delta in REASONING:
                await ui.reasoning(delta)
                await asyncio.sleep(pause)
            if script.own_chunks:
                for chunk in STREAMED_TOOL_INPUT:
                    await ui.write(chunk)
            await ui.write(
                {
                    "type": "tool-input-available",
                    "toolCallId": TOOL_CALL_ID,
                    "toolName": TOOL_NAME,
                    "input": TOOL_INPUT,
                }
            )
            await ui.write(
                {"type": "tool-output-available", "toolCallId": TOOL_CALL_ID, "output": TOOL_OUTPUT}
            )
            if script.own_chunks:
                await ui.write({"type": "finish-step"})
                await ui.write({"type": "start-step"})
                for source in SOURCES:
                    await ui.write(source)
            await ui.write(DATA_PART)
            await self.write_text(chat, ui)
            if script.own_chunks:
                await ui.write({"type": "finish-step"})
                await ui.write(
                    {"type": "finish", "finishReason": "stop", "messageMetadata": FINISH_METADATA}
                )

        return generate

    async def write_text(self, chat: Chat, ui: UIWriter) -> None:
        """The answer's text, token by token; it holds or fails where the script says."""
        script = chat.script
        pause = script.pace_ms / 1000
        for number, token in enumerate(script.tokens(), start=1):
            await ui.text(token)
            await asyncio.sleep(pause)
            if number == script.hold_after:
                await chat.gate.wait()
            if number == script.bad_chunk_after:
                # Not a UI chunk: write raises InvalidChunk, and (uncaught) the answer fails.
                await ui.write({"type": "not-a-chunk"})

    def app(self) -> Litestar:
        """The Litestar app: the three chat routes, the test routes, pts's plugin."""
        pts = self.pts

        @post("/api/chat")
        async def send(request: AnyRequest) -> Response[Any]:
            data = await request.json()
            if not isinstance(data, dict) or not isinstance(data.get("id"), str):
                raise ValidationException("the body is the AI SDK's {id, messages, ...}")
            chat = self.chat(data["id"])
            chat.script = Script.from_body(data)
            chat.gate = asyncio.Event()
            stream_id = await pts.create_stream(content_type="application/json")
            chat.stream_id = stream_id
            return await pts.stream_ui(request, stream_id, self.answer(chat))

        @get("/api/chat/{chat_id:str}/stream")
        async def resume(chat_id: FromPath[str], replay: FromQuery[bool] = False) -> Response[Any]:
            chat = self.chats.get(chat_id)
            stream_id = None if chat is None else chat.stream_id
            return await pts.resume_ui(stream_id, replay_finished=replay)

        @post("/api/chat/{chat_id:str}/stop", status_code=HTTP_204_NO_CONTENT)
        async def stop(chat_id: FromPath[str]) -> None:
            chat = self.chats.get(chat_id)
            if chat is not None and chat.stream_id is not None:
                await pts.cancel(chat.stream_id, "stopped by the user")

        @get("/test/chats/{chat_id:str}")
        async def describe(chat_id: FromPath[str]) -> dict[str, object]:
            chat = self.chat(chat_id)
            return {
                "stream_id": None if chat.stream_id is None else str(chat.stream_id),
                "generations": chat.generations,
                "all_generations": self.generations,
                "expected": chat.script.expected(),
            }

        @post("/test/chats/{chat_id:str}/release", status_code=HTTP_204_NO_CONTENT)
        async def release(chat_id: FromPath[str]) -> None:
            self.chat(chat_id).gate.set()

        @post("/test/chats/{chat_id:str}/stale", status_code=HTTP_204_NO_CONTENT)
        async def stale(chat_id: FromPath[str]) -> None:
            self.chat(chat_id).stream_id = uuid.uuid4()

        @post("/test/text-stream")
        async def ui_on_text_stream(request: AnyRequest) -> Response[Any]:
            chat = self.chat("text-stream")
            chat.stream_id = await pts.create_stream()  # text/plain: not a UI-message stream
            return await pts.stream_ui(request, chat.stream_id, self.answer(chat))

        @get("/healthz")
        async def healthz() -> dict[str, bool]:
            return {"ok": True}

        return Litestar(
            route_handlers=[
                send,
                resume,
                stop,
                describe,
                release,
                stale,
                ui_on_text_stream,
                healthz,
            ],
            plugins=[PTSPlugin(pts, authorize=allow_everything)],
        )
