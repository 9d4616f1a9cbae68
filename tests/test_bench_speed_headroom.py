"""The pruning-headroom analysis against a case worked out by hand, and its corpus means.

Eight documents, four tokens, query weights 1: token 0 at level 10 in document 0 and 1 in
documents 4-7, token 1 at 5 in document 1, token 2 at 8 in document 0, token 3 at 2 in
document 7. Scores: d0 18, d1 5, d7 3, d4-d6 1, so the 2nd best (k=2) is 5.
- blocks of 4: block 0 (d0-d3) is bounded by 10 + 5 + 8 = 23 >= 5 and holds 3 of the 8
  postings; block 1 (d4-d7) by 1 + 2 = 3 < 5: half the blocks, 3/8 of the postings stay;
- one block of 8: bounded by 25, everything stays;
- MaxScore: token bounds 10, 5, 8, 2; the smallest, 2, is below 5 but 2 + 5 is not, so token 3
  alone is non-essential: 7 of 8 postings are essential; d0 and d1 reach 5 with their
  essential partial sum + 2, of 6 matched documents.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bench.speed.headroom import corpus_headroom, query_headroom

LEVELS = np.zeros((8, 4))
LEVELS[0, 0], LEVELS[4:8, 0] = 10, 1
LEVELS[1, 1] = 5
LEVELS[0, 2] = 8
LEVELS[7, 3] = 2


def test_one_query_matches_the_hand_computed_shares():
    levels = sp.csc_matrix(LEVELS)
    maxima = LEVELS.max(axis=0)
    result = query_headroom(levels, maxima, np.arange(4), np.ones(4), (4, 8), k=2)
    assert result["postings"] == 8
    assert result["blocks"]["4"] == {"alive_blocks": 0.5, "alive_postings": 3 / 8}
    assert result["blocks"]["8"] == {"alive_blocks": 1.0, "alive_postings": 1.0}
    assert result["maxscore"]["essential_tokens"] == 3 / 4
    assert result["maxscore"]["essential_postings"] == 7 / 8
    assert result["maxscore"]["documents_to_complete"] == pytest.approx(2 / 6)


def test_a_query_matching_fewer_than_k_documents_is_left_out():
    levels = sp.csc_matrix(LEVELS)
    assert query_headroom(levels, LEVELS.max(axis=0), np.array([1]), np.ones(1), (4,),
                          k=2) is None


def test_corpus_means_skip_queries_without_k_matches():
    """The second query matches one document: only the first counts; at k=10 neither."""
    queries = sp.csr_matrix(np.array([[1, 1, 1, 1], [0, 1, 0, 0]], dtype=np.float32))
    levels = sp.csr_matrix(LEVELS.astype(np.uint8))
    result = corpus_headroom(levels, {"tokens": queries}, (4,), every=1, k=2)
    assert result["documents"] == 8 and result["postings"] == 8
    assert result["tokens"]["queries"] == 1 and result["tokens"]["postings_mean"] == 8
    assert result["tokens"]["blocks"]["4"] == {"alive_blocks": 0.5, "alive_postings": 3 / 8}
    assert result["tokens"]["maxscore"]["essential_postings"] == 7 / 8
    assert corpus_headroom(levels, {"tokens": queries}, (4,), every=1)["tokens"] == {
        "queries": 0}
