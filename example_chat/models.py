"""The models the demo chat can talk to.

``PTS_DEMO_MODEL=demo`` (the default) is :class:`DemoModel`, an offline
generator of varied markdown answers at a model's pace. ``openai:<model>`` is
:class:`OpenAIModel`: any OpenAI-compatible chat-completions endpoint
(``OPENAI_BASE_URL``, ``OPENAI_API_KEY``; OpenAI, Ollama, vLLM, ...) through the
``openai`` client library.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from example_chat.db import Turn
from pts.errors import ConfigurationError

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

__all__ = [
    "DEFAULT_TOKENS_PER_SECOND",
    "ChatModel",
    "DemoModel",
    "OpenAIModel",
    "model_from_env",
    "tokenize",
]

DEFAULT_TOKENS_PER_SECOND = 40.0
"""The offline model's average pace (``PTS_DEMO_TOKENS_PER_SECOND``)."""

QUIET_LOGGERS = ("httpx", "httpcore", "openai")
"""Loggers of the OpenAI client's stack that :class:`OpenAIModel` keeps at WARNING."""

SYSTEM_PROMPT = (
    "You are the assistant of the pts demo chat. Answer in markdown, in a few paragraphs."
)


class ChatModel(Protocol):
    """What the demo needs from a model: a stream of text for a conversation."""

    calls: int
    """How many answers this model started (each is one generation)."""

    @property
    def name(self) -> str:
        """A label for the page and the log."""
        ...

    def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[str, None]:
        """The answer to ``turns`` (the last one is the user's), token by token."""
        ...

    async def aclose(self) -> None:
        """Release what the model holds (connections)."""
        ...


# -- the offline model ----------------------------------------------------------

_OPENINGS = [
    "You asked: “{q}”. Here is how I would think about it.",
    "Good question! “{q}” touches the core of what this demo shows.",
    "Let me answer “{q}” in three parts: the idea, a list, and some code.",
    "About “{q}”: the short answer is yes, and the long answer follows.",
]

_IDEAS = [
    "The browser that asked reads every token from a plain HTTP response.",
    "Everyone else reads the same text from Postgres, one sentence at a time.",
    "A sentence is written to the database once it ends, not once per token.",
    "That keeps the write rate near one commit per sentence, even at 50 tokens per second.",
    "If you reload this page, the answer continues from the exact byte it had reached.",
    "Nothing is generated twice: a second tab subscribes instead of asking the model again.",
    "The text is stored as UTF-8 bytes, and every offset lands on a character boundary.",
    "LISTEN/NOTIFY only says that something changed; the table says what.",
    "A stopped answer keeps the text it had, and its status becomes aborted.",
    "Heartbeats tell live generations from dead ones, so a 40-minute answer is fine.",
]

_LIST_INTROS = [
    "A few things worth noticing:",
    "Here is what happens, step by step:",
    "Try these while the answer streams:",
]

_ITEMS = [
    "the left pane counts an update per token",
    "the right pane counts an update per flush (a sentence, or 250 ms of text)",
    "**Stop** ends the answer for every viewer at once",
    "the share link lets a colleague watch it live, read-only",
    "a reload resumes from the last persisted byte offset",
    "`pts tail <stream id>` prints the same stream in a terminal",
    "time to first byte is lower on the left: no database stands in the way",
    "both panes end with exactly the same text",
]

_CODE = [
    (
        "python",
        "async def generate(request, stream_id, append):\n"
        "    async for token in model.stream(history):\n"
        "        await append(token)  # to the browser now, to Postgres per sentence\n",
    ),
    (
        "sql",
        "SELECT status, size, text\n"
        "  FROM pts.stream_bodies\n"
        " WHERE id = $1;  -- the whole answer so far\n",
    ),
    (
        "javascript",
        "const reader = response.body.getReader();\n"
        "for (;;) {\n"
        "  const { value, done } = await reader.read();\n"
        "  if (done) break;\n"
        "  pane.append(decoder.decode(value, { stream: true }));\n"
        "}\n",
    ),
    (
        "bash",
        'curl -N "http://127.0.0.1:8000/streams/$ID/events?offset=0"\n',
    ),
]

# Each answer takes one line of each: accents, CJK, emoji.
_WORLD = [
    [
        "Voilà: the café’s crème brûlée and a naïve façade survive every byte offset.",  # noqa: RUF001
        "Español, Português, Čeština and Ελληνικά all stream the same way; Grüße aus Zürich.",
    ],
    [
        "持久化文本流 means persistent text streaming, and 你好，世界！ arrives whole.",  # noqa: RUF001
        "こんにちは from Tokyo and 안녕하세요 from Seoul: several bytes per character.",
    ],
    [
        "Emoji are several bytes each 🚀✨🐘, and they are never cut in half.",
        "A family emoji 👨‍👩‍👧 is five code points joined into one 🎉.",
    ],
]

_CLOSINGS = [
    "That is all there is to it. Send another message to see it again!",
    "Open this chat in a second tab to watch the same answer live.",
    "Press reload now and then, and see that nothing is lost.",
]

_CJK = "\u3000-\u30ff\u3130-\u318f\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef"
_TOKEN = re.compile(rf"\s*[{_CJK}]{{1,2}}|\s*[^\s{_CJK}]{{1,6}}|\s+")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into model-like tokens: short word pieces, CJK by one or two characters.

    The tokens join back to ``text`` exactly.
    """
    return _TOKEN.findall(text)


def _quote(turns: Sequence[Turn]) -> str:
    question = next((t.content for t in reversed(turns) if t.role == "user"), "")
    question = " ".join(question.split())  # one line
    return question if len(question) <= 120 else question[:119] + "…"


def compose_answer(turns: Sequence[Turn], rng: random.Random) -> str:
    """A varied markdown answer to the conversation's last question.

    Paragraphs, a list, a fenced code block and non-ASCII text (accents, CJK,
    emoji), in an order and with contents that change from answer to answer.
    The question is quoted as it was typed: the page must show it as text.
    """
    opening = rng.choice(_OPENINGS).format(q=_quote(turns))
    ideas = " ".join(rng.sample(_IDEAS, rng.randint(2, 4)))
    items = rng.sample(_ITEMS, rng.randint(3, 5))
    numbered = rng.random() < 0.5
    bullets = [f"{n}." if numbered else "-" for n in range(1, len(items) + 1)]
    lines = [f"{b} {item}" for b, item in zip(bullets, items, strict=True)]
    listing = rng.choice(_LIST_INTROS) + "\n\n" + "\n".join(lines)
    language, code = rng.choice(_CODE)
    block = f"```{language}\n{code}```"
    world_lines = [rng.choice(lines) for lines in _WORLD]
    rng.shuffle(world_lines)
    world = " ".join(world_lines)
    middle = [ideas, listing, block, world]
    rng.shuffle(middle)
    return "\n\n".join([opening, *middle, rng.choice(_CLOSINGS)]) + "\n"


class DemoModel:
    """An offline model: varied markdown answers at a realistic pace.

    :param tokens_per_second: average pace; each gap between two tokens is
        drawn between half and one and a half times ``1 / tokens_per_second``.
    :param latency: seconds before the first token (a model's "thinking").
    :param seed: makes the answers reproducible (default: different every time).
    :param sleep: how to wait between tokens (a test may replace it).
    """

    def __init__(
        self,
        tokens_per_second: float = DEFAULT_TOKENS_PER_SECOND,
        *,
        latency: float = 0.3,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not tokens_per_second > 0:
            raise ConfigurationError("tokens_per_second must be positive")
        if latency < 0:
            raise ConfigurationError("latency must not be negative")
        self.tokens_per_second = tokens_per_second
        self.latency = latency
        self.calls = 0
        self._rng = random.Random(seed)
        self._sleep = sleep

    @property
    def name(self) -> str:
        return f"demo (offline, ~{self.tokens_per_second:g} tokens/s)"

    def answer(self, turns: Sequence[Turn]) -> str:
        """The next answer's whole text (what :meth:`stream` would stream)."""
        return compose_answer(turns, self._rng)

    async def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[str, None]:
        """Stream an answer to ``turns``, token by token, at the configured pace."""
        self.calls += 1
        tokens = tokenize(self.answer(turns))
        gap = 1.0 / self.tokens_per_second
        if self.latency:
            await self._sleep(self.latency)
        for index, token in enumerate(tokens):
            if index:
                await self._sleep(gap * self._rng.uniform(0.5, 1.5))
            yield token

    async def aclose(self) -> None:
        """Nothing to release."""


# -- OpenAI-compatible endpoints ---------------------------------------------------


class OpenAIModel:
    """A model behind an OpenAI-compatible chat-completions endpoint, streamed.

    :param model: the model's name at the endpoint (``gpt-4o-mini``, ``llama3.2``, ...).
    :param base_url: the API root (``OPENAI_BASE_URL``), e.g.
        ``http://127.0.0.1:11434/v1`` for Ollama; the OpenAI API by default.
    :param api_key: ``OPENAI_API_KEY``; local servers usually need none.
    :param timeout: seconds to wait for the connection and for each chunk.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        system_prompt: str | None = SYSTEM_PROMPT,
    ) -> None:
        try:
            from openai import AsyncOpenAI
        except ImportError as exc:  # pragma: no cover - the dev dependencies have it
            raise ConfigurationError(
                "PTS_DEMO_MODEL=openai:... needs the `openai` package (uv sync)"
            ) from exc
        if not model:
            raise ConfigurationError("PTS_DEMO_MODEL=openai:<model> needs a model name")
        if api_key is None:
            if base_url is None:
                raise ConfigurationError(
                    "PTS_DEMO_MODEL=openai:... needs OPENAI_API_KEY (or OPENAI_BASE_URL "
                    "for a local server such as Ollama or vLLM)"
                )
            # Local OpenAI-compatible servers ignore the key, but the client needs one.
            api_key = "unused"
        # The client logs every HTTP request at INFO (one line per answer, and
        # more on retries): the demo's log keeps to its own lines.
        for noisy in QUIET_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.model = model
        self.base_url = base_url
        self.calls = 0
        self._system_prompt = system_prompt
        self._client: AsyncOpenAI = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout)

    @property
    def name(self) -> str:
        where = self.base_url or "api.openai.com"
        return f"openai:{self.model} at {where}"

    def _messages(self, turns: Sequence[Turn]) -> list[ChatCompletionMessageParam]:
        messages: list[ChatCompletionMessageParam] = []
        if self._system_prompt:
            messages.append({"role": "system", "content": self._system_prompt})
        for turn in turns:
            if turn.role == "user":
                messages.append({"role": "user", "content": turn.content})
            else:
                messages.append({"role": "assistant", "content": turn.content})
        return messages

    async def stream(self, turns: Sequence[Turn]) -> AsyncGenerator[str, None]:
        """Stream the endpoint's answer to ``turns``, delta by delta."""
        self.calls += 1
        response = await self._client.chat.completions.create(
            model=self.model, messages=self._messages(turns), stream=True
        )
        # `async with`: a cancelled answer (Stop) closes the HTTP response at once.
        async with response:
            async for chunk in response:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.close()


# -- configuration --------------------------------------------------------------------


def model_from_env(env: Mapping[str, str] | None = None) -> ChatModel:
    """The model ``PTS_DEMO_MODEL`` names: ``demo`` (default) or ``openai:<model>``.

    ``PTS_DEMO_TOKENS_PER_SECOND`` sets the offline model's pace;
    ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` configure ``openai:``.
    Raises ConfigurationError for anything else.
    """
    env = os.environ if env is None else env
    spec = env.get("PTS_DEMO_MODEL", "").strip() or "demo"
    if spec == "demo":
        raw = env.get("PTS_DEMO_TOKENS_PER_SECOND", "").strip()
        try:
            pace = float(raw) if raw else DEFAULT_TOKENS_PER_SECOND
        except ValueError:
            raise ConfigurationError(
                f"PTS_DEMO_TOKENS_PER_SECOND={raw!r} is not a number"
            ) from None
        if not 0 < pace <= 100_000:
            raise ConfigurationError("PTS_DEMO_TOKENS_PER_SECOND must be in (0, 100000]")
        return DemoModel(pace)
    kind, _, name = spec.partition(":")
    if kind == "openai":
        return OpenAIModel(
            name.strip(),
            base_url=env.get("OPENAI_BASE_URL") or None,
            api_key=env.get("OPENAI_API_KEY") or None,
        )
    raise ConfigurationError(
        f"PTS_DEMO_MODEL={spec!r} is not a model: use `demo` or `openai:<model>`"
    )
