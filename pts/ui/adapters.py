"""Feeding a :class:`~pts.ui.types.UIWriter` from a model: any text iterator, or an
OpenAI-compatible chat-completions stream (text, reasoning, tool calls).

No dependency on the ``openai`` package: :func:`from_openai` reads the few
fields it needs from the ``openai`` package's objects (attributes) or from
plain dicts (the chunks of an OpenAI-compatible server, parsed as JSON), so
any client works.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from pts.errors import InvalidInput
from pts.ui.types import UIWriter

__all__ = [
    "ChatCompletionChunkLike",
    "FinishReason",
    "OpenAIResult",
    "ToolCall",
    "finish_reason_of",
    "from_openai",
    "from_text",
]

FinishReason: TypeAlias = Literal[
    "stop", "length", "content-filter", "tool-calls", "error", "other"
]
"""The AI SDK's ``finish`` chunk ``finishReason`` values."""

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",  # the deprecated single-function form
    "content_filter": "content-filter",
    "error": "error",
}


def finish_reason_of(raw: str | None) -> FinishReason:
    """The AI SDK ``finishReason`` for a chat-completions ``finish_reason``.

    ``stop`` and ``length`` stay, ``tool_calls`` (and ``function_call``) is
    ``tool-calls``, ``content_filter`` is ``content-filter``, ``error`` stays;
    anything else a server sends, or none at all, is ``other``.
    """
    return _FINISH_REASONS.get(raw or "", "other")


# -- what from_openai reads (the openai package's ChatCompletionChunk has these) --------


class _FunctionLike(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def arguments(self) -> str | None: ...


class _ToolCallLike(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def id(self) -> str | None: ...
    @property
    def function(self) -> _FunctionLike | None: ...


class _DeltaLike(Protocol):
    @property
    def content(self) -> str | None: ...
    @property
    def tool_calls(self) -> Sequence[_ToolCallLike] | None: ...


class _ChoiceLike(Protocol):
    @property
    def delta(self) -> _DeltaLike: ...
    @property
    def finish_reason(self) -> str | None: ...


class _ChunkObject(Protocol):
    @property
    def choices(self) -> Sequence[_ChoiceLike]: ...


ChatCompletionChunkLike: TypeAlias = "_ChunkObject | Mapping[str, Any]"
"""A chat-completions stream chunk: the ``openai`` package's ``ChatCompletionChunk``
(or anything with the same attributes), or the same as a dict."""


def _field(obj: object, name: str) -> Any:
    """``obj[name]`` of a mapping, else ``obj.name``; None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _text(obj: object, name: str, what: str) -> str:
    """A string field ("" when absent or null); InvalidInput when it is something else."""
    value = _field(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"the chat-completions stream sent a {what} that is not a string")
    return value


# -- the result ---------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCall:
    """One tool call of the model, as the stream assembled it.

    ``input`` is the parsed arguments (a JSON object) when ``error`` is None;
    otherwise ``error`` says why they could not be parsed (the UI got
    ``tool-input-error``) and ``input`` is None.
    """

    id: str
    name: str
    arguments: str = ""
    """The arguments as the model wrote them (JSON text)."""
    input: dict[str, Any] | None = None
    error: str | None = None
    index: int = 0

    def message(self) -> dict[str, Any]:
        """This call as an entry of an assistant message's ``tool_calls`` (to send back)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class OpenAIResult:
    """What :func:`from_openai` read: what the caller needs to run tools and go on.

    ``finish_reason`` is the AI SDK's value (``other`` when the stream sent
    none; ``raw_finish_reason`` is then None), for
    ``await ui.write({"type": "finish", "finishReason": result.finish_reason})``.
    """

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason = "other"
    raw_finish_reason: str | None = None
    usage: Any = None
    """The last ``usage`` the stream sent (``stream_options={"include_usage": True}``)."""

    def assistant_message(self) -> dict[str, Any]:
        """The answer as a chat-completions assistant message, for the next request."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.message() for call in self.tool_calls]
        return message


# -- the adapters -------------------------------------------------------------------------


async def from_text(ui: UIWriter, chunks: AsyncIterable[str]) -> None:
    """Write every piece of ``chunks`` (any async iterator of text) with ``ui.text``.

    Empty pieces are skipped.
    """
    async for piece in chunks:
        if piece:
            await ui.text(piece)


@dataclass(slots=True)
class _Call:
    """A tool call being streamed."""

    index: int
    id: str | None = None
    name: str = ""
    arguments: str = ""
    started: bool = False
    sent: int = 0
    """How many characters of ``arguments`` the UI has (as ``tool-input-delta``)."""


class _Calls:
    """The tool calls of one stream, by index: started once they have a name, their
    argument pieces sent as they arrive, made available (or an error) at the end."""

    def __init__(self, ui: UIWriter) -> None:
        self.ui = ui
        self.open: dict[int, _Call] = {}
        self.done: list[ToolCall] = []

    async def piece(self, position: int, raw: object) -> None:
        index = _field(raw, "index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else position
        call_id = _text(raw, "id", "tool call id") or None
        function = _field(raw, "function")
        name = _text(function, "name", "tool name") if function is not None else ""
        arguments = _text(function, "arguments", "tool arguments") if function is not None else ""
        call = self.open.get(index)
        if call is not None and call_id is not None and call.id not in (None, call_id):
            # A server that reuses an index for the next call: the last one is complete.
            await self.end(call)
            call = None
        if call is None:
            call = self.open[index] = _Call(index)
        call.id = call.id or call_id
        call.name += name if not call.started else ""
        call.arguments += arguments
        if not call.started and call.name:
            # Servers send the name (and id) in the call's first piece; one that
            # sends none gets an id here, since the UI needs one from the start.
            call.id = call.id or f"call_{uuid.uuid4().hex}"
            call.started = True
            await self.ui.write(
                {"type": "tool-input-start", "toolCallId": call.id, "toolName": call.name}
            )
        if call.started and len(call.arguments) > call.sent:
            delta = call.arguments[call.sent :]
            call.sent = len(call.arguments)
            await self.ui.write(
                {"type": "tool-input-delta", "toolCallId": call.id, "inputTextDelta": delta}
            )

    async def end(self, call: _Call) -> None:
        """The call is complete: its parsed input, or why it has none."""
        self.open.pop(call.index, None)
        if not call.started:
            raise InvalidInput("the chat-completions stream sent a tool call without a name")
        assert call.id is not None  # set when it started
        parsed, error = _parse_arguments(call.arguments)
        done = ToolCall(call.id, call.name, call.arguments, parsed, error, call.index)
        self.done.append(done)
        if error is None:
            await self.ui.write(
                {
                    "type": "tool-input-available",
                    "toolCallId": call.id,
                    "toolName": call.name,
                    "input": parsed,
                }
            )
        else:
            await self.ui.write(
                {
                    "type": "tool-input-error",
                    "toolCallId": call.id,
                    "toolName": call.name,
                    "input": call.arguments,
                    "errorText": error,
                }
            )

    async def end_all(self) -> None:
        for index in sorted(self.open):
            await self.end(self.open[index])


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_arguments(arguments: str) -> tuple[dict[str, Any] | None, str | None]:
    """Tool arguments parsed: (the JSON object, None), or (None, why not).

    No arguments at all (some servers send none for a tool without
    parameters) are ``{}``; NaN and Infinity are refused (they are not JSON,
    and no UI chunk could carry them).
    """
    if not arguments.strip():
        return {}, None
    try:
        value = json.loads(arguments, parse_constant=_refuse_constant)
    except ValueError as exc:
        return None, f"the tool arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, "the tool arguments are not a JSON object"
    return value, None


async def from_openai(ui: UIWriter, stream: AsyncIterable[ChatCompletionChunkLike]) -> OpenAIResult:
    """Write an OpenAI-compatible chat-completions stream (``stream=True``) to ``ui``.

    Reads ``choices[0]`` of every chunk, as attributes (the ``openai``
    package's ``ChatCompletionChunk``) or dict keys (parsed JSON):

    - ``delta.reasoning_content``, else ``delta.reasoning`` (what servers that
      stream reasoning send) -> ``ui.reasoning``;
    - ``delta.content`` -> ``ui.text``;
    - ``delta.tool_calls``, streamed in pieces by ``index`` -> ``tool-input-start``
      (once the call has its name; its ``id``, or a generated one),
      ``tool-input-delta`` per piece of arguments, and at the end of the
      stream (or at ``finish_reason``) ``tool-input-available`` with the
      parsed arguments, or ``tool-input-error`` with ``errorText`` when they
      are not a JSON object;
    - ``finish_reason`` -> the result's ``finish_reason`` (AI SDK values).

    Chunks without choices (a final ``usage`` chunk) and empty deltas write
    nothing. It writes no ``finish``: the answer may go on (a tool's result,
    another model call); pts ends the message when ``generate`` returns, or
    write ``{"type": "finish", "finishReason": result.finish_reason}`` yourself.
    Returns the text, reasoning and tool calls read (see :class:`OpenAIResult`).
    Raises InvalidInput on a chunk whose fields have the wrong types. When it
    stops early (an error, or ``pts.cancel()`` cancelling ``generate``) it
    closes ``stream`` (``aclose()`` or ``close()``), so the model's response
    is not left running.
    """
    try:
        return await _read_openai(ui, stream)
    except BaseException:
        await _close(stream)
        raise


async def _close(stream: object) -> None:
    """Close what is left of a stream: an async generator's ``aclose()``, or the
    ``close()`` of the openai package's ``AsyncStream`` (which closes its response)."""
    for name in ("aclose", "close"):
        method = getattr(stream, name, None)
        if callable(method):
            outcome = method()
            if inspect.isawaitable(outcome):
                await outcome
            return


async def _read_openai(
    ui: UIWriter, stream: AsyncIterable[ChatCompletionChunkLike]
) -> OpenAIResult:
    result = OpenAIResult()
    calls = _Calls(ui)
    async for chunk in stream:
        usage = _field(chunk, "usage")
        if usage is not None:
            result.usage = usage
        choices = _field(chunk, "choices")
        if not choices:
            continue
        choice = choices[0]
        delta = _field(choice, "delta")
        if delta is not None:
            reasoning = _text(delta, "reasoning_content", "reasoning") or _text(
                delta, "reasoning", "reasoning"
            )
            if reasoning:
                result.reasoning += reasoning
                await ui.reasoning(reasoning)
            content = _text(delta, "content", "content")
            if content:
                result.text += content
                await ui.text(content)
            for position, raw in enumerate(_field(delta, "tool_calls") or ()):
                await calls.piece(position, raw)
        raw_reason = _field(choice, "finish_reason")
        if raw_reason is not None:
            result.raw_finish_reason = str(raw_reason)
            result.finish_reason = finish_reason_of(result.raw_finish_reason)
            await calls.end_all()
    await calls.end_all()  # a stream that ended without a finish_reason
    result.tool_calls = sorted(calls.done, key=lambda call: call.index)
    return result
