"""Markdown tables and the number formats inside them, shared by every report.

One formatter means one look: a missing or undefined value is always "-" (never "nan", which
reads like a measurement), large numbers always get thousands separators, and every table has the
same header rule, so the three reports read alike and diff cleanly between runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MISSING = "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table as lines: header, `|---|` rule, one line per row (cells as given)."""
    widths = {len(row) for row in rows} - {len(header)}
    if widths:
        raise ValueError(f"table rows have {sorted(widths)} cells, the header {len(header)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and not math.isfinite(value))


def number(value: Any, digits: int = 2) -> str:
    """`digits` decimals, or thousands-separated without decimals from 1,000 up (a table of
    QPS or bytes has no use for 12,453.87); yes/no for booleans; "-" for None, NaN and inf."""
    if _absent(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | float | np.integer | np.floating):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


def percent(value: Any, digits: int = 1) -> str:
    """A share (0.25) as a percentage ("25.0%"); "-" when absent."""
    return MISSING if _absent(value) else f"{100 * value:.{digits}f}%"


def megabytes(n_bytes: Any, digits: int = 2) -> str:
    """Bytes in decimal megabytes (10^6, as disk sizes are quoted); "-" when absent."""
    return MISSING if _absent(n_bytes) else f"{n_bytes / 1e6:,.{digits}f}"
