"""What a UI message stream persists, and when: chunks at once, deltas merged by sentence.

Each chunk is stored as a Durable Streams JSON message (compact JSON and a
comma), so the stream reads as a JSON array at ``/v1/stream/pts/{id}``.
Consecutive ``text-delta`` (or ``reasoning-delta``) chunks of one part are
merged into one, cut on sentence boundaries by the component's
:class:`~pts.flush.FlushPolicy` exactly as text is; any other chunk first
closes the merged delta, then is due at once. Replayed, the stored chunks
rebuild the message the driving client saw.
"""

from __future__ import annotations

from json.encoder import encode_basestring

from pts.flush import FlushPolicy, TextBuffer

__all__ = ["UIBuffer"]


class UIBuffer:
    """A :class:`~pts.flush.FlushBuffer` of UI message chunks, for the stream's Flusher."""

    __slots__ = ("_delta", "_delta_head", "_done", "_done_at", "_done_bytes", "_head_bytes")

    def __init__(self) -> None:
        self._done: list[bytes] = []  # whole messages, each with its comma, in order
        self._done_bytes = 0
        self._done_at: float | None = None
        self._delta = TextBuffer()  # the text of the delta being merged (after _done)
        self._delta_head = b""  # its message up to the delta string: {"type":..,"id":..,"delta":
        self._head_bytes = 0

    @property
    def nbytes(self) -> int:
        pending = self._delta.nbytes
        return self._done_bytes + (pending + self._head_bytes + 4 if pending else 0)

    @property
    def oldest(self) -> float | None:
        times = [t for t in (self._done_at, self._delta.oldest) if t is not None]
        return min(times) if times else None

    def add(self, message: bytes, now: float) -> None:
        """A chunk that is not merged (``message`` is its compact JSON): due at once."""
        self._close_delta()
        self._append(message + b",", now)

    def add_delta(self, head: bytes, delta: str, now: float) -> None:
        """A delta to merge: ``head`` is its message up to the delta's string
        (``{"type":"text-delta","id":"text-1","delta":``), which names its part."""
        if head != self._delta_head:
            self._close_delta()
            self._delta_head = head
            self._head_bytes = len(head)
        self._delta.write(delta, len(delta.encode()), now)

    def take_due(self, policy: FlushPolicy, now: float) -> bytes:
        out = self._take_done()
        piece = self._delta.take_due(policy, now)
        return out + self._wrap(piece) if piece else out

    def take_all(self) -> bytes:
        self._close_delta()
        return self._take_done()

    def _close_delta(self) -> None:
        """The merged delta ends (another chunk follows it): it joins the whole messages."""
        oldest = self._delta.oldest
        piece = self._delta.take_all()
        if piece:
            self._append(self._wrap(piece), now=oldest if oldest is not None else 0.0)

    def _wrap(self, piece: bytes) -> bytes:
        return self._delta_head + encode_basestring(piece.decode()).encode() + b"},"

    def _append(self, message: bytes, now: float) -> None:
        self._done.append(message)
        self._done_bytes += len(message)
        if self._done_at is None:
            self._done_at = now

    def _take_done(self) -> bytes:
        if not self._done:
            return b""
        out = b"".join(self._done)
        self._done.clear()
        self._done_bytes = 0
        self._done_at = None
        return out
