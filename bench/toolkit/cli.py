"""Argument types of the benchmarks' command lines.

bench.encoding, bench.live and bench.serve take lists as one comma-separated option
(`--segments 1,4,16`) and counts that must be positive; parsing them here once gives those
commands the same spelling (spaces and empty items ignored, underscores allowed in numbers) and
the same errors, which name the option and the bad item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def parse_list(text: str, kind: Callable[[str], Any], name: str) -> list[Any]:
    """A comma-separated option as a list, refusing empty lists and bad items by name."""
    items = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            items.append(kind(part))
        except ValueError:
            raise SystemExit(f"error: {name}: bad item '{part}'") from None
    if not items:
        raise SystemExit(f"error: {name} is empty")
    return items


def positive_int(text: str) -> int:
    """An integer above 0 (`1_000` and `1000` alike); a ValueError otherwise, so that argparse
    and `parse_list` report it as a bad value of its option."""
    value = int(text.replace("_", ""))
    if value <= 0:
        raise ValueError(text)
    return value


def one_of(allowed: Sequence[str]) -> Callable[[str], str]:
    """An argument type accepting only the `allowed` words (a ValueError otherwise, as for
    `positive_int`): the query modes or routes of a list option, say."""
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(text)
        return text
    return parse
