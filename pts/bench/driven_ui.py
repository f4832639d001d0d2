"""``pts bench driven``'s UI-message row: ``pts.stream_ui()`` against a bare SSE response.

The same answer as the rest of the benchmark, each token one ``text-delta``
chunk of the AI SDK's UI message stream. The bare response is an SSE body of
the same chunks (``start``, ``text-start``, a ``text-delta`` per token,
``text-end``, ``finish``, ``data: [DONE]``) made by a Litestar ``Stream``
with no database; ``stream_ui`` writes them through pts (one ``ui.text`` per
token) and persists them, merged, on sentence boundaries. A response counts
as right when its ``text-delta`` chunks join to the answer and it ends with
``[DONE]``; a stream, when it ended ``done`` and its persisted chunks join to
the answer too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pts.bench.client import BenchError
from pts.bench.common import latency_table, ms, summarize, table, value_range
from pts.bench.probes import CommitClock
from pts.models import StreamStatus

__all__ = [
    "UI_HEADERS",
    "bare_ui_events",
    "persisted_text",
    "ui_check",
    "ui_lines",
    "ui_results",
    "ui_text",
]

UI_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
}
"""The headers of a UI message stream response (its media type: ``text/event-stream``)."""

TARGET_TTLB_RATIO = 1.05


def _event(chunk: Mapping[str, Any]) -> bytes:
    text = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


def bare_ui_events(tokens: Sequence[str]) -> Iterator[bytes]:
    """The SSE events of an answer whose text deltas are ``tokens``, each one encoded
    when it is asked for (as a model's chunks would be), in compact JSON as pts sends them."""
    text_id = "text-1"
    yield _event({"type": "start", "messageId": str(uuid.uuid4())})
    yield _event({"type": "text-start", "id": text_id})
    for token in tokens:
        yield _event({"type": "text-delta", "id": text_id, "delta": token})
    yield _event({"type": "text-end", "id": text_id})
    yield _event({"type": "finish"})
    yield b"data: [DONE]\n\n"


def ui_text(body: bytes) -> str | None:
    """The text a UI message stream body carries (its ``text-delta`` chunks joined),
    or None when it is not one that ended with ``[DONE]``."""
    deltas: list[str] = []
    done = False
    for event in body.decode("utf-8", "replace").split("\n\n"):
        for line in event.split("\n"):
            if not line.startswith("data:"):
                continue
            data = line[5:].removeprefix(" ")
            if data == "[DONE]":
                done = True
                continue
            try:
                chunk = json.loads(data)
            except ValueError:
                return None
            if isinstance(chunk, dict) and chunk.get("type") == "text-delta":
                deltas.append(str(chunk.get("delta", "")))
    return "".join(deltas) if done else None


def persisted_text(data: bytes) -> str | None:
    """The text of a UI stream's persisted chunks (``{...},{...},`` as pts stores JSON
    messages), or None when they do not parse."""
    try:
        chunks = json.loads("[" + data.decode().rstrip().removesuffix(",") + "]")
    except ValueError:
        return None
    return "".join(
        str(c.get("delta", ""))
        for c in chunks
        if isinstance(c, dict) and c.get("type") == "text-delta"
    )


def ui_results(
    samples: Sequence[Any],
    clock: CommitClock,
    rows: Mapping[uuid.UUID, tuple[int, int]],
    persisted: Mapping[uuid.UUID, bool],
    pace: float,
) -> dict[str, Any]:
    """The UI row's figures from its samples (:class:`pts.bench.driven_report.Sample`)."""

    def of(kind: str) -> list[Any]:
        return [s for s in samples if s.kind == kind]

    def timing(of_kind: Sequence[Any]) -> dict[str, Any]:
        return {
            "requests": len(of_kind),
            "ttfb_ms": summarize([s.ttfb for s in of_kind], 1000),
            "ttlb_ms": summarize([s.ttlb for s in of_kind], 1000),
        }

    def writes(of_kind: Sequence[Any]) -> dict[str, Any]:
        ids = [s.stream_id for s in of_kind if s.stream_id is not None]
        final = {i: clock.closed(i) for i in ids}
        commits = [sum(n.status != StreamStatus.PENDING for n in clock.notes[i]) for i in ids]
        return {
            "answers": len(ids),
            "commits": summarize(commits),
            "rows": summarize([rows.get(i, (0, 0))[0] for i in ids]),
            "persisted_bytes": summarize([rows.get(i, (0, 0))[1] for i in ids]),
            "done": sum(1 for i in ids if (n := final[i]) is not None and n.status == "done"),
            "rebuilt": sum(1 for i in ids if persisted.get(i)),
            "ttlb_ms": summarize([s.ttlb for s in of_kind], 1000),
        }

    bare, driven, paced = of("ui-bare"), of("ui"), of("ui-paced")
    bare_t, driven_t = timing(bare), timing(driven)
    ratio = driven_t["ttlb_ms"]["median"] / bare_t["ttlb_ms"]["median"] if bare and driven else None
    return {
        "bare_sse": bare_t,
        "stream_ui": driven_t,
        "ttlb_ratio": ratio,
        "targets": {
            "ttlb_ratio_max": TARGET_TTLB_RATIO,
            "ttlb_met": ratio is not None and ratio <= TARGET_TTLB_RATIO,
        },
        "writes": {
            "stream_ui": writes(driven),
            "stream_ui_paced": {**writes(paced), "pace_s": pace},
        },
        "checks": {
            "responses": len(samples),
            "body_mismatches": sum(1 for s in samples if not s.body_ok),
        },
    }


def ui_check(ui: Mapping[str, Any]) -> None:
    """Refuse UI figures measured on wrong answers."""
    if ui["checks"]["body_mismatches"]:
        raise BenchError(
            f"UI row: {ui['checks']['body_mismatches']} response(s) did not carry the answer"
        )
    for name, section in ui["writes"].items():
        if section["answers"] and not (section["done"] == section["rebuilt"] == section["answers"]):
            raise BenchError(f"UI row, {name}: not every answer was persisted whole and done")


def ui_lines(ui: Mapping[str, Any], requests: int) -> list[str]:
    """The UI row's part of the report."""
    if not ui["checks"]["responses"]:
        return []
    lines = [
        "",
        f"UI message stream ({requests} requests each, one at a time, interleaved; "
        "the same chunks: a text-delta per token)",
    ]
    lines += latency_table([("bare SSE", ui["bare_sse"]), ("stream_ui", ui["stream_ui"])])
    targets = ui["targets"]
    lines.append(
        f"  TTLB stream_ui/bare SSE: {ui['ttlb_ratio']:.3f} (target <= "
        f"{targets['ttlb_ratio_max']}: {'met' if targets['ttlb_met'] else 'NOT met'})"
    )
    rows = []
    for label, key in (("no sleeps", "stream_ui"), ("paced", "stream_ui_paced")):
        w = ui["writes"][key]
        if not w["answers"]:
            continue
        if key == "stream_ui_paced":
            label = f"paced {w['pace_s'] * 1000:g} ms/token"
        rows.append(
            [
                f"stream_ui, {label} ({w['answers']} answers)",
                value_range(w["commits"]),
                value_range(w["rows"]),
                ms(w["ttlb_ms"]["median"]),
            ]
        )
    lines += ["  writes per answer (medians [min-max]; every answer rebuilt from Postgres):"]
    lines += table(["", "commits", "rows", "TTLB median"], rows)
    return lines
