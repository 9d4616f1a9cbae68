"""TREC run files (tokretrieve.trec): what evaluators read back is the run as ranked."""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest

from tokretrieve import CorpusError
from tokretrieve.search import Hit
from tokretrieve.trec import write_run


def test_scores_read_back_exactly_and_keep_the_order(tmp_path):
    """Scores a small model gives (around 1e-6, differing in the second digit) read back by
    ir_measures as the same float32 values, so its re-sorting by score keeps the ranking; a
    double that is no float32 (a fused score) reads back as itself."""
    singles = [float(np.float32(s)) for s in (3.1e-6, 3.0e-6, 2.9999e-6, 1e-9)]
    fused = 1 / 61 + 1 / 62
    path = tmp_path / "run.trec"
    write_run(path, {"q1": [Hit(f"d{i}", s, []) for i, s in enumerate(singles)],
                     "q2": [Hit("d9", fused, []), Hit("d8", 12.5, [])]})
    rows = list(ir_measures.read_trec_run(str(path)))
    q1 = [row for row in rows if row.query_id == "q1"]
    assert [row.doc_id for row in q1] == ["d0", "d1", "d2", "d3"]
    assert [np.float32(row.score) for row in q1] == [np.float32(s) for s in singles]
    assert [row.score for row in sorted(q1, key=lambda r: -r.score)] == [r.score for r in q1]
    assert [(row.doc_id, row.score) for row in rows if row.query_id == "q2"] == [
        ("d9", fused), ("d8", 12.5)]
    assert path.read_text().splitlines()[0] == "q1 Q0 d0 1 3.1e-06 tokretrieve"


@pytest.mark.parametrize(("results", "tag", "message"), [
    ({"q 1": [Hit("d1", 1.0, [])]}, "t", "query id 'q 1' contains whitespace"),
    ({"q1": [Hit("d1", 1.0, []), Hit("d\t2", 0.5, [])]}, "t",
     r"document id \(query 'q1', rank 2\) 'd\\t2' contains whitespace"),
    ({"": [Hit("d1", 1.0, [])]}, "t", "query id is empty"),
    ({"q1": [Hit("d1", 1.0, [])]}, "my run", "run tag 'my run' contains whitespace"),
])
def test_ids_and_tags_with_whitespace_are_refused(tmp_path, results, tag, message):
    """A run line is whitespace-separated columns: an id or tag with a blank (or an empty id)
    would shift them, so it is refused naming it, and no run file is left behind."""
    path = tmp_path / "run.trec"
    with pytest.raises(CorpusError, match=message):
        write_run(path, results, tag=tag)
    assert list(tmp_path.iterdir()) == []
