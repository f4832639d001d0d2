"""What every protocol handler shares: the request's target, the stream lookup behind access.

:class:`Context` is the protocol app's state as its handlers see it (the
component, the mount, the access object, the settings); :class:`Target` is
what a request's path names. The handlers (:mod:`~pts.http.durable.create`,
:mod:`~pts.http.durable.append`, :mod:`~pts.http.durable.read`,
:mod:`~pts.http.durable.delete`) take both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from pts.errors import BadRequest, ReservedPath, StreamDeleted, StreamNotFound
from pts.http.access import Access, Action
from pts.http.durable import wire
from pts.http.durable.responses import AnyRequest
from pts.http.durable.settings import ProtocolSettings
from pts.models import StreamInfo

if TYPE_CHECKING:
    from pts.core import PersistentTextStreaming

__all__ = [
    "PTS_PREFIX",
    "RESERVED_PREFIX",
    "Context",
    "Target",
    "is_true",
    "query_params",
    "single",
]

RESERVED_PREFIX = "__ds/"
"""Paths the protocol keeps for itself (404 ``reserved``)."""
PTS_PREFIX = "pts/"
"""``pts/{id}``: a pts stream by its id, read-only."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a request's path names: a protocol path, or a pts stream by id."""

    path: str | None
    stream_id: uuid.UUID | None

    @property
    def read_only(self) -> bool:
        """A pts stream: written by its driver, never through the protocol."""
        return self.stream_id is not None

    @classmethod
    def parse(cls, raw: str) -> Target:
        """The target of a path below the mount; StreamNotFound or ReservedPath if none."""
        # Litestar hands a mounted app its path with a trailing slash added.
        path = wire.check_name("the stream path", raw.strip("/"))
        if not path:
            raise StreamNotFound("", "name a stream: /v1/stream/{path}")
        if path.startswith(RESERVED_PREFIX) or path == RESERVED_PREFIX.rstrip("/"):
            raise ReservedPath("paths under __ds/ are reserved by the protocol")
        if path.startswith(PTS_PREFIX):
            try:
                return cls(None, uuid.UUID(path[len(PTS_PREFIX) :]))
            except ValueError:
                raise StreamNotFound(
                    path[:100], f"{path[:100]!r}: pts/ is followed by a stream id"
                ) from None
        return cls(path, None)


@dataclass(frozen=True, slots=True)
class Context:
    """The protocol app as its handlers see it.

    :param pts: the component (open while the app serves).
    :param mount: the path the app is mounted at, without a trailing slash.
    :param access: who may do what (the same object as the plugin's routes use).
    :param settings: the protocol's own settings.
    """

    pts: PersistentTextStreaming
    mount: str
    access: Access
    settings: ProtocolSettings

    async def find(self, target: Target, *, touch: bool) -> StreamInfo:
        """The stream a request names; StreamNotFound (also expired), or StreamDeleted (410).

        ``touch`` renews a TTL (a read does, HEAD and writes do not).
        """
        found = await self.pts.store.ds_lookup(target.path, stream_id=target.stream_id, touch=touch)
        if found is not None and not found.expired and found.gone:
            raise StreamDeleted(f"stream {target.path!r} was deleted (its forks still read it)")
        if found is None or not found.exists:
            raise StreamNotFound(target.path or str(target.stream_id))
        return found.stream

    async def stream_for(
        self, request: AnyRequest, target: Target, action: Action, *, touch: bool
    ) -> StreamInfo:
        """The stream a request names, once the request may act on it (see :meth:`find`)."""
        return await self.access.stream_for(request, action, lambda: self.find(target, touch=touch))


def is_true(value: str | None) -> bool:
    """A protocol flag header (``Stream-Closed: true``)."""
    return value is not None and value.strip().lower() == "true"


def query_params(raw: bytes) -> dict[str, list[str]]:
    """A request's query string, every value of every name (as ``parse_qs`` reads it)."""
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        # keep_blank_values: `?offset=` must be an error, not absent.
        return parse_qs(text, keep_blank_values=True)
    # Nothing to unquote (the usual `offset=...&live=...`): parse_qs would only split
    # on `&` and on each pair's first `=`, dropping empty pairs. Done here, a read's
    # query costs a fifth of parse_qs's.
    query: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            query.setdefault(name, []).append(value)
    return query


def single(query: dict[str, list[str]], name: str) -> str | None:
    """The one value of ``name`` (None if absent); BadRequest if repeated or empty."""
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise BadRequest(f"give {name} once")
    if not values[0]:
        raise BadRequest(f"{name} must not be empty")
    return values[0]
