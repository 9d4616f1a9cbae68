"""Synthetic key-token corpora that follow a real collection's token distribution, at any size.

The speed of exact term-at-a-time search depends on how many postings a query walks, which is
set by the document frequencies of its tokens; so a synthetic corpus is only a fair stand-in for a
larger real one if each token keeps its *fraction* of documents (df / N), the bags keep their
lengths, and the weights keep their values. Uniform random tokens would make every posting list
short and every query cheap, and the benchmark would flatter the kernel.

How a synthetic bag is drawn:
- its length is sampled from the real bag lengths (empty bags included, as they occur);
- its tokens are drawn one at a time, with replacement, from a per-token propensity, until the
  bag holds that many distinct tokens (successive sampling). Drawing in proportion to the real
  df would under-include the frequent tokens, because repeats are wasted on them; a token that is
  drawn with probability p on each of D draws is included with probability 1 - exp(-p D), so the
  propensity starts at -log(1 - df/N) and is then corrected on a simulated sample until the
  realised inclusion rates match df/N;
- each token's weight is the weight of a random real bag that holds that token, so per-token
  weight distributions are kept.

The distribution is measured on doc-major bags (docs x vocab CSR, what the encoder produces and
what `Postings.to_bags()` gives back from an index), so it does not depend on how an index lays
out its postings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

CHUNK_DOCS = 4096
CALIBRATION_DOCS = 20_000
CALIBRATION_ROUNDS = 3
MIN_CALIBRATION_HITS = 50


@dataclass
class TokenDistribution:
    """What the generator keeps of the real bags: their lengths, per-token document fractions and
    each token's real weights. Built once per real collection, reused for every size."""

    lengths: np.ndarray          # int64, one per real document (its bag length)
    fraction: np.ndarray         # float64 (vocab), df / N of each token
    propensity: np.ndarray       # float64 (vocab), calibrated draw weight (0: never drawn)
    weight_indptr: np.ndarray    # int64 (vocab + 1), each token's slice of `weights`
    weights: np.ndarray          # float32, the real bags' weights, token-major

    @property
    def vocab_size(self) -> int:
        return len(self.fraction)

    @property
    def mean_length(self) -> float:
        return float(self.lengths.mean()) if len(self.lengths) else 0.0


def distribution_from_bags(bags: sp.csr_matrix, seed: int = 0,
                           calibration_docs: int = CALIBRATION_DOCS,
                           rounds: int = CALIBRATION_ROUNDS) -> TokenDistribution:
    """Measure real doc-major bags' lengths, document frequencies and weights, and calibrate
    the draw propensities so that generated bags include each token at its real rate.

    Explicit zeros in `bags` count as absent (a zero weight is not a stored posting) and
    duplicate entries are summed, as an index would store them.
    """
    bags = sp.csr_matrix(bags, dtype=np.float32, copy=True)  # the caller's bags stay as given
    bags.sum_duplicates()
    bags.eliminate_zeros()
    n = max(int(bags.shape[0]), 1)
    lengths = np.diff(bags.indptr).astype(np.int64)
    by_token = bags.tocsc()
    df = np.diff(by_token.indptr).astype(np.float64)
    fraction = df / n
    # Inclusion after D draws is 1 - exp(-p D): aim p at -log(1 - fraction), capped below 1.
    propensity = -np.log1p(-np.minimum(fraction, 1.0 - 1e-6))
    distribution = TokenDistribution(lengths, fraction, propensity,
                                     by_token.indptr.astype(np.int64),
                                     np.asarray(by_token.data, dtype=np.float32))
    sample = min(calibration_docs, max(20 * n, 2000))
    for round_ in range(rounds):
        drawn = generate_bags(distribution, sample, seed=seed + 1_000_003 * (round_ + 1))
        realised = np.bincount(drawn.indices, minlength=distribution.vocab_size) / sample
        expected_hits = fraction * sample
        # Only correct tokens seen often enough for the ratio to be more signal than noise;
        # the rest get the median correction, which keeps the bulk's scale right.
        reliable = (expected_hits >= MIN_CALIBRATION_HITS) & (realised > 0)
        ratio = np.ones_like(fraction)
        ratio[reliable] = fraction[reliable] / realised[reliable]
        if reliable.any():
            ratio[~reliable] = float(np.median(ratio[reliable]))
        distribution.propensity = distribution.propensity * np.clip(ratio, 0.25, 4.0)
    return distribution


def generate_bags(distribution: TokenDistribution, n_docs: int, seed: int = 0) -> sp.csr_matrix:
    """`n_docs` synthetic bags (docs x vocab CSR, float32, sorted unique tokens per row).

    Deterministic for a given seed whatever the thread count: each chunk of documents reseeds
    numba's generator from (seed, chunk) before drawing.
    """
    rng = np.random.default_rng(seed)
    active = int(np.count_nonzero(distribution.propensity > 0))
    if len(distribution.lengths) == 0 or active == 0:
        lengths = np.zeros(n_docs, dtype=np.int64)
    else:
        lengths = np.minimum(rng.choice(distribution.lengths, size=n_docs), active)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    data = np.empty(int(indptr[-1]), dtype=np.float32)
    cumulative = np.cumsum(distribution.propensity)
    _fill_bags(cumulative, distribution.weight_indptr, distribution.weights, indptr, indices,
               data, np.int64(seed % (2**31)), CHUNK_DOCS)
    bags = sp.csr_matrix((data, indices, indptr), shape=(n_docs, distribution.vocab_size))
    bags.has_sorted_indices = True
    return bags


def corpus_sizes(text: str) -> list[str]:
    """A comma-separated list of corpus sizes: 'real' (the real bags) and/or positive
    document counts; SystemExit naming the bad entry otherwise."""
    sizes = [part.strip() for part in text.split(",") if part.strip()]
    for size in sizes:
        if size != "real" and not (size.isdigit() and int(size) > 0):
            raise SystemExit(f"error: corpus size {size!r} is neither 'real' nor a positive "
                             "document count")
    return sizes


def corpus_at(size: str, real: sp.csr_matrix, seed: int = 0) -> sp.csr_matrix:
    """The real bags for size 'real', else that many synthetic documents drawn from the real
    bags' distribution (weights of the real bags' dtype)."""
    if size == "real":
        return real
    bags = generate_bags(distribution_from_bags(real.astype(np.float32), seed=seed), int(size),
                         seed=seed + 1)
    bags.data = bags.data.astype(real.dtype)
    return bags


@numba.njit(nogil=True, parallel=True, cache=True)
def _fill_bags(cumulative, weight_indptr, weights, indptr, indices, data, seed,
               chunk_docs):  # pragma: no cover - compiled
    """Draw every document's distinct tokens (successive sampling on `cumulative`) and a real
    weight for each; rows come out sorted."""
    n_docs = indptr.shape[0] - 1
    vocab = cumulative.shape[0]
    total = cumulative[vocab - 1] if vocab > 0 else 0.0
    n_chunks = (n_docs + chunk_docs - 1) // chunk_docs
    for chunk in numba.prange(n_chunks):
        np.random.seed(seed + chunk)
        stamp = np.full(vocab, -1, dtype=np.int64)
        for doc in range(chunk * chunk_docs, min((chunk + 1) * chunk_docs, n_docs)):
            start, end = indptr[doc], indptr[doc + 1]
            filled = start
            while filled < end:
                token = np.searchsorted(cumulative, np.random.random() * total, side="right")
                if token >= vocab or stamp[token] == doc:
                    continue
                stamp[token] = doc
                indices[filled] = token
                filled += 1
            indices[start:end] = np.sort(indices[start:end])
            for p in range(start, end):
                token = indices[p]
                lo, hi = weight_indptr[token], weight_indptr[token + 1]
                data[p] = weights[lo + np.random.randint(0, hi - lo)] if hi > lo else 1.0
