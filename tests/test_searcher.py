"""tokretrieve.search: searchers (a query encoder + an index) against a brute-force dense dot
product over independently rebuilt bags (tests/built_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from built_reference import MODEL_QUERIES, TOKEN_QUERIES
from refimpl import brute_force_ranking

from tokretrieve.search import SparseSearcher, TokenQueryEncoder


def searcher(index, encoder, mode, token_weighting="idf"):
    return SparseSearcher.from_index(index, mode=mode, encoder=encoder,
                                     token_weighting=token_weighting)


def check_hits(hits, reference, query_bag, k):
    """Hits = brute-force top-k of the dense dot products: only positive scores, the right
    number, each score equal to the reference, best first with ties to the lower position, no
    better document left out, contributions summing to the score. Documents whose reference
    scores differ by less than float32 rounding may come in either order; where no such
    near-tie exists the document list must equal the reference list exactly."""
    scores = reference.scores(query_bag)
    expected = brute_force_ranking(scores, k)
    positions = [int(hit.doc_id[1:]) for hit in hits]
    assert len(hits) == len(expected) == min(k, int((scores > 0).sum()))
    tolerance = 2e-5 * max(scores.max(), 1e-30)  # float32 logits, weights and sums
    for hit, position in zip(hits, positions, strict=True):
        assert hit.score > 0
        assert np.isclose(hit.score, scores[position], rtol=1e-4, atol=tolerance)
        assert np.isclose(sum(c for _, c in hit.matched), hit.score, rtol=1e-5, atol=1e-9)
        shared = {t for t in query_bag if reference.matrix[position, t] > 0 and query_bag[t] > 0}
        assert sorted(token for token, _ in hit.matched) == sorted(
            reference.tokenizer.decode([t]) for t in shared)
        contributions = [c for _, c in hit.matched]
        assert contributions == sorted(contributions, reverse=True)
    for (a, hit_a), (b, hit_b) in zip(zip(positions, hits, strict=True),
                                      zip(positions[1:], hits[1:], strict=True),
                                      strict=False):
        assert hit_a.score >= hit_b.score
        assert hit_a.score > hit_b.score or a < b  # exact ties: lower position first
        assert scores[a] >= scores[b] - tolerance
    if hits:
        left_out = np.setdiff1d(np.flatnonzero(scores > 0), positions)
        assert all(scores[d] <= scores[positions[-1]] + tolerance for d in left_out)
    ranked = np.sort(scores[scores > 0])[::-1][:k + 1]
    if np.all(ranked[:-1] - ranked[1:] > tolerance):
        assert positions == expected


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
    """matched=False gives the same documents and scores, with empty matched-token lists."""
    index, encoder, _ = built
    model = searcher(index, encoder, "model")
    qids = [str(i) for i in range(len(MODEL_QUERIES))]
    with_tokens = model.batch_search(MODEL_QUERIES, qids, k=7)
    ranking_only = model.batch_search(MODEL_QUERIES, qids, k=7, explain=False)
    assert {q: [(h.doc_id, h.score) for h in hits] for q, hits in with_tokens.items()} == \
        {q: [(h.doc_id, h.score) for h in hits] for q, hits in ranking_only.items()}
    assert all(h.matched == [] for hits in ranking_only.values() for h in hits)
    assert any(h.matched for hits in with_tokens.values() for h in hits)
