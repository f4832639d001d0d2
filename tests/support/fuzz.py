"""The fuzz tests' shared pieces: servers in subprocesses, a counting client that checks
the properties on every response, and the hypothesis strategies for hostile input.

The properties, checked on every request a fuzz test sends:

- the status is never 5xx;
- a response always arrives (no dropped connection, no hang past ``TIMEOUT``);
- the server still serves a normal request afterwards (:meth:`Fuzzer.sanity`);
- a rejected request (4xx) changed nothing (each test compares a snapshot of what
  the request targeted before and after it).

Set ``PTS_FUZZ_EXPLORE=1`` to record every violation (in ``violations``, printed by
each module's last test) instead of failing at the first one: that is how the
families of failures are surveyed. CI never sets it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import random
import string
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from tests.support.servers import ServerProcess, run_pts_demo, run_pts_serve

# One INFO line per request would bury a failure's report under thousands of them.
logging.getLogger("httpx").setLevel(logging.WARNING)

EXPLORE = os.environ.get("PTS_FUZZ_EXPLORE", "") == "1"
TIMEOUT = httpx.Timeout(10.0)
"""No single request may take longer (a hang guard: long-polls wait 0.2 s here)."""
LONG_POLL_TIMEOUT = "0.2"
ADMIN_TOKEN = "fuzz-admin-token-" + "7" * 32
SANITY_EVERY = 25
"""A normal create + append + read after every this many fuzzed requests."""

REQUESTS: Counter[str] = Counter()
"""Requests sent, by test module (each module's last test prints and checks its count)."""
violations: list[str] = []


def fuzz_settings(max_examples: int) -> settings:
    """Bounded and reproducible: fixed examples, a deadline, derandomized, no database.

    No shrinking: a failure reports the (reproducible) example that found it at
    once, so a regression fails well inside pytest's 60 s per test.
    """
    return settings(
        max_examples=max_examples,
        deadline=15_000,
        derandomize=True,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=False,
    )


def violation(message: str, request: httpx.Request | None = None) -> None:
    """A property failed: fail now (CI), or record it (``PTS_FUZZ_EXPLORE=1``)."""
    if EXPLORE:
        violations.append(message)
        record: dict[str, Any] = {"message": message}
        if request is not None:
            record["method"] = request.method
            record["path"] = request.url.raw_path.decode("latin-1")
            record["headers"] = [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw
            ]
            record["body"] = base64.b64encode(request.content).decode()
        with open(
            os.environ.get("PTS_FUZZ_EXPLORE_LOG", "/tmp/pts-fuzz-violations.jsonl"), "a"
        ) as f:
            f.write(json.dumps(record) + "\n")
        return
    raise AssertionError(message)


def describe(request: httpx.Request) -> str:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers.raw}
    for name in ("host", "accept", "accept-encoding", "connection", "user-agent"):
        headers.pop(name, None)
    body = request.content
    shown = body[:200] + (b"..." if len(body) > 200 else b"")
    return (
        f"{request.method} {request.url.raw_path.decode('latin-1')[:300]} "
        f"headers={headers} body({len(body)})={shown!r}"
    )


# -- servers ------------------------------------------------------------------------


@contextlib.contextmanager
def pts_server(dsn: str, mode: str) -> Iterator[ServerProcess]:
    """``pts serve`` in a subprocess: ``no-auth`` (allow_everything) or ``admin`` (token)."""
    args = ["--long-poll-timeout", LONG_POLL_TIMEOUT, "--log-level", "warning"]
    if mode == "no-auth":
        with run_pts_serve(dsn, "--no-auth", *args) as server:
            yield server
    else:
        env = {"PTS_ADMIN_TOKEN": ADMIN_TOKEN, "PTS_NO_AUTH": "0"}
        with run_pts_serve(dsn, *args, env=env) as server:
            yield server


@contextlib.contextmanager
def demo_server(dsn: str, startup_timeout: float = 30.0) -> Iterator[ServerProcess]:
    """``pts demo`` (the demo chat with its fast offline model) in a subprocess."""
    env = {"PTS_DEMO_MODEL": "demo", "PTS_DEMO_TOKENS_PER_SECOND": "100000"}
    with run_pts_demo(dsn, env=env, startup_timeout=startup_timeout) as server:
        yield server


# -- the client ------------------------------------------------------------------------


@dataclass
class Fuzzer:
    """A client of one server that counts its requests and checks the properties."""

    server: ServerProcess
    module: str
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with the normal requests (the sanity checks and the snapshots)."""
    client: httpx.Client = field(init=False)
    _since_sanity: int = 0

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.server.url, timeout=TIMEOUT)

    def close(self) -> None:
        self.client.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str | bytes] | None = None,
        content: bytes | None = None,
        stream_first_bytes: bool = False,
        client: httpx.Client | None = None,
    ) -> httpx.Response | None:
        """One request, checked: a response arrives and it is not 5xx (else ``violation``).

        ``stream_first_bytes``: read only the start of the body (SSE), then hang up.
        Returns None when there was no (usable) response, in explore mode.
        """
        http = client or self.client
        # An SSE response may stay quiet for a while: wait only briefly for its first bytes.
        timeout = httpx.Timeout(10.0, read=1.0) if stream_first_bytes else TIMEOUT
        raw = [
            (name.encode(), value if isinstance(value, bytes) else value.encode())
            for name, value in (headers or {}).items()
        ]
        request = http.build_request(method, url, headers=raw, content=content, timeout=timeout)
        REQUESTS[self.module] += 1
        self._since_sanity += 1
        try:
            response = http.send(request, stream=True)
        except httpx.LocalProtocolError:
            raise  # the test built a request HTTP cannot carry: a bug of the test
        except httpx.TransportError as exc:
            self._check_alive()
            violation(f"no response ({type(exc).__name__}: {exc}) to {describe(request)}", request)
            return None
        try:
            if stream_first_bytes and response.status_code == 200:
                with contextlib.suppress(httpx.ReadTimeout):
                    for _chunk in response.iter_raw(1024):
                        break
            else:
                response.read()
        except httpx.TransportError as exc:
            violation(f"response cut ({type(exc).__name__}: {exc}) to {describe(request)}", request)
            return None
        finally:
            response.close()
        self._check_refused(request, response)
        if response.status_code >= 500:
            body = "" if stream_first_bytes else response.text[:300]
            violation(f"{response.status_code} {body} to {describe(request)}", request)
        return response

    def _check_refused(self, request: httpx.Request, response: httpx.Response) -> None:
        """With the admin token required, a request without it is never served."""
        token = self.headers.get("authorization")
        if token is None or request.method == "OPTIONS" or not response.is_success:
            return
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 9110); blanks around the token do not count.
        if scheme.lower() != "bearer" or credentials.strip() != token.partition(" ")[2]:
            violation(
                f"served without the admin token ({response.status_code}): {describe(request)}",
                request,
            )

    def example(self) -> None:
        """Called first in each example: every ``SANITY_EVERY`` requests, a sanity check
        (never between a request and the snapshot that follows it)."""
        if self._since_sanity >= SANITY_EVERY:
            self.sanity()

    def _check_alive(self) -> None:
        if self.server.process.poll() is not None:
            raise AssertionError(f"the server died:\n{self.server.output()[-3000:]}")

    def sanity(self) -> None:
        """A normal create, append and read: the server still serves requests."""
        self._since_sanity = 0
        self._check_alive()
        path = f"/v1/stream/fuzz-sanity/{uuid.uuid4()}"
        plain = {**self.headers, "content-type": "text/plain"}
        REQUESTS[self.module] += 3
        created = self.client.put(path, headers=plain)
        appended = self.client.post(path, headers=plain, content=b"still here")
        read = self.client.get(path, params={"offset": "-1"}, headers=self.headers)
        ok = (created.status_code, appended.status_code, read.status_code, read.content)
        assert ok == (201, 204, 200, b"still here"), (
            f"the server stopped serving normal requests: {ok}"
        )


def protocol_snapshot(fuzzer: Fuzzer, path: str) -> tuple[object, ...]:
    """What a protocol path looks like (HEAD): compared before and after a rejected request."""
    response = fuzzer.send("HEAD", path, headers=fuzzer.headers)
    if response is None:
        return ("no response",)
    keep = ("content-type", "stream-next-offset", "stream-closed", "stream-ttl")
    return (response.status_code, *(response.headers.get(k) for k in keep))


def plugin_snapshot(fuzzer: Fuzzer, stream_path: str) -> tuple[object, ...]:
    """A pts stream's view (GET /streams/{id}) minus its clock fields."""
    response = fuzzer.send("GET", stream_path, headers=fuzzer.headers)
    if response is None:
        return ("no response",)
    if response.status_code != 200:
        return (response.status_code,)
    view = response.json()
    return (200, view["status"], view["size"], view["text"], view["abort_reason"])


def check_unchanged(before: object, after: object, response: httpx.Response | None) -> None:
    """The rejected-request property: a 4xx left its target as it was."""
    if response is None or not 400 <= response.status_code < 500:
        return
    if before != after:
        violation(
            f"a rejected request ({response.status_code} {response.text[:200]}) changed its "
            f"target: {before} -> {after}; request: {describe(response.request)}",
            response.request,
        )


def keep_log(server: ServerProcess, name: str) -> None:
    """In explore mode, keep the server's log (its tracebacks) next to the violations."""
    if EXPLORE:
        with open(f"/tmp/pts-fuzz-server-{name}.log", "w") as f:
            f.write(server.output())


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def strict_json(raw: bytes) -> object:
    """``raw`` parsed as ``JSON.parse`` would: ValueError for ``Infinity``/``NaN``, for
    numbers no double holds, for lone surrogates, for bytes that are not UTF-8."""

    def number(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            raise ValueError(f"{text[:40]} is out of a double's range")
        return value

    value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=number)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates do not encode
    return value


def report(module: str, minimum: int) -> str:
    """The closing line of a fuzz module; fails if it sent fewer than ``minimum`` requests."""
    sent = REQUESTS[module]
    lines = [f"{module}: {sent} requests"]
    if EXPLORE:
        lines += [f"{len(violations)} violations:", *violations]
        violations.clear()
    assert sent >= minimum, f"{module} sent only {sent} requests (fewer than {minimum})"
    return "\n".join(lines)


def stream_id_of(dsn: str, path: str) -> uuid.UUID:
    """The pts id of a protocol stream (every protocol stream is a pts stream)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT id FROM pts.streams WHERE path = %s", (path,)).fetchone()
    assert row is not None, path
    value = row[0]
    assert isinstance(value, uuid.UUID)
    return value


# -- strategies ---------------------------------------------------------------------------

HUGE_DIGITS = "9" * 5000
"""Longer than Python's default int digit limit (4300)."""


def long_text(seed: int, size: int) -> str:
    """``size`` random letters and digits (incompressible: Postgres cannot shrink an index key)."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def long_texts(sizes: tuple[int, ...] = (300, 3000, 9000)) -> st.SearchStrategy[str]:
    return st.builds(long_text, st.integers(0, 2**32), st.sampled_from(sizes))


def _segment_text() -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=30).filter(lambda s: s not in (".", ".."))


def quoted(text: str) -> str:
    """Percent-encode a path (keeping ``/``), as a browser would."""
    return quote(text, safe="/")


RAW_PATH_BITS = st.sampled_from(
    ["%00", "%0a", "%0d%0a", "%2F", "%25", "%ZZ", "%", "%C3%28", "%ED%A0%80", "..", "%2e%2e", ""]
)
"""Escapes a browser would never send: NUL, newlines, bad UTF-8, a lone surrogate's bytes."""


@st.composite
def junk_paths(draw: st.DrawFn) -> str:
    """A hostile path tail (already percent-encoded): unicode, escapes, very long."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return quoted(draw(_segment_text()))
    if kind == 1:
        bits = draw(st.lists(st.one_of(RAW_PATH_BITS, _segment_text().map(quoted)), max_size=6))
        return "".join(bits) or "x"
    if kind == 2:
        return long_text(draw(st.integers(0, 2**32)), draw(st.sampled_from([300, 3000, 8000])))
    if kind == 3:
        return "pts/" + draw(st.one_of(st.uuids().map(str), _segment_text().map(quoted)))
    if kind == 4:
        return "/".join(quoted(p) for p in draw(st.lists(_segment_text(), min_size=1, max_size=4)))
    return draw(st.sampled_from(["__ds/x", "__ds", "pts", "pts/", "a//b", "x%00y", "a%0ab"]))


def protocol_offsets() -> st.SearchStrategy[str]:
    prefix = "0" * 16
    return st.one_of(
        st.sampled_from(
            ["-1", "now", f"{prefix}_{0:016d}", f"{prefix}_{123:016d}", "", "-2", "NOW", "0"]
        ),
        st.integers(0, 10**40).map(lambda n: f"{prefix}_{n:016d}"),
        st.integers(0, 10**20).map(str),
        st.just(f"{prefix}_{HUGE_DIGITS}"),
        st.just(HUGE_DIGITS),
        st.text(max_size=40),
    )


def integers_as_text() -> st.SearchStrategy[str]:
    """Numbers as a header or query would carry them: small, huge, negative, 5000 digits, junk."""
    return st.one_of(
        st.integers(-10, 1000).map(str),
        st.integers(-(10**30), 10**30).map(str),
        st.sampled_from(
            [
                HUGE_DIGITS,
                "1" + "0" * 20,
                "100000000000",
                "100000000000000",
                "9223372036854775807",
                "9223372036854775808",
                "2147483648",
                "9007199254740991",
                "9007199254740992",
                "1e3",
                "0x10",
                " 5",
                "٣",
                "",
                "NaN",
            ]
        ),
        st.text(max_size=12),
    )


def timestamps() -> st.SearchStrategy[str]:
    return st.one_of(
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        st.sampled_from(
            [
                "9999-12-31T23:59:59Z",
                "9999-12-31T23:59:59+00:00",
                "9999-12-31T23:59:59-23:59",
                "0001-01-01T00:00:00+14:00",
                "0001-01-01T00:00:00Z",
                "2000-01-01T00:00:00-23:59",
                "2030-01-01T00:00:00Z",
                "2001-01-01T00:00:00",
                "not a time",
            ]
        ),
        st.text(max_size=30),
    )


def header_value(text: str) -> bytes:
    """``text`` as a header value HTTP/1.1 can carry: UTF-8, no control characters,
    no surrounding whitespace (h11 refuses those before they reach the wire)."""
    raw = text.encode("utf-8", "surrogatepass")
    return bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip(b" \t")


def header_text() -> st.SearchStrategy[bytes]:
    """A header value as bytes on the wire (latin-1, no CR/LF/NUL: h11 refuses those)."""
    alphabet = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
    # Stripped: h11 refuses leading or trailing whitespace in a value.
    return st.text(alphabet, max_size=60).map(lambda s: s.strip(" \t").encode("latin-1"))


def optional(name: str, values: st.SearchStrategy[bytes]) -> st.SearchStrategy[dict[str, bytes]]:
    return st.one_of(st.just({}), values.map(lambda v: {name: v}))


def as_bytes(values: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return values.map(header_value)


def merged(*parts: st.SearchStrategy[dict[str, bytes]]) -> st.SearchStrategy[dict[str, bytes]]:
    def merge(dicts: tuple[dict[str, bytes], ...]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for d in dicts:
            out.update(d)
        return out

    return st.tuples(*parts).map(merge)


def authorization() -> st.SearchStrategy[dict[str, bytes]]:
    """Mostly the admin token; sometimes none, a wrong one, or junk."""
    token = f"Bearer {ADMIN_TOKEN}".encode()
    return st.one_of(
        st.just({"authorization": token}),
        st.just({"authorization": token}),
        st.just({"authorization": token}),
        st.just({}),
        st.sampled_from([b"Bearer wrong", b"Basic eDp5", b"Bearer", b"bearer  " + token[7:]]).map(
            lambda v: {"authorization": v}
        ),
        header_text().map(lambda v: {"authorization": b"Bearer x" + v}),
    )


CONTENT_TYPES = st.sampled_from(
    [
        "text/plain",
        "application/json",
        "application/octet-stream",
        "text/plain; charset=utf-8",
        "APPLICATION/JSON; x=1",
        "application/x-www-form-urlencoded",
        "text/event-stream",
        "",
    ]
)


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
        ),
        max_leaves=20,
    )


PATHOLOGICAL_JSON = st.sampled_from(
    [
        b"[1e999]",
        b"1e999",
        b"[-1e999]",
        b'{"a": 1e400}',
        b"NaN",
        b"[NaN]",
        b"[Infinity]",
        b'"\\ud800"',
        b'["\\udfff"]',
        b'{"\\ud800": 1}',
        b'"\\u0000"',
        b'{"a\\u0000": "b\\u0000"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"[" * 100_000,
        b"[" + HUGE_DIGITS.encode() + b"]",
        b"-" + HUGE_DIGITS.encode(),
        b"[]",
        b"",
        b"{}",
        b"[1,]",
        b"\xef\xbb\xbf[1]",
        b"[1]\x00",
    ]
)


def bodies() -> st.SearchStrategy[bytes]:
    """Request bodies: text, bytes that are not UTF-8, JSON of every shape, pathological JSON."""
    return st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
        json_values().map(lambda v: json.dumps(v).encode()),
        PATHOLOGICAL_JSON,
        st.sampled_from([b"\xff\xfe\x00", b"\xc3\x28", b"\xed\xa0\x80", b"a\x00b"]),
    )
