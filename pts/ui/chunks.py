"""The UI message chunks the AI SDK reads: which types there are, what each needs, and
their encoding as compact JSON (what is sent as ``data: {json}`` and stored).

The table follows the ``ai`` package's ``uiMessageChunkSchema`` (a union of loose
objects: other fields pass). A chunk that the client would refuse fails here,
with :class:`~pts.errors.InvalidChunk`, before anything of it is sent or stored:
an answer never carries a chunk that stops the client's parser.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pts.errors import InvalidChunk

__all__ = [
    "DONE",
    "MAX_DEPTH",
    "SPECS",
    "ChunkSpec",
    "check_chunk",
    "encode",
]

DONE = b"data: [DONE]\n\n"
"""The SSE event that ends a UI message stream."""

MAX_DEPTH = 512
"""How deep a chunk may nest objects and arrays (as for Durable Streams JSON bodies)."""


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """What one chunk type needs: string fields it must have, and the optional fields'
    types (a string, a boolean, or one of a few strings)."""

    required: tuple[str, ...] = ()
    strings: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()


_TOOL_FLAGS = ("providerExecuted", "dynamic")

SPECS: dict[str, ChunkSpec] = {
    "text-start": ChunkSpec(("id",)),
    "text-delta": ChunkSpec(("id", "delta")),
    "text-end": ChunkSpec(("id",)),
    "reasoning-start": ChunkSpec(("id",)),
    "reasoning-delta": ChunkSpec(("id", "delta")),
    "reasoning-end": ChunkSpec(("id",)),
    "error": ChunkSpec(("errorText",)),
    "tool-input-start": ChunkSpec(
        ("toolCallId", "toolName"),
        ("title",),
        _TOOL_FLAGS,
        (("inputEncoding", ("json", "text")),),
    ),
    "tool-input-delta": ChunkSpec(("toolCallId", "inputTextDelta")),
    "tool-input-available": ChunkSpec(("toolCallId", "toolName"), ("title",), _TOOL_FLAGS),
    "tool-input-error": ChunkSpec(("toolCallId", "toolName", "errorText"), ("title",), _TOOL_FLAGS),
    "tool-approval-request": ChunkSpec(("approvalId", "toolCallId"), ("signature",)),
    "tool-output-available": ChunkSpec(("toolCallId",), (), (*_TOOL_FLAGS, "preliminary")),
    "tool-output-error": ChunkSpec(("toolCallId", "errorText"), (), _TOOL_FLAGS),
    "tool-output-denied": ChunkSpec(("toolCallId",)),
    "source-url": ChunkSpec(("sourceId", "url"), ("title",)),
    "source-document": ChunkSpec(("sourceId", "mediaType", "title"), ("filename",)),
    "file": ChunkSpec(("url", "mediaType")),
    "start-step": ChunkSpec(),
    "finish-step": ChunkSpec(),
    "start": ChunkSpec((), ("messageId",)),
    "finish": ChunkSpec(
        choices=(
            (
                "finishReason",
                ("stop", "length", "content-filter", "tool-calls", "error", "other"),
            ),
        )
    ),
    "abort": ChunkSpec((), ("reason",)),
    "message-metadata": ChunkSpec(),
}
"""Every chunk type but ``data-*``, with what it needs."""

_DATA = ChunkSpec((), ("id",), ("transient",))
"""A ``data-*`` part: any name after the prefix."""


def check_chunk(chunk: object) -> tuple[str, bytes]:
    """The type of a chunk the AI SDK reads, and its compact JSON; else InvalidChunk."""
    if not isinstance(chunk, Mapping):
        raise InvalidChunk(
            f"a UI message chunk is a JSON object (a Mapping), not {type(chunk).__name__}"
        )
    kind = chunk.get("type")
    if not isinstance(kind, str):
        raise InvalidChunk("a UI message chunk needs a string 'type'")
    spec = SPECS.get(kind)
    if spec is None:
        if not kind.startswith("data-") or kind == "data-":
            raise InvalidChunk(
                f"{kind[:80]!r} is not a UI message chunk type (nor data-<name>): "
                f"the AI SDK reads {', '.join(sorted(SPECS))} and data-*"
            )
        spec = _DATA
    for name in spec.required:
        if not isinstance(chunk.get(name), str):
            raise InvalidChunk(f"a {kind!r} chunk needs a string {name!r}")
    _check_optional(kind, chunk, spec)
    if "providerMetadata" in chunk and not _is_metadata(chunk["providerMetadata"]):
        raise InvalidChunk(f"a {kind!r} chunk's 'providerMetadata' is an object of objects")
    return kind, encode(chunk)


def _check_optional(kind: str, chunk: Mapping[object, object], spec: ChunkSpec) -> None:
    for name in spec.strings:
        if name in chunk and not isinstance(chunk[name], str):
            raise InvalidChunk(f"a {kind!r} chunk's {name!r} is a string")
    for name in spec.booleans:
        if name in chunk and not isinstance(chunk[name], bool):
            raise InvalidChunk(f"a {kind!r} chunk's {name!r} is a boolean")
    for name, allowed in spec.choices:
        if name in chunk and chunk[name] not in allowed:
            raise InvalidChunk(f"a {kind!r} chunk's {name!r} is one of {', '.join(allowed)}")


def _is_metadata(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values())


def encode(value: object) -> bytes:
    """``value`` as compact JSON in UTF-8, if it is standard JSON; else InvalidChunk.

    Standard JSON: objects with string keys (``json`` would turn ``1`` into
    ``"1"`` silently), arrays, strings without lone surrogates, finite numbers,
    booleans and null, nested at most :data:`MAX_DEPTH` deep.
    """
    top = dict(value) if isinstance(value, Mapping) and not isinstance(value, dict) else value
    _check_structure(top)
    try:
        text = json.dumps(top, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidChunk(f"a UI message chunk must be standard JSON: {exc}") from None
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidChunk(
            f"a UI message chunk must be valid Unicode: a lone surrogate at position {exc.start}"
        ) from None


def _check_structure(value: object) -> None:
    """String keys only, and no deeper than MAX_DEPTH (walked level by level, no recursion)."""
    level: list[object] = [value]
    for _ in range(MAX_DEPTH + 1):
        following: list[object] = []
        for item in level:
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise InvalidChunk(
                            f"a UI message chunk has a key that is not a string: {key!r}"
                        )
                    if isinstance(child, dict | list | tuple):
                        following.append(child)
            elif isinstance(item, list | tuple):
                following.extend(child for child in item if isinstance(child, dict | list | tuple))
        if not following:
            return
        level = following
    raise InvalidChunk(f"a UI message chunk nests deeper than {MAX_DEPTH} objects and arrays")
