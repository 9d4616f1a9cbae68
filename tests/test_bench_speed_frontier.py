"""The speed frontier's accounting: postings walked, recall, the bandwidth floor, and the
peers fed the same bags (PISA, an exact engine, must return tokretrieve's exact top-k for
integer query weights: if the harness mistranslated a bag or a query, it would not)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from refimpl import postings_scores
from speed_bags import VOCAB, hand_built_bags

from bench.speed.frontier import (
    measure_corpus,
    open_index,
    pisa_runs,
    postings_walked,
    query_batches,
    recall,
    top_sets,
    unit_peers,
)
from bench.speed.kernel import QueryBatch
from tokretrieve.index.postings import postings_from_bags


def integer_queries(seed: int = 3, n: int = 12) -> QueryBatch:
    """Queries of 1-8 tokens with weights 1-4 (PISA scores integer weights exactly)."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, VOCAB), dtype=np.float32)
    for q in range(n):
        tokens = rng.choice(VOCAB, size=rng.integers(1, 9), replace=False)
        rows[q, tokens] = rng.integers(1, 5, size=len(tokens))
    return QueryBatch.from_bags(sp.csr_matrix(rows))


def test_postings_walked_are_the_query_tokens_document_frequencies():
    bags = hand_built_bags()
    postings = postings_from_bags(bags, "uint8", segment_docs=64)
    batch = integer_queries()
    df = np.diff(sp.csc_matrix(postings.to_bags()).indptr)
    expected = [int(df[batch.tokens[batch.indptr[q]:batch.indptr[q + 1]]].sum())
                for q in range(len(batch))]
    assert postings_walked(postings, batch).tolist() == expected


def test_recall_is_the_mean_share_of_each_exact_top_k_found():
    assert recall([{1, 2}, {5}, set()], [{1, 3}, {5}, set()]) == pytest.approx(0.75)


def test_exact_modes_have_recall_one_and_the_floor_follows_the_postings():
    bags = hand_built_bags()
    batch = integer_queries()
    result = measure_corpus(bags, 2.0 ** -6, {"tokens": batch, "model": batch},
                            bandwidth=1e9, with_peers=False, scratch=None)
    for mode in ("tokens", "model"):
        stats = result["modes"][mode]
        assert stats["recall"] == 1.0
        assert stats["bandwidth_floor_ms"] == pytest.approx(stats["postings_p50"] * 3 / 1e9
                                                            * 1e3)
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]


def test_pisa_returns_the_exact_top_k_of_integer_queries(tmp_path):
    """Queries whose 10th and 11th exact scores differ (no tie for PISA to break its own
    way): PISA finds every document of the exact top 10."""
    pytest.importorskip("pyterrier_pisa", reason="PISA is not installed: make install-peers")
    postings = postings_from_bags(hand_built_bags(), "uint8")
    candidates = integer_queries(n=40)
    untied = []
    for q in range(len(candidates)):
        tokens = candidates.tokens[candidates.indptr[q]:candidates.indptr[q + 1]]
        weights = candidates.weights[candidates.indptr[q]:candidates.indptr[q + 1]]
        scores = np.sort(postings_scores(postings, tokens, weights))[::-1]
        if scores[9] > scores[10] > 0:
            untied.append(q)
    assert len(untied) >= 10
    batch = QueryBatch.from_bags(sp.csr_matrix(
        (candidates.weights, candidates.tokens, candidates.indptr),
        shape=(len(candidates), VOCAB))[untied])
    exact = {"tokens": top_sets(postings, batch), "model": top_sets(postings, batch)}
    result = pisa_runs(postings, {"tokens": batch, "model": batch}, exact, tmp_path)
    for algorithm in ("block_max_wand", "maxscore"):
        assert result["algorithms"][algorithm]["tokens"]["recall"] == 1.0


def test_bm25s_and_faiss_are_timed_on_every_query():
    """BM25S gets the tokens queries over the same bags, FAISS the query vectors over the
    documents' (or random) vectors: one latency sample set each, over every query."""
    bags = hand_built_bags()
    batch = integer_queries()
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    for documents in (rng.standard_normal((bags.shape[0], 16)).astype(np.float32), None):
        result = unit_peers(bags, {"tokens": batch}, queries, documents, seed=1)
        assert set(result) == {"BM25S numba", "FAISS flat"}
        assert result["BM25S numba"]["n"] >= len(batch)
        assert result["FAISS flat"]["n"] >= len(queries)
        assert all(0 < stats["p50_ms"] <= stats["p99_ms"] for stats in result.values())


def test_a_missing_index_is_refused_with_how_to_build_one(tmp_path):
    with pytest.raises(SystemExit, match=r"no index at .*`make demo` builds"):
        open_index(tmp_path)


def test_a_missing_query_file_is_one_message_naming_it(tmp_path):
    with pytest.raises(SystemExit, match=r"file not found: .*absent.*pass --corpus"):
        query_batches(None, None, tmp_path / "absent", ())
