"""The systems of the quality benchmark: BM25 against rankings worked out by hand, and the sparse
systems against a brute-force scorer of the stored postings, so the benchmark's rankings are
known to be the shipped kernel's exact answers and its cached-embedding query path is known to
give the bags the live model gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from refimpl import postings_scores, top_k
from tiny_beir import write_beir

from bench.quality.cache import encode_collection
from bench.quality.datasets import load_collection
from bench.quality.metrics import evaluate
from bench.quality.runs import finalize
from bench.quality.systems import BM25System, DenseSystem, SparseConfig, SparseSystem
from tokretrieve.encoding.literal import LiteralWeights

DEPTH = 3


@pytest.fixture
def collection(tmp_path):
    return load_collection(str(write_beir(tmp_path / "tiny")))


@pytest.fixture
def encoded(tiny_encoder, collection, tmp_path):
    return encode_collection(tiny_encoder("bert", "mean"), collection, "tiny-bert",
                             tmp_path / "cache")


def test_bm25_run_scores_as_computed_by_hand(collection):
    bm25 = BM25System(collection.docs)
    texts = [text for _, text in collection.queries]
    raw = bm25.search_all(collection.query_ids, bm25.tokenize(texts), depth=10)
    assert [doc for doc, _ in raw["q1"]] == ["d3"]  # zero-score documents are not hits
    assert [doc for doc, _ in raw["q2"]] == ["d4", "d1"]
    assert [doc for doc, _ in raw["d4"]] == ["d4", "d1"]

    # q1: relevant at rank 1; q2: at rank 2; d4: its own id dropped, so d1 moves to rank 1.
    means = evaluate(collection.qrels, finalize(raw, depth=10))
    assert means["MRR@10"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert means["nDCG@10"] == pytest.approx((1 + 1 / math.log2(3) + 1) / 3)
    assert means["R@100"] == pytest.approx(1.0)
    kept = evaluate(collection.qrels, finalize(raw, depth=10, identical_ids=True))
    assert kept["MRR@10"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert kept["nDCG@10"] == pytest.approx((1 + 2 / math.log2(3)) / 3)


@pytest.mark.parametrize("mode", ["model", "tokens"])
@pytest.mark.parametrize("token_weighting", ["idf", "count"])
def test_sparse_rankings_are_the_exact_top_hits_of_the_stored_postings(
        tiny_encoder, collection, encoded, mode, token_weighting):
    system = SparseSystem(tiny_encoder("bert", "mean"), collection, encoded,
                          SparseConfig(bag_size=8, pc1_strength=0.0, weighting="shifted"))
    bags = system.query_bags(mode, token_weighting)
    ranking = system.search_all(mode, DEPTH, token_weighting)
    ids = system.index.doc_ids
    assert list(ranking) == collection.query_ids
    found = 0
    for q, qid in enumerate(collection.query_ids):
        start, end = bags.indptr[q], bags.indptr[q + 1]
        tokens, weights = bags.indices[start:end], bags.data[start:end]
        keep = weights > 0
        docs, scores = top_k(postings_scores(system.index.postings, tokens[keep],
                                             weights[keep]), DEPTH + 1)
        assert ranking[qid] == [(str(ids[d]), float(s)) for d, s in zip(docs, scores,
                                                                         strict=True)]
        found += len(docs)
    assert found > 0  # the comparison saw hits, not only empty lists


def test_cached_query_embeddings_give_the_live_model_bags(tiny_encoder, collection, encoded):
    encoder = tiny_encoder("bert", "mean")
    system = SparseSystem(encoder, collection, encoded, SparseConfig(bag_size=8))
    texts = [text for _, text in collection.queries]
    cached = system.query_bags("model").toarray()
    live = system.query_encoder("model", live=True).encode(texts).toarray()
    assert (cached > 0).sum() > 0
    np.testing.assert_array_equal(cached > 0, live > 0)
    np.testing.assert_allclose(cached, live, rtol=1e-5, atol=1e-7)


def test_resolved_config_reads_the_index_manifest(tiny_encoder, collection, encoded):
    system = SparseSystem(tiny_encoder("bert", "mean"), collection, encoded,
                          SparseConfig(bag_size=8, pc1_strength=-0.25, weighting="logit",
                                       merge_variants=True, token_weighting="count"))
    assert system.config == SparseConfig(bag_size=8, pc1_strength=-0.25, weighting="logit",
                                         merge_variants=True, token_weighting="count",
                                         literal=False)  # a hub-id model: none by default
    assert system.postings == int(system.index.postings.n_postings) > 0
    assert system.config.label() == "bag=8 λ=-0.25 logit merged literal off q:count"


def test_dense_ranking_is_cosine_order(collection, encoded):
    ranking = DenseSystem(collection, encoded).search_all(DEPTH)
    docs = encoded.doc_embeddings / np.linalg.norm(encoded.doc_embeddings, axis=1,
                                                    keepdims=True)
    for q, qid in enumerate(collection.query_ids):
        query = encoded.query_embeddings[q] / np.linalg.norm(encoded.query_embeddings[q])
        cosine = docs @ query
        expected = [collection.doc_ids[d] for d in np.argsort(-cosine, kind="stable")[:DEPTH + 1]]
        assert [doc for doc, _ in ranking[qid]] == expected
        np.testing.assert_allclose([s for _, s in ranking[qid]],
                                   np.sort(cosine)[::-1][:DEPTH + 1], rtol=1e-5)


def test_a_literal_alpha_of_one_is_an_alpha_not_the_standard_settings():
    """1.0 == True in Python: the sweep's alpha 1.0 once became the standard alpha (0.5)."""
    assert SparseConfig(literal=1.0).recipe()["literal"].alpha == 1.0
    assert SparseConfig(literal=True).recipe()["literal"].alpha == LiteralWeights().alpha
    assert SparseConfig(literal=False).recipe()["literal"] is False
