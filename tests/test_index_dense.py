"""tokretrieve.index.dense: FAISS over the stored embeddings = brute-force cosine, with the
sparse index's (scores, ids) signature."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from built_reference import DOCS, MODEL_QUERIES

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.dense import DenseIndex
from tokretrieve.search import DenseQueryEncoder, DenseSearcher


def test_dense_index_equals_brute_force_cosine(built):
    """DenseIndex (FAISS) over the stored embeddings = brute-force cosine ranking."""
    index, encoder, _ = built
    for dense in (DenseIndex.from_sparse(index), DenseIndex.load(index.path)):
        assert len(dense) == len(DOCS)
        stored = np.asarray(index.embeddings, dtype=np.float64)
        stored = stored / np.linalg.norm(stored, axis=1, keepdims=True)
        for query in MODEL_QUERIES:
            q = encoder.embed([query], is_query=True)[0].astype(np.float64)
            cosine = stored @ (q / np.linalg.norm(q))
            expected = sorted(range(len(DOCS)), key=lambda i: -cosine[i])[:5]
            scores, ids = dense.search(encoder.embed([query], is_query=True), k=5)
            assert ids[0].tolist() == expected
            np.testing.assert_allclose(scores[0], cosine[expected], atol=1e-5)
            hits = DenseSearcher(dense, DenseQueryEncoder(encoder)).search(query, k=5)
            assert [h.doc_id for h in hits] == [DOCS[i][0] for i in expected]
            assert all(h.matched == [] for h in hits)
        scores, ids = dense.search(np.zeros((1, stored.shape[1])), k=3)
        assert ids.tolist() == [[-1, -1, -1]] and np.all(np.isneginf(scores))


def test_dense_index_never_returns_empty_documents():
    """Zero vectors (empty documents) are not in the FAISS index: a query whose cosine with
    every real document is negative still gets only real documents, none at score 0."""
    embeddings = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    dense = DenseIndex(np.array(["a", "empty", "b"]), embeddings)
    scores, ids = dense.search(np.array([[-1.0, -0.5]], dtype=np.float32), k=3)
    assert ids[0].tolist() == [2, 0, -1]
    np.testing.assert_allclose(scores[0][:2], [-0.5 / np.sqrt(1.25), -1 / np.sqrt(1.25)],
                               rtol=1e-6)
    assert np.isneginf(scores[0][2])
    with pytest.raises(TokretrieveError, match="dimension is 2"):
        dense.search(np.ones((1, 3), dtype=np.float32), k=1)
    with pytest.raises(TokretrieveError, match="not sparse bags"):
        dense.search(sp.csr_matrix(np.ones((1, 2), dtype=np.float32)), k=1)
    with pytest.raises(TokretrieveError, match="threads must be a positive integer"):
        dense.search(np.zeros((1, 2), dtype=np.float32), k=1, threads=0)


def test_an_index_without_embeddings_has_no_dense_side(built, tmp_path):
    """Bags written without embeddings (synthetic, or brought from elsewhere) open and search
    as a sparse index; the dense side is refused, saying why."""
    from tokretrieve.index.sparse import SparseIndex, in_memory

    index, _, _ = built
    bare = in_memory(index.manifest, index.postings, np.asarray(index.doc_ids),
                     np.zeros((0, index.embeddings.shape[1]), dtype=np.float32),
                     np.asarray(index.pc1_direction), index.token_map)
    loaded = bare.write(tmp_path / "bare")
    query = sp.csr_matrix(np.ones((1, index.vocab_size), dtype=np.float32))
    np.testing.assert_array_equal(SparseIndex.load(tmp_path / "bare").search(query, 5)[1],
                                  index.search(query, 5)[1])
    with pytest.raises(TokretrieveError, match="stores no embeddings"):
        DenseIndex.from_sparse(loaded)
