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


def test_the_report_tables_each_command_on_each_checkout():
    runs = [{"seconds": s, "peak_mib": 200.4, "imported": []} for s in (1.31, 1.12, 1.2)]
    rows = [{"command": "info", "argv": [], "code": 1, "runs": runs[:1], "median_s": 1.31,
             "peak_mib": 300.0, "imported": ["torch"]},
            {"command": "search --mode tokens", "argv": [], "code": 0, "runs": runs,
             "median_s": 1.2, "peak_mib": 200.4, "imported": []}]
    record = new_record("python -m bench.speed.startup", index="/x", repeats=3, rows=rows,
                        codes=[{"path": "/new", "commit": "0123456789abcdef", "dirty": False},
                               {"path": "/old", "commit": "fedcba9876543210", "dirty": True}])
    report = render(record)
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    assert lines[1:] == [  # the commands in their order, whatever the rows' order
        "| search --mode tokens | 0123456789ab | 1.20 | 1.12-1.31 | 200 | none |",
        "| info | fedcba987654 with changes | 1.31 | 1.31-1.31 | 300 | torch |"]
    assert "/new at 0123456789ab; /old at fedcba987654 with changes" in report
    assert summary_line(record, rows[1]) == (
        "0123456789ab: search --mode tokens: 1.20 s median, 200 MiB peak, imports neither "
        "torch nor transformers")


def test_rounds_take_turns_over_the_checkouts(tmp_path, monkeypatch):
    """Each round runs every command on every checkout once, in turn, and reports the rows."""
    import bench.speed.startup as startup

    calls, rounds = [], []
    monkeypatch.setattr(startup, "run_once", lambda argv, code, log: calls.append(
        (argv[0], code.name)) or {"seconds": len(calls), "peak_mib": 1.0, "imported": []})
    rows = startup.measure("/x", [tmp_path / "a", tmp_path / "b"], 2, tmp_path,
                           lambda rows: rounds.append([len(r["runs"]) for r in rows]))
    per_round = [(name, code) for code in "ab" for name in ("search", "search", "info")]
    assert calls == per_round * 2
    assert rounds == [[1] * 6, [2] * 6]
    assert [r["median_s"] for r in rows] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
