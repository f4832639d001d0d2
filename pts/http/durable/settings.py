"""The protocol app's own settings (the plugin passes its options on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ProtocolSettings"]


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    """How the Durable Streams app answers.

    :param long_poll_timeout: seconds a long-poll waits for data (positive).
    :param max_body_size: the largest request body accepted (413 above).
    :param cors_origins: which browser origins may read the responses: ``"*"``
        (any), a set of origins, or ``None`` (no CORS headers).
    """

    long_poll_timeout: float = 30.0
    max_body_size: int = 10 * 1024 * 1024
    cors_origins: frozenset[str] | Literal["*"] | None = "*"
