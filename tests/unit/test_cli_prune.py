"""``pts prune``'s DURATION: a whole number and one unit (d, h, m, s), nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pts.cli_prune import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1s", timedelta(seconds=1)),
        ("365d", timedelta(days=365)),
    ],
)
def test_a_duration_is_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "7", "d", "7D", "7w", "1.5h", "-3d", "+3d", " 7d", "7d ", "7 d", "1h30m", "7dd", "٣d"],
)
def test_anything_else_is_refused_with_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration: .*\(7d, 12h, 30m, 90s\)"):
        parse_duration(text)


def test_zero_is_no_duration() -> None:
    with pytest.raises(ValueError, match="more than 0"):
        parse_duration("0m")
