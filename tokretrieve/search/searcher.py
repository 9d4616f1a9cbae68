"""Searchers: a query encoder paired with an index, text in, ranked hits out (as in Pyserini).

    searcher = SparseSearcher.from_index("index/cranfield", mode="tokens")
    searcher.search("heat transfer", k=10)                     # [Hit(doc_id, score, matched)]
    searcher.batch_search(texts, qids, k=100, threads=2)       # {qid: [Hit, ...]}

The index does the scoring (`index.search(queries, k) -> (scores, ids)`); the searcher encodes
the texts, turns positions into document ids, and, for sparse hits, lists the tokens each hit
shares with the query with their contributions, which sum to its score.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import scipy.sparse as sp

from tokretrieve.corpus import check_texts
from tokretrieve.encoding.tokenizer import bag_tokens, token_text
from tokretrieve.errors import EmptyQueryError, TokretrieveError, check_count
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.search.query_encoders import (
    DEFAULT_ALIGNED_TOKENS,
    DenseQueryEncoder,
    ModelQueryEncoder,
    QueryEncoder,
    TokenQueryEncoder,
    TokenWeighting,
    UnionQueryEncoder,
    index_encoder,
    index_tokenizer,
)

if TYPE_CHECKING:  # torch loads with the model, FAISS with the dense index, neither for tokens
    from tokretrieve.encoding.encoder import Encoder
    from tokretrieve.index.dense import DenseIndex

QueryMode = Literal["model", "tokens", "union"]
QUERY_MODES = ("model", "tokens", "union")


class Hit(NamedTuple):
    """One result: the document, its score, and the matched tokens with their contributions
    (empty for dense hits, and when explanations were not asked for)."""

    doc_id: str
    score: float
    matched: list[tuple[str, float]]


class BatchSearcher:
    """Base of searchers that answer one query through the `batch_search` they define (BM25,
    hybrids): an empty query is an error, as for every searcher."""

    def search(self, query: str, k: int = 10) -> list[Hit]:
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError(f"query {query!r} is empty")
        return self.batch_search([query], ["q"], k)["q"]  # type: ignore[attr-defined]


class Searcher:
    """A query encoder and an index with the same `search(queries, k)` signature."""

    def __init__(self, index: SparseIndex | DenseIndex, query_encoder: QueryEncoder):
        self.index = index
        self.query_encoder = query_encoder

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The k best documents for one query; an empty query, or one that yields no usable
        token, is an error (EmptyQueryError)."""
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError(f"query {query!r} is empty")
        check_count(k, "k")
        encoded = self.query_encoder.encode([query])
        if not _present(encoded)[0]:
            raise EmptyQueryError(f"query {query!r} tokenizes to no usable token")
        return self._hits(encoded, k, None, explain=True)[0]

    def batch_search(self, queries: Sequence[str], qids: Sequence[str], k: int = 10,
                     threads: int | None = None, explain: bool = True) -> dict[str, list[Hit]]:
        """{qid: hits} for many queries, encoded and scored in batches on `threads` threads.

        A query that is empty or yields no usable token gets no hits (and one warning for the
        batch) rather than failing it. `explain=False` leaves each hit's matched-token list
        empty: listing them costs several times the scoring, for callers that only rank
        (evaluation, run files).
        """
        queries = check_texts(queries)
        qids = [str(qid) for qid in qids]
        if len(qids) != len(queries):
            raise TokretrieveError(f"{len(queries)} queries but {len(qids)} query ids")
        if len(set(qids)) != len(qids):
            raise TokretrieveError("query ids must be unique")
        check_count(k, "k")
        if threads is not None:
            check_count(threads, "threads")  # before the queries are encoded, not after
        present = [i for i, text in enumerate(queries) if text.strip()]
        encoded = self.query_encoder.encode([queries[i] for i in present])
        usable = _present(encoded)
        results: dict[str, list[Hit]] = {qid: [] for qid in qids}
        ranked = self._hits(encoded[np.flatnonzero(usable)], k, threads, explain)
        for i, hits in zip(np.array(present, dtype=np.int64)[usable], ranked, strict=True):
            results[qids[i]] = hits
        if usable.sum() < len(queries):
            warnings.warn(f"{len(queries) - int(usable.sum())} query(ies) were empty or "
                          "tokenized to nothing and got no hits", stacklevel=2)
        return results

    def _hits(self, encoded: sp.csr_matrix | np.ndarray, k: int, threads: int | None,
              explain: bool) -> list[list[Hit]]:
        scores, ids = self.index.search(encoded, k, threads)
        doc_ids = self.index.doc_ids
        out = []
        for q in range(len(scores)):
            kept = ids[q] >= 0
            positions, row_scores = ids[q][kept], scores[q][kept]
            matched = (self._matched(encoded, q, positions) if explain
                       else [[] for _ in positions])
            out.append([Hit(str(doc_ids[p]), float(s), m) for p, s, m
                        in zip(positions.tolist(), row_scores.tolist(), matched, strict=True)])
        return out

    def _matched(self, encoded, q: int, positions: np.ndarray) -> list[list[tuple[str, float]]]:
        return [[] for _ in positions]


class SparseSearcher(Searcher):
    """A sparse index with model-encoded or tokenized queries; hits explain themselves."""

    def __init__(self, index: SparseIndex, query_encoder: QueryEncoder, tokenizer=None):
        super().__init__(index, query_encoder)
        self._tokenizer = tokenizer
        self._token_texts: dict[int, str] = {}

    @classmethod
    def from_index(cls, index: str | Path | SparseIndex, mode: QueryMode = "model",
                   encoder: Encoder | None = None,
                   token_weighting: TokenWeighting | None = None,
                   query_bag_size: int | None = None,
                   aligned_tokens: int = DEFAULT_ALIGNED_TOKENS) -> SparseSearcher:
        """A searcher over an index (a folder or an opened SparseIndex).

        `mode="model"` encodes queries with the index's model (`encoder`, or loaded by the name
        its manifest records; its weights must be the build's); `mode="tokens"` only tokenizes
        them with the tokenizer saved in the index, loading no model at all; `mode="union"` is
        the paper's query, its literal tokens and its top `aligned_tokens` aligned ones
        (UnionQueryEncoder).
        """
        if mode not in QUERY_MODES:
            raise TokretrieveError(f"unknown query mode '{mode}': choose one of "
                                   f"{', '.join(QUERY_MODES)}")
        index = index if isinstance(index, SparseIndex) else SparseIndex.load(index)
        if mode == "model":
            query_encoder = ModelQueryEncoder.for_index(index, encoder, token_weighting,
                                                        query_bag_size)
            return cls(index, query_encoder, query_encoder.encoder.tokenizer)
        if mode == "union":
            union = UnionQueryEncoder.for_index(index, encoder, aligned_tokens, token_weighting)
            return cls(index, union, union.encoder.tokenizer)
        # an encoder given for tokens mode lends its tokenizer: it must be the index's model
        tokenizer = (index_encoder(index, encoder).tokenizer if encoder is not None
                     else index_tokenizer(index))
        return cls(index, TokenQueryEncoder.for_index(index, token_weighting, tokenizer),
                   tokenizer)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = index_tokenizer(self.index)  # type: ignore[arg-type]
        return self._tokenizer

    def document(self, doc_id: str) -> list[tuple[str, float]]:
        """The stored bag of one document as (token, weight), heaviest first."""
        index: SparseIndex = self.index  # type: ignore[assignment]
        return bag_tokens(self.tokenizer, *index.document_bag(index.position(doc_id)))

    def _matched(self, encoded: sp.csr_matrix, q: int,
                 positions: np.ndarray) -> list[list[tuple[str, float]]]:
        start, end = encoded.indptr[q], encoded.indptr[q + 1]
        tokens, weights = encoded.indices[start:end], encoded.data[start:end]
        tokens, weights = tokens[weights > 0], weights[weights > 0]  # what the index scored
        contributions = self.index.contributions(tokens, weights, positions)  # type: ignore
        out = []
        for row in contributions:
            columns = np.flatnonzero(row)
            columns = columns[np.argsort(-row[columns], kind="stable")]
            out.append([(self._token_text(int(tokens[c])), float(row[c])) for c in columns])
        return out

    def _token_text(self, token_id: int) -> str:
        """Decoded token, cached: decoding is the slow part of listing matched tokens."""
        text = self._token_texts.get(token_id)
        if text is None:
            text = self._token_texts[token_id] = token_text(self.tokenizer, token_id)
        return text


class DenseSearcher(Searcher):
    """The dense baseline: the same model's query embedding against FAISS."""

    @classmethod
    def from_index(cls, index: str | Path | SparseIndex,
                   encoder: Encoder | None = None) -> DenseSearcher:
        """The dense side of an index folder, with its model (loaded when not given)."""
        from tokretrieve.index.dense import DenseIndex

        sparse = index if isinstance(index, SparseIndex) else SparseIndex.load(index)
        queries = DenseQueryEncoder.for_index(sparse, encoder)
        return cls(DenseIndex.from_sparse(sparse, queries.encoder.sentence_embedding), queries)


def _present(encoded: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """Which queries yielded something: a bag with at least one token (a token in no document
    keeps its entry at weight 0: such a query is searched and matches nothing, as before), a
    non-zero vector."""
    if sp.issparse(encoded):
        bags = sp.csr_matrix(encoded)
        return np.diff(bags.indptr) > 0
    return np.any(np.asarray(encoded), axis=1)
