"""results.json (+ report.md) of a speed or encoding benchmark run, written as it goes.

Both programs save their record after every step (`partial=True`), so a run cut off after an
hour still leaves its measurements; the report is rendered once the record is complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def write_record(out_dir: Path, record: dict[str, Any], render: Callable[[dict[str, Any]], str],
                 partial: bool) -> None:
    """Write results.json, and report.md from `render(record)` unless the record is partial."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(record, indent=2, default=json_default)
                                          + "\n", encoding="utf-8")
    if not partial:
        (out_dir / "report.md").write_text(render(record), encoding="utf-8")


def json_default(value: Any) -> Any:
    """numpy scalars and arrays, and paths, as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
