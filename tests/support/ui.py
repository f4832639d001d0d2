"""A UIWriter for tests of what feeds one (the adapters): it records every call."""

from __future__ import annotations

from collections.abc import Mapping


class Recorder:
    """A UIWriter that keeps every call: ("text", delta), ("reasoning", delta), chunk dicts."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str] | dict[str, object]] = []

    @property
    def message_id(self) -> str:
        return "msg-1"

    async def text(self, delta: str) -> None:
        self.calls.append(("text", delta))

    async def reasoning(self, delta: str) -> None:
        self.calls.append(("reasoning", delta))

    async def write(self, chunk: Mapping[str, object]) -> None:
        self.calls.append(dict(chunk))

    def chunks(self, kind: str) -> list[dict[str, object]]:
        return [c for c in self.calls if isinstance(c, dict) and c["type"] == kind]
