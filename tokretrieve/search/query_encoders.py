"""Query encoders: query texts to what an index searches (bags for sparse, vectors for dense).

A searcher pairs one of these with an index (tokretrieve.search.searcher), as Pyserini pairs a
query encoder with an impact or FAISS index, so a new kind of query plugs in without touching
the index. Every encoder has `encode(texts)`, one row per text, an empty row (no hits) for a
text that is empty or yields no usable token:

- ModelQueryEncoder: the query embedded by the index's own model (query side of its method),
  adjusted by the index's PC1 and projected like the documents: the paper's setting.
- TokenQueryEncoder: the query's own tokens, with the tokenizer saved in the index; no model
  weights are loaded at all: the cheap path.
- DenseQueryEncoder: the model's dense query embedding, for the dense baseline.
- PrecomputedQueryEncoder: rows computed beforehand (cached embeddings turned into bags, say),
  looked up by query text: what benchmarks use so that no sweep point calls the model.

Query token weights are multiplied by the tokens' idf over the document bags (`token_weighting=
"idf"`), so tokens every bag shares count for little, or kept raw ("count"). None, the default,
is the index's own: "count" for tokenized (and union) queries against bags with literal weights,
whose idf is already on the document side (tokretrieve.encoding.literal), "idf" otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import scipy.sparse as sp

from tokretrieve.corpus import check_texts
from tokretrieve.encoding.literal import LiteralFit, LiteralWeights, token_counts
from tokretrieve.encoding.recipes import ModelRecipe, get_method
from tokretrieve.encoding.tokenizer import load_tokenizer
from tokretrieve.errors import IndexFormatError, TokretrieveError, check_count
from tokretrieve.index.manifest import IMPORTED_METHOD
from tokretrieve.index.sparse import SparseIndex

if TYPE_CHECKING:  # torch loads with the model, never for tokenized queries
    from tokretrieve.encoding.encoder import Encoder

TokenWeighting = Literal["idf", "count"]
# M of the union query over the default bags (literal weights, count-weighted query tokens): the
# best of 4, 16, 64 on Cranfield for MiniLM (0.363 nDCG@10 at 16, 0.362 at 4, 0.353 at 64) and
# within 0.0003 of the best for SmolLM2 (0.329 at 16 and at 4); 2-fold CV over M and the
# weighting: 0.355 / 0.317 (bench/results/quality/cranfield/20261201-145504). On aligned bags
# alone 64 was best (0.312 against 0.259 at 16; .../20261201-131209).
DEFAULT_ALIGNED_TOKENS = 16
TOKEN_WEIGHTINGS = ("idf", "count")


class QueryEncoder(Protocol):
    """Anything that turns query texts into index queries, one row per text."""

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix | np.ndarray: ...


def index_encoder(index: SparseIndex, encoder: Encoder | None = None) -> Encoder:
    """The encoder that built `index`, carrying its bag recipe (bag size, weighting, PC1
    adjustment, variant map): encoding a text with it gives the bag the index would store.

    Without `encoder`, the index's model is loaded by the name and the whole recipe its
    manifest records; either way the weights' hash and every field of the recipe must match
    the build's, or the bags would live in another space and the scores would mean nothing.
    """
    from tokretrieve.encoding.encoder import Encoder
    from tokretrieve.encoding.projection import PC1Adjustment

    record = index.manifest.model
    where = index.path or "this index"
    if record.method == IMPORTED_METHOD:
        raise TokretrieveError(f"{where} holds bags made elsewhere ({record.name}): it has no "
                               "model; search it with tokenized queries (--mode tokens) or "
                               "with query bags")
    recipe = (ModelRecipe.from_record(record.recipe) if record.recipe is not None
              else get_method(record.method))
    if encoder is None:
        encoder = Encoder.load(record.name, method=recipe, max_length=record.max_length,
                               dtype=record.dtype)
    if encoder.model.content_hash != record.content_hash:
        raise IndexFormatError(
            f"{where} was built with model '{record.name}' (sha256 "
            f"{record.content_hash[:12]}), not '{encoder.model.name}' (sha256 "
            f"{encoder.model.content_hash[:12]}): search it with tokenized queries, or rebuild")
    ours = encoder.method.record()
    changed = [key for key, value in recipe.record().items() if key != "name"
               and ours[key] != value]
    if changed:
        raise IndexFormatError(f"{where} embeds with recipe '{recipe.name}', the encoder with "
                               f"'{encoder.method.name}' (they differ in {', '.join(changed)})")
    bags = index.manifest.bags
    literal, fit = False, None  # an index without literal weights: none, whatever the model's
    if bags.literal is not None:
        if bags.literal_fit is None or index.literal_idf is None:
            raise IndexFormatError(f"{where} has literal weights but not their corpus "
                                   "statistics (literal_fit, literal_idf.npy): rebuild it")
        literal = LiteralWeights(**bags.literal)
        fit = LiteralFit(np.asarray(index.literal_idf, dtype=np.float32),
                         float(bags.literal_fit["mean_length"]),
                         float(bags.literal_fit["aligned_scale"]))
    return encoder.with_bags(
        bag_size=bags.bag_size, weighting=bags.weighting,
        adjustment=PC1Adjustment(np.asarray(index.pc1_direction), float(bags.pc1_strength)),
        token_map=index.token_map, literal=literal, literal_fit=fit)


def index_tokenizer(index: SparseIndex):
    """The tokenizer saved inside an index folder (no model weights needed): a SavedTokenizer
    run by `tokenizers` alone where it is a fast one (tokretrieve.encoding.tokenizer), else
    transformers' own."""
    if index.path is None:
        raise TokretrieveError("this index is not on disk, so it has no saved tokenizer: give "
                               "the searcher the index's model (encoder=...) or a tokenizer")
    folder = Path(index.path) / index.manifest.contents.base / "tokenizer"
    if not folder.is_dir():
        raise IndexFormatError(f"{index.path}: tokenizer/ is missing; the index is damaged, "
                               "rebuild it")
    try:
        return load_tokenizer(folder)
    except (OSError, ValueError) as error:  # files missing or garbled: transformers' words
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise IndexFormatError(f"{index.path}: tokenizer/ cannot be loaded ({cause}); the "
                               "index is damaged, rebuild it") from None


def default_token_weighting(index: SparseIndex, mode: str = "tokens") -> TokenWeighting:
    """The query-token weighting an index's bags were made for: "count" for a query's own
    tokens (tokens and union modes) against bags with literal weights, which carry the idf
    already, as BM25's documents do; "idf" otherwise."""
    literal = index.manifest.bags.literal is not None
    return "count" if literal and mode in ("tokens", "union") else "idf"


def token_weights(index: SparseIndex, token_weighting: TokenWeighting | None,
                  mode: str = "tokens") -> np.ndarray | None:
    """Per-token query multipliers: the index's idf, or None for raw weights; None asks for
    the index's default for queries of `mode` (default_token_weighting)."""
    if token_weighting is None:
        token_weighting = default_token_weighting(index, mode)
    if token_weighting == "idf":
        return index.idf.astype(np.float32)
    if token_weighting == "count":
        return None
    raise TokretrieveError(f"unknown token weighting '{token_weighting}': choose one of "
                           f"{', '.join(TOKEN_WEIGHTINGS)}")


def _weighted(bags: sp.csr_matrix, multipliers: np.ndarray | None) -> sp.csr_matrix:
    """Bags times per-token multipliers. A token in no document keeps its entry at weight 0:
    the query did tokenize (it simply matches nothing), which is not the same as an empty query;
    the index ignores such weights."""
    if multipliers is None:
        return bags
    bags = bags.copy()
    bags.data = bags.data * multipliers[bags.indices]
    return bags


class ModelQueryEncoder:
    """Queries embedded and projected exactly like the index's documents (query side)."""

    def __init__(self, encoder: Encoder, multipliers: np.ndarray | None = None,
                 bag_size: int | None = None):
        self.encoder = encoder
        self.multipliers = multipliers
        self.bag_size = None if bag_size is None else check_count(bag_size, "bag_size")

    @classmethod
    def for_index(cls, index: SparseIndex, encoder: Encoder | None = None,
                  token_weighting: TokenWeighting | None = None,
                  bag_size: int | None = None) -> ModelQueryEncoder:
        """For `index`: its model (loaded when not given) with its recipe; `bag_size` keeps
        fewer query tokens than the documents' (lighter queries); `token_weighting` None is
        the index's default for model queries (idf)."""
        multipliers = token_weights(index, token_weighting, "model")
        return cls(index_encoder(index, encoder), multipliers, bag_size)

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.from_embeddings(self.encoder.embed(texts, is_query=True))

    def from_embeddings(self, embeddings: np.ndarray) -> sp.csr_matrix:
        """Query bags of query embeddings already computed (a cache, a batch job)."""
        return _weighted(self.encoder.bags(embeddings, self.bag_size), self.multipliers)


class TokenQueryEncoder:
    """The query's own tokens (no model call), each weighing its count (x idf, unless the
    index's bags carry literal weights: default_token_weighting)."""

    def __init__(self, tokenizer, vocab_size: int, token_map: np.ndarray | None = None,
                 multipliers: np.ndarray | None = None):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.token_map = token_map
        self.multipliers = multipliers

    @classmethod
    def for_index(cls, index: SparseIndex, token_weighting: TokenWeighting | None = None,
                  tokenizer=None) -> TokenQueryEncoder:
        """For `index`: its saved tokenizer (or `tokenizer`), its variant map, and its query
        weighting (`token_weighting` None: the index's default)."""
        multipliers = token_weights(index, token_weighting, "tokens")
        return cls(tokenizer or index_tokenizer(index), index.vocab_size, index.token_map,
                   multipliers)

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Each query's token counts, counted as literal weights count a document's
        (tokretrieve.encoding.literal.token_counts): a leading space gives the first word the
        same word-initial form (e.g. 'Ġheat') as the rest, as it has inside documents; special
        tokens and ids beyond the vocabulary of the index are dropped."""
        bags = token_counts(self.tokenizer, check_texts(texts), self.vocab_size, self.token_map)
        return _weighted(bags, self.multipliers)


class UnionQueryEncoder:
    """The paper's query (2406.17378, "sparse retrieval"): the query's literal tokens united
    with the top `aligned_tokens` (M) tokens of its aligned bag (the model's query embedding,
    PC1-adjusted and projected like the documents), each token weighing 1, so that a document
    scores the sum of its weights over the query's tokens; with `token_weighting="idf"` each
    weighs its idf instead (the package's other modes weigh by idf too). The literal half needs
    no model; the aligned half adds what the text implies but does not say."""

    def __init__(self, literal: TokenQueryEncoder, encoder: Encoder, aligned_tokens: int,
                 multipliers: np.ndarray | None = None):
        self.literal = literal
        self.encoder = encoder
        self.aligned_tokens = check_count(aligned_tokens, "aligned_tokens")
        self.multipliers = multipliers

    @classmethod
    def for_index(cls, index: SparseIndex, encoder: Encoder | None = None,
                  aligned_tokens: int = DEFAULT_ALIGNED_TOKENS,
                  token_weighting: TokenWeighting | None = None
                  ) -> UnionQueryEncoder:
        fitted = index_encoder(index, encoder)
        literal = TokenQueryEncoder(fitted.tokenizer, index.vocab_size, index.token_map)
        return cls(literal, fitted, aligned_tokens, token_weights(index, token_weighting,
                                                                  "union"))

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix:
        texts = check_texts(texts)
        return self.from_embeddings(texts, self.encoder.embed(texts, is_query=True))

    def from_embeddings(self, texts: Sequence[str], embeddings: np.ndarray) -> sp.csr_matrix:
        """Union bags of queries whose embeddings are already computed (a cache, a batch)."""
        literal = self.literal.encode(texts)
        aligned = self.encoder.bags(embeddings, self.aligned_tokens)
        union = (literal > 0).astype(np.float32) + (sp.csr_matrix(aligned) > 0)
        union = sp.csr_matrix(union, dtype=np.float32)
        union.data[:] = 1.0  # a token in both halves still counts once
        return _weighted(union, self.multipliers)


class DenseQueryEncoder:
    """The model's dense query embedding (query side of its recipe): its own sentence
    embedding, Dense layers and Normalize included where it has them."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    @classmethod
    def for_index(cls, index: SparseIndex, encoder: Encoder | None = None) -> DenseQueryEncoder:
        return cls(index_encoder(index, encoder))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.sentence_embedding(self.encoder.embed(texts, is_query=True))


class PrecomputedQueryEncoder:
    """Rows computed beforehand, looked up by query text (one row of `encoded` per text)."""

    def __init__(self, texts: Sequence[str], encoded: sp.spmatrix | np.ndarray):
        encoded = sp.csr_matrix(encoded) if sp.issparse(encoded) else np.asarray(encoded)
        if encoded.ndim != 2 or encoded.shape[0] != len(texts):
            raise TokretrieveError(f"{len(texts)} texts but encoded rows of shape "
                                   f"{encoded.shape}: give one row per text")
        self._row = {text: i for i, text in enumerate(texts)}
        self._encoded = encoded

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix | np.ndarray:
        texts = check_texts(texts)
        missing = [text for text in texts if text not in self._row]
        if missing:
            raise TokretrieveError(f"{len(missing)} query(ies) were not precomputed, e.g. "
                                   f"{missing[0]!r}")
        return self._encoded[[self._row[text] for text in texts]]
