"""The brute-force twin of a built index, shared by the build, index and searcher tests.

Everything the index should hold is recomputed from the stored dense embeddings alone with
tests/refimpl.py (plain numpy on the raw model), never with tokretrieve's own code paths.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from refimpl import (
    bm25_idf,
    brute_force_ranking,
    canonical_ids,
    merge_bag,
    pc1_numpy,
    random_texts,
    reference_bag,
)

from tokretrieve.build import build_index

DOCS = [(f"d{i:02d}", text) for i, text in enumerate(random_texts(30, seed=31, low=3, high=15))]
MODEL_QUERIES = random_texts(6, seed=32, low=1, high=6)
TOKEN_QUERIES = [*random_texts(5, seed=33, low=1, high=5), "Wing HEAT flow FLOW", "heat heat wing"]

# name -> build options; all are checked against the same brute force. Segments of 8 or 7
# documents split the 30 into several, so scoring crosses segment boundaries.
VARIANTS = {
    "shifted_pc1_merged": {"bag_size": 8, "weighting": "shifted", "pc1_strength": -1.5,
                           "merge_variants": True, "impacts": "float32", "segment_docs": 8},
    "softmax_plain": {"bag_size": 6, "weighting": "softmax", "pc1_strength": 0.0,
                      "merge_variants": False, "impacts": "float32",
                      "segment_docs": 65536},
    "log1p_uint8": {"bag_size": 12, "weighting": "log1p_relu", "pc1_strength": -0.5,
                    "merge_variants": False, "impacts": "uint8", "segment_docs": 7},
}
BAG_KEYS = ("bag_size", "weighting", "merge_variants")


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
        self.doc_bags = [self.bag(e, options["bag_size"]) for e in embeddings]
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
        bag = self.bag(embedding, self.options["bag_size"])
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


def build_variant(name, encoder, path):
    """The index `build_index` writes for VARIANTS[name], opened from disk, and its
    brute-force twin."""
    options = VARIANTS[name]
    fitted = encoder.with_bags(bag_size=options["bag_size"], weighting=options["weighting"])
    index = build_index(DOCS, fitted, path, pc1_strength=options["pc1_strength"],
                        merge_variants=options["merge_variants"], impacts=options["impacts"],
                        segment_docs=options["segment_docs"], progress=False)
    return index, encoder, Reference(index, encoder, options)


def bag_matrix(index, tokens, weights):
    """One query bag (token ids, weights) as the 1 x vocabulary CSR row an index searches."""
    tokens = np.asarray(tokens, dtype=np.int64)
    return sp.csr_matrix((np.asarray(weights, dtype=np.float32), tokens, [0, len(tokens)]),
                         shape=(1, index.vocab_size))


def bag_hits(index, tokens, weights, k):
    """SparseIndex.search of one bag as [(doc id, score)], the padding (-1 ids) dropped."""
    scores, ids = index.search(bag_matrix(index, tokens, weights), k)
    kept = ids[0] >= 0
    return [(str(index.doc_ids[i]), float(s))
            for i, s in zip(ids[0][kept].tolist(), scores[0][kept].tolist(), strict=True)]


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
