"""``pts write`` and ``pts tail`` in subprocesses: a stream written and watched from two shells."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pts import StreamStatus, SyncStore

WAIT = 30.0  # a hang guard for every wait below, never an assertion about speed


class Output:
    """Collects a pipe's bytes in a thread; waits for text to show up."""

    def __init__(self, pipe: object) -> None:
        self._pipe = pipe
        self._data = b""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd = self._pipe.fileno()  # type: ignore[attr-defined]
        while chunk := os.read(fd, 65536):
            with self._changed:
                self._data += chunk
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return self._data.decode("utf-8", "replace")

    def wait_for(self, needle: str) -> None:
        with self._changed:
            ok = self._changed.wait_for(lambda: needle.encode() in self._data, timeout=WAIT)
        assert ok, f"{needle!r} never showed up in {self.text!r}"

    def close(self) -> None:
        self._thread.join(WAIT)


def pts_process(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pts.cli", *args],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(WAIT)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Close stdin, wait for the exit; return the code and stderr."""
    assert process.stdin is not None
    assert process.stderr is not None
    if not process.stdin.closed:
        process.stdin.close()
    code = process.wait(WAIT)
    return code, process.stderr.read().decode()


def send_line(process: subprocess.Popen[bytes], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode())
    process.stdin.flush()


@pytest.mark.parametrize("name", ["id", "path"])
def test_write_appends_each_line_as_it_arrives_and_tail_follows(
    db_url: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]], name: str
) -> None:
    if name == "id":
        with SyncStore(db_url) as store:
            target = str(store.create_stream().id)  # pending, as POST /streams makes it
    else:
        target = f"shell/{uuid.uuid4().hex[:8]}"
    writer = pts_process("write", target, "--dsn", db_url, cwd=tmp_path)
    processes.append(writer)
    send_line(writer, "Hello, 世界.\n")
    if name == "path":
        # The path exists once the writer created it; tail it from then on.
        with SyncStore(db_url) as store:
            deadline = time.monotonic() + WAIT
            while _missing(store, target):
                assert time.monotonic() < deadline, "pts write never created the stream"
                time.sleep(0.05)
    tail = pts_process("tail", target, "--dsn", db_url, cwd=tmp_path)
    processes.append(tail)
    assert tail.stdout is not None
    seen = Output(tail.stdout)
    # The first line reaches the reader while the writer still waits for more input.
    seen.wait_for("Hello, 世界.\n")
    assert writer.poll() is None
    send_line(writer, "Bye 👋")  # the last line has no newline: closing persists it
    code, err = finish(writer)
    assert code == 0, err
    assert "[done, " in err
    code, tail_err = finish(tail)
    seen.close()
    assert code == 0, tail_err
    assert seen.text == "Hello, 世界.\nBye 👋\n"
    assert "[done]" in tail_err
    assert "Traceback" not in err + tail_err


def _missing(store: SyncStore, path: str) -> bool:
    from pts.errors import StreamNotFound

    try:
        store.get_stream_by_path(path)
    except StreamNotFound:
        return True
    return False


def test_write_to_a_path_twice_says_it_is_closed(db_url: str, tmp_path: Path) -> None:
    path = "shell/twice"
    for attempt in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "pts.cli", "write", path, "--dsn", db_url],
            cwd=tmp_path,
            input=b"one line\n",
            capture_output=True,
            timeout=60,
            check=False,
        )
        stderr = result.stderr.decode()
        if attempt == 0:
            assert result.returncode == 0, stderr
        else:
            assert result.returncode == 1
            assert f"stream {path!r} is closed" in stderr
            assert "Traceback" not in stderr
    with SyncStore(db_url) as store:
        info = store.get_stream_by_path(path)
        assert info.closed
        assert info.content_type == "text/plain"
        assert store.read(info.id).data == b"one line\n"


def test_write_refuses_a_stream_that_is_not_pending(db_url: str, tmp_path: Path) -> None:
    with SyncStore(db_url) as store:
        info = store.create_stream(status=StreamStatus.STREAMING)
    result = subprocess.run(
        [sys.executable, "-m", "pts.cli", "write", str(info.id), "--dsn", db_url],
        cwd=tmp_path,
        input=b"x\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert "is streaming: pts write drives a pending stream only" in stderr
    assert "Traceback" not in stderr


def test_ctrl_c_aborts_the_stream_being_written(
    db_url: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    with SyncStore(db_url) as store:
        stream_id = store.create_stream().id
        writer = pts_process("write", str(stream_id), "--dsn", db_url, cwd=tmp_path)
        processes.append(writer)
        send_line(writer, "Half an answer.\n")
        deadline = time.monotonic() + WAIT
        while store.get_stream(stream_id).size == 0:  # claimed, and the line persisted
            assert time.monotonic() < deadline, "the line was never persisted"
            time.sleep(0.05)
        writer.send_signal(signal.SIGINT)
        code = writer.wait(WAIT)
        assert writer.stderr is not None
        assert "Traceback" not in writer.stderr.read().decode()
        assert code == 130
        info = store.get_stream(stream_id)
        assert info.status == StreamStatus.ABORTED
        assert info.abort_reason == "pts write was interrupted"
        assert store.read(stream_id).data == b"Half an answer.\n"


def test_tail_names_both_kinds_of_stream_when_nothing_matches(db_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pts.cli", "tail", "no/such/path", "--dsn", db_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "is not a stream id (a UUID), and no Durable Streams stream has this path" in (
        result.stderr
    )
