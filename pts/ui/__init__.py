"""AI SDK UI message streams: ``stream_ui`` and ``resume_ui`` (issue 13).

A UI-message stream is an ordinary pts stream of content type
``application/json`` whose messages are the AI SDK's UI message chunks
(``{"type": "text-delta", "id": ..., "delta": ...}`` ...). The driving client
gets every chunk at once as SSE (``data: {json}``, then ``data: [DONE]``);
text and reasoning deltas are merged and persisted on sentence boundaries,
every other chunk at once.

The modules:

- :mod:`pts.ui.types`: the contract (``UIWriter``, ``GenerateUI``);
- :mod:`pts.ui.chunks`: the chunk types the AI SDK reads, their checks, compact JSON;
- :mod:`pts.ui.writer`: ``UIStreamWriter``, the UIWriter (``start``, part boundaries, the end);
- :mod:`pts.ui.buffer`: ``UIBuffer``, what is persisted when (deltas merged per sentence);
- :mod:`pts.ui.drive`: the drive's sink and last words, the SSE response and its headers;
- :mod:`pts.ui.resume`: the resume's replay (whole messages, the end made up if missing).

``PersistentTextStreaming.stream_ui`` and ``resume_ui`` (in :mod:`pts.operations`) use them.
"""

from __future__ import annotations

from pts.errors import InvalidChunk, NotAUIStream
from pts.ui.types import GenerateUI, UIWriter

__all__ = ["GenerateUI", "InvalidChunk", "NotAUIStream", "UIWriter"]
