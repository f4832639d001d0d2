"""``POST {path}``: append, close (``Stream-Closed: true``) or both, in one transaction.

With ``Stream-Seq`` (writes in order) and idempotent producers (``Producer-Id``,
``-Epoch``, ``-Seq``). In steps: the headers are parsed and checked
(:func:`parse_append`), access is asked before the body is read, the body is
framed (:func:`frame_body`), the store appends, and its outcome becomes the
answer or the refusal (:func:`refusal`).
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.datastructures import Headers
from litestar.types import Send

from pts.errors import (
    AppendToClosed,
    BadRequest,
    ContentTypeMismatch,
    ProducerSeqGap,
    PTSError,
    StaleProducerEpoch,
    StreamDeleted,
    StreamDriven,
    StreamNotFound,
    StreamSeqConflict,
)
from pts.http.durable import wire
from pts.http.durable.context import Context, Target, is_true
from pts.http.durable.responses import AnyRequest, read_body, send_response
from pts.models import AppendOutcome, AppendResult, Producer

__all__ = ["AppendRequest", "frame_body", "parse_append", "post", "refusal"]


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """What a POST asks for, from its headers (checked before the body is read)."""

    producer: Producer | None
    close: bool
    stream_seq: str | None
    content_type: str | None


def parse_append(headers: Headers) -> AppendRequest:
    """The append request of a POST's headers; BadRequest for a malformed one."""
    parsed_producer = wire.parse_producer(headers)
    producer = None if parsed_producer is None else Producer(*parsed_producer)
    close = is_true(headers.get("stream-closed"))
    stream_seq = headers.get("stream-seq")
    if stream_seq is not None:
        if not stream_seq:
            raise BadRequest("Stream-Seq must not be empty")
        wire.check_name("Stream-Seq", stream_seq)
    return AppendRequest(
        producer=producer,
        close=close,
        stream_seq=stream_seq,
        content_type=headers.get("content-type"),
    )


async def post(ctx: Context, request: AnyRequest, target: Target, send: Send) -> None:
    """Append to (or close) the stream ``target`` names."""
    assert target.path is not None
    wanted = parse_append(request.headers)
    # Access before the body: a caller who may not append costs no body's worth of memory.
    # A hook that judges the stream costs one more query than the append itself.
    await ctx.access.check_before_lookup(request, "drive", lambda: ctx.find(target, touch=False))
    body = await read_body(request, ctx.settings.max_body_size)
    data = await frame_body(ctx, target, wanted, body)
    result = await ctx.pts.store.ds_append(
        target.path,
        data,
        media_type=wire.media_type(wanted.content_type),
        close=wanted.close,
        stream_seq=wanted.stream_seq,
        producer=wanted.producer,
    )
    headers: dict[str, str] = {"stream-next-offset": wire.format_offset(result.size)}
    if result.closed:
        headers["stream-closed"] = "true"
    outcome = result.outcome
    if outcome is not AppendOutcome.APPENDED and outcome is not AppendOutcome.DUPLICATE:
        raise refusal(result, wanted, target.path, headers)
    if outcome is AppendOutcome.APPENDED:
        ctx.pts.counters.protocol_appended(len(data))
    if wanted.producer is not None:
        headers["producer-epoch"] = str(result.epoch)
        headers["producer-seq"] = str(result.seq)
    # A producer's new data is acknowledged with 200; everything else is 204.
    appended = wanted.producer is not None and bool(body) and outcome is AppendOutcome.APPENDED
    await send_response(send, 200 if appended else 204, headers)


async def frame_body(ctx: Context, target: Target, wanted: AppendRequest, body: bytes) -> bytes:
    """The bytes to store for ``body``: a JSON body as one unit of messages, others as they are.

    BadRequest for no body without a close, a body without a Content-Type, or
    malformed JSON (a missing, closed or other-typed stream answers that first).
    """
    if not body and not wanted.close:
        raise BadRequest("an append needs a body (or Stream-Closed: true to close)")
    if body and not wanted.content_type:
        raise BadRequest("an append needs a Content-Type")
    if not body or not wire.is_json(wanted.content_type):
        return body
    try:
        return wire.frame_json(body, allow_empty=False)
    except BadRequest:
        await _check_writable(ctx, target, wanted.content_type)
        raise


async def _check_writable(ctx: Context, target: Target, content_type: str | None) -> None:
    stream = await ctx.find(target, touch=False)
    if stream.closed:
        raise AppendToClosed(
            "the stream is closed",
            {"stream-closed": "true", "stream-next-offset": wire.format_offset(stream.size)},
        )
    if wire.media_type(stream.content_type) != wire.media_type(content_type):
        raise ContentTypeMismatch("the Content-Type differs from the stream's")


def refusal(
    result: AppendResult, wanted: AppendRequest, path: str, headers: dict[str, str]
) -> PTSError:
    """The error that answers an append the store did not take (``headers``: the stream's own)."""
    outcome = result.outcome
    producer = wanted.producer
    if outcome is AppendOutcome.NOT_FOUND:
        return StreamNotFound(path)
    if outcome is AppendOutcome.GONE:
        return StreamDeleted(f"stream {path!r} was deleted (its forks still read it)")
    if outcome is AppendOutcome.DRIVEN:
        return StreamDriven("a pts driver is writing this stream")
    if outcome is AppendOutcome.CLOSED:
        return AppendToClosed("the stream is closed", headers)
    if outcome is AppendOutcome.CONTENT_TYPE:
        return ContentTypeMismatch("the Content-Type differs from the stream's")
    if outcome is AppendOutcome.STALE_EPOCH:
        return StaleProducerEpoch(
            f"producer epoch {producer.epoch if producer else ''} is stale",
            {"producer-epoch": str(result.epoch)},
        )
    if outcome is AppendOutcome.BAD_EPOCH_SEQ:
        return BadRequest("a new producer epoch starts at Producer-Seq 0")
    if outcome is AppendOutcome.SEQ_GAP:
        return ProducerSeqGap(
            f"expected Producer-Seq {result.expected_seq}, got {result.seq}",
            {
                "producer-expected-seq": str(result.expected_seq),
                "producer-received-seq": str(result.seq),
            },
        )
    return StreamSeqConflict(f"Stream-Seq {wanted.stream_seq!r} is not after the last one")
