"""The retrieval systems under test, all fed from the same cached embeddings and documents.

- sparse, `model` queries: the query embedded like a document and projected to its key tokens;
- sparse, `tokens` queries: the query's own tokens, idf- or count-weighted, no model call;
- dense: the very embeddings the sparse bags come from, exact inner product in FAISS;
- BM25: bm25s with English stopwords and its default parameters (k1=1.5, b=0.75, Lucene idf).

Each search returns `depth + 1` hits so the identical-id rule (bench.runs.finalize) still leaves
`depth` of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import bm25s
import numpy as np

from bench.encoding import CachedEncoder
from tokretrieve import DenseIndex, EmptyQueryError, Encoder, SparseIndex
from tokretrieve.search import top_k

Bag = tuple[np.ndarray, np.ndarray]
Hits = list[tuple[str, float]]
EMPTY_BAG: Bag = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


@dataclass(frozen=True)
class SparseConfig:
    """The levers of a sparse index: bag size, PC1 strength, weighting, variant merging, and
    the weighting of query tokens (both query modes). None means "the package's default for
    this model", which `SparseSystem.resolved` turns into the concrete value."""

    k: int | None = None
    pc1_strength: float | None = None
    weighting: str | None = None
    merge_variants: bool | None = None
    token_weighting: str = "idf"

    def label(self) -> str:
        merge = "" if self.merge_variants is None else (
            " merged" if self.merge_variants else " unmerged")
        strength = "default" if self.pc1_strength is None else f"{self.pc1_strength:g}"
        return f"k={self.k} λ={strength} {self.weighting}{merge} q:{self.token_weighting}"

    def index_key(self) -> tuple:
        """What the document side depends on (token weighting only touches queries)."""
        return (self.k, self.pc1_strength, self.weighting, self.merge_variants)

    def as_dict(self) -> dict:
        return asdict(self)

    def index_options(self) -> dict:
        """Keyword arguments for `SparseIndex.from_embeddings` (unset levers left out)."""
        options = {"k": self.k, "weighting": self.weighting,
                   "pc1_strength": self.pc1_strength, "merge_variants": self.merge_variants}
        return {key: value for key, value in options.items() if value is not None}


class SparseSystem:
    """An in-memory key-token index derived from stored embeddings (path=None, no re-encoding).

    `encoder` is normally a `CachedEncoder`, so model-mode queries go through the package's own
    `SparseIndex.model_query_bags` on cached query embeddings.
    """

    def __init__(self, encoder: Encoder | CachedEncoder, doc_ids: Sequence[str],
                 doc_embeddings: np.ndarray, config: SparseConfig):
        self.encoder = encoder
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.index = SparseIndex.from_embeddings(
                list(doc_ids), doc_embeddings, encoder, path=None,  # type: ignore[arg-type]
                **config.index_options())
        self.warnings = sorted({str(w.message) for w in caught})
        self.config = self.resolved(config.token_weighting)

    def resolved(self, token_weighting: str = "idf") -> SparseConfig:
        """The concrete settings the index was built with, read back from its manifest."""
        projection = self.index.manifest["projection"]
        return SparseConfig(int(projection["k"]), float(f"{projection['pc1_strength']:.4g}"),
                            str(projection["weighting"]), bool(projection["merge_variants"]),
                            token_weighting)

    @property
    def postings(self) -> int:
        return int(self.index.manifest["postings"])

    def model_bags(self, queries: Sequence[str], token_weighting: str | None = None
                   ) -> list[Bag]:
        """Model-mode query bags (same k, weighting and PC1 adjustment as the documents, query
        tokens weighted by idf or not), from `SparseIndex.model_query_bags`."""
        weighting = token_weighting or self.config.token_weighting
        present = [i for i, q in enumerate(queries) if q.strip()]
        bags = self.index.model_query_bags([queries[i] for i in present], None,
                                           weighting)  # type: ignore[arg-type]
        out = [EMPTY_BAG] * len(queries)
        for i, bag in zip(present, bags, strict=True):
            out[i] = bag
        return out

    def token_bags(self, queries: Sequence[str], token_weighting: str | None = None
                   ) -> list[Bag]:
        """Tokenized queries (no model call); a query with no usable token gets an empty bag,
        hence no hits, rather than failing the run."""
        weighting = token_weighting or self.config.token_weighting
        out = []
        for query in queries:
            try:
                out.append(self.index.token_query_bag(query, weighting))  # type: ignore[arg-type]
            except EmptyQueryError:
                out.append(EMPTY_BAG)
        return out

    def bags(self, mode: str, queries: Sequence[str], token_weighting: str | None = None
             ) -> list[Bag]:
        """Query bags of either mode."""
        if mode == "model":
            return self.model_bags(queries, token_weighting)
        return self.token_bags(queries, token_weighting)

    def search(self, bag: Bag, depth: int) -> Hits:
        """Exact top hits by the index's own scoring (`Postings.scores` + `top_k`), without the
        per-hit token explanation `SparseIndex.search_bag` adds for users."""
        token_ids, weights = bag
        if len(token_ids) == 0:
            return []
        docs, scores = top_k(self.index.postings.scores(token_ids, weights), depth + 1)
        ids = self.index.doc_ids
        return [(str(ids[d]), float(s)) for d, s in zip(docs.tolist(), scores.tolist(),
                                                         strict=True)]

    def search_public(self, bag: Bag, k: int) -> Hits:
        """The user-facing `SparseIndex.search_bag` (compiled kernel, plus each hit's matched
        tokens), for latency: the runs use `search`, which returns the same hits."""
        if len(bag[0]) == 0:
            return []
        return [(hit.doc_id, hit.score) for hit in self.index.search_bag(*bag, k=k)]

    def search_public_batch(self, bags: Sequence[Bag], k: int) -> list[Hits]:
        """`SparseIndex.search_bags`: all queries at once, on every core numba uses."""
        usable = [bag for bag in bags if len(bag[0])]
        return [[(hit.doc_id, hit.score) for hit in hits]
                for hits in self.index.search_bags(usable, k=k)]

    def search_all(self, qids: Sequence[str], bags: Sequence[Bag],
                   depth: int) -> dict[str, Hits]:
        return {qid: self.search(bag, depth) for qid, bag in zip(qids, bags, strict=True)}


class DenseSystem:
    """tokretrieve.DenseIndex (faiss.IndexFlatIP on L2-normalised vectors) over the same
    embeddings the sparse bags come from."""

    def __init__(self, encoder: Encoder, doc_ids: Sequence[str], doc_embeddings: np.ndarray):
        self.index = DenseIndex(np.array(doc_ids, dtype=str), doc_embeddings, encoder)

    def search(self, query_embeddings: np.ndarray, depth: int) -> list[Hits]:
        results = self.index.search_vectors(np.atleast_2d(query_embeddings), depth + 1)
        return [[(hit.doc_id, hit.score) for hit in hits] for hits in results]

    def search_all(self, qids: Sequence[str], query_embeddings: np.ndarray,
                   depth: int) -> dict[str, Hits]:
        return dict(zip(qids, self.search(query_embeddings, depth), strict=True))


class BM25System:
    """bm25s with English stopwords and default parameters: the lexical baseline."""

    def __init__(self, docs: Sequence[tuple[str, str]]):
        self.doc_ids = [doc_id for doc_id, _ in docs]
        tokens = bm25s.tokenize([text for _, text in docs], stopwords="en", show_progress=False)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)

    @staticmethod
    def tokenize(queries: Sequence[str]) -> list[list[str]]:
        """Queries as token strings (bm25s maps them onto the index vocabulary)."""
        return bm25s.tokenize(list(queries), stopwords="en", return_ids=False,
                              show_progress=False)

    def search(self, query_tokens: Sequence[Sequence[str]], depth: int,
               n_threads: int = 0) -> list[Hits]:
        """Top hits per query; zero-score hits (no query term in the document) are dropped, as
        a sparse index never returns them either."""
        known = [list(tokens) for tokens in query_tokens]
        present = [i for i, tokens in enumerate(known) if tokens]
        out: list[Hits] = [[] for _ in known]
        if not present:
            return out
        depth = min(depth + 1, len(self.doc_ids))
        rows, scores = self.retriever.retrieve([known[i] for i in present], k=depth,
                                               show_progress=False, n_threads=n_threads)
        for i, row, score in zip(present, rows, scores, strict=True):
            out[i] = [(self.doc_ids[int(r)], float(s)) for r, s in zip(row, score, strict=True)
                      if s > 0]
        return out

    def search_all(self, qids: Sequence[str], query_tokens: Sequence[Sequence[str]],
                   depth: int) -> dict[str, Hits]:
        return dict(zip(qids, self.search(query_tokens, depth), strict=True))
