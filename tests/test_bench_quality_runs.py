"""Run handling: the identical-id rule, depth after it, TREC run files."""

from __future__ import annotations

import re

import ir_measures
import pytest

from bench.quality.runs import drop_identical_ids, finalize, read_trec_run, write_trec_run


def test_identical_ids_are_dropped_and_depth_is_kept():
    ranking = {"7": [("7", 3.0), ("1", 2.0), ("2", 1.0)], "8": [("1", 2.0), ("2", 1.0)]}
    assert drop_identical_ids(ranking) == {"7": [("1", 2.0), ("2", 1.0)],
                                           "8": [("1", 2.0), ("2", 1.0)]}
    # Systems fetch depth + 1 hits, so dropping the query's own id still leaves `depth`.
    assert finalize(ranking, depth=2) == {"7": [("1", 2.0), ("2", 1.0)],
                                          "8": [("1", 2.0), ("2", 1.0)]}
    assert finalize(ranking, depth=2, identical_ids=True)["7"] == [("7", 3.0), ("1", 2.0)]


def test_trec_run_file_format(tmp_path):
    ranking = {"q1": [("d3", 2.5), ("d1", 1.25)], "q2": [("d2", 0.5)]}
    path = write_trec_run(ranking, tmp_path / "run.trec", "my-system")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ["q1 Q0 d3 1 2.5 my-system", "q1 Q0 d1 2 1.25 my-system",
                     "q2 Q0 d2 1 0.5 my-system"]
    for line in lines:
        assert re.fullmatch(r"\S+ Q0 \S+ [1-9]\d* -?\d+\.\d+ \S+", line)
    assert read_trec_run(lines) == ranking
    parsed = [(r.query_id, r.doc_id, r.score) for r in ir_measures.read_trec_run(str(path))]
    assert parsed == [("q1", "d3", 2.5), ("q1", "d1", 1.25), ("q2", "d2", 0.5)]


def test_run_tags_must_be_one_word(tmp_path):
    with pytest.raises(ValueError, match="one non-empty word"):
        write_trec_run({"q": [("d", 1.0)]}, tmp_path / "run.trec", "two words")
