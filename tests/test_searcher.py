"""tokretrieve.search: searchers (a query encoder + an index) against a brute-force dense dot
product over independently rebuilt bags (tests/built_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from built_reference import MODEL_QUERIES, TOKEN_QUERIES, check_hits

from tokretrieve.search import SparseSearcher, TokenQueryEncoder


def searcher(index, encoder, mode, token_weighting="idf"):
    return SparseSearcher.from_index(index, mode=mode, encoder=encoder,
                                     token_weighting=token_weighting)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_model_mode_search_equals_brute_force(built, k):
    """mode="model": the query is embedded, adjusted, projected, merged and idf-weighted like
    the README says; hits equal the brute-force dot product ranking."""
    index, encoder, reference = built
    for query in MODEL_QUERIES:
        bag = reference.model_query(encoder, query)
        check_hits(searcher(index, encoder, "model").search(query, k=k), reference, bag, k)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_token_mode_search_equals_brute_force(built, k):
    """mode="tokens": the query's own tokens, count x idf; hits equal the brute force."""
    index, _, reference = built
    tokens = searcher(index, None, "tokens")
    for query in TOKEN_QUERIES:
        bag = reference.token_query(query)
        if not any(reference.scores(bag) > 0):
            assert tokens.search(query, k=k) == []
            continue
        check_hits(tokens.search(query, k=k), reference, bag, k)


def test_count_weighting_skips_idf(built):
    """token_weighting="count" uses raw counts (tokens mode) and raw bag weights (model mode)."""
    index, encoder, reference = built
    query = TOKEN_QUERIES[-1]
    check_hits(searcher(index, None, "tokens", "count").search(query, k=10), reference,
               reference.token_query(query, "count"), 10)
    query = MODEL_QUERIES[0]
    check_hits(searcher(index, encoder, "model", "count").search(query, k=10), reference,
               reference.model_query(encoder, query, "count"), 10)


def test_batch_search_equals_single_searches(built):
    """batch_search gives, per query, what search gives."""
    index, encoder, _ = built
    for mode, queries in (("model", MODEL_QUERIES), ("tokens", TOKEN_QUERIES)):
        one = searcher(index, encoder, mode)
        qids = [f"q{i}" for i in range(len(queries))]
        batch = one.batch_search(queries, qids, k=7, threads=2)
        assert list(batch) == qids
        for qid, query in zip(qids, queries, strict=True):
            hits, single = batch[qid], one.search(query, k=7)
            assert [h.doc_id for h in hits] == [h.doc_id for h in single]
            np.testing.assert_allclose([h.score for h in hits], [h.score for h in single],
                                       rtol=1e-5)


def test_variant_queries_meet_merged_documents(built):
    """With merging on, 'Wing', 'WING' and 'wing' are one query token; with it off they are
    three different tokens (and capitalised forms may match nothing)."""
    index, _, reference = built
    bag = TokenQueryEncoder.for_index(index, "count").encode(["Wing WING wing"])
    tokens = bag.indices
    if reference.options["merge_variants"]:
        assert len(tokens) == 1
        assert reference.tokenizer.convert_ids_to_tokens(int(tokens[0])) == "wing"
    else:
        assert len(tokens) == 3


def test_ranking_only_search_returns_the_same_ranking(built):
    """explain=False gives the same documents and scores, with empty matched-token lists."""
    index, encoder, _ = built
    model = searcher(index, encoder, "model")
    qids = [str(i) for i in range(len(MODEL_QUERIES))]
    with_tokens = model.batch_search(MODEL_QUERIES, qids, k=7)
    ranking_only = model.batch_search(MODEL_QUERIES, qids, k=7, explain=False)
    assert {q: [(h.doc_id, h.score) for h in hits] for q, hits in with_tokens.items()} == \
        {q: [(h.doc_id, h.score) for h in hits] for q, hits in ranking_only.items()}
    assert all(h.matched == [] for hits in ranking_only.values() for h in hits)
    assert any(h.matched for hits in with_tokens.values() for h in hits)
