"""Literal weights: a document's own tokens, BM25-weighted, beside its aligned expansions.

An aligned bag (the embedding projected to the vocabulary) holds the tokens a document *means*;
a tokenized query holds the words it *says*, and the two meet too rarely for a tokenized query
to beat BM25 (README, "How bags are made"). A literal bag adds what the document says: each of
its own tokens (tokenized as a tokenized query is) weighs its BM25 impact,

    idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / mean length)),
    idf(t) = log(1 + (N - df + 0.5) / (df + 0.5)),

and the stored bag is that plus `alpha` x (mean literal weight / mean aligned weight) x the
aligned bag, so alpha is the aligned half's share in the literal half's units whatever the
weighting's scale. The idf is on the document side, so tokenized queries against such bags
weigh each token by its count (TokenQueryEncoder's index default), as BM25's queries do.

Corpus statistics (idf per token, mean length, the aligned weights' factor) are fitted once on
the build's documents and frozen in the index (`LiteralFit`), so added documents get bags on the
same scale as the built ones, as they get the build's PC1 direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tokretrieve.encoding.vocabulary import merge_variants, normalise_token
from tokretrieve.errors import TokretrieveError

# Tokens past this many in one document are not counted: a sane cap that no real document
# reaches, so that one pathological text cannot exhaust memory.
MAX_LITERAL_TOKENS = 1_000_000
# Texts tokenized per tokenizer call.
TOKENIZE_BATCH = 1024

# English stop words (scikit-learn's ENGLISH_STOP_WORDS, from the Glasgow Information Retrieval
# Group's list), written out so that the package does not depend on scikit-learn.
ENGLISH_STOP_WORDS = frozenset("""
a about above across after afterwards again against all almost alone along already also although
always am among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere
are around as at back be became because become becomes becoming been before beforehand behind
being below beside besides between beyond bill both bottom but by call can cannot cant co con
could couldnt cry de describe detail do done down due during each eg eight either eleven else
elsewhere empty enough etc even ever every everyone everything everywhere except few fifteen fifty
fill find fire first five for former formerly forty found four from front full further get give
go had has hasnt have he hence her here hereafter hereby herein hereupon hers herself him himself
his how however hundred i ie if in inc indeed interest into is it its itself keep last latter
latterly least less ltd made many may me meanwhile might mill mine more moreover most mostly move
much must my myself name namely neither never nevertheless next nine no nobody none noone nor not
nothing now nowhere of off often on once one only onto or other others otherwise our ours
ourselves out over own part per perhaps please put rather re same see seem seemed seeming seems
serious several she should show side since sincere six sixty so some somehow someone something
sometime sometimes somewhere still such system take ten than that the their them themselves then
thence there thereafter thereby therefore therein thereupon these they thick thin third this
those though three through throughout thru thus to together too top toward towards twelve twenty
two un under until up upon us very via was we well were what whatever when whence whenever where
whereafter whereas whereby wherein whereupon wherever whether which while whither who whoever
whole whom whose why will with within without would yet you your yours yourself yourselves
""".split())  # noqa: SIM905 (a word list reads as text)


@dataclass(frozen=True)
class LiteralWeights:
    """The literal lever's settings (README, "How bags are made").

    - `alpha`: the aligned bag's weight beside the literal one, in units of the ratio of their
      mean weights (0: the literal bag alone, BM25 over the model's tokens);
    - `k1`, `b`: BM25's term-frequency saturation and length normalisation;
    - `stopwords`: drop English stop-word tokens from the whole document bag (literal and
      aligned), so they match no query in either mode.
    """

    alpha: float = 0.5  # MiniLM's measured choice (tokretrieve.encoding.models)
    k1: float = 1.2
    b: float = 0.75
    stopwords: bool = True

    def __post_init__(self) -> None:
        for name in ("alpha", "k1", "b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    np.isfinite(value) and value >= 0):
                raise TokretrieveError(f"literal {name} must be a finite number >= 0, got "
                                       f"{value!r}")
        if self.b > 1:
            raise TokretrieveError(f"literal b must be between 0 and 1, got {self.b!r}")
        if not isinstance(self.stopwords, bool):
            raise TokretrieveError(f"literal stopwords must be true or false, got "
                                   f"{self.stopwords!r}")

    def record(self) -> dict:
        """The settings as the manifest stores them (BagRecord.literal)."""
        return {"alpha": float(self.alpha), "k1": float(self.k1), "b": float(self.b),
                "stopwords": self.stopwords}


@dataclass(frozen=True, eq=False)
class LiteralFit:
    """Corpus statistics frozen at build time: each token's idf over the build's documents
    (float32, vocabulary; 0 for a token in none, and for a stop word when they are dropped),
    the documents' mean length in counted tokens, and the factor the aligned weights are
    multiplied by (alpha x mean literal weight / mean aligned weight)."""

    idf: np.ndarray
    mean_length: float
    aligned_scale: float

    def record(self) -> dict:
        """The scalars as the manifest stores them (the idf is a file of the base folder)."""
        return {"mean_length": float(self.mean_length),
                "aligned_scale": float(self.aligned_scale)}


def stopword_ids(tokenizer, vocab_size: int) -> np.ndarray:
    """Ids of the vocabulary entries that spell an English stop word as a whole word, in any
    case and with or without a word-boundary marker ('the', 'The', 'Ġthe'); continuation
    pieces ('##in') are kept: they are parts of other words."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    return np.array([i for i, token in enumerate(tokens)
                     if token is not None and not token.startswith("##")
                     and normalise_token(token) in ENGLISH_STOP_WORDS], dtype=np.int64)


def token_counts(tokenizer, texts: Sequence[str], vocab_size: int,
                 token_map: np.ndarray | None = None,
                 dropped: np.ndarray | None = None) -> sp.csr_matrix:
    """Each text's own token counts (texts x vocabulary CSR, float32), tokenized as
    TokenQueryEncoder tokenizes a query (a leading space, no special tokens, ids beyond the
    vocabulary dropped, variants merged through `token_map`), minus the `dropped` ids."""
    special = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
    if dropped is not None:
        special = np.union1d(special, dropped)
    rows: list[np.ndarray] = []
    texts = list(texts)
    for start in range(0, len(texts), TOKENIZE_BATCH):
        batch = [" " + text.strip() for text in texts[start:start + TOKENIZE_BATCH]]
        encoded = tokenizer(batch, add_special_tokens=False, truncation=True,
                            max_length=MAX_LITERAL_TOKENS)["input_ids"]
        for text, ids in zip(batch, encoded, strict=True):
            ids = np.asarray(ids if text.strip() else [], dtype=np.int64)
            rows.append(ids[(ids < vocab_size) & ~np.isin(ids, special)])
    indptr = np.concatenate([[0], np.cumsum([len(ids) for ids in rows])]).astype(np.int64)
    indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    counts = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                           shape=(len(texts), vocab_size))
    counts.sum_duplicates()
    return merge_variants(counts, token_map)


def fit_literal(counts: sp.csr_matrix, aligned: sp.csr_matrix,
                weights: LiteralWeights) -> LiteralFit:
    """The corpus statistics of the build's documents: idf and mean length from their token
    counts, then the aligned factor from the mean weights of their literal and aligned bags."""
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    idf = np.where(df > 0, np.log1p((n - df + 0.5) / (df + 0.5)), 0.0).astype(np.float32)
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    mean_length = float(lengths.mean()) if n else 0.0
    literal = literal_bags(counts, LiteralFit(idf, mean_length, 0.0), weights)
    mean_aligned = float(aligned.data.mean()) if aligned.nnz else 0.0
    mean_literal = float(literal.data.mean()) if literal.nnz else 0.0
    scale = weights.alpha * mean_literal / mean_aligned if mean_aligned > 0 else 0.0
    return LiteralFit(idf, mean_length, scale)


def literal_bags(counts: sp.csr_matrix, fit: LiteralFit,
                 weights: LiteralWeights) -> sp.csr_matrix:
    """BM25 impacts of the counted tokens under the frozen statistics (texts x vocabulary)."""
    counts = sp.csr_matrix(counts)
    tf = counts.data.astype(np.float64)
    lengths = np.diff(counts.indptr)
    doc_lengths = np.repeat(np.asarray(counts.sum(axis=1)).ravel(), lengths)
    relative = doc_lengths / fit.mean_length if fit.mean_length > 0 else np.ones_like(tf)
    norm = weights.k1 * (1 - weights.b + weights.b * relative)
    values = fit.idf[counts.indices] * tf * (weights.k1 + 1) / (tf + norm)
    bags = sp.csr_matrix((values.astype(np.float32), counts.indices.copy(),
                          counts.indptr.copy()), shape=counts.shape)
    bags.eliminate_zeros()
    return bags


def mixed_bags(counts: sp.csr_matrix, aligned: sp.csr_matrix, fit: LiteralFit,
               weights: LiteralWeights, dropped: np.ndarray | None = None) -> sp.csr_matrix:
    """The stored bags: literal impacts plus the aligned bags times the frozen factor, with
    the `dropped` (stop-word) ids removed from both halves."""
    mixed = (literal_bags(counts, fit, weights)
             + sp.csr_matrix(aligned, dtype=np.float32) * np.float32(fit.aligned_scale)).tocsr()
    if dropped is not None and len(dropped):
        keep = np.ones(mixed.shape[1], dtype=np.float32)
        keep[dropped] = 0
        mixed = (mixed @ sp.diags(keep)).tocsr()
    mixed.eliminate_zeros()
    mixed.sort_indices()
    return mixed.astype(np.float32)
