"""The parameters of each benchmark, declared once, and the texts its streams carry.

Each config field that the command line sets carries its option (:func:`option`:
help, range, default), from which :mod:`pts.bench.commands` builds the
``pts bench`` flags, so a parameter is written in one place. The answers are
deterministic, so the load side knows the exact bytes a server must deliver.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import click

MAX_TOKENS = 1_000_000
"""Most tokens per answer of ``pts bench driven``."""
MAX_PACE = 1
MAX_STREAM_TOKENS = 100_000
"""Most tokens per stream of ``pts bench fanout``."""
MAX_STREAMS = 1_000
SERVERS = ("both", "pts", "reference")
PTS_WORKERS = ("1", "2", "both")
REFERENCE_STORES = ("memory", "file", "both")
TIMEOUT_HELP = "Give up after this many seconds overall."
SECONDS = click.FloatRange(min=0, min_open=True)


@dataclass(frozen=True, slots=True)
class Option:
    """How a config field appears on the command line (``--field-name``)."""

    help: str
    type: Any = None
    flag: str | None = None
    """Another flag name (its value goes through ``convert`` into the field)."""
    flag_default: Any = None
    """The flag's default, when it is not the field's (with ``convert``)."""
    convert: Callable[[Any], Any] | None = None
    metavar: str | None = None


def option(default: Any, help: str, type: Any = None, **more: Any) -> Any:
    """A config field with its command-line option."""
    return field(default=default, metadata={"cli": Option(help, type, **more)})


def check_ranges(config: Any) -> None:
    """Every field with an option within its flag's range or choices (ValueError if not)."""
    for f in fields(config):
        spec = f.metadata.get("cli")
        if spec is None or spec.convert is not None:
            continue
        if isinstance(spec.type, click.IntRange | click.FloatRange | click.Choice):
            try:
                spec.type.convert(getattr(config, f.name), None, None)
            except click.BadParameter as exc:
                raise ValueError(f"{f.name}: {exc.message}") from None


def reported_parameters(config: Any) -> dict[str, Any]:
    """A config's parameters as reported (no URL: it may hold a password)."""
    params = asdict(config)
    del params["dsn"]
    return params


# -- pts bench driven --------------------------------------------------------------------

_TEXT = (
    "the model writes an answer one token at a time while the user waits and "
    "every word goes to the browser at once and to postgres in whole sentences "
    "so a reload or a second viewer finds the text where it was left off without "
    "paying for it twice or slowing down the stream"
)
_WORDS = tuple(_TEXT.split(" "))


def answer_tokens(tokens: int, sentences: int) -> tuple[str, ...]:
    """The driven benchmark's answer: ``tokens`` tokens forming ``sentences`` sentences.

    Sentences are as even as possible; the last token of each ends with
    ``". "``, no other token contains a sentence end.
    """
    if not 1 <= tokens <= MAX_TOKENS:
        raise ValueError(f"tokens must be between 1 and {MAX_TOKENS}")
    if not 1 <= sentences <= tokens:
        raise ValueError("sentences must be between 1 and tokens")
    return _answer_tokens(tokens, sentences)


@functools.lru_cache(maxsize=16)
def _answer_tokens(tokens: int, sentences: int) -> tuple[str, ...]:
    ends = {(k + 1) * tokens // sentences - 1 for k in range(sentences)}
    out: list[str] = []
    first = True
    for i in range(tokens):
        word = _WORDS[(i * 7) % len(_WORDS)]
        token = word.capitalize() if first else " " + word
        first = i in ends
        out.append(token + ". " if first else token)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DrivenConfig:
    """The parameters of one run of ``pts bench driven``."""

    dsn: str
    tokens: int = option(1000, "Tokens per answer.", click.IntRange(1, MAX_TOKENS))
    sentences: int = option(
        40, "Sentences the tokens form (at most --tokens).", click.IntRange(min=1)
    )
    requests: int = option(
        50, "Sequential requests of each kind (bare, pts), interleaved.", click.IntRange(min=1)
    )
    naive_requests: int = option(
        10,
        "Sequential naive answers (a commit per token), spread over the run.",
        click.IntRange(min=0),
    )
    paced_requests: int = option(
        3,
        "Sequential pts answers at LLM pace, for writes per answer (0: none); "
        "as many stream_ui answers.",
        click.IntRange(min=0),
    )
    pace: float = option(
        0.002,
        "Seconds the paced generator sleeps between tokens.",
        click.FloatRange(0, MAX_PACE, min_open=True),
    )
    ui_requests: int = option(
        20,
        "Sequential requests of each UI kind (bare SSE, stream_ui), interleaved (0: none).",
        click.IntRange(min=0),
    )
    streams: int = option(200, "Concurrent streams per batch.", click.IntRange(min=1))
    rounds: int = option(3, "Concurrent batches of each kind, alternating.", click.IntRange(min=1))
    warmup: int = option(3, "Unmeasured sequential rounds first.", click.IntRange(min=0))
    timeout: float = option(300.0, TIMEOUT_HELP, SECONDS)

    def __post_init__(self) -> None:
        answer_tokens(self.tokens, self.sentences)  # validates both
        check_ranges(self)
        if self.naive_requests > self.requests:
            raise ValueError("naive_requests must be between 0 and requests")

    def query(self) -> str:
        """The query string naming the answer."""
        return f"?tokens={self.tokens}&sentences={self.sentences}"

    parameters = reported_parameters


# -- pts bench fanout --------------------------------------------------------------------

# ~4-5 characters a token, with a few multi-byte characters, so byte offsets
# (SSE ids, NOTIFY sizes) differ from character offsets.
_STREAM_TEXT = (
    "the model writes an answer one token at a time while users wait and every "
    "word reaches each subscriber of the stream through one read per flush café "
    "naïve résumé so nobody polls and nothing is lost or sent twice über façade"
)
_VOCABULARY = tuple(_STREAM_TEXT.split(" "))


def stream_tokens(index: int, sentences: int, tokens_per_sentence: int) -> tuple[str, ...]:
    """Fan-out stream ``index``'s text: ``sentences`` sentences of ``tokens_per_sentence`` tokens.

    Each sentence's last token ends with ``". "``; no other token has a
    sentence end. Deterministic, and different for every stream.
    """
    if sentences < 1 or tokens_per_sentence < 1:
        raise ValueError("sentences and tokens_per_sentence must be at least 1")
    if sentences * tokens_per_sentence > MAX_STREAM_TOKENS:
        raise ValueError(f"at most {MAX_STREAM_TOKENS} tokens per stream")
    out: list[str] = []
    n = len(_VOCABULARY)
    for s in range(sentences):
        for t in range(tokens_per_sentence):
            i = s * tokens_per_sentence + t
            word = _VOCABULARY[(i * 7 + index * 11) % n]
            token = word.capitalize() if t == 0 else " " + word
            out.append(token + ". " if t == tokens_per_sentence - 1 else token)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    """The parameters of one run of ``pts bench fanout``."""

    dsn: str
    streams: int = option(
        10, "Streams produced at once, in the server process.", click.IntRange(1, MAX_STREAMS)
    )
    subscribers: int = option(
        1000,
        "SSE subscribers of the main run, spread evenly over the streams.",
        click.IntRange(min=1),
    )
    sentences: int = option(40, "Sentences per stream.", click.IntRange(1, 4000))
    tokens_per_sentence: int = option(
        25, "Tokens per sentence (~5 bytes each).", click.IntRange(1, 1000)
    )
    pace: float = option(
        0.02,
        "Seconds between two tokens of a stream (each gap 0.5-1.5x this).",
        click.FloatRange(0, 10),
    )
    max_subscribers: int = option(
        16_000,
        "Scale up to this many subscribers; <= --subscribers: no scaling.",
        click.IntRange(min=0),
    )
    timeout: float = option(
        900.0, "Give up after this many seconds overall (scaling stops in time).", SECONDS
    )
    seed: int = 0

    def __post_init__(self) -> None:
        stream_tokens(0, self.sentences, self.tokens_per_sentence)  # validates both
        check_ranges(self)
        if self.subscribers < self.streams:
            raise ValueError("subscribers must be at least streams (one per stream)")

    @property
    def tokens(self) -> int:
        return self.sentences * self.tokens_per_sentence

    @property
    def production_s(self) -> float:
        """How long producing takes, about (the mean gap is ``pace``)."""
        return (self.tokens - 1 + self.tokens_per_sentence / 2) * self.pace

    @property
    def scaling(self) -> bool:
        return self.max_subscribers > self.subscribers

    parameters = reported_parameters


# -- pts bench protocol ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    """The parameters of one run of ``pts bench protocol``."""

    dsn: str | None = None
    """The Postgres server pts's bench database is created on (needed with pts)."""
    servers: str = option("both", "Which servers to measure.", click.Choice(SERVERS))
    pts_workers: str = option(
        "1",
        "Worker processes of pts serve: 1, 2, or both (each its own server and database, "
        "measured side by side).",
        click.Choice(PTS_WORKERS),
    )
    reference_store: str = option(
        "memory",
        "The reference server's store: in memory (its default) or files (fdatasync per append).",
        click.Choice(REFERENCE_STORES),
    )
    reference_dir: str | None = option(
        None,
        "A directory with node_modules/@durable-streams/server "
        "(default: the checkout's tests/, after `npm ci --prefix tests`).",
        click.Path(file_okay=False, exists=True),
    )
    reference_url: str | None = option(
        None,
        "Measure the Durable Streams server at this URL as the reference (e.g. "
        "http://127.0.0.1:4437) instead of starting one from the checkout.",
        metavar="URL",
    )
    appends: int = option(1000, "Sequential appends measured.", click.IntRange(1, 1_000_000))
    warmup: int = option(50, "Unmeasured sequential appends first.", click.IntRange(0, 100_000))
    concurrency: int = option(
        75, "Connections (and streams) appending at once.", click.IntRange(1, 2000)
    )
    concurrent_appends: int = option(
        100, "Appends per connection in the throughput run.", click.IntRange(1, 100_000)
    )
    catchup_bytes: int = option(
        5_000_000,
        "Size of the stream read from the start (MB = 10^6 bytes).",
        click.FloatRange(0.001, 1000),
        flag="catchup_mb",
        flag_default=5.0,
        convert=lambda mb: round(mb * 1_000_000),
    )
    catchup_chunk: int = 65_536
    catchup_reads: int = option(10, "Times it is read.", click.IntRange(1, 1000))
    sse_events: int = option(
        200, "Appends timed to their SSE data event.", click.IntRange(1, 100_000)
    )
    sse_connects: int = option(
        20, "SSE connections timed to their first control event.", click.IntRange(1, 10_000)
    )
    payload: int = option(100, "Bytes per append.", click.IntRange(24, 1_000_000))
    """Bytes per append (sequential, throughput, SSE)."""
    timeout: float = option(600.0, TIMEOUT_HELP, SECONDS)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.reference_url is not None and self.reference_store != "memory":
            raise ValueError("reference_store is for a started reference, not reference_url")
        if any(t.startswith("pts") for t in self.targets) and self.dsn is None:
            raise ValueError("measuring pts needs dsn (the Postgres to create its database on)")
        if self.catchup_bytes < 1 or self.catchup_chunk < 1:
            raise ValueError("catchup_bytes and catchup_chunk must be at least 1")

    @property
    def targets(self) -> list[str]:
        """The servers measured, in order: ``pts`` (1 worker), ``pts-2`` (2 workers),
        then ``reference-url`` (at ``reference_url``) or the started ``reference``,
        ``reference-file``."""
        names = []
        if self.servers in ("both", "pts"):
            names += ["pts"] if self.pts_workers in ("1", "both") else []
            names += ["pts-2"] if self.pts_workers in ("2", "both") else []
        if self.servers in ("both", "reference"):
            if self.reference_url is not None:
                names.append("reference-url")
            else:
                if self.reference_store in ("memory", "both"):
                    names.append("reference")
                if self.reference_store in ("file", "both"):
                    names.append("reference-file")
        return names

    parameters = reported_parameters


# -- pts bench growth --------------------------------------------------------------------


def counts(text: str | tuple[int, ...]) -> tuple[int, ...]:
    """``"10,1000"`` as ``(10, 1000)``: ascending counts of at least 1 (ValueError if not)."""
    try:
        values = tuple(int(v) for v in text.split(",")) if isinstance(text, str) else text
    except ValueError:
        values = ()
    if not values or values[0] < 1 or list(values) != sorted(set(values)):
        raise ValueError(f"{text!r}: give ascending counts of at least 1, comma separated")
    return values


def _counts(default: str, help: str) -> Any:
    return option(
        counts(default), help, str, flag_default=default, convert=counts, metavar="N,N,..."
    )


@dataclass(frozen=True, slots=True)
class GrowthConfig:
    """The parameters of one run of ``pts bench growth``."""

    dsn: str
    stream_counts: tuple[int, ...] = _counts(
        "10,1000,10000", "Streams the appends are spread over, one level each (cumulative)."
    )
    appends: int = option(
        3000, "Appends per level at --concurrency connections.", click.IntRange(1, 1_000_000)
    )
    sequential_appends: int = option(
        300, "Sequential appends per level (one connection).", click.IntRange(1, 100_000)
    )
    concurrency: int = option(75, "Connections appending at once.", click.IntRange(1, 2000))
    stream_appends: tuple[int, ...] = _counts(
        "1000,10000,100000", "Appends one stream grows to, one stream per level."
    )
    table_rows: tuple[int, ...] = _counts(
        "10,1000000", "Chunk rows in the table, the first all the measured stream's own."
    )
    tail_reads: int = option(200, "Tail reads timed per measurement.", click.IntRange(1, 100_000))
    catchup_reads: int = option(5, "Catch-up reads timed per measurement.", click.IntRange(1, 1000))
    payload: int = option(100, "Bytes per append.", click.IntRange(24, 100_000))
    timeout: float = option(900.0, TIMEOUT_HELP, SECONDS)

    def __post_init__(self) -> None:
        check_ranges(self)
        for name in ("stream_counts", "stream_appends", "table_rows"):
            counts(getattr(self, name))
        if self.stream_counts[-1] > 1_000_000 or self.table_rows[-1] > 100_000_000:
            raise ValueError("at most 1,000,000 streams and 100,000,000 table rows")
        if self.stream_appends[-1] * self.payload > 1_000_000_000:
            raise ValueError("a stream of at most 1 GB (stream_appends x payload)")

    parameters = reported_parameters
