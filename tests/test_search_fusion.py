"""tokretrieve.search.fusion: reciprocal-rank and linear fusion against scores worked out by
hand, their deterministic ties, and HybridSearcher over a real index against those fusions of
its parts' own rankings."""

from __future__ import annotations

import pytest

from tokretrieve import HybridSearcher, SparseSearcher, TokretrieveError, build_index
from tokretrieve.search import DenseSearcher, linear_fusion, reciprocal_rank_fusion


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


def test_weighted_rrf_and_linear_fusion_match_hand_computed_examples():
    a = {"q": [("a", 9.0), ("b", 5.0), ("c", 1.0)]}
    b = {"q": [("b", 0.9), ("d", 0.8)]}
    weighted = dict(reciprocal_rank_fusion([a, b], depth=10, weights=[2.0, 1.0])["q"])
    assert weighted == pytest.approx({"a": 2 / 61, "b": 2 / 62 + 1 / 61, "c": 2 / 63,
                                      "d": 1 / 62})
    linear = linear_fusion([a, b], depth=10, weights=[0.5, 1.0])["q"]
    # a: (9-1)/8 = 1, b: 0.5 from a + 1 from b, c: 0, d: (0.8-0.8)/0.1 = 0
    assert [doc for doc, _ in linear] == ["b", "a", "d", "c"]  # d before c: better best rank
    assert dict(linear) == pytest.approx({"b": 0.5 * 0.5 + 1.0, "a": 0.5, "c": 0.0, "d": 0.0})
    assert dict(linear_fusion([{"q": [("x", 3.0), ("y", 3.0)]}], depth=5)["q"]) == {
        "x": 1.0, "y": 1.0}  # all equal: each counts fully
    with pytest.raises(TokretrieveError, match="non-negative"):
        linear_fusion([a, b], depth=5, weights=[1.0, -1.0])
    with pytest.raises(TokretrieveError, match="2 non-negative"):
        reciprocal_rank_fusion([a, b], depth=5, weights=[1.0])


@pytest.fixture
def index(tiny_encoder, tmp_path):
    encoder = tiny_encoder("llama", "prompteol").with_bags(bag_size=8, weighting="shifted")
    docs = [("d1", "wing lift drag"), ("d2", "heat transfer flow"),
            ("d3", "shock wave flow"), ("d4", "boundary layer heat transfer")]
    return build_index(docs, encoder, tmp_path / "idx", pc1_strength=0.0, progress=False), encoder


@pytest.mark.parametrize("fusion", ["rrf", "linear"])
def test_hybrid_searcher_fuses_its_parts_rankings(index, fusion):
    """Sparse (model) + dense of one model: the hybrid's hits are the fusion of the two
    searchers' own rankings, with the sparse part's matched tokens."""
    built, encoder = index
    sparse = SparseSearcher.from_index(built, mode="model", encoder=encoder)
    dense = DenseSearcher.from_index(built, encoder=encoder)
    hybrid = HybridSearcher.from_index(built, ("model", "dense"), encoder=encoder,
                                       fusion=fusion, weights=[1.0, 0.5], depth=4)
    query = "heat flow"
    parts = [{"q": [(h.doc_id, h.score) for h in s.search(query, k=4)]} for s in (sparse,
                                                                                  dense)]
    expected = (reciprocal_rank_fusion(parts, 4, weights=[1.0, 0.5]) if fusion == "rrf"
                else linear_fusion(parts, 4, weights=[1.0, 0.5]))["q"][:3]
    found = hybrid.search(query, k=3)
    assert [(h.doc_id, h.score) for h in found] == [(d, pytest.approx(s)) for d, s in expected]
    explained = {h.doc_id: h.matched for h in sparse.search(query, k=4)}
    assert all(h.matched == explained.get(h.doc_id, []) for h in found)


def test_hybrid_refuses_bad_parts(index):
    built, encoder = index
    with pytest.raises(TokretrieveError, match="unknown hybrid part"):
        HybridSearcher.from_index(built, ("model", "bm99"), encoder=encoder)
    with pytest.raises(TokretrieveError, match="at least two"):
        HybridSearcher([SparseSearcher.from_index(built, mode="tokens")])
    with pytest.raises(TokretrieveError, match="unknown fusion"):
        HybridSearcher.from_index(built, ("model", "tokens"), encoder=encoder, fusion="max")


def test_bm25_part_ranks_the_live_documents_with_their_texts(index):
    """A hybrid's BM25 covers exactly the index's live documents (a deleted one is never a
    hit), equals BM25Searcher over those texts, and refuses a collection lacking a text."""
    from tokretrieve import delete_documents
    from tokretrieve.search.bm25 import BM25Searcher

    built, _ = index
    docs = [("d1", "wing lift drag"), ("d2", "heat transfer flow"),
            ("d3", "shock wave flow"), ("d4", "boundary layer heat transfer"),
            ("other", "heat heat heat")]  # not in the index: never a hit
    changed = delete_documents(built.path, ["d4"])
    hybrid = HybridSearcher.from_index(changed, ("tokens", "bm25"), docs=docs, depth=4)
    bm25 = hybrid.searchers[1]
    assert bm25.doc_ids == ["d1", "d2", "d3"]
    reference = BM25Searcher(docs[:3]).search("heat flow", k=4)
    assert bm25.search("heat flow", k=4) == reference
    assert reference[0].doc_id == "d2" and {h.doc_id for h in reference} == {"d2", "d3"}
    found = hybrid.search("heat flow", k=4)
    assert {h.doc_id for h in found} <= {"d1", "d2", "d3"}
    with pytest.raises(TokretrieveError, match=r"no text .*'d3'"):
        HybridSearcher.from_index(changed, ("tokens", "bm25"), docs=docs[:2])
    with pytest.raises(TokretrieveError, match="needs the collection's texts"):
        HybridSearcher.from_index(changed, ("tokens", "bm25"))
