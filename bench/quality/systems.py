"""The retrieval systems under test, all fed from the same cached embeddings and documents.

- sparse, `model` queries: the query embedded like a document and projected to its key tokens.
  The bags come from the cached query embeddings through the package's own
  `ModelQueryEncoder.from_embeddings` and are served by a `PrecomputedQueryEncoder`, so no sweep
  point calls the model and no bench code re-implements the query path;
- sparse, `tokens` queries: `TokenQueryEncoder`, the query's own tokens, idf- or count-weighted,
  no model call;
- dense: `DenseIndex` over the very embeddings the sparse bags come from (exact inner product in
  FAISS), queries from the cached query embeddings;
- BM25: bm25s with English stopwords and its default parameters (k1=1.5, b=0.75, Lucene idf).

Sparse and dense rankings come from the package's searchers (`batch_search`: the shipped
kernel, FAISS), without the per-hit token lists that evaluation never reads (`explain=False`).
Sparse indexes are built in memory by `tokretrieve.build.index_from_embeddings(path=None)`
from an encoder whose bag recipe carries the configuration's bag size and weighting. Each search
returns `depth + 1` hits so the identical-id rule (bench.quality.runs.finalize) still leaves
`depth` of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from bench.quality.cache import EncodedCollection
from bench.quality.datasets import Collection
from bench.quality.runs import Ranking
from tokretrieve import (
    DenseIndex,
    DenseSearcher,
    Encoder,
    Hit,
    ModelQueryEncoder,
    PrecomputedQueryEncoder,
    QueryEncoder,
    SparseIndex,
    SparseSearcher,
    TokenQueryEncoder,
    index_from_embeddings,
)
from tokretrieve.encoding.literal import LiteralWeights
from tokretrieve.search.bm25 import BM25Searcher
from tokretrieve.search.query_encoders import DEFAULT_ALIGNED_TOKENS, UnionQueryEncoder

Hits = list[tuple[str, float]]
MODES = ("model", "tokens")


@dataclass(frozen=True)
class SparseConfig:
    """The levers of a sparse index: bag size (tokens kept per document), PC1 strength,
    weighting, variant merging, literal weights (`literal`: their alpha, or False for none;
    `literal_stopwords`; tokretrieve.encoding.literal, BM25's k1 and b at their standard
    values), and the weighting of query tokens (both query modes). None means "the package's
    default for this model" (for `token_weighting`: the index's default for the query mode),
    which `SparseSystem.resolved` turns into the concrete value."""

    bag_size: int | None = None
    pc1_strength: float | None = None
    weighting: str | None = None
    merge_variants: bool | None = None
    token_weighting: str | None = None
    literal: float | bool | None = None
    literal_stopwords: bool | None = None

    def label(self) -> str:
        merge = "" if self.merge_variants is None else (
            " merged" if self.merge_variants else " unmerged")
        strength = "default" if self.pc1_strength is None else f"{self.pc1_strength:g}"
        return (f"bag={self.bag_size} λ={strength} {self.weighting}{merge}"
                f"{literal_label(self.as_dict())} q:{self.token_weighting or 'default'}")

    def index_key(self) -> tuple:
        """What the document side depends on (token weighting only touches queries)."""
        return (self.bag_size, self.pc1_strength, self.weighting, self.merge_variants,
                self.literal, self.literal_stopwords)

    def as_dict(self) -> dict:
        return asdict(self)

    def query_weighting(self, mode: str) -> str:
        """The query-token weighting of `mode` queries: the config's, or the index's default
        (tokretrieve's default_token_weighting: count for a query's own tokens against bags
        with literal weights, idf otherwise)."""
        return query_weighting(self.as_dict(), mode)

    def recipe(self) -> dict:
        """The bag-recipe changes for `Encoder.with_bags` (unset levers left to the model)."""
        changes = {key: value for key, value in (("bag_size", self.bag_size),
                                                 ("weighting", self.weighting))
                   if value is not None}
        if self.literal is False:
            changes["literal"] = False
        elif self.literal is not None or self.literal_stopwords is not None:
            standard = LiteralWeights()
            changes["literal"] = LiteralWeights(
                # `is`, not `in (None, True)`: 1.0 == True, and alpha 1.0 is a sweep value
                alpha=(standard.alpha if self.literal is None or self.literal is True
                       else float(self.literal)),
                stopwords=(standard.stopwords if self.literal_stopwords is None
                           else self.literal_stopwords))
        return changes

    def index_options(self) -> dict:
        """Keyword arguments for `index_from_embeddings` (unset levers left out)."""
        return {key: value for key, value in (("pc1_strength", self.pc1_strength),
                                              ("merge_variants", self.merge_variants))
                if value is not None}


def query_weighting(config: dict, mode: str) -> str:
    """SparseConfig.query_weighting of a config as results.json stores it."""
    if config.get("token_weighting"):
        return config["token_weighting"]
    return "count" if config.get("literal") and mode in ("tokens", "union") else "idf"


def literal_label(config: dict) -> str:
    """The literal lever of a config, for labels: '' when unset, ' literal off', or
    ' literal alpha=0.2 stop'."""
    literal = config.get("literal")
    if literal is None:
        return ""
    if literal is False:
        return " literal off"
    stop = "" if config.get("literal_stopwords") is None else (
        " stop" if config["literal_stopwords"] else " nostop")
    return f" literal alpha={literal:g}{stop}"


def build_sparse_index(encoder: Encoder, collection: Collection, doc_embeddings: np.ndarray,
                       config: SparseConfig, path: Path | None = None) -> SparseIndex:
    """The package's index build from stored embeddings: in memory (`path=None`) for the
    systems and sweeps, on disk for measuring bytes. The documents' texts go along only for a
    model without a default λ, whose strength is then calibrated on them, and for the literal
    weights' tokens."""
    return index_from_embeddings(collection.doc_ids, doc_embeddings,
                                 encoder.with_bags(**config.recipe()), path,
                                 texts=[text for _, text in collection.docs],
                                 **config.index_options())


def ranking_of(results: Mapping[str, Sequence[Hit]]) -> Ranking:
    """A searcher's {qid: [Hit]} as the (doc id, score) ranking evaluation reads."""
    return {qid: [(hit.doc_id, hit.score) for hit in hits] for qid, hits in results.items()}


class SparseSystem:
    """An in-memory key-token index derived from stored embeddings (no re-encoding), with the
    query encoders of both modes."""

    def __init__(self, encoder: Encoder, collection: Collection, encoded: EncodedCollection,
                 config: SparseConfig):
        self.encoder = encoder
        self.collection = collection
        self.encoded = encoded
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.index = build_sparse_index(encoder, collection, encoded.doc_embeddings, config)
        self.warnings = sorted({str(w.message) for w in caught})
        self.config = self.resolved(config.token_weighting)

    def resolved(self, token_weighting: str | None = None) -> SparseConfig:
        """The concrete settings the index was built with, read back from its manifest."""
        bags = self.index.manifest.bags
        literal = bags.literal
        return SparseConfig(int(bags.bag_size), float(f"{bags.pc1_strength:.4g}"),
                            str(bags.weighting), bool(bags.merge_variants), token_weighting,
                            literal=float(literal["alpha"]) if literal else False,
                            literal_stopwords=bool(literal["stopwords"]) if literal else None)

    @property
    def postings(self) -> int:
        return int(self.index.manifest.postings)

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.collection.queries]

    def query_encoder(self, mode: str, token_weighting: str | None = None,
                      live: bool = False,
                      aligned_tokens: int = DEFAULT_ALIGNED_TOKENS) -> QueryEncoder:
        """The query encoder of one mode, query tokens weighted by idf or not (the config's by
        default). Model mode serves the cached query embeddings' bags, or with `live` runs the
        model (to time what a query really costs); tokens mode never needs the model; union
        mode (the paper's query) joins the literal tokens to the top `aligned_tokens` of the
        cached embeddings' bags."""
        weighting = token_weighting or self.config.token_weighting
        if mode == "tokens":
            return TokenQueryEncoder.for_index(self.index, weighting,  # type: ignore[arg-type]
                                               tokenizer=self.encoder.tokenizer)
        if mode == "union":
            union = UnionQueryEncoder.for_index(self.index, self.encoder, aligned_tokens,
                                                weighting)  # type: ignore[arg-type]
            return PrecomputedQueryEncoder(self.texts, union.from_embeddings(
                self.texts, self.encoded.query_embeddings))
        if mode != "model":
            raise ValueError(f"unknown query mode {mode!r}: choose one of {', '.join(MODES)}")
        model = ModelQueryEncoder.for_index(self.index, self.encoder,
                                            weighting)  # type: ignore[arg-type]
        if live:
            return model
        return PrecomputedQueryEncoder(self.texts,
                                       model.from_embeddings(self.encoded.query_embeddings))

    def query_bags(self, mode: str, token_weighting: str | None = None) -> sp.csr_matrix:
        """Every query's bag in this mode, one row per collection query, in order."""
        return sp.csr_matrix(self.query_encoder(mode, token_weighting).encode(self.texts))

    def searcher(self, mode: str, token_weighting: str | None = None,
                 aligned_tokens: int = DEFAULT_ALIGNED_TOKENS) -> SparseSearcher:
        return SparseSearcher(self.index, self.query_encoder(mode, token_weighting,
                                                             aligned_tokens=aligned_tokens),
                              self.encoder.tokenizer)

    def search_all(self, mode: str, depth: int, token_weighting: str | None = None,
                   aligned_tokens: int = DEFAULT_ALIGNED_TOKENS) -> Ranking:
        """Every query's top depth + 1 hits. A query with no usable token (possible in tokens
        mode) gets no hits, as it would for a user, and scores 0 in evaluation; the searcher's
        warning about it is silenced, sweeps would repeat it at every point."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = self.searcher(mode, token_weighting, aligned_tokens).batch_search(
                self.texts, self.collection.query_ids, k=depth + 1, explain=False)
        return ranking_of(results)


class DenseSystem:
    """tokretrieve.DenseIndex (faiss.IndexFlatIP on L2-normalised vectors) over the same
    embeddings the sparse bags come from, queried with the cached query embeddings."""

    def __init__(self, collection: Collection, encoded: EncodedCollection,
                 sentence_embedding: Callable[[np.ndarray], np.ndarray] | None = None):
        """`sentence_embedding` turns pooled embeddings into the model's own sentence
        embedding (Encoder.sentence_embedding) where it has Dense or Normalize modules."""
        self.collection = collection
        apply = sentence_embedding or np.asarray
        self.index = DenseIndex(np.array(collection.doc_ids, dtype=str),
                                apply(encoded.doc_embeddings))
        self.searcher = DenseSearcher(self.index, PrecomputedQueryEncoder(
            [text for _, text in collection.queries], apply(encoded.query_embeddings)))

    def search_all(self, depth: int) -> Ranking:
        results = self.searcher.batch_search([text for _, text in self.collection.queries],
                                             self.collection.query_ids, k=depth + 1,
                                             explain=False)
        return ranking_of(results)


class BM25System(BM25Searcher):
    """The package's BM25 (bm25s, English stopwords, default parameters): the lexical
    baseline, with the benchmark's whole-collection run (one hit deeper than `depth`, as every
    system here, so that dropping a hit identical to its query leaves `depth`)."""

    def search_all(self, qids: Sequence[str], query_tokens: Sequence[Sequence[str]],
                   depth: int) -> dict[str, Hits]:
        return dict(zip(qids, self.search_tokens(query_tokens, depth + 1), strict=True))
