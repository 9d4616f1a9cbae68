"""Search results against a brute-force dense dot product over independently rebuilt bags."""

from __future__ import annotations

import numpy as np
import pytest
from refimpl import (
    VARIANT_GROUPS,
    assert_same_bag,
    bm25_idf,
    brute_force_ranking,
    canonical_ids,
    merge_bag,
    pc1_numpy,
    random_texts,
    reference_bag,
)

from tokretrieve import DenseIndex, SparseIndex
from tokretrieve.search import top_k
from tokretrieve.vocabulary import variant_map

DOCS = [(f"d{i:02d}", text) for i, text in enumerate(random_texts(30, seed=31, low=3, high=15))]
MODEL_QUERIES = random_texts(6, seed=32, low=1, high=6)
TOKEN_QUERIES = [*random_texts(5, seed=33, low=1, high=5), "Wing HEAT flow FLOW", "heat heat wing"]

# name -> build options; all are checked against the same brute force. Segments of 8 or 7
# documents split the 30 into several, so scoring crosses segment boundaries.
VARIANTS = {
    "shifted_pc1_merged": {"k": 8, "weighting": "shifted", "pc1_strength": -1.5,
                           "merge_variants": True, "impacts": "float32", "segment_docs": 8},
    "softmax_plain": {"k": 6, "weighting": "softmax", "pc1_strength": 0.0,
                      "merge_variants": False, "impacts": "float32",
                      "segment_docs": 65536},
    "log1p_uint8": {"k": 12, "weighting": "log1p_relu", "pc1_strength": -0.5,
                    "merge_variants": False, "impacts": "uint8", "segment_docs": 7},
}
PROJECTION_KEYS = ("k", "weighting", "pc1_strength", "merge_variants")


def quantized(bags: list[dict[int, float]]) -> list[dict[int, float]]:
    """The README's uint8 rule: scale = the smallest power of two with max weight / scale <=
    255, each weight rounded to a multiple of the scale, zero levels dropped."""
    top = max(w for bag in bags for w in bag.values())
    scale = 2.0 ** np.ceil(np.log2(top / 255))
    rounded = [{t: float(np.rint(w / scale) * scale) for t, w in bag.items()} for bag in bags]
    return [{t: w for t, w in bag.items() if w > 0} for bag in rounded]


class Reference:
    """Everything the index should hold, recomputed from the stored dense embeddings alone."""

    def __init__(self, index, encoder, options):
        tokenizer = encoder.tokenizer
        self.options = options
        self.weight = encoder.model.projection_weight.numpy()
        self.specials = tokenizer.all_special_ids
        self.vocab = self.weight.shape[0]
        embeddings = np.asarray(index.embeddings, dtype=np.float64)
        present = embeddings.any(axis=1)
        self.direction = pc1_numpy(embeddings[present])
        self.mapping = (canonical_ids(tokenizer.convert_ids_to_tokens(list(range(self.vocab))))
                        if options["merge_variants"] else None)
        self.doc_bags = [self.bag(e, options["k"]) for e in embeddings]
        if options["impacts"] == "uint8":
            self.doc_bags = quantized(self.doc_bags)
        self.matrix = np.zeros((len(embeddings), self.vocab))
        for row, bag in enumerate(self.doc_bags):
            for token, weight in bag.items():
                self.matrix[row, token] = weight
        self.idf = bm25_idf((self.matrix > 0).sum(axis=0), len(embeddings))
        self.tokenizer = tokenizer

    def bag(self, embedding, k):
        raw = reference_bag(embedding, self.weight, self.specials, k, self.options["weighting"],
                            self.direction, self.options["pc1_strength"])
        return merge_bag(raw, self.mapping)

    def model_query(self, encoder, query, token_weighting="idf"):
        embedding = encoder.embed([query], is_query=True)[0]
        bag = self.bag(embedding, self.options["k"])
        if token_weighting == "idf":
            bag = {t: w * self.idf[t] for t, w in bag.items()}
        return bag

    def token_query(self, query, token_weighting="idf"):
        ids = self.tokenizer(" " + query, add_special_tokens=False)["input_ids"]
        bag: dict[int, float] = {}
        for token in ids:
            if token in self.specials:
                continue
            key = int(self.mapping[token]) if self.mapping is not None else token
            bag[key] = bag.get(key, 0.0) + 1.0
        if token_weighting == "idf":
            bag = {t: c * self.idf[t] for t, c in bag.items()}
        return bag

    def scores(self, query_bag):
        vector = np.zeros(self.vocab)
        for token, weight in query_bag.items():
            vector[token] = weight
        return self.matrix @ vector


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def built(request, tiny_encoder, tmp_path_factory):
    """An index built by SparseIndex.build over 30 random texts, and its brute-force twin."""
    options = VARIANTS[request.param]
    encoder = tiny_encoder("llama", "prompteol")
    path = tmp_path_factory.mktemp("search") / request.param
    index = SparseIndex.build(DOCS, encoder, path, progress=False, **options)
    return index, encoder, Reference(index, encoder, options)


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
    indptr, docs, impacts = (np.asarray(a) for a in (postings.indptr, postings.docs,
                                                     postings.impacts))
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
    assert index.manifest["postings"] == sum(len(b) for b in reference.doc_bags)
    assert index.manifest["doc_count"] == len(DOCS) == len(index)
    projection = index.manifest["projection"]
    assert {key: projection[key] for key in PROJECTION_KEYS} == \
        {key: reference.options[key] for key in PROJECTION_KEYS}
    assert index.manifest["postings_format"] == {
        "segment_docs": segment_docs, "impacts": reference.options["impacts"],
        "scale": postings.scale}
    np.testing.assert_allclose(index.pc1_direction, reference.direction, atol=1e-5)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_model_mode_search_equals_brute_force(built, k):
    """mode="model": the query is embedded, adjusted, projected, merged and idf-weighted like
    the README says; hits equal the brute-force dot product ranking."""
    index, encoder, reference = built
    for query in MODEL_QUERIES:
        bag = reference.model_query(encoder, query)
        check_hits(index.search(query, k=k, mode="model"), reference, bag, k)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_token_mode_search_equals_brute_force(built, k):
    """mode="tokens": the query's own tokens, count x idf; hits equal the brute force."""
    index, _, reference = built
    for query in TOKEN_QUERIES:
        bag = reference.token_query(query)
        if not any(reference.scores(bag) > 0):
            assert index.search(query, k=k, mode="tokens") == []
            continue
        check_hits(index.search(query, k=k, mode="tokens"), reference, bag, k)


def test_count_weighting_skips_idf(built):
    """token_weighting="count" uses raw counts (tokens mode) and raw bag weights (model mode)."""
    index, encoder, reference = built
    query = TOKEN_QUERIES[-1]
    check_hits(index.search(query, k=10, mode="tokens", token_weighting="count"), reference,
               reference.token_query(query, "count"), 10)
    query = MODEL_QUERIES[0]
    check_hits(index.search(query, k=10, mode="model", token_weighting="count"), reference,
               reference.model_query(encoder, query, "count"), 10)


def test_query_bag_idf_by_hand(built):
    """The idf of a token is BM25's, from its document frequency over the stored bags."""
    index, _, reference = built
    n = len(DOCS)
    df = (reference.matrix > 0).sum(axis=0)
    token = int(np.argmax(df))
    assert np.isclose(index.idf[token], np.log(1 + (n - df[token] + 0.5) / (df[token] + 0.5)))
    assert index.idf[int(np.flatnonzero(df == 0)[0])] == 0.0


def test_batch_search_equals_single_searches(built):
    """batch_search gives, per query, what search gives."""
    index, _, _ = built
    for mode, queries in (("model", MODEL_QUERIES), ("tokens", TOKEN_QUERIES)):
        batch = index.batch_search(queries, k=7, mode=mode)
        assert len(batch) == len(queries)
        for hits, query in zip(batch, queries, strict=True):
            single = index.search(query, k=7, mode=mode)
            assert [h.doc_id for h in hits] == [h.doc_id for h in single]
            np.testing.assert_allclose([h.score for h in hits], [h.score for h in single],
                                       rtol=1e-5)


def test_variant_queries_meet_merged_documents(built):
    """With merging on, 'Wing', 'WING' and 'wing' are one query token; with it off they are
    three different tokens (and capitalised forms may match nothing)."""
    index, _, reference = built
    tokens, _ = index.query_bag("Wing WING wing", mode="tokens", token_weighting="count")
    if reference.options["merge_variants"]:
        assert len(tokens) == 1
        assert reference.tokenizer.convert_ids_to_tokens(int(tokens[0])) == "wing"
    else:
        assert len(tokens) == 3


def test_variant_map_groups_case_and_boundary_markers(tiny_encoder):
    """vocabulary.variant_map sends every variant to the plain lower-case word's id and leaves
    every other token alone."""
    tokenizer = tiny_encoder("llama", "prompteol").tokenizer
    vocab = tokenizer.get_vocab()
    mapping = variant_map(tokenizer, len(vocab))
    grouped = {}
    for word, variants in VARIANT_GROUPS.items():
        for variant in variants:
            assert mapping[vocab[variant]] == vocab[word]
            grouped[vocab[variant]] = vocab[word]
    for token_id in range(len(vocab)):
        assert mapping[token_id] == grouped.get(token_id, token_id)


# ------------------------------------------------------------------------------ ties / top_k
def test_ties_go_to_the_lower_document_position(tiny_encoder):
    """Documents with identical bags tie exactly; they come back in index order, and the cut
    at k keeps the earliest ones."""
    encoder = tiny_encoder("llama", "prompteol")
    base = encoder.embed(random_texts(4, seed=41, low=3, high=8))
    order = [3, 0, 2, 0, 1, 3, 0, 2, 1, 0, 3, 2] * 4  # 48 docs, 4 distinct bags, interleaved
    embeddings = base[order]
    ids = [f"x{i:02d}" for i in range(len(order))]
    index = SparseIndex.from_embeddings(ids, embeddings, encoder, path=None, k=5,
                                        weighting="shifted", merge_variants=False)
    reference = encoder.bags(embeddings, 5, "shifted").toarray().astype(np.float64)
    for query_row in range(4):
        tokens = np.flatnonzero(reference[order.index(query_row)])
        weights = np.ones(len(tokens))
        scores = reference[:, tokens] @ weights
        for k in (1, 3, 10, 13, 48):
            hits = index.search_bag(tokens, weights, k=k)
            expected = brute_force_ranking(scores, k)
            assert [h.doc_id for h in hits] == [ids[i] for i in expected]
            for group in range(4):  # identical bags score bit-identically
                assert len({h.score for h in hits if order[ids.index(h.doc_id)] == group}) <= 1


def test_search_bag_ignores_non_positive_weights_and_checks_ids(built):
    """Zero or negative query weights cannot raise a score: they are dropped; ids outside the
    vocabulary are refused."""
    index, _, reference = built
    token = int(np.argmax((reference.matrix > 0).sum(axis=0)))
    only = index.search_bag([token], [1.0], k=50)
    with_junk = index.search_bag([token, token + 1], [1.0, -5.0], k=50)
    assert [h.doc_id for h in only] == [h.doc_id for h in with_junk]
    assert index.search_bag([token], [0.0], k=5) == []
    from tokretrieve.errors import TokretrieveError

    with pytest.raises(TokretrieveError, match="token ids"):
        index.search_bag([reference.vocab], [1.0])


def test_top_k_with_ties_by_hand():
    """search.top_k: best positive scores first, ties to the lower index, never a zero or
    negative score."""
    scores = np.array([0.0, 3.0, 1.0, 3.0, 3.0, -1.0, 2.0, 1.0], dtype=np.float32)
    assert top_k(scores, 1)[0].tolist() == [1]
    assert top_k(scores, 2)[0].tolist() == [1, 3]
    assert top_k(scores, 4)[0].tolist() == [1, 3, 4, 6]
    assert top_k(scores, 5)[0].tolist() == [1, 3, 4, 6, 2]
    chosen, values = top_k(scores, 100)
    assert chosen.tolist() == [1, 3, 4, 6, 2, 7]
    assert values.tolist() == [3.0, 3.0, 3.0, 2.0, 1.0, 1.0]
    assert top_k(np.zeros(5, dtype=np.float32), 3)[0].tolist() == []


def test_top_k_matches_brute_force_on_random_ties():
    """Many random small-integer scores (lots of ties) against a plain sort."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        scores = rng.integers(-2, 5, size=rng.integers(1, 40)).astype(np.float32)
        k = int(rng.integers(1, 45))
        assert top_k(scores, k)[0].tolist() == brute_force_ranking(scores, k)


# ------------------------------------------------------------------------------------- dense
def test_dense_index_equals_brute_force_cosine(built):
    """DenseIndex (FAISS) over the stored embeddings = brute-force cosine ranking."""
    index, encoder, _ = built
    for dense in (DenseIndex.from_sparse(index), DenseIndex.load(index.path, encoder=encoder)):
        assert len(dense) == len(DOCS)
        stored = np.asarray(index.embeddings, dtype=np.float64)
        stored = stored / np.linalg.norm(stored, axis=1, keepdims=True)
        for query in MODEL_QUERIES:
            q = encoder.embed([query], is_query=True)[0].astype(np.float64)
            cosine = stored @ (q / np.linalg.norm(q))
            expected = sorted(range(len(DOCS)), key=lambda i: -cosine[i])[:5]
            hits = dense.search(query, k=5)
            assert [h.doc_id for h in hits] == [DOCS[i][0] for i in expected]
            np.testing.assert_allclose([h.score for h in hits], cosine[expected], atol=1e-5)
            assert all(h.matched == [] for h in hits)
        assert dense.search_vectors(np.zeros((1, stored.shape[1])), k=3) == [[]]


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
        if postings.impacts.dtype == np.float32:  # uint8 levels (>= 1) x 1e-45 stay denormal
            assert (products == 0).sum() > len(DOCS)  # more zero products than documents
        hits = index.search_bag(tokens, query_weights, k=50)
        assert [h.doc_id for h in hits] == [DOCS[i][0] for i in brute_force_ranking(sums, 50)]
        scores = sums * np.float32(postings.scale)
        assert [h.score for h in hits] == [float(scores[int(h.doc_id[1:])]) for h in hits]


def test_dense_index_never_returns_empty_documents():
    """Zero vectors (empty documents) are not in the FAISS index: a query whose cosine with
    every real document is negative still gets only real documents, none at score 0."""
    embeddings = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    dense = DenseIndex(np.array(["a", "empty", "b"]), embeddings, encoder=None)
    hits = dense.search_vectors(np.array([[-1.0, -0.5]], dtype=np.float32), k=3)[0]
    assert [h.doc_id for h in hits] == ["b", "a"]
    np.testing.assert_allclose([h.score for h in hits], [-0.5 / np.sqrt(1.25), -1 / np.sqrt(1.25)],
                               rtol=1e-6)


def test_ranking_only_search_returns_the_same_ranking(built):
    """matched=False gives the same documents and scores, with empty matched-token lists."""
    index, _, _ = built
    with_tokens = index.batch_search(MODEL_QUERIES, k=7, mode="model")
    ranking_only = index.batch_search(MODEL_QUERIES, k=7, mode="model", matched=False)
    assert [[(h.doc_id, h.score) for h in hits] for hits in with_tokens] == \
        [[(h.doc_id, h.score) for h in hits] for hits in ranking_only]
    assert all(h.matched == [] for hits in ranking_only for h in hits)
    assert any(h.matched for hits in with_tokens for h in hits)
