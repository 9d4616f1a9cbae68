"""Reciprocal-rank fusion against scores worked out by hand, and its deterministic ties."""

from __future__ import annotations

import pytest

from bench.quality.fusion import reciprocal_rank_fusion


def test_rrf_matches_a_hand_computed_example():
    a = {"q": [("a", 9.0), ("b", 8.0), ("c", 7.0)]}
    b = {"q": [("b", 0.9), ("d", 0.8)]}
    fused = reciprocal_rank_fusion([a, b], depth=10, k=60)
    expected = {"b": 1 / 62 + 1 / 61, "a": 1 / 61, "d": 1 / 62, "c": 1 / 63}
    assert [doc for doc, _ in fused["q"]] == ["b", "a", "d", "c"]
    for doc, score in fused["q"]:
        assert score == pytest.approx(expected[doc])
    assert [doc for doc, _ in reciprocal_rank_fusion([a, b], depth=2)["q"]] == ["b", "a"]


def test_rrf_breaks_ties_by_best_rank_then_doc_id_and_keeps_one_sided_queries():
    a = {"q": [("y", 1.0), ("x", 0.5)], "only_a": [("z", 1.0)]}
    b = {"q": [("x", 1.0), ("y", 0.5)]}
    fused = reciprocal_rank_fusion([a, b], depth=5)
    assert [doc for doc, _ in fused["q"]] == ["x", "y"]  # equal sums, equal best ranks
    assert fused["only_a"] == [("z", pytest.approx(1 / 61))]
