"""The UIWriter ``generate`` writes with: part boundaries, ``start`` and the last words.

:class:`UIStreamWriter` keeps the protocol's order whatever the app writes:
``start`` first (the app's own, if it writes one first), ``text-start`` /
``text-end`` (and ``reasoning-*``) around the parts that :meth:`text` and
:meth:`reasoning` open, with one id per part, an open part closed before any
other chunk, and the end (``finish``, ``error`` or ``abort``) once. It never
repeats a boundary the app wrote itself. Where the chunks go is the
:class:`Sink`'s business (the drive: the client at once, the buffer beside).
"""

from __future__ import annotations

from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Protocol

from pts.errors import InvalidChunk
from pts.models import StreamStatus
from pts.ui.chunks import check_chunk, encode

__all__ = ["Sink", "UIStreamWriter", "delta_head"]

_MERGEABLE = frozenset({"type", "id", "delta"})


class Sink(Protocol):
    """Where a :class:`UIStreamWriter`'s chunks go."""

    def put(self, message: bytes, head: bytes | None, delta: str) -> None:
        """Send and store one chunk (``message``: its compact JSON). A delta to merge
        comes with its ``head`` (see :func:`delta_head`) and its text. May raise
        (StreamClosed, StreamTooLarge ...): then nothing of the chunk went anywhere."""
        ...

    async def pace(self) -> None:
        """Let the response and the flusher run (called after each chunk)."""
        ...


def delta_head(kind: str, part_id: str) -> bytes:
    """The compact JSON of a ``{kind}-delta`` chunk of part ``part_id`` up to its text."""
    return b'{"type":"' + kind.encode() + b'-delta","id":' + encode(part_id) + b',"delta":'


class UIStreamWriter:
    """The :class:`~pts.ui.types.UIWriter` of one answer (see the module docstring)."""

    def __init__(self, message_id: str, sink: Sink) -> None:
        self._message_id = message_id
        self._sink = sink
        self._started = False
        self._ended = False  # a finish or abort was written
        self._open: dict[str, str] = {}  # open parts: id -> "text" | "reasoning"
        self._closed: set[str] = set()  # parts pts closed: the app's own end of one is dropped
        self._current: tuple[str, str, bytes] | None = None  # pts's part: kind, id, delta head
        self._parts = 0

    @property
    def message_id(self) -> str:
        """The id of the assistant message (the ``start`` chunk's)."""
        return self._message_id

    async def text(self, delta: str) -> None:
        """Append ``delta`` to the current text part (opening one if needed)."""
        await self._delta("text", delta)

    async def reasoning(self, delta: str) -> None:
        """Append ``delta`` to the current reasoning part (opening one if needed)."""
        await self._delta("reasoning", delta)

    async def write(self, chunk: Mapping[str, object]) -> None:
        """Write any UI message chunk; raises InvalidChunk for one the AI SDK would refuse."""
        kind, message = check_chunk(chunk)
        if kind == "start":
            self._start_chunk(chunk, message)
        elif kind in ("text-start", "reasoning-start"):
            self._begin()
            self._close_current()
            part_id = str(chunk["id"])
            self._put(message)
            self._open[part_id] = kind.removesuffix("-start")
        elif kind in ("text-delta", "reasoning-delta", "text-end", "reasoning-end"):
            if not self._part_chunk(kind, chunk, message):
                return
        else:
            self._begin()
            if kind in ("finish-step", "finish", "abort"):
                self._close_all()  # the client forgets its open parts at these
            else:
                self._close_current()
            self._put(message)
            if kind in ("finish", "abort"):
                self._ended = True
        await self._sink.pace()

    def close(self, status: StreamStatus, reason: str | None) -> list[bytes]:
        """The last words once generation ended with ``status``: ``start`` if none was
        written, the open parts' ends, and ``finish``, ``error`` or ``abort`` (unless the
        app wrote a finish or an abort). Returns the messages; nothing is put."""
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(encode({"type": "start", "messageId": self._message_id}))
        out.extend(self._ends(list(self._open.items())))
        self._open.clear()
        self._current = None
        if self._ended:
            return out
        self._ended = True
        if status is StreamStatus.DONE:
            out.append(b'{"type":"finish"}')
        elif status is StreamStatus.ABORTED:
            out.append(encode({"type": "abort", **({"reason": reason} if reason else {})}))
        else:
            text = reason or f"the answer ended: {status}"
            out.append(encode({"type": "error", "errorText": text}))
        return out

    # -- inside ------------------------------------------------------------------

    async def _delta(self, kind: str, delta: str) -> None:
        if not isinstance(delta, str):
            raise InvalidChunk(f"a {kind} delta is a string, not {type(delta).__name__}")
        if not delta:
            return
        try:
            text = encode_basestring(delta).encode()  # json.dumps(delta), without its overhead
        except UnicodeEncodeError as exc:
            raise InvalidChunk(
                f"a {kind} delta must be valid Unicode: a lone surrogate at position {exc.start}"
            ) from None
        self._begin()
        current = self._current
        if current is None or current[0] != kind or current[1] not in self._open:
            self._close_current()
            self._parts += 1
            part_id = f"{kind}-{self._parts}"
            self._put(b'{"type":"' + kind.encode() + b'-start","id":"' + part_id.encode() + b'"}')
            self._open[part_id] = kind
            current = self._current = (kind, part_id, delta_head(kind, part_id))
        head = current[2]
        self._sink.put(head + text + b"}", head, delta)
        await self._sink.pace()

    def _start_chunk(self, chunk: Mapping[str, object], message: bytes) -> None:
        if not self._started:
            self._started = True
            given = chunk.get("messageId")
            if isinstance(given, str):
                self._message_id = given
            else:
                message = encode({**chunk, "messageId": self._message_id})
        self._put(message)

    def _part_chunk(self, kind: str, chunk: Mapping[str, object], message: bytes) -> bool:
        """An app's delta or end of a part: checked against the open parts. False: dropped."""
        part_id = str(chunk["id"])
        part_kind, _, edge = kind.partition("-")
        if self._open.get(part_id) != part_kind:
            if edge == "end" and part_id in self._closed:
                return False  # pts closed it already (before another chunk): not twice
            raise InvalidChunk(
                f"a {kind!r} chunk for part {part_id!r}, which is not an open {part_kind} part: "
                f"write {part_kind}-start first"
            )
        self._begin()
        current = self._current
        if current is not None and current[1] != part_id:
            self._close_current()
        if edge == "end":
            del self._open[part_id]
            self._put(message)
        elif set(chunk) == _MERGEABLE:
            head = delta_head(part_kind, part_id)
            self._sink.put(message, head, str(chunk["delta"]))
        else:
            self._put(message)  # a delta with more fields (providerMetadata): stored as is
        return True

    def _begin(self) -> None:
        if not self._started:
            self._started = True
            self._put(encode({"type": "start", "messageId": self._message_id}))

    def _close_current(self) -> None:
        current, self._current = self._current, None
        if current is not None and current[1] in self._open:
            del self._open[current[1]]
            for message in self._ends([(current[1], current[0])]):
                self._put(message)

    def _close_all(self) -> None:
        parts = list(self._open.items())
        self._open.clear()
        self._current = None
        for message in self._ends(parts):
            self._put(message)

    def _ends(self, parts: list[tuple[str, str]]) -> list[bytes]:
        self._closed.update(part_id for part_id, _ in parts)
        return [encode({"type": f"{kind}-end", "id": part_id}) for part_id, kind in parts]

    def _put(self, message: bytes) -> None:
        self._sink.put(message, None, "")
