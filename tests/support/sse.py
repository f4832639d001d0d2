"""A minimal SSE client for tests: parses the event stream as the spec says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass
class Event:
    event: str
    data: str
    id: str | None


async def events(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    content_type: str | None = None,
) -> AsyncIterator[Event | str]:
    """Yield each event, and each comment line as a plain string (``": keep-alive"``).

    With ``content_type``, the response's Content-Type must be exactly that.
    """
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        if content_type is not None:
            assert response.headers["content-type"] == content_type
        event: str = "message"
        data: list[str] = []
        event_id: str | None = None
        async for line in response.aiter_lines():
            if line == "":
                if data:
                    yield Event(event, "\n".join(data), event_id)
                event, data = "message", []
                continue
            if line.startswith(":"):
                yield line
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value


async def collect(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    content_type: str | None = None,
) -> list[Event]:
    """Every event until the server ends the stream."""
    stream = events(client, url, headers, content_type=content_type)
    return [e async for e in stream if isinstance(e, Event)]
