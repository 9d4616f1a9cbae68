"""bench.speed.coldstart's steps and report: a failing step stops the run with its error, a
step's JSON line comes back, and the report lays a record's timings out in its table."""

from __future__ import annotations

import pytest

from bench.speed.coldstart import _run, render, summary_line
from bench.toolkit.results import new_record


def test_a_step_runs_in_a_fresh_interpreter_with_its_own_cache(tmp_path):
    got = _run("import json, os\nprint(json.dumps(os.environ['NUMBA_CACHE_DIR']))",
               tmp_path / "cache")
    assert got == str(tmp_path / "cache")


def test_a_failing_step_stops_the_run_with_its_error(tmp_path):
    with pytest.raises(SystemExit, match="ZeroDivisionError"):
        _run("1 / 0", tmp_path / "cache")


def test_the_report_tables_each_codec_s_timings():
    row = {"codec": "packed", "cold": {"first_s": 42.04, "again_s": 0.001},
           "cached": {"first_s": 0.271, "again_s": 0.001}, "warm_up": {"first_s": 58.06},
           "after_warm_up": {"first_s": 0.3512, "again_s": 0.00119}}
    record = new_record("python -m bench.speed.coldstart", docs=300, bag_size=20, rows=[row])
    report = render(record)
    assert "| packed | 42.0 | 0.27 | 58.1 | 0.351 | 1.19 |" in report
    assert "300 synthetic documents of 20 tokens" in report
    assert summary_line(row) == ("packed: first search 42.0 s on an empty cache, 0.35 s after "
                                 "a 58.1 s warm-up")
