"""The README's examples, run as written: extracted from README.md, never copied here.

Each example is found by its section's heading and its place among that
section's code blocks, written to a file and run in a subprocess against this
test's database (``PTS_DATABASE_URL``): the Litestar app under uvicorn, the
writer, the store and ``SyncStore`` scripts, and the quick start (``pts
serve``, its curl lines twice, ``pts tail``, ``pts write``). Changing an
example so that it no longer runs fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from pts import SyncStore
from tests.support.demo import FakeOpenAI, serve_fake_openai
from tests.support.servers import HOST, free_port, server_process, start_app, wait_ready
from tests.support.sse import parse_events

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8000"  # what the README's commands talk to
WAIT = 30.0  # a hang guard, never an assertion about speed


# -- reading the README ---------------------------------------------------------------


def section(heading: str) -> str:
    """The text of the README's ``## heading`` section (up to the next ``## ``)."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"README.md has no section '## {heading}'"
    return match.group(1)


def code_blocks(heading: str, language: str) -> list[str]:
    """The ``language`` code blocks of a section, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", section(heading), re.M | re.S)


def commands(block: str) -> list[list[str]]:
    """A shell block's commands, split as the shell would (comments dropped)."""
    return [words for line in block.splitlines() if (words := shlex.split(line, comments=True))]


def substitute(words: list[str], url: str, values: Mapping[str, str]) -> list[str]:
    """The README's URL replaced by the test server's; ``<name>`` placeholders by ``values``."""
    out = []
    for word in words:
        word = word.replace(README_URL, url)
        for name, value in values.items():
            word = word.replace(f"<{name}>", value)
        assert re.search(r"<\w+>", word) is None, f"unfilled placeholder in {word!r}"
        out.append(word)
    return out


def pts_command(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """``NAME=value ... uv run pts ARGS``: the environment it sets, and ARGS."""
    env = {}
    while "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[:3] == ["uv", "run", "pts"], f"not a pts command: {words}"
    return env, words[3:]


def curl(words: list[str]) -> str:
    """Run a curl command line: with curl if it is installed, else the same request by httpx."""
    assert words[0] == "curl", words
    if shutil.which("curl") is not None:
        result = subprocess.run(words, capture_output=True, text=True, timeout=WAIT, check=False)
        assert result.returncode == 0, f"{shlex.join(words)}: {result.stderr}"
        return result.stdout
    method, headers, data, url = "GET", {}, None, None
    args = iter(words[1:])
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg in ("--data", "-d"):
            data = next(args)
            method = "POST" if method == "GET" else method
        elif arg.startswith("-"):
            continue  # -s, -N: output details only
        else:
            url = arg
    assert url is not None, words
    response = httpx.request(method, url, headers=headers, content=data, timeout=WAIT)
    return response.text


def pts_args(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pts.cli", *args]


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    """This process's environment with the test's database, as a user's shell would have."""
    return {**os.environ, "PTS_DATABASE_URL": db_url}


def run_script(code: str, directory: Path, env: Mapping[str, str]) -> str:
    path = directory / "example.py"
    path.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, f"{code}\n---\n{result.stdout}{result.stderr}"
    return result.stdout


# -- the Litestar app -------------------------------------------------------------------


def test_the_litestar_example_runs_as_written(tmp_path: Path, env: dict[str, str]) -> None:
    app_code = code_blocks("Use it in your Litestar app", "python")[0]
    (tmp_path / "app.py").write_text(app_code, encoding="utf-8")
    with start_app(tmp_path, "app:app", env=env) as server:
        wait_ready(server)
        values: dict[str, str] = {}
        outputs = []
        for words in commands(code_blocks("Use it in your Litestar app", "bash")[0]):
            outputs.append(curl(substitute(words, server.url, values)))
            values.setdefault("stream_id", json.loads(outputs[0])["stream_id"])
        created, answer, view = outputs
        stream_id = json.loads(created)["stream_id"]
        assert answer == "You asked: hi. Here is the answer. That is all. "
        body = json.loads(view)
        assert body["status"] == "done"
        assert body["text"] == answer
        with httpx.Client(base_url=server.url, timeout=WAIT) as client:
            # Access as the example's authorize hook has it: the owner only.
            bob = {"Authorization": "Bearer bob-token"}
            alice = {"Authorization": "Bearer alice-token"}
            assert client.get(f"/streams/{stream_id}", headers=bob).status_code == 403
            assert client.get(f"/streams/{stream_id}").status_code == 403
            assert client.post("/streams", headers=alice).status_code == 403
            again = client.post(f"/chat/{stream_id}/stream", headers=alice, json={"prompt": "hi"})
            assert again.status_code == 409  # driven once only
            assert again.json()["error"] == "already_driven"
            events = client.get(f"/streams/{stream_id}/events", headers=alice)
            assert events.status_code == 200
            assert answer in events.text
            assert '"status": "done"' in events.text
        assert "Traceback" not in server.output()


# -- the writer, the store and SyncStore ----------------------------------------------


def test_the_writer_example_runs_as_written(tmp_path: Path, env: dict[str, str]) -> None:
    code = code_blocks("Use it in your Litestar app", "python")[1]
    assert run_script(code, tmp_path, env) == "Hello. done\n"


def test_the_store_examples_run_as_written(tmp_path: Path, env: dict[str, str]) -> None:
    store_code, sync_code = code_blocks("The store", "python")
    assert run_script(store_code, tmp_path, env) == "Hello. Bye. done\n"
    assert run_script(sync_code, tmp_path, env) == "b'Hello. '\n"


# -- the quick start ----------------------------------------------------------------------


def test_the_quick_start_loop_works_twice(tmp_path: Path, env: dict[str, str]) -> None:
    serve_block, *blocks = code_blocks("Two commands", "bash")[1:]
    (serve,) = commands(serve_block)
    serve_env, serve_args = pts_command(serve)
    assert serve_args[0] == "serve"
    port = free_port()
    command = pts_args([*serve_args, "--host", HOST, "--port", str(port)])
    with server_process(command, port, env={**env, **serve_env}, cwd=tmp_path) as server:
        texts = ["Hello from the README.\n", "Second run, second stream.\n"]
        ids = [_one_round(blocks, server.url, tmp_path, env, text) for text in texts]
        assert ids[0] != ids[1]


def _one_round(blocks: list[str], url: str, cwd: Path, env: dict[str, str], text: str) -> str:
    """Every command of the quick start's blocks, in order; returns the stream's id."""
    values: dict[str, str] = {}
    tail: subprocess.Popen[str] | None = None
    last_output = ""
    try:
        for words in (words for block in blocks for words in commands(block)):
            words = substitute(words, url, values)
            if words[0] == "curl":
                last_output = curl(words)
                document = json.loads(last_output)
                if "id" in document and "id" not in values:
                    values["id"] = document["id"]
                continue
            _, args = pts_command(words)
            if args[0] == "tail":  # a terminal of its own: runs until the stream ends
                tail = subprocess.Popen(
                    pts_args(args),
                    cwd=cwd,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            elif args[0] == "write":  # what the user types, then Ctrl+D
                written = subprocess.run(
                    pts_args(args),
                    cwd=cwd,
                    env=env,
                    input=text,
                    capture_output=True,
                    text=True,
                    timeout=WAIT,
                    check=False,
                )
                assert written.returncode == 0, written.stderr
                assert "[done, " in written.stderr
            else:
                raise AssertionError(f"the quick start runs an unexpected command: {words}")
        assert tail is not None, "the quick start never runs pts tail"
        out, err = tail.communicate(timeout=WAIT)
        assert tail.returncode == 0, err
        assert out == text + "\n"  # the text, then the newline tail ends with
        assert "[done]" in err
        final = json.loads(last_output)  # the last curl: the stream's whole state
        assert final["status"] == "done"
        assert final["text"] == text
        return values["id"]
    finally:
        if tail is not None and tail.poll() is None:
            tail.kill()
            tail.communicate(timeout=WAIT)


# -- testing without Postgres ----------------------------------------------------------


def test_the_memory_store_example_runs_without_a_database(tmp_path: Path) -> None:
    code = code_blocks("Testing your app without Postgres", "python")[0]
    runner = (
        "\n\nimport asyncio\n\n"
        "asyncio.run(test_chat_streams_the_answer())\n"
        "asyncio.run(test_a_writer_and_a_reader())\n"
        "print('ok')\n"
    )
    # No database anywhere: no URL, and an empty data directory that must stay empty.
    bare = {k: v for k, v in os.environ.items() if k not in ("PTS_DATABASE_URL", "DATABASE_URL")}
    bare["PTS_DATA_DIR"] = str(tmp_path / "no-db")
    assert run_script(code + runner, tmp_path, bare) == "ok\n"
    assert not (tmp_path / "no-db").exists()


# -- AI SDK front ends -----------------------------------------------------------------


def ui_chunks(body: str) -> list[Any]:
    """A UI message stream's chunks, ``"[DONE]"`` as itself."""
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in parse_events(body)]


def use_chat_body(chat_id: str, text: str) -> dict[str, Any]:
    """What ``useChat``'s DefaultChatTransport POSTs for a new user message."""
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}
    return {"id": chat_id, "messages": [message], "trigger": "submit-message", "messageId": None}


def wait_finished(url: str, stream_id: str) -> None:
    """Until the stream has a final status in the database (a hang guard of WAIT s)."""
    with SyncStore(url) as store:
        deadline = time.monotonic() + WAIT
        while not store.get_stream(uuid.UUID(stream_id)).finished:
            assert time.monotonic() < deadline, f"stream {stream_id} did not finish"
            time.sleep(0.01)


def test_the_ai_sdk_example_runs_as_written(tmp_path: Path, env: dict[str, str]) -> None:
    app_code = code_blocks("AI SDK front ends", "python")[0]
    (tmp_path / "app.py").write_text(app_code, encoding="utf-8")
    with start_app(tmp_path, "app:app", env=env) as server:
        wait_ready(server)
        with httpx.Client(base_url=server.url, timeout=WAIT) as client:
            assert client.get("/api/chat/c1/stream").status_code == 204  # nothing yet
            answer = client.post("/api/chat", json=use_chat_body("c1", "hi"))
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-vercel-ai-ui-message-stream"] == "v1"
            assert answer.headers["content-type"].startswith("text/event-stream")
            chunks = ui_chunks(answer.text)
            assert chunks[0]["type"] == "start"
            assert chunks[-2]["type"] == "finish"
            assert chunks[-1] == "[DONE]"
            text = "".join(
                c["delta"] for c in chunks if c != "[DONE]" and c["type"] == "text-delta"
            )
            assert text == "You asked: hi. Here is the answer. "
            reasoning = [
                c["delta"] for c in chunks if c != "[DONE]" and c["type"] == "reasoning-delta"
            ]
            assert reasoning == ["An echo will do. "]
            # Finished (its final status commits just after the last byte): nothing to
            # resume, its text is in the history; and stop changes nothing.
            wait_finished(env["PTS_DATABASE_URL"], answer.headers["x-pts-stream-id"])
            resumed = client.get("/api/chat/c1/stream")
            assert (resumed.status_code, resumed.content) == (204, b"")
            assert client.post("/api/chat/c1/stop").status_code == 204
            assert client.post("/api/chat/nobody/stop").status_code == 204
            bad = client.post("/api/chat", json={"messages": []})  # no chat id
            assert bad.status_code == 400
        assert "Traceback" not in server.output()


TOOL_CALL: list[dict[str, Any]] = [
    {"delta": {"role": "assistant", "content": None}},
    {
        "delta": {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"ci'},
                }
            ]
        }
    },
    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}},
    {"delta": {}, "finish_reason": "tool_calls"},
]
TEXT_ANSWER: list[dict[str, Any]] = [
    {"delta": {"role": "assistant", "content": "It is clear "}},
    {"delta": {"content": "in Paris."}},
    {"delta": {}, "finish_reason": "stop"},
]


async def test_the_ai_sdk_openai_example_runs_its_tool_loop(
    tmp_path: Path, env: dict[str, str]
) -> None:
    app_code, openai_code = code_blocks("AI SDK front ends", "python")[:2]
    # The openai block replaces the stand-in `answer` of the app.
    (tmp_path / "app.py").write_text(app_code + "\n\n" + openai_code, encoding="utf-8")
    fake = FakeOpenAI([], scripts=[TOOL_CALL, TEXT_ANSWER])
    async with serve_fake_openai(fake) as base_url:
        app_env = {**env, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test"}
        with start_app(tmp_path, "app:app", env=app_env) as server:
            wait_ready(server)
            async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
                answer = await client.post("/api/chat", json=use_chat_body("c2", "Weather?"))
            assert answer.status_code == 200, answer.text
            assert "Traceback" not in server.output()
    chunks = [c for c in ui_chunks(answer.text) if c != "[DONE]"]
    by_type = {c["type"]: c for c in chunks}
    assert by_type["tool-input-start"] == {
        "type": "tool-input-start",
        "toolCallId": "call_1",
        "toolName": "weather",
    }
    assert by_type["tool-input-available"]["input"] == {"city": "Paris"}
    assert by_type["tool-output-available"] == {
        "type": "tool-output-available",
        "toolCallId": "call_1",
        "output": {"city": "Paris", "sky": "clear"},
    }
    types = [c["type"] for c in chunks]
    assert types.index("tool-input-available") < types.index("tool-output-available")
    text = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
    assert text == "It is clear in Paris."
    assert [c for c in chunks if c["type"] == "finish"] == [
        {"type": "finish", "finishReason": "stop"}
    ]
    # The second request carried the call and its result back to the model.
    assert len(fake.requests) == 2
    sent = fake.requests[1]["messages"]
    assert sent[0] == {"role": "user", "content": "Weather?"}
    assert sent[1]["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": '{"city": "Paris"}',
    }
    assert sent[2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps({"city": "Paris", "sky": "clear"}),
    }
