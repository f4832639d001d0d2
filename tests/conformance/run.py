"""Run the Durable Streams conformance suite against ``pts serve`` (or any server).

    npm ci --prefix tests                      # once: the suite, pinned in tests/package.json
    uv run python tests/conformance/run.py     # pts serve on a fresh database, then the suite
    uv run python tests/conformance/run.py --base-url http://127.0.0.1:4437   # a running server
    uv run python tests/conformance/run.py -t "SSE Mode"                      # a subset

Without ``--base-url`` it starts ``pts serve --no-auth --cors-origin '*' --long-poll-timeout 2`` on
127.0.0.1 and a free port, against a throwaway database: a new embedded
Postgres in a temporary ``PTS_DATA_DIR`` (stopped and deleted at the end), or
with ``--dsn URL`` a new database on that server (dropped at the end). It waits
for ``/healthz``, runs vitest on ``conformance/ds-conformance.test.mjs`` with
``CONFORMANCE_TEST_URL`` (the readable reporter on stdout, the JSON reporter to
a file), prints the counts and every failed test, and always stops the server
(its whole process group).

Exit status: 0 only if no test failed and, for a full run (no ``-t``), exactly
``--expect`` tests passed (332: the suite's 338 minus its 6 opt-in
subscription tests); 1 otherwise; 2 for a usage or setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pts.testing import process as harness
from pts.testing.process import HOST, free_port, stop_process

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
ENTRY = "conformance/ds-conformance.test.mjs"
SUITE = TESTS / "node_modules" / "@durable-streams" / "server-conformance-tests"
VITEST = TESTS / "node_modules" / ".bin" / "vitest"
EXPECTED_PASSED = 332
"""338 tests, less the 6 ``Reserved subscription APIs`` ones the suite skips by default."""

STARTUP_GUARD = 120.0
"""Seconds for pts serve to answer /healthz (a new embedded Postgres runs initdb first)."""
STOP_GUARD = 15.0


class SetupError(Exception):
    """The suite could not be run at all (exit status 2)."""


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the suite, report; the exit status."""
    parser = argparse.ArgumentParser(
        description="Run the Durable Streams conformance suite (tests/package.json) "
        "against pts serve or --base-url."
    )
    parser.add_argument("--base-url", help="test this running server instead of pts serve")
    parser.add_argument("-t", "--pattern", help="only tests whose name matches (vitest -t)")
    parser.add_argument(
        "--expect",
        type=int,
        default=None,
        help=f"passed tests required (default: {EXPECTED_PASSED} for a full run, none with -t)",
    )
    parser.add_argument(
        "--long-poll-timeout",
        type=float,
        default=2.0,
        help="pts serve's long-poll timeout in seconds (default 2; the suite's offset=now "
        "long-poll tests give up after 5)",
    )
    parser.add_argument(
        "--dsn",
        help="a Postgres server to create the throwaway database on (default: a new "
        "embedded Postgres in a temporary directory)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds the vitest run may take (600)"
    )
    parser.add_argument("--json", dest="json_path", help="keep vitest's JSON results here")
    args = parser.parse_args(argv)
    expect = args.expect if args.expect is not None else (None if args.pattern else EXPECTED_PASSED)
    if args.long_poll_timeout <= 0 or args.timeout <= 0:
        parser.error("--long-poll-timeout and --timeout must be positive")
    try:
        check_installed()
        with tempfile.TemporaryDirectory(prefix="pts-conformance-") as scratch:
            results = Path(scratch) / "results.json"
            if args.base_url:
                code = run_vitest(args.base_url, args.pattern, results, args, None)
            else:
                with pts_server(Path(scratch), args.long_poll_timeout, args.dsn) as server:
                    code = run_vitest(server.url, args.pattern, results, args, server)
            if args.json_path and results.exists():
                shutil.copyfile(results, args.json_path)
            return report(results, code, expect)
    except SetupError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2


def check_installed() -> None:
    """The suite and vitest are in tests/node_modules, and node is on PATH."""
    if shutil.which("node") is None:
        raise SetupError("Node.js (node) is not on PATH")
    if not (SUITE / "package.json").is_file() or not VITEST.exists():
        raise SetupError(
            f"the suite is not installed in {TESTS / 'node_modules'}: run `npm ci --prefix tests`"
        )


# -- the server ---------------------------------------------------------------------------------


class Server:
    """A running ``pts serve``: its URL, process and log file."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def output(self, limit: int = 6000) -> str:
        """The end of what the server printed."""
        return self.log.read_bytes().decode("utf-8", "replace")[-limit:]


@contextlib.contextmanager
def pts_server(scratch: Path, long_poll_timeout: float, dsn: str | None) -> Iterator[Server]:
    """``pts serve --no-auth`` on a free port and a throwaway database; stopped on exit."""
    env = {k: v for k, v in os.environ.items() if k not in ("PTS_DATABASE_URL", "DATABASE_URL")}
    env.pop("PTS_ADMIN_TOKEN", None)
    with contextlib.ExitStack() as stack:
        if dsn is None:
            data_dir = scratch / "pts-data"
            env["PTS_DATA_DIR"] = str(data_dir)
            stack.callback(stop_embedded, data_dir)  # registered first: runs last
        else:
            env["PTS_DATABASE_URL"] = stack.enter_context(throwaway_database(dsn))
        port = free_port()
        url = f"http://{HOST}:{port}"
        log = scratch / "server.log"
        command = [
            sys.executable,
            "-m",
            "pts.cli",
            "serve",
            "--no-auth",
            # The suite checks the protocol's CORS answers, which --no-auth only
            # gives the origins it is told to allow.
            "--cors-origin",
            "*",
            "--long-poll-timeout",
            repr(long_poll_timeout),
            "--host",
            HOST,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers included
            )
        server = Server(url, process, log)
        stack.callback(stop_process, process, STOP_GUARD)
        print(f"conformance: starting pts serve on {url} (pid {process.pid})", flush=True)
        wait_healthy(server, port)
        yield server


def wait_healthy(server: Server, port: int) -> None:
    """Return once ``/healthz`` answers 200; SetupError if the server exits or never does."""
    with server.log.open("rb") as log:
        try:
            asyncio.run(harness.wait_healthy(server.process, port, log, guard=STARTUP_GUARD))
        except harness.ServerFailed as exc:
            raise SetupError(f"pts serve: {exc}") from None


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded Postgres pts serve started in ``data_dir``, if it did."""
    from pts.database import stop_embedded as stop
    from pts.errors import PTSError

    try:
        if stop(data_dir):
            print("conformance: stopped the throwaway embedded Postgres", flush=True)
    except (PTSError, OSError) as exc:  # a cleanup: report, never mask the run's result
        print(f"conformance: could not stop the embedded Postgres in {data_dir}: {exc}")


@contextlib.contextmanager
def throwaway_database(dsn: str) -> Iterator[str]:
    """A new database on ``dsn``'s server (its URL), dropped on exit."""
    import psycopg

    from pts.database import with_database

    name = f"pts_conformance_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=15) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=15) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the suite ----------------------------------------------------------------------------------


def run_vitest(
    base_url: str,
    pattern: str | None,
    results: Path,
    args: argparse.Namespace,
    server: Server | None,
) -> int | None:
    """Run the suite against ``base_url``; vitest's exit code (None if it timed out)."""
    command = [
        str(VITEST),
        "run",
        ENTRY,
        "--reporter=default",
        "--reporter=json",
        f"--outputFile.json={results}",
    ]
    if pattern:
        command += ["-t", pattern]
    # The suite uses this only for the vitest timeout of the tests that wait for a
    # long-poll to end: keep it above the server's long-poll timeout.
    long_poll_ms = max(10_000, round(args.long_poll_timeout * 2000))
    env = {
        **os.environ,
        "CONFORMANCE_TEST_URL": base_url,
        "CONFORMANCE_LONG_POLL_TIMEOUT_MS": str(long_poll_ms),
    }
    if not sys.stdout.isatty():
        env.setdefault("NO_COLOR", "1")
    print(f"conformance: vitest against {base_url}", flush=True)
    process = subprocess.Popen(command, cwd=TESTS, env=env, start_new_session=True)
    try:
        return process.wait(args.timeout)
    except subprocess.TimeoutExpired:
        print(f"conformance: vitest did not finish within {args.timeout:g} s", flush=True)
        return None
    finally:
        stop_process(process, STOP_GUARD)
        if server is not None and server.process.poll() is not None:
            print(
                f"conformance: pts serve died (code {server.process.returncode}):\n"
                f"{server.output()}",
                flush=True,
            )


def report(results: Path, code: int | None, expect: int | None) -> int:
    """Print the counts and the failed tests; 0 if the run is as required, else 1."""
    if not results.exists():
        print(f"conformance: FAILED: vitest (exit code {code}) wrote no results", flush=True)
        return 1
    data: dict[str, Any] = json.loads(results.read_text())
    failed: list[str] = []
    for suite in data.get("testResults", []):
        if suite.get("status") == "failed" and not suite.get("assertionResults"):
            failed.append(f"{suite.get('name')}: {suite.get('message', '').strip()[:500]}")
        for test in suite.get("assertionResults", []):
            if test.get("status") == "failed":
                failed.append(" > ".join([*test.get("ancestorTitles", []), test.get("title", "")]))
    passed = int(data.get("numPassedTests", 0))
    skipped = int(data.get("numPendingTests", 0)) + int(data.get("numTodoTests", 0))
    total = int(data.get("numTotalTests", 0))
    print(
        f"conformance: {passed} passed, {len(failed)} failed, {skipped} skipped ({total} tests)",
        flush=True,
    )
    for name in failed:
        print(f"  FAILED {name}", flush=True)
    problems = []
    if failed:
        problems.append(f"{len(failed)} failed")
    if expect is not None and passed != expect:
        problems.append(f"{passed} passed, {expect} expected")
    if code is None:
        problems.append("vitest timed out")
    elif code != 0 and not failed:
        problems.append(f"vitest exited with code {code}")
    if problems:
        print(f"conformance: NOT OK ({'; '.join(problems)})", flush=True)
        return 1
    print("conformance: OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
