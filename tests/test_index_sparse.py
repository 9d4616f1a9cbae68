"""tokretrieve.index.sparse: SparseIndex.search(queries, k) -> (scores, ids) on bags given
directly (no model), against brute force over the stored weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from built_reference import DOCS, bag_hits, bag_matrix
from refimpl import brute_force_ranking

from tokretrieve.errors import TokretrieveError


def test_query_bag_idf_by_hand(built):
    """The idf of a token is BM25's, from its document frequency over the stored bags."""
    index, _, reference = built
    n = len(DOCS)
    df = (reference.matrix > 0).sum(axis=0)
    token = int(np.argmax(df))
    assert np.isclose(index.idf[token], np.log(1 + (n - df[token] + 0.5) / (df[token] + 0.5)))
    assert index.idf[int(np.flatnonzero(df == 0)[0])] == 0.0


def test_search_bag_ignores_non_positive_weights_and_checks_ids(built):
    """Zero or negative query weights cannot raise a score: they are dropped; ids outside the
    vocabulary are refused."""
    index, _, reference = built
    token = int(np.argmax((reference.matrix > 0).sum(axis=0)))
    only = bag_hits(index, [token], [1.0], 50)
    with_junk = bag_hits(index, [token, token + 1], [1.0, -5.0], 50)
    assert only and only == with_junk
    assert bag_hits(index, [token], [0.0], 5) == []
    wide = sp.csr_matrix((1, reference.vocab + 1), dtype=np.float32)
    with pytest.raises(TokretrieveError, match="columns"):
        index.search(wide, 5)
    with pytest.raises(TokretrieveError, match="finite"):
        index.search(bag_matrix(index, [token], [np.nan]), 5)


def test_underflowing_products_do_not_disturb_scoring(built):
    """Query weights so small that many weight x impact products underflow to 0 in float32:
    results still equal a float32 brute force over the stored impacts, denormal sums included,
    and documents whose products are all zero are not returned. Ranking is by the sums before
    the power-of-two scale (the scaled denormals lose bits), scores are the scaled sums."""
    index, _, _ = built
    postings = index.postings
    csc = postings.to_bags().tocsc()  # the stored weights, token-major over all documents
    csc.data = (csc.data / np.float32(postings.scale)).astype(np.float32)  # back to impacts
    tokens = np.argsort(-postings.document_frequency(), kind="stable")[:25]
    for query_weights in (np.full(25, 1e-45, dtype=np.float32),
                          np.r_[np.full(24, 1e-45), 1.0].astype(np.float32)):
        sums = np.zeros(len(DOCS), dtype=np.float32)
        for token, weight in zip(tokens, query_weights, strict=True):
            span = slice(csc.indptr[token], csc.indptr[token + 1])
            sums[csc.indices[span]] += np.float32(weight) * csc.data[span]
        products = np.concatenate([np.float32(w) * csc.data[csc.indptr[t]:csc.indptr[t + 1]]
                                   for t, w in zip(tokens, query_weights, strict=True)])
        if postings.impact_type == "float32":  # uint8 levels (>= 1) x 1e-45 stay denormal
            assert (products == 0).sum() > len(DOCS)  # more zero products than documents
        hits = bag_hits(index, tokens, query_weights, 50)
        assert [doc for doc, _ in hits] == [DOCS[i][0] for i in brute_force_ranking(sums, 50)]
        scores = sums * np.float32(postings.scale)
        assert [s for _, s in hits] == [float(scores[int(doc[1:])]) for doc, _ in hits]


def test_search_returns_faiss_shaped_arrays(built):
    """(scores, ids) are (queries x k) even when fewer documents match: the rest is ids -1 and
    scores -inf; a batch's rows equal the same queries searched one by one."""
    index, _, reference = built
    df = (reference.matrix > 0).sum(axis=0)
    rare = int(np.flatnonzero(df > 0)[np.argmin(df[df > 0])])  # in the fewest documents
    common = int(np.argmax(df))
    batch = sp.vstack([bag_matrix(index, [rare], [1.0]), bag_matrix(index, [common], [2.0]),
                       sp.csr_matrix((1, index.vocab_size), dtype=np.float32)]).tocsr()
    scores, ids = index.search(batch, k=len(DOCS) + 5, threads=2)
    assert scores.shape == ids.shape == (3, len(DOCS) + 5)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert (ids[0] >= 0).sum() == df[rare] < len(DOCS)
    assert (ids[1] >= 0).sum() == df[common]
    assert np.all(ids[2] == -1) and np.all(np.isneginf(scores[2]))
    assert np.all(np.isneginf(scores[0][ids[0] < 0]))
    for row, (token, weight) in enumerate(((rare, 1.0), (common, 2.0))):
        alone = bag_hits(index, [token], [weight], len(DOCS) + 5)
        kept = ids[row] >= 0
        assert alone == [(str(index.doc_ids[i]), float(s)) for i, s
                         in zip(ids[row][kept].tolist(), scores[row][kept].tolist(), strict=True)]


def test_search_refuses_bad_k_threads_and_dense_queries(built):
    index, _, _ = built
    bag = sp.csr_matrix((1, index.vocab_size), dtype=np.float32)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(TokretrieveError, match="k must be a positive integer"):
            index.search(bag, bad)
    with pytest.raises(TokretrieveError, match="threads must be a positive integer"):
        index.search(bag, 3, threads=0)
    with pytest.raises(TokretrieveError, match=r"scipy\.sparse"):
        index.search(np.zeros((1, index.vocab_size), dtype=np.float32), 3)


def test_contributions_sum_to_the_scores(built):
    """contributions(tokens, weights, positions): each row is the per-token split of the score
    search gave that document."""
    index, _, reference = built
    tokens = np.argsort(-(reference.matrix > 0).sum(axis=0), kind="stable")[:6]
    weights = np.linspace(2.0, 0.5, len(tokens)).astype(np.float32)
    scores, ids = index.search(bag_matrix(index, tokens, weights), 10)
    kept = ids[0] >= 0
    parts = index.contributions(tokens, weights, ids[0][kept])
    np.testing.assert_allclose(parts.sum(axis=1), scores[0][kept], rtol=1e-5)
    np.testing.assert_allclose(parts, reference.matrix[ids[0][kept]][:, tokens] * weights,
                               rtol=1e-4, atol=1e-9)


def test_document_bag_and_position(built):
    """The stored bag of a document by its id, heaviest first, equals the reference bag."""
    index, _, reference = built
    for position in (0, 7, len(DOCS) - 1):
        assert index.position(DOCS[position][0]) == position
        tokens, weights = index.document_bag(position)
        assert list(weights) == sorted(weights, reverse=True)
        expected = reference.doc_bags[position]
        assert dict(zip(tokens.tolist(), weights.tolist(), strict=True)).keys() == expected.keys()
    with pytest.raises(TokretrieveError, match="not in"):
        index.position("no-such-doc")
