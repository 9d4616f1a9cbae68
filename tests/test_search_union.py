"""UnionQueryEncoder, the paper's query: the literal tokens of the query united with the top-M
tokens of its aligned bag, checked against both halves built independently."""

from __future__ import annotations

import numpy as np
import pytest

from tokretrieve import SparseSearcher, TokretrieveError, build_index
from tokretrieve.search.query_encoders import TokenQueryEncoder, UnionQueryEncoder

DOCS = [("d1", "wing lift drag"), ("d2", "heat transfer flow"), ("d3", "shock wave flow"),
        ("d4", "boundary layer heat transfer")]


@pytest.fixture
def built(tiny_encoder, tmp_path):
    encoder = tiny_encoder("llama", "prompteol").with_bags(bag_size=8, weighting="shifted")
    return build_index(DOCS, encoder, tmp_path / "idx", pc1_strength=0.0, progress=False), encoder


@pytest.mark.parametrize("weighting", ["count", "idf"])
@pytest.mark.parametrize("m", [1, 3, 8])
def test_union_is_literal_tokens_and_top_m_aligned_tokens(built, weighting, m):
    index, encoder = built
    union = UnionQueryEncoder.for_index(index, encoder, aligned_tokens=m,
                                        token_weighting=weighting)
    query = "heat heat flow"
    bag = union.encode([query])
    literal = set(TokenQueryEncoder.for_index(index, tokenizer=encoder.tokenizer)
                  .encode([query]).indices.tolist())
    fitted = SparseSearcher.from_index(index, encoder=encoder).query_encoder.encoder
    aligned_bag = fitted.encode_query([query])
    order = np.argsort(-aligned_bag.data, kind="stable")[:m]
    aligned = set(aligned_bag.indices[order].tolist())
    assert set(bag.indices.tolist()) == literal | aligned
    expected = (np.ones(bag.nnz) if weighting == "count"
                else index.idf[bag.indices].astype(np.float32))
    np.testing.assert_allclose(bag.data, expected, rtol=1e-6)  # a repeated token counts once
    searcher = SparseSearcher.from_index(index, mode="union", encoder=encoder,
                                         token_weighting=weighting, aligned_tokens=m)
    assert searcher.search(query, k=4)  # the paper's score: the documents' weights summed


def test_union_refuses_a_bad_m(built):
    index, encoder = built
    with pytest.raises(TokretrieveError, match="aligned_tokens"):
        UnionQueryEncoder.for_index(index, encoder, aligned_tokens=0)
