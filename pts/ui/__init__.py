"""AI SDK UI message streams: ``stream_ui`` and ``resume_ui`` (issue 13).

A UI-message stream is an ordinary pts stream of content type
``application/json`` whose messages are the AI SDK's UI message chunks
(``{"type": "text-delta", "id": ..., "delta": ...}`` ...). The driving client
gets every chunk at once as SSE (``data: {json}``, then ``data: [DONE]``);
text and reasoning deltas are merged and persisted on sentence boundaries,
every other chunk at once.
"""

from __future__ import annotations

from pts.errors import InvalidChunk, NotAUIStream
from pts.ui.types import GenerateUI, UIWriter

__all__ = ["GenerateUI", "InvalidChunk", "NotAUIStream", "UIWriter"]
