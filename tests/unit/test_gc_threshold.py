"""The garbage collector's threshold that ``pts serve`` sets at startup (``pts.http.app``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pts.core import PersistentTextStreaming
from pts.errors import ConfigurationError
from pts.http.app import (
    DEFAULT_GC_THRESHOLD,
    GC_THRESHOLD_ENV,
    create_app,
    gc_threshold_from_env,
    raise_gc_threshold,
)


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_unset_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GC_THRESHOLD_ENV, raising=False)
    assert gc_threshold_from_env() == DEFAULT_GC_THRESHOLD == 50_000
    monkeypatch.setenv(GC_THRESHOLD_ENV, "  ")
    assert gc_threshold_from_env() == DEFAULT_GC_THRESHOLD


@pytest.mark.parametrize(("raw", "value"), [("700", 700), (" 1 ", 1), ("2147483647", 2**31 - 1)])
def test_a_whole_number_is_taken(monkeypatch: pytest.MonkeyPatch, raw: str, value: int) -> None:
    monkeypatch.setenv(GC_THRESHOLD_ENV, raw)
    assert gc_threshold_from_env() == value


@pytest.mark.parametrize("raw", ["0", "-5", "1e5", "12.5", "abc", "²", "2147483648", "1_000"])
def test_anything_else_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(GC_THRESHOLD_ENV, raw)
    with pytest.raises(ConfigurationError, match=GC_THRESHOLD_ENV):
        gc_threshold_from_env()


def test_only_the_youngest_generations_threshold_changes() -> None:
    gc.set_threshold(700, 11, 12)
    raise_gc_threshold(4321)
    assert gc.get_threshold() == (4321, 11, 12)
    with pytest.raises(ConfigurationError):
        raise_gc_threshold(0)
    assert gc.get_threshold() == (4321, 11, 12)


def test_the_app_sets_it_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GC_THRESHOLD_ENV, "4321")
    app = create_app(PersistentTextStreaming(dsn="postgresql://nowhere.invalid/pts"), metrics=False)
    gc.set_threshold(700, 10, 10)
    # Each startup hook but freeze_gc (which would freeze this test process's objects).
    for hook in app.on_startup:
        if getattr(hook, "__name__", "") != "freeze_gc":
            hook()  # type: ignore[call-arg]
    assert gc.get_threshold() == (4321, 10, 10)
