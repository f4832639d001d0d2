"""The parameters of ``pts bench cluster``, declared as pts.bench.config declares the others."""

from __future__ import annotations

from dataclasses import dataclass

import click

from pts.bench.config import (
    SECONDS,
    TIMEOUT_HELP,
    check_ranges,
    option,
    reported_parameters,
    stream_tokens,
)

__all__ = ["ClusterConfig"]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The parameters of one run of ``pts bench cluster``."""

    dsn: str
    nodes: int = option(4, "pts processes on the one database (3 or more).", click.IntRange(3, 20))
    streams_per_node: int = option(
        3, "Answers each live node drives per phase.", click.IntRange(1, 100)
    )
    subscribers_per_stream: int = option(
        2, "SSE subscribers per answer, on the other nodes.", click.IntRange(1, 100)
    )
    sentences: int = option(20, "Sentences per answer.", click.IntRange(1, 4000))
    tokens_per_sentence: int = option(
        10, "Tokens per sentence (~5 bytes each).", click.IntRange(1, 1000)
    )
    pace: float = option(
        0.02,
        "Seconds between two tokens of an answer (each gap 0.5-1.5x this).",
        click.FloatRange(0, 10),
    )
    stale_after: float = option(
        3.0, "The nodes' stale_after: a killed node's answers time out after it.", SECONDS
    )
    timeout: float = option(600.0, TIMEOUT_HELP, SECONDS)
    seed: int = 0

    def __post_init__(self) -> None:
        stream_tokens(0, self.sentences, self.tokens_per_sentence)  # validates both
        check_ranges(self)

    @property
    def production_s(self) -> float:
        """About how long one answer takes to produce (seconds)."""
        return self.sentences * self.tokens_per_sentence * self.pace

    parameters = reported_parameters
