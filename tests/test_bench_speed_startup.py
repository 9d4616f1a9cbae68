"""bench.speed.startup: one command in a fresh interpreter on a given checkout, its exit code,
memory and model libraries reported; a failing command stops the run with its output; the
report tables a record's rows."""

from __future__ import annotations

import pytest

from bench.speed.startup import render, run_once, summary_line
from bench.toolkit import REPO_ROOT
from bench.toolkit.results import new_record


def test_a_command_runs_on_the_checkout_and_reports_what_it_imported(tmp_path):
    """`recipes` (no index, no model) runs and imports neither torch nor transformers."""
    got = run_once(["recipes"], REPO_ROOT, tmp_path / "log")
    assert got["imported"] == [] and got["seconds"] > 0 and got["peak_mib"] > 10


def test_a_failing_command_stops_the_run_with_its_output(tmp_path):
    with pytest.raises(SystemExit, match=r"error: .*no-such-index"):
        run_once(["info", "--index", str(tmp_path / "no-such-index")], REPO_ROOT,
                 tmp_path / "log")


def test_the_report_tables_each_command():
    runs = [{"seconds": s, "peak_mib": 200.4, "imported": []} for s in (1.31, 1.12, 1.2)]
    row = {"command": "search --mode tokens", "argv": [], "runs": runs, "median_s": 1.2,
           "peak_mib": 200.4, "imported": []}
    record = new_record("python -m bench.speed.startup", index="/x", repeats=3, rows=[row],
                        code={"path": "/code", "commit": "0123456789abcdef", "dirty": False})
    assert "| search --mode tokens | 1.20 | 1.12-1.31 | 200 | none |" in render(record)
    assert "/code at commit 0123456789ab)" in render(record)
    assert summary_line(row) == ("search --mode tokens: 1.20 s median, 200 MiB peak, imports "
                                 "neither torch nor transformers")
