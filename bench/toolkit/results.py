"""results.json (+ report.md) of a benchmark run, written as it goes.

Every run gets a folder `<output>/<timestamp>/` (bench/results/<benchmark>/... by default, kept
in git). Its record starts with the command, the start time and the machine record, which
includes the git commit (`new_record`); the writer refuses a record without them, so no
results.json can lose track of what made it. Benchmarks save the record after every step
(`partial=True`), so a run cut off after an hour still leaves its measurements, and render
report.md from the record alone once it is complete: a report can always be re-rendered from,
and traced to, the numbers behind it.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.toolkit.clock import load_average
from bench.toolkit.machine import machine

REQUIRED = ("command", "started", "machine")
STAMP = "%Y%m%d-%H%M%S"


def command_line(prog: str, argv: Sequence[str] | None = None) -> str:
    """The command as a user would retype it: `prog` and the arguments (sys.argv's by default),
    shell-quoted."""
    given = list(sys.argv[1:] if argv is None else argv)
    return prog + (" " + shlex.join(given) if given else "")


def new_record(command: str, **fields: Any) -> dict[str, Any]:
    """A run's record as every benchmark starts it: command, local start time, machine."""
    return {"command": command, "started": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": machine(), **fields}


def provenance(record: dict[str, Any]) -> str:
    """A report's first words on what made it: the command, its commit (and whether the tree
    had uncommitted changes) and its start time, from the record."""
    git = record["machine"]["git"]
    return (f"`{record['command']}` at commit {git['commit'][:12]}"
            f"{' (uncommitted changes)' if git.get('dirty') else ''}, {record['started']}")


def run_folder(output: Path, record: dict[str, Any]) -> Path:
    """`output/<start time as YYYYmmdd-HHMMSS>`: runs sort by time, one folder each."""
    return Path(output) / dt.datetime.fromisoformat(record["started"]).strftime(STAMP)


def write_record(out_dir: Path, record: dict[str, Any], render: Callable[[dict[str, Any]], str],
                 partial: bool) -> None:
    """Write results.json, and report.md from `render(record)` unless the record is partial."""
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise ValueError(f"a results record needs {', '.join(missing)}: start it with "
                         "bench.toolkit.results.new_record")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(record, indent=2, default=json_default)
                                          + "\n", encoding="utf-8")
    if not partial:
        (out_dir / "report.md").write_text(render(record), encoding="utf-8")


def finish_record(out_dir: Path, record: dict[str, Any],
                  render: Callable[[dict[str, Any]], str],
                  summary: Callable[[dict[str, Any]], str]) -> None:
    """End a run (bench.live, bench.serve, bench.encoding): the load average at the end and
    the finish time into the record, results.json and report.md written complete, then
    `summary(record)` printed after a blank line, and the paths written."""
    record["load_avg_end"] = load_average()
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    write_record(out_dir, record, render, partial=False)
    print()
    print(summary(record))
    print(f"wrote {Path(out_dir) / 'results.json'} and {Path(out_dir) / 'report.md'}")


def json_default(value: Any) -> Any:
    """numpy scalars and arrays, and paths, as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
