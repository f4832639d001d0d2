"""The demo chat's models: the offline generator, and OpenAI-compatible endpoints
(against a local fake server that speaks the streaming chat-completions format)."""

from __future__ import annotations

import random
import re

import openai
import pytest

from example_chat.db import Turn
from example_chat.models import (
    DEFAULT_TOKENS_PER_SECOND,
    DemoModel,
    OpenAIModel,
    compose_answer,
    model_from_env,
    tokenize,
)
from pts.errors import ConfigurationError
from tests.support.demo import (
    Browser,
    FakeOpenAI,
    run_demo,
    serve_fake_openai,
    wait_finished,
)

QUESTION = [Turn("user", "How does <script>alert(1)</script> streaming work?")]


def test_answers_are_varied_markdown_with_non_ascii() -> None:
    answers = [compose_answer(QUESTION, random.Random(seed)) for seed in range(20)]
    assert len(set(answers)) == 20
    for answer in answers:
        paragraphs = [p for p in answer.split("\n\n") if p.strip()]
        assert len(paragraphs) >= 5
        assert re.search(r"^(- |\d\. )", answer, re.MULTILINE), "a list"
        assert re.search(r"^```\w+\n.*?^```$", answer, re.MULTILINE | re.DOTALL), "code"
        assert any(ord(c) > 0x2E80 for c in answer)  # CJK (or emoji)
        assert re.search(r"[éèàâçüöñá]", answer), "accents"
        # The question is quoted as typed: the page must show it as text.
        assert "<script>alert(1)</script>" in answer
    assert any("🚀" in a or "🎉" in a or "🐘" in a for a in answers)


def test_tokens_join_back_to_the_text() -> None:
    for seed in range(10):
        answer = compose_answer(QUESTION, random.Random(seed))
        tokens = tokenize(answer)
        assert "".join(tokens) == answer
        assert len(tokens) > 100
        assert all(len(t.strip()) <= 6 for t in tokens)
    assert tokenize("你好，世界！") == ["你好", "，世", "界！"]


async def test_the_demo_model_streams_at_its_configured_pace() -> None:
    gaps: list[float] = []

    async def record(seconds: float) -> None:
        gaps.append(seconds)

    model = DemoModel(50.0, latency=0.25, seed=3, sleep=record)
    tokens = [token async for token in model.stream(QUESTION)]
    assert model.calls == 1
    assert "".join(tokens) == compose_answer(QUESTION, random.Random(3))
    assert gaps[0] == 0.25  # the model's "thinking" before the first token
    assert len(gaps) == len(tokens)  # then one gap between two tokens
    assert all(0.5 / 50 <= gap <= 1.5 / 50 for gap in gaps[1:])
    with pytest.raises(ConfigurationError):
        DemoModel(0)


def test_the_model_comes_from_the_environment() -> None:
    default = model_from_env({})
    assert isinstance(default, DemoModel)
    assert default.tokens_per_second == DEFAULT_TOKENS_PER_SECOND
    fast = model_from_env({"PTS_DEMO_MODEL": "demo", "PTS_DEMO_TOKENS_PER_SECOND": "500"})
    assert isinstance(fast, DemoModel)
    assert fast.tokens_per_second == 500
    local = model_from_env(
        {"PTS_DEMO_MODEL": "openai:llama3.2", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    )
    assert isinstance(local, OpenAIModel)
    assert local.model == "llama3.2"
    assert local.name == "openai:llama3.2 at http://127.0.0.1:9/v1"
    hosted = model_from_env({"PTS_DEMO_MODEL": "openai:gpt-4o-mini", "OPENAI_API_KEY": "sk-x"})
    assert isinstance(hosted, OpenAIModel)
    for env, message in [
        ({"PTS_DEMO_MODEL": "gpt-4o"}, "is not a model"),
        ({"PTS_DEMO_MODEL": "openai:"}, "needs a model name"),
        ({"PTS_DEMO_MODEL": "openai:gpt-4o"}, "OPENAI_API_KEY"),
        ({"PTS_DEMO_TOKENS_PER_SECOND": "fast"}, "not a number"),
        ({"PTS_DEMO_TOKENS_PER_SECOND": "0"}, "must be in"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            model_from_env(env)


async def test_openai_model_streams_the_endpoints_deltas() -> None:
    deltas = ["Bonjour", " à", " tous", ". 你好", "！", " 🎉\n", "```py\nx = 1\n```"]
    fake = FakeOpenAI(deltas)
    async with serve_fake_openai(fake) as base_url:
        model = OpenAIModel("fake-model", base_url=base_url, api_key="sk-test")
        try:
            turns = [Turn("user", "hi"), Turn("assistant", "hello"), Turn("user", "again?")]
            received = [delta async for delta in model.stream(turns)]
        finally:
            await model.aclose()
    assert received == deltas
    assert model.calls == 1
    (request,) = fake.requests
    assert request["model"] == "fake-model"
    assert request["stream"] is True
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]
    assert request["messages"][-1]["content"] == "again?"
    assert fake.headers[0]["authorization"] == "Bearer sk-test"


async def test_openai_model_raises_the_endpoints_error() -> None:
    fake = FakeOpenAI([], status_code=400)
    async with serve_fake_openai(fake) as base_url:
        model = OpenAIModel("fake-model", base_url=base_url)  # no key: a local server
        try:
            with pytest.raises(openai.BadRequestError):
                [delta async for delta in model.stream(QUESTION)]
        finally:
            await model.aclose()
    assert fake.headers[0]["authorization"] == "Bearer unused"


async def test_the_demo_answers_through_an_openai_compatible_endpoint(db_url: str) -> None:
    deltas = ["The answer", " streams", " from the", " endpoint.", " Then", " it ends."]
    fake = FakeOpenAI(deltas)
    async with serve_fake_openai(fake) as base_url:
        model = OpenAIModel("fake-model", base_url=base_url)
        # The app owns (and closes) its model.
        async with run_demo(db_url, model) as demo, Browser(demo.url) as browser:
            chat_id = await browser.new_chat()
            await browser.send(chat_id, "Ask the endpoint")
            stream_id = await browser.latest_stream(chat_id, demo)
            driven = await browser.drive(chat_id, stream_id)
            assert driven.text == "".join(deltas)
            assert await wait_finished(demo, stream_id) == "done"
            assert await demo.body(stream_id) == "".join(deltas)
    assert fake.requests[0]["messages"][-1] == {"role": "user", "content": "Ask the endpoint"}


async def test_an_endpoint_error_ends_the_answer_with_error(db_url: str) -> None:
    fake = FakeOpenAI([], status_code=400)
    async with serve_fake_openai(fake) as base_url:
        model = OpenAIModel("fake-model", base_url=base_url)
        async with run_demo(db_url, model) as demo, Browser(demo.url) as browser:
            chat_id = await browser.new_chat()
            await browser.send(chat_id, "fail please")
            stream_id = await browser.latest_stream(chat_id, demo)
            await browser.drive(chat_id, stream_id)
            assert await wait_finished(demo, stream_id) == "error"
            info = await demo.pts.get_stream(stream_id)
            assert info.error is not None
            assert "bad request" in info.error
