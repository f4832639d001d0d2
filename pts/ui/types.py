"""The contract between pts and an app's UI-message generation."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeAlias

from litestar import Request

AnyRequest: TypeAlias = "Request[Any, Any, Any]"


class UIWriter(Protocol):
    """What ``generate(request, stream_id, ui)`` writes an answer with.

    pts emits ``start``, the part boundaries (``text-start``/``text-end``,
    ``reasoning-start``/``reasoning-end``), ``finish`` (or ``error``/``abort``)
    and ``[DONE]`` unless the app wrote them itself.
    """

    @property
    def message_id(self) -> str:
        """The id of the assistant message being written (the ``start`` chunk's)."""
        ...

    async def text(self, delta: str) -> None:
        """Append ``delta`` to the current text part (opening one if needed)."""
        ...

    async def reasoning(self, delta: str) -> None:
        """Append ``delta`` to the current reasoning part (opening one if needed)."""
        ...

    async def write(self, chunk: Mapping[str, object]) -> None:
        """Write any other UI message chunk (tool calls and results, sources, files,
        ``data-*`` parts, ``start`` metadata ...); raises InvalidInput if it is not one
        (:class:`~pts.errors.InvalidChunk`, saying why)."""
        ...


GenerateUI: TypeAlias = Callable[[AnyRequest, uuid.UUID, UIWriter], Awaitable[None]]
"""An app's UI-message generation: ``async def generate(request, stream_id, ui)``."""
