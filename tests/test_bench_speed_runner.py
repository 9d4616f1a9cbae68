"""The speed benchmark's own indexing path and its latency model, against known answers.

`index_bags` writes synthetic bags as an index through the package's public steps with the real
index's manifest; if it wrote a different manifest or layout, the synthetic sizes would time a
different index. `latency_fit` explains per-query times by postings walked and documents touched;
on times made from known coefficients it must return them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from refimpl import postings_scores, top_k
from speed_bags import VOCAB, hand_built_bags

from bench.speed import runner
from bench.speed.runner import RealSource, index_bags, latency_fit, sparse_bytes, usable_index
from tokretrieve import SparseIndex, index_from_embeddings


@pytest.fixture
def real(tiny_encoder, tmp_path):
    """A small real index of the tiny model, on disk as the benchmark finds one."""
    encoder = tiny_encoder("bert", "mean").with_bags(bag_size=8)
    rng = np.random.default_rng(3)
    embeddings = rng.standard_normal((40, encoder.model.hidden_size)).astype(np.float32)
    index = index_from_embeddings([f"d{i}" for i in range(40)], embeddings, encoder,
                                  tmp_path / "real", pc1_strength=0.0)
    return RealSource(index, encoder, [("q1", "wing flutter"), ("q2", "heat transfer")])


def test_index_bags_writes_the_real_manifest_with_these_documents(real, tmp_path):
    bags = hand_built_bags()
    vocab = real.index.vocab_size
    bags.resize((bags.shape[0], vocab))  # the tiny vocabulary is wider than the 60 test tokens
    ids = [f"syn{i}" for i in range(bags.shape[0])]
    info = index_bags(tmp_path / "synthetic", bags, ids, real, "synthetic: test")
    loaded = SparseIndex.load(tmp_path / "synthetic")
    manifest, source = loaded.manifest, real.index.manifest
    assert manifest.model == source.model and manifest.bags == source.bags
    assert manifest.layout == source.layout and manifest.vocab_size == source.vocab_size
    assert manifest.doc_count == bags.shape[0] and manifest.source == "synthetic: test"
    segment = tmp_path / "synthetic" / manifest.contents.segments[0].name
    on_disk = {f.stem: f.stat().st_size for f in segment.glob("postings_*.npy")}
    assert set(on_disk) == {"postings_indptr", "postings_word_ptr", "postings_words"}  # packed
    measured = sparse_bytes(tmp_path / "synthetic")
    assert measured["postings_files"] == on_disk and measured["postings"] == sum(on_disk.values())
    assert manifest.documents_digest is None  # no texts behind synthetic bags
    assert manifest.empty_documents == 1 == info["empty_documents"]  # the hand-built bags' first
    assert info["postings"] == manifest.postings == loaded.postings.n_postings
    assert info["bag_entries"] == bags.nnz
    assert info["dropped_zero_levels"] == bags.nnz - manifest.postings
    assert [str(d) for d in loaded.doc_ids] == ids
    assert (tmp_path / "synthetic" / manifest.contents.base / "tokenizer").is_dir()
    # The written postings score a query as the bags they came from say (uint8 levels).
    tokens, weights = np.array([0, 3, VOCAB - 1]), np.float32([1.0, 0.5, 2.0])
    docs, scores = top_k(postings_scores(loaded.postings, tokens, weights), 10)
    query = np.zeros((1, vocab), dtype=np.float32)
    query[0, tokens] = weights
    found_scores, found = loaded.search(sp.csr_matrix(query), 10)
    np.testing.assert_array_equal(found[0, :len(docs)], docs)
    np.testing.assert_array_equal(found_scores[0, :len(docs)], scores)


def test_usable_index_checks_model_and_bag_size(real, tmp_path, monkeypatch):
    assert usable_index(real.path, real.encoder, 8) is None  # not the benchmark's model
    monkeypatch.setattr(runner, "MODEL", real.index.manifest.model.name)
    assert usable_index(real.path, real.encoder, 8).path == real.path
    assert usable_index(real.path, real.encoder, 16) is None
    assert usable_index(tmp_path / "nothing", real.encoder, 8) is None


def test_latency_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    walked = rng.integers(100, 50_000, size=200).astype(float)
    touched = rng.integers(50, 5_000, size=200).astype(float)
    ns = 3_000 + 1.5 * walked + 4.0 * touched  # 3 us fixed, 1.5 ns/posting, 4 ns/document
    fit = latency_fit(ns / 1e9, {"postings": walked, "touched": touched})
    assert fit["fixed_us"] == pytest.approx(3.0, rel=1e-6)
    assert fit["ns_per_posting"] == pytest.approx(1.5, rel=1e-6)
    assert fit["ns_per_touched"] == pytest.approx(4.0, rel=1e-6)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["ns_per_posting_overall"] == pytest.approx(ns.sum() / walked.sum())
    # Every query touching the same documents: a two-term fit, no per-document cost.
    flat = latency_fit((3_000 + 1.5 * walked) / 1e9,
                       {"postings": walked, "touched": np.full(200, 1400.0)})
    assert flat["ns_per_posting"] == pytest.approx(1.5, rel=1e-6)
    assert math.isnan(flat["ns_per_touched"])
    assert latency_fit([1e-3] * 3, {"postings": walked[:3], "touched": touched[:3]}) == {}
