"""When buffered text is persisted: ``FlushPolicy``."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A sentence ends at . ! ? (possibly followed by closing quotes or brackets)
# once whitespace follows, so "3.14", "e.g.x" or "a.b()" in code do not end
# one; at the CJK full stops 。！？ at once (CJK text has no spaces); and at a
# newline.
_SENTENCE_END = re.compile(r"""[.!?]["'”’»)\]]*\s|[。！？\n]""")


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """Decides when a stream's buffered text is written to Postgres.

    Text is written at the last sentence end in the buffer, or all of it when
    the buffer reaches ``max_bytes`` or its oldest byte has waited
    ``max_delay`` seconds, whichever comes first; and once more at the end.
    So an answer of ~40 sentences costs ~40 writes, not one per token, and
    text without punctuation still appears within ``max_delay``.
    """

    max_bytes: int = 4096
    max_delay: float = 0.25

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("FlushPolicy.max_bytes must be at least 1")
        if self.max_delay < 0:
            raise ValueError("FlushPolicy.max_delay must not be negative")

    def sentence_cut(self, buffer: str) -> int:
        """Length of the prefix of ``buffer`` that ends at its last sentence end (0 if none)."""
        cut = 0
        for match in _SENTENCE_END.finditer(buffer):
            cut = match.end()
        return cut
