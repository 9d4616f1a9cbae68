"""tokretrieve.build: what build_index writes equals bags rebuilt independently from the stored
embeddings (PC1 by numpy SVD, projection, top-k, weighting, merging, quantization)."""

from __future__ import annotations

import numpy as np
import pytest
from built_reference import BAG_KEYS, DOCS, bag_hits
from refimpl import assert_same_bag, brute_force_ranking, random_texts, raw_arrays

from tokretrieve.build import index_from_embeddings
from tokretrieve.errors import TokretrieveError


def test_stored_embeddings_are_the_model_embeddings(built):
    """The index keeps each document's dense embedding, in document order."""
    index, encoder, _ = built
    np.testing.assert_allclose(np.asarray(index.embeddings),
                               encoder.embed([text for _, text in DOCS]), atol=1e-5)
    assert list(np.asarray(index.doc_ids)) == [doc_id for doc_id, _ in DOCS]


def test_stored_postings_are_the_reference_bags(built):
    """Token-major postings hold exactly the brute-force bags (PC1-adjusted, merged), doc
    positions ascending in each posting list; the manifest counts them."""
    index, _, reference = built
    postings = index.postings
    indptr, docs, impacts = raw_arrays(postings)
    segment_docs = reference.options["segment_docs"]
    assert indptr.shape == (-(-len(DOCS) // segment_docs), reference.vocab + 1)
    assert docs.dtype == np.uint16 and impacts.dtype == np.dtype(reference.options["impacts"])
    stored = [dict() for _ in DOCS]
    for segment, row in enumerate(indptr):
        for token in range(reference.vocab):
            span = docs[row[token]:row[token + 1]].astype(np.int64)
            assert np.all(np.diff(span) > 0) and np.all(span < segment_docs)
            for doc, impact in zip(span + segment * segment_docs,
                                   impacts[row[token]:row[token + 1]], strict=True):
                stored[doc][token] = float(impact) * postings.scale
    for got, expected in zip(stored, reference.doc_bags, strict=True):
        assert_same_bag(got, expected)
    manifest = index.manifest
    assert manifest.postings == sum(len(b) for b in reference.doc_bags)
    assert manifest.doc_count == len(DOCS) == len(index)
    assert {key: getattr(manifest.bags, key) for key in BAG_KEYS} == \
        {key: reference.options[key] for key in BAG_KEYS}
    assert manifest.bags.pc1_strength == manifest.bags.pc1_request == \
        reference.options["pc1_strength"]
    assert (manifest.layout.segment_docs, manifest.layout.impacts, manifest.layout.scale) == (
        segment_docs, reference.options["impacts"], postings.scale)
    np.testing.assert_allclose(index.pc1_direction, reference.direction, atol=1e-5)


def test_ties_go_to_the_lower_document_position(tiny_encoder):
    """Documents with identical bags tie exactly; they come back in index order, and the cut
    at k keeps the earliest ones."""
    encoder = tiny_encoder("llama", "prompteol")
    base = encoder.embed(random_texts(4, seed=41, low=3, high=8))
    order = [3, 0, 2, 0, 1, 3, 0, 2, 1, 0, 3, 2] * 4  # 48 docs, 4 distinct bags, interleaved
    embeddings = base[order]
    ids = [f"x{i:02d}" for i in range(len(order))]
    fitted = encoder.with_bags(bag_size=5, weighting="shifted")
    index = index_from_embeddings(ids, embeddings, fitted, path=None, pc1_strength=0.0)
    reference = fitted.bags(embeddings).toarray().astype(np.float64)
    for query_row in range(4):
        tokens = np.flatnonzero(reference[order.index(query_row)])
        weights = np.ones(len(tokens))
        scores = reference[:, tokens] @ weights
        for k in (1, 3, 10, 13, 48):
            hits = bag_hits(index, tokens, weights, k)
            expected = brute_force_ranking(scores, k)
            assert [doc for doc, _ in hits] == [ids[i] for i in expected]
            for group in range(4):  # identical bags score bit-identically
                assert len({s for doc, s in hits if order[ids.index(doc)] == group}) <= 1



def test_index_from_embeddings_without_texts(tiny_encoder):
    """A model with no measured λ default and no texts to calibrate on gets λ = 0 (no
    adjustment), as before; asking for "auto" without texts is refused, naming what is needed."""
    encoder = tiny_encoder("llama", "prompteol").with_bags(bag_size=5, weighting="shifted")
    assert encoder.model.default_pc1_relative is None
    embeddings = encoder.embed(random_texts(6, seed=61))
    ids = [f"e{i}" for i in range(6)]
    index = index_from_embeddings(ids, embeddings, encoder)
    assert index.manifest.bags.pc1_strength == 0.0 and index.manifest.bags.pc1_request is None
    plain = index_from_embeddings(ids, embeddings, encoder, pc1_strength=0.0)
    assert (index.postings.impacts == plain.postings.impacts).all()
    with pytest.raises(TokretrieveError, match="texts="):
        index_from_embeddings(ids, embeddings, encoder, pc1_strength="auto")
