"""``pts bench driven``, ``fanout`` and ``protocol`` run end to end with tiny parameters.

Benchmarks, not timed tests: nothing here asserts a duration, a latency or a
ratio; only that the figures are present, consistent and lossless.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest

from pts.bench import protocol
from pts.bench.client import BenchError, SseParser
from pts.bench.common import percentiles, summarize
from pts.bench.config import (
    DrivenConfig,
    FanoutConfig,
    ProtocolConfig,
    answer_tokens,
    stream_tokens,
)
from pts.bench.driven_ui import bare_ui_events, persisted_text, ui_text
from pts.bench.protocol_load import Peer, filler, payload
from pts.bench.sse_client import SseResponse, judge, parse_sse_response
from pts.flush import FlushPolicy
from pts.testing.process import output_of, spawn, stop_process
from tests import reference_server
from tests.reference_server import REFERENCE_PACKAGE, NotInstalled, find_reference_dir

TOKENS, SENTENCES, REQUESTS, NAIVE, STREAMS = 50, 5, 3, 2, 5
PACED, PACE, UI = 2, 0.001, 3


def run_cli(*args: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
    # Warnings are errors in the bench process and in its server subprocess too.
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "pts.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_answer_tokens_form_the_sentences() -> None:
    tokens = answer_tokens(1000, 40)
    assert len(tokens) == 1000
    text = "".join(tokens)
    assert text.count(". ") == 40
    assert text.endswith(". ")
    assert not any(mark in text for mark in "!?\n")
    # Every sentence ends at a token's end, 25 tokens apart.
    assert [i for i, t in enumerate(tokens) if t.endswith(". ")] == list(range(24, 1000, 25))
    assert FlushPolicy().sentence_cut(text) == len(text)
    assert answer_tokens(7, 3) == answer_tokens(7, 3)
    assert sum(t.endswith(". ") for t in answer_tokens(7, 3)) == 3


@pytest.mark.parametrize(("tokens", "sentences"), [(0, 1), (5, 0), (5, 6)])
def test_answer_tokens_refuses_impossible_answers(tokens: int, sentences: int) -> None:
    with pytest.raises(ValueError, match="must be between"):
        answer_tokens(tokens, sentences)


def test_config_refuses_more_naive_answers_than_requests() -> None:
    with pytest.raises(ValueError, match="naive_requests"):
        DrivenConfig(dsn="postgresql://localhost/x", requests=2, naive_requests=3)


def test_summarize() -> None:
    stats = summarize([3.0, 1.0, 2.0], scale=1000)
    assert stats["n"] == 3
    assert (stats["min"], stats["median"], stats["max"]) == (1000.0, 2000.0, 3000.0)
    assert 2000.0 <= stats["p90"] <= 3000.0
    assert summarize([0.5])["p90"] == 0.5
    assert summarize([]) == {"n": 0}


def test_config_refuses_a_bad_pace() -> None:
    with pytest.raises(ValueError, match="pace"):
        DrivenConfig(dsn="postgresql://localhost/x", pace=0)


def test_percentiles() -> None:
    stats = percentiles([float(v) for v in range(1, 101)], (50, 99), scale=10)
    assert (stats["n"], stats["min"], stats["max"]) == (100, 10.0, 1000.0)
    assert stats["p50"] == pytest.approx(505.0)
    assert stats["p99"] == pytest.approx(990.1)
    assert percentiles([2.0])["p99"] == 2.0
    assert percentiles([]) == {"n": 0}


def test_cli_refuses_more_sentences_than_tokens() -> None:
    result = run_cli("bench", "driven", "--tokens", "3", "--sentences", "4", timeout=30)
    assert result.returncode == 2
    assert "--sentences" in result.stderr


@pytest.mark.timeout(120)
def test_bench_driven_runs_and_reports_sane_figures(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_cli(
        "bench", "driven",
        "--tokens", str(TOKENS), "--sentences", str(SENTENCES),
        "--requests", str(REQUESTS), "--naive-requests", str(NAIVE),
        "--paced-requests", str(PACED), "--pace", str(PACE), "--ui-requests", str(UI),
        "--streams", str(STREAMS), "--rounds", "1", "--warmup", "1",
        "--timeout", "90", "--dsn", db_url, "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for heading in (
        "Driving-client overhead",
        "Database writes per answer",
        "Concurrency",
        "UI message stream",
        "TTLB stream_ui/bare SSE",
    ):
        assert heading in result.stdout
    assert f"figures written to {out}" in result.stdout

    figures: dict[str, Any] = json.loads(out.read_text())
    assert figures["benchmark"] == "driven"
    assert figures["machine"]["cpu_count"] >= 1
    assert figures["machine"]["python"] == ".".join(map(str, sys.version_info[:3]))
    params = figures["parameters"]
    assert (params["tokens"], params["sentences"], params["requests"]) == (
        TOKENS,
        SENTENCES,
        REQUESTS,
    )
    assert (params["naive_requests"], params["streams"], params["rounds"]) == (NAIVE, STREAMS, 1)
    assert (params["paced_requests"], params["pace"]) == (PACED, PACE)
    assert "dsn" not in params
    assert figures["database"]["fresh"] is True  # a bench database was made (and dropped)
    answer_bytes = len("".join(answer_tokens(TOKENS, SENTENCES)).encode())
    assert figures["answer"] == {"tokens": TOKENS, "sentences": SENTENCES, "bytes": answer_bytes}

    overhead = figures["overhead"]
    for kind in ("bare", "pts"):
        assert overhead[kind]["requests"] == REQUESTS
        for measure in ("ttfb_ms", "ttlb_ms"):
            stats = overhead[kind][measure]
            assert stats["n"] == REQUESTS
            assert 0 < stats["min"] <= stats["median"] <= stats["p90"] <= stats["max"]
        assert overhead[kind]["ttfb_ms"]["min"] <= overhead[kind]["ttlb_ms"]["max"]
    assert overhead["ttlb_ratio"] > 0
    assert set(overhead["targets"]) >= {"ttlb_met", "ttfb_met"}

    pts, naive = figures["writes"]["pts"], figures["writes"]["naive"]
    assert (pts["answers"], naive["answers"]) == (REQUESTS, NAIVE)
    assert (pts["done"], naive["done"]) == (REQUESTS, NAIVE)
    # pts: the claim, at most one append per sentence, the final status.
    assert 0 < pts["rows"]["min"] <= pts["rows"]["max"] <= SENTENCES + 1
    assert 3 <= pts["commits"]["min"] <= pts["commits"]["max"] <= SENTENCES + 3
    assert pts["persisted_bytes"]["min"] == pts["persisted_bytes"]["max"] == answer_bytes
    # paced: the same answers, with sleeps between tokens; every one persisted whole.
    paced = figures["writes"]["pts_paced"]
    assert (paced["answers"], paced["done"], paced["pace_s"]) == (PACED, PACED, PACE)
    assert paced["persisted_bytes"]["min"] == paced["persisted_bytes"]["max"] == answer_bytes
    # At most an append per sentence, plus one per max_delay without a sentence
    # end (a stalled machine), far below a row per token.
    assert 1 <= paced["rows"]["min"] <= paced["rows"]["max"] <= 2 * SENTENCES + 1
    assert 3 <= paced["commits"]["min"] <= paced["commits"]["max"] <= 2 * SENTENCES + 3
    assert "paced" in result.stdout
    # naive: a row and a commit per token, plus the claim.
    assert naive["rows"]["min"] == naive["rows"]["max"] == TOKENS
    assert naive["commits"]["min"] == naive["commits"]["max"] == TOKENS + 1
    assert naive["ttlb_ms"]["n"] == NAIVE

    concurrency = figures["concurrency"]
    assert concurrency["streams"] == STREAMS
    for kind in ("bare", "pts"):
        assert concurrency[kind]["requests"] == STREAMS
        assert concurrency[kind]["tokens_per_s"]["median"] > 0
    assert concurrency["pts"]["done"] == STREAMS
    assert concurrency["pts"]["rows"]["max"] <= SENTENCES + 1
    assert concurrency["ttlb_ratio"] > 0

    checks = figures["checks"]
    responses = 2 * REQUESTS + NAIVE + PACED + 2 * STREAMS
    assert checks["responses"] == responses
    assert checks["bytes_delivered"] == checks["bytes_expected"] == responses * answer_bytes
    assert checks["body_mismatches"] == 0

    # The UI row: bare SSE and stream_ui, the same chunks; every stream_ui answer
    # persisted, done, and rebuilt from its chunks in Postgres.
    ui = figures["ui"]
    assert params["ui_requests"] == UI
    for kind in ("bare_sse", "stream_ui"):
        assert ui[kind]["requests"] == UI
        stats = ui[kind]["ttlb_ms"]
        assert 0 < stats["min"] <= stats["median"] <= stats["max"]
    assert ui["ttlb_ratio"] > 0
    assert set(ui["targets"]) >= {"ttlb_ratio_max", "ttlb_met"}
    unpaced, paced_ui = ui["writes"]["stream_ui"], ui["writes"]["stream_ui_paced"]
    assert (unpaced["answers"], unpaced["done"], unpaced["rebuilt"]) == (UI, UI, UI)
    assert (paced_ui["answers"], paced_ui["done"], paced_ui["rebuilt"]) == (PACED, PACED, PACED)
    # Merged deltas on sentence boundaries: far below a row per token.
    assert 1 <= paced_ui["rows"]["min"] <= paced_ui["rows"]["max"] <= 2 * SENTENCES + 4
    assert paced_ui["commits"]["max"] < TOKENS
    assert ui["checks"] == {"responses": 2 * UI + PACED, "body_mismatches": 0}


def test_the_ui_rows_bare_events_carry_the_answer_as_text_deltas() -> None:
    tokens = answer_tokens(TOKENS, SENTENCES)
    body = b"".join(bare_ui_events(tokens))
    assert ui_text(body) == "".join(tokens)
    types = [json.loads(line[6:])["type"] for line in body.decode().split("\n") if line[6:7] == "{"]
    assert types == ["start", "text-start", *["text-delta"] * TOKENS, "text-end", "finish"]
    assert body.endswith(b"data: [DONE]\n\n")
    assert ui_text(body.removesuffix(b"data: [DONE]\n\n")) is None  # cut off
    assert ui_text(b"data: {oops\n\ndata: [DONE]\n\n") is None


def test_persisted_text_joins_the_stored_json_messages() -> None:
    stored = b'{"type":"start"},{"type":"text-delta","id":"t","delta":"Hi. "},'
    assert persisted_text(stored + b'{"type":"text-delta","id":"t","delta":"Bye."},') == "Hi. Bye."
    assert persisted_text(b"") == ""
    assert persisted_text(b"{oops},") is None


# -- pts bench fanout ----------------------------------------------------------------------


def test_stream_tokens_form_distinct_sentences() -> None:
    tokens = stream_tokens(0, 4, 25)
    assert len(tokens) == 100
    text = "".join(tokens)
    assert text.count(". ") == 4
    assert [i for i, t in enumerate(tokens) if t.endswith(". ")] == [24, 49, 74, 99]
    assert FlushPolicy().sentence_cut(text) == len(text)
    assert stream_tokens(0, 4, 25) == tokens
    assert "".join(stream_tokens(1, 4, 25)) != text
    with pytest.raises(ValueError, match="at least 1"):
        stream_tokens(0, 0, 25)


def test_fanout_config_refuses_fewer_subscribers_than_streams() -> None:
    with pytest.raises(ValueError, match="subscribers"):
        FanoutConfig(dsn="postgresql://localhost/x", streams=10, subscribers=5)


def _pieces(raw: bytes, cuts: list[int]) -> list[tuple[float, bytes]]:
    bounds = [0, *cuts, len(raw)]
    return [(float(i), raw[a:b]) for i, (a, b) in enumerate(itertools.pairwise(bounds))]


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_parse_sse_response_times_each_event_by_the_piece_that_completed_it() -> None:
    body = _chunked(
        b": pts\r\nretry: 1000\r\n\r\n",
        "event: text\r\ndata: Caf\u00e9 au\r\nid: 10\r\n\r\n".encode(),
        b"event: text\r\ndata: a\r\ndata: b\r\nid: 13\r\n\r\n",
        b'event: status\r\ndata: {"status": "done", "size": 13}\r\n\r\n',
    )
    raw = HEAD + body
    # Cut inside the head, inside a chunk-size line and inside an event.
    split = raw.index(b"data: a") + 3
    response = parse_sse_response(_pieces(raw, [20, len(HEAD) + 1, split]))
    assert response.status == 200
    assert response.ended
    assert [(end, data) for _t, end, data in response.texts] == [
        (10, "Caf\u00e9 au".encode()),
        (13, b"a\nb"),
    ]
    assert response.texts[0][0] == 2.0  # arrived with the piece after the head
    assert response.texts[1][0] == 3.0  # completed by the last piece
    assert response.statuses == [{"status": "done", "size": 13}]


def test_parse_sse_response_notices_a_cut_off_response() -> None:
    raw = HEAD + _chunked(b"event: text\r\ndata: x\r\nid: 1\r\n\r\n")[:-5]
    response = parse_sse_response([(0.0, raw)])
    assert [end for _t, end, _d in response.texts] == [1]
    assert not response.ended
    assert parse_sse_response([(0.0, b"HTTP/1.1 200")]).error == "no response head"


def test_judge_counts_missing_and_duplicated_bytes_and_delays() -> None:
    body = b"Hello. World. Bye. "
    flushes = [(7, 1.0), (14, 2.0), (19, 3.0)]
    exact = SseResponse(200, ended=True, statuses=[{"status": "done"}])
    exact.texts = [(1.5, 7, body[:7]), (2.25, 19, body[7:])]
    delivery = judge(exact, body, flushes)
    assert (delivery.missing, delivery.duplicated, delivery.corrupt_events) == (0, 0, 0)
    assert delivery.exact
    assert delivery.complete
    # The second event carries the second and the third flush.
    assert delivery.delays == pytest.approx([0.5, 0.25, -0.75])

    gappy = SseResponse(200, ended=False)
    gappy.texts = [(1.5, 7, body[:7]), (2.5, 7, body[:7]), (3.5, 19, body[14:])]
    delivery = judge(gappy, body, flushes)
    assert (delivery.missing, delivery.duplicated) == (7, 7)
    assert not delivery.exact
    assert not delivery.complete
    assert delivery.corrupt_events == 0

    wrong = SseResponse(200)
    wrong.texts = [(1.5, 7, b"Jello. ")]
    delivery = judge(wrong, body, flushes)
    assert (delivery.corrupt_events, delivery.missing) == (1, 12)


@pytest.mark.timeout(90)
def test_bench_fanout_runs_and_loses_nothing(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "fanout.json"
    streams, subscribers, sentences, per_sentence = 2, 10, 3, 10
    result = run_cli(
        "bench", "fanout",
        "--streams", str(streams), "--subscribers", str(subscribers),
        "--sentences", str(sentences), "--tokens-per-sentence", str(per_sentence),
        "--pace", "0.005", "--max-subscribers", "0",
        "--timeout", "60", "--dsn", db_url, "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Main run: 10 subscribers" in result.stdout
    assert "scaling off" in result.stdout
    assert f"figures written to {out}" in result.stdout

    figures: dict[str, Any] = json.loads(out.read_text())
    assert figures["benchmark"] == "fanout"
    assert figures["database"]["fresh"] is True
    assert "dsn" not in figures["parameters"]
    assert "NOTIFY" in figures["method"]["commit_time"]
    main = figures["main"]
    assert (main["subscribers"], main["streams"], main["per_stream"]) == (10, 2, 5)
    for key in ("p50", "p99", "max"):
        assert key in main["delay_ms"]
    # Every subscriber got every flush, exactly once, in full.
    assert main["delay_samples"] == main["delay_samples_expected"] > 0
    assert main["missing_bytes"] == main["duplicated_bytes"] == main["corrupt_events"] == 0
    assert main["subscribers_exact"] == main["subscribers_complete"] == subscribers
    assert main["bodies_as_written"] == streams
    assert main["final_status"] == ["done"]
    assert main["producer_failures"] == {}
    assert set(main["per_flush_ms"]) == {"first_subscriber", "last_subscriber", "spread"}
    assert set(main["server_gc"]) == {"collections", "pause_ms", "max_pause_ms"}
    # Every flush notified once; a tail reads once per notification, never more.
    assert main["flushes"] == main["notifications"] >= streams * sentences
    reads = main["reads"]
    assert reads["tail"] <= main["flushes"]
    assert reads["per_flush_per_stream_max"] <= 1
    assert reads["while_connecting"] >= subscribers  # each subscriber's catch-up read
    # The server's connections: its pool and its LISTEN connection, no more.
    conns = main["connections"]
    assert conns["limit"] == conns["pool_max"] + 1
    assert 1 <= conns["open_max_incl_connecting"] <= conns["limit"]
    assert conns["samples"] > 0
    targets = figures["targets"]
    assert targets["lossless_met"]
    assert targets["connections_met"]
    assert targets["reads_met"]
    scaling = figures["scaling"]
    assert [s["subscribers"] for s in scaling["steps"]] == [subscribers]


# -- pts bench protocol ----------------------------------------------------------------------

# Tiny counts: every measurement runs, none of its figures means anything.
PROTOCOL_ARGS = (
    "--appends", "5", "--warmup", "1", "--concurrency", "3", "--concurrent-appends", "2",
    "--catchup-mb", "0.2", "--catchup-reads", "2", "--sse-events", "3", "--sse-connects", "2",
    "--timeout", "90",
)  # fmt: skip
ROWS = ("append latency p50", "append throughput", "catch-up read", "SSE first event p50")
POSTGRES_ROWS = ("Postgres transactions per append", "NOTIFYs per append")


def test_payloads_are_distinct_ascii_of_the_given_size() -> None:
    a, b = payload("s", 1, 100), payload("s", 2, 100)
    assert len(a) == len(b) == 100
    assert a != b
    assert a.startswith(b"s:00000001:")
    assert a.isascii()
    assert b"\n" not in a
    body = filler(200_000)
    assert len(body) == 200_000
    assert body.isascii()


def test_sse_parser_joins_data_lines_across_pieces() -> None:
    raw = (
        b": comment\n\n"
        b"event: data\ndata:line1\ndata:line2\n\n"
        b'event: control\r\ndata:{"streamNextOffset":"5"}\r\n\r\n'
        b"event: data\ndata: keeps its space\n\n"
    )
    parser = SseParser()
    events: list[tuple[str, bytes]] = []
    for at in range(0, len(raw), 7):  # pieces that split lines, CR LF pairs and events
        events += parser.feed(raw[at : at + 7])
    assert events == [
        ("data", b"line1\nline2"),
        ("control", b'{"streamNextOffset":"5"}'),
        ("data", b" keeps its space"),
    ]
    assert parser.feed(b"event: data\ndata:x\n") == []  # incomplete: no blank line yet
    assert parser.feed(b"\n") == [("data", b"x")]


def test_protocol_config_validates() -> None:
    assert ProtocolConfig(dsn="postgresql://localhost/x").targets == ["pts", "reference"]
    both = ProtocolConfig(servers="reference", reference_store="both")
    assert both.targets == ["reference", "reference-file"]
    assert "dsn" not in ProtocolConfig(dsn="postgresql://u:secret@h/x").parameters()
    with pytest.raises(ValueError, match="needs dsn"):
        ProtocolConfig(servers="pts")
    with pytest.raises(ValueError, match="servers"):
        ProtocolConfig(servers="nginx")
    with pytest.raises(ValueError, match="payload"):
        ProtocolConfig(servers="reference", payload=10)
    with pytest.raises(ValueError, match="concurrency"):
        ProtocolConfig(servers="reference", concurrency=0)


def test_find_reference_dir_says_how_to_install_it(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        with pytest.raises(NotInstalled, match=r"needs Node\.js"):
            find_reference_dir(str(tmp_path))
        return
    with pytest.raises(NotInstalled, match="npm ci --prefix tests") as failed:
        find_reference_dir(str(tmp_path))
    assert "--servers pts" in str(failed.value)
    package = tmp_path / "node_modules" / REFERENCE_PACKAGE
    package.mkdir(parents=True)
    (package / "package.json").write_text("{}")
    assert find_reference_dir(str(tmp_path)) == tmp_path.resolve()


def _check_protocol_figures(figures: dict[str, Any], targets: list[str]) -> None:
    assert figures["benchmark"] == "protocol"
    assert figures["machine"]["cpu_count"] >= 1
    assert "dsn" not in figures["parameters"]
    assert list(figures["results"]) == targets
    for target in targets:
        r = figures["results"][target]
        seq = r["sequential"]
        assert (seq["appends"], seq["connections"]) == (5, 1)  # one keep-alive connection
        assert 0 < seq["latency_ms"]["p50"] <= seq["latency_ms"]["p99"] <= seq["latency_ms"]["max"]
        tp = r["throughput"]
        assert (tp["streams"], tp["connections"], tp["appends"]) == (3, 3, 6)
        assert tp["ops_per_s"] > 0
        cu = r["catchup"]
        assert (cu["bytes"], cu["reads"]) == (200_000, 2)
        assert cu["mb_per_s"]["p50"] > 0
        assert cu["gets_per_read"] >= 1
        events = r["sse"]
        assert events["events"] == 3
        assert events["append_to_data_ms"]["n"] == 3
        assert events["connect_to_control_ms"]["n"] == 2
        assert set(figures["criteria"]["met"][target]) == {"p50_met", "p99_met", "throughput_met"}
        if target.startswith("pts"):
            _check_postgres_counts(tp["postgres"])
        else:
            assert "postgres" not in tp  # pts only


def _check_postgres_counts(counted: dict[str, Any]) -> None:
    """pts's transactions and NOTIFYs over the throughput appends: counts, not speeds."""
    assert counted["appends"] == 6
    # Every append commits (on its own or in a batch) and is announced.
    assert counted["transactions"] >= counted["writing_transactions"] >= 1
    assert counted["transactions_per_append"] > 0
    assert counted["transactions_per_append"] == counted["transactions"] / 6
    assert counted["notifies"] >= 1
    assert counted["notifies_per_append"] == counted["notifies"] / 6
    # A NOTIFY is sent at a commit that changed a stream: never more than the commits.
    assert counted["notifies_per_append"] <= counted["transactions_per_append"] + 1
    # Each NOTIFY carries at least one stream change; together, one per append at least.
    assert counted["stream_changes"] >= max(counted["notifies"], 6)
    assert counted["changes_per_notify"] >= 1


def _reference_installed() -> bool:
    return reference_server.installed()


@pytest.mark.skipif(
    not _reference_installed(),
    reason="the reference server is not installed (npm ci --prefix tests)",
)
@pytest.mark.timeout(120)
def test_bench_protocol_measures_the_reference_server(tmp_path: Path) -> None:
    out = tmp_path / "protocol.json"
    result = run_cli(
        "bench", "protocol", "--servers", "reference", "--reference-store", "both",
        *PROTOCOL_ARGS, "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ROWS:
        assert row in result.stdout
    assert "reference (memory)" in result.stdout
    assert "reference (file)" in result.stdout
    for row in POSTGRES_ROWS:  # pts's own rows: n/a for the reference servers
        line = next(line for line in result.stdout.splitlines() if row in line)
        assert line.split()[-2:] == ["n/a", "n/a"]
    figures: dict[str, Any] = json.loads(out.read_text())
    _check_protocol_figures(figures, ["reference", "reference-file"])
    assert figures["servers"]["reference"]["store"] == "memory"
    assert figures["servers"]["reference-file"]["store"] == "file"
    assert figures["servers"]["reference"]["package"] == f"{REFERENCE_PACKAGE} 0.3.7"
    assert figures["pts_speedup"] == {}


@pytest.mark.timeout(240)
def test_bench_protocol_measures_pts(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "protocol.json"
    result = run_cli(
        "bench", "protocol", "--servers", "pts", "--pts-workers", "both", *PROTOCOL_ARGS,
        "--timeout", "200",  # two servers, each waiting ~20 s for Postgres's statistics
        "--dsn", db_url, "--json", str(out), timeout=230,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for row in (*ROWS, *POSTGRES_ROWS):
        assert row in result.stdout
    assert "pts serve --workers 2:" in result.stdout  # appends/s, 2 workers vs 1
    assert f"figures written to {out}" in result.stdout
    figures: dict[str, Any] = json.loads(out.read_text())
    _check_protocol_figures(figures, ["pts", "pts-2"])
    for target, workers in (("pts", 1), ("pts-2", 2)):
        server = figures["servers"][target]
        assert server["database"]["fresh"] is True
        assert "PTS_NO_AUTH=1" in server["access_control"]
        assert server["workers"] == workers
        assert f"pts serve --no-auth --workers {workers}" in server["runner"]
    assert figures["pts_speedup"] == {}


def test_bench_protocol_without_the_reference_server_says_how_to_get_it(tmp_path: Path) -> None:
    result = run_cli(
        "bench", "protocol", "--servers", "reference", "--reference-dir", str(tmp_path),
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "npm ci --prefix tests" in result.stderr or "needs Node.js" in result.stderr


def test_bench_protocol_measures_a_server_by_url(tmp_path: Path) -> None:
    """--reference-url: the bench measures a running server it did not start."""
    if not _reference_installed():
        pytest.skip("the reference server is not installed (npm ci --prefix tests)")
    log = tmp_path / "reference.log"
    with log.open("w+b") as out:
        process = spawn([sys.executable, "-m", "tests.reference_server"], out)
        try:
            url = _printed_url(process, out)
            result = run_cli(
                "bench", "protocol", "--servers", "reference", "--reference-url", url,
                *PROTOCOL_ARGS, "--json", str(tmp_path / "protocol.json"),
            )  # fmt: skip
        finally:
            stop_process(process)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"the server at {url}" in result.stdout
    figures: dict[str, Any] = json.loads((tmp_path / "protocol.json").read_text())
    _check_protocol_figures(figures, ["reference-url"])
    assert figures["servers"]["reference-url"]["url"] == url


def _printed_url(process: subprocess.Popen[bytes], out: IO[bytes]) -> str:
    """The URL in the JSON line the launcher prints once its server listens."""
    for _ in range(600):  # 30 s: a hang guard
        for line in output_of(out).splitlines():
            if line.startswith("{"):
                return str(json.loads(line)["url"])
        if process.poll() is not None:
            pytest.fail(f"the launcher exited: {output_of(out)}")
        time.sleep(0.05)
    pytest.fail(f"the launcher printed no URL: {output_of(out)}")


def test_bench_protocol_outside_a_checkout_asks_for_a_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An installed pts has no tests/ to start the reference from: the error says what to pass."""
    monkeypatch.setattr(protocol, "LAUNCHER", tmp_path / "tests" / "reference_server.py")
    with pytest.raises(BenchError, match="--reference-url") as failed:
        protocol.run_protocol(ProtocolConfig(servers="reference"))
    assert "--servers pts" in str(failed.value)


def test_peer_at_a_url() -> None:
    assert Peer.at("http://127.0.0.1:4437") == Peer("127.0.0.1", 4437, "/v1/stream")
    assert Peer.at("http://example.test/base/") == Peer("example.test", 80, "/base/v1/stream")
    with pytest.raises(BenchError, match="http://"):
        Peer.at("https://example.test")


BENCH = Path(protocol.__file__).resolve().parent
PRIVATE_REACH = re.compile(r"\b(?:pts|store|hub|server|writer)\._[a-z]|getattr\([^)]*\"_[a-z]")


def test_the_bench_uses_public_names_only_and_nothing_from_tests() -> None:
    """No private attribute of another object, no monkeypatching, no import of tests/."""
    problems = []
    for path in sorted(BENCH.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE_REACH.search(line) or re.match(r"\s*(from|import) tests\b", line):
                problems.append(f"{path.name}:{number}: {line.strip()}")
            if "method-assign" in line:
                problems.append(f"{path.name}:{number}: monkeypatching: {line.strip()}")
    assert not problems, "\n".join(problems)


def test_every_config_option_is_a_flag_with_its_default() -> None:
    """The bench flags are built from the configs' fields: each one, with its default."""
    from click.testing import CliRunner

    from pts.cli import main

    for name, config in (("driven", DrivenConfig), ("fanout", FanoutConfig)):
        shown = CliRunner().invoke(main, ["bench", name, "--help"], terminal_width=200).output
        for f in dataclasses.fields(config):
            if "cli" in f.metadata:
                assert f"--{f.name.replace('_', '-')}" in shown
                assert f"[default: {f.default:g}" in shown, f.name


def test_bench_protocol_refuses_a_store_for_a_server_given_by_url() -> None:
    result = run_cli(
        "bench", "protocol", "--servers", "reference", "--reference-url", "http://127.0.0.1:9",
        "--reference-store", "file", timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--reference-store" in result.stderr
    with pytest.raises(ValueError, match="reference_url"):
        ProtocolConfig(servers="reference", reference_url="http://h:1", reference_store="both")
