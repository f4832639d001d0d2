"""``Chunk.final``: the one test every live reader uses for "nothing follows"."""

from __future__ import annotations

from pts.live.buffer import Chunk
from pts.models import StreamStatus


def test_only_the_page_that_reaches_the_end_of_a_closed_stream_is_final() -> None:
    # A read made after the stream closed, in two pages: both say closed.
    first = Chunk(start=0, data=b"abc", size=6, status=StreamStatus.DONE, closed=True)
    last = Chunk(start=3, data=b"def", size=6, status=StreamStatus.DONE, closed=True)
    assert (first.final, last.final) == (False, True)
    # A stream that goes on is never at its end, however far a chunk reaches.
    live = Chunk(start=0, data=b"abcdef", size=6, status=StreamStatus.STREAMING, closed=False)
    assert not live.final
    # An empty chunk at the end of a closed stream (a status change only) is final.
    assert Chunk(start=6, data=b"", size=6, status=StreamStatus.ABORTED, closed=True).final
