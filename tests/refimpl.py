"""Reference computations written for the tests, independent of tokretrieve's own code paths.

Everything here is plain numpy / torch on the raw model: the tests compare tokretrieve's results
with these brute-force answers.
"""

from __future__ import annotations

import random

import numpy as np
import torch

# The content words of the tiny test vocabulary (all alphabetic, so a Whitespace pre-tokenizer
# splits any text made of them into exactly these words).
WORDS = """
time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government
number night point home water room mother area money story fact month lot right study book eye
job word business issue side kind head house service friend father power hour game line end
member law car city community name president team minute idea kid body information back parent
face others level office door health person art war history party result change morning reason
research girl guy moment air teacher force education wing wind engine flow heat pressure plate
shock wave speed flight model theory boundary layer surface cylinder body cone jet stream fluid
velocity drag lift angle attack tunnel test data method solution equation number mach ratio
buckling shell stress load panel flutter vibration mass motion skin friction nozzle gas
temperature transfer laminar turbulent supersonic subsonic hypersonic blunt leading edge
trailing vortex sweep delta span chord profile airfoil blade rotor propeller aircraft missile
rocket orbit satellite entry heating cooling radiation conduction convection
""".split()  # noqa: SIM905 (a word list reads best as text)
WORDS = list(dict.fromkeys(WORDS))  # unique, in order

# Tokens the embedding methods' prompts need, as a Whitespace pre-tokenizer splits them.
PROMPT_TOKENS = ["This", "sentence", ":", '"', "means", "in", "one", "word", ':"',
                 "[", "]", "{", "}", ".", ",", "a"]

# Case and word-boundary variants of three content words: index builds merge each group into
# the plain lower-case word (README, "Merge variants").
VARIANT_TOKENS = ["Wing", "WING", "\u0120wing", "Heat", "\u2581heat", "##flow", "FLOW"]
VARIANT_GROUPS = {"wing": ["Wing", "WING", "\u0120wing"], "heat": ["Heat", "\u2581heat"],
                  "flow": ["##flow", "FLOW"]}

PROMPTEOL = ('This sentence : "', '" means in one word:"')
SGPT_DOC = ("{", "}")
SGPT_QUERY = ("[", "]")


def random_texts(n: int, seed: int, low: int = 2, high: int = 12) -> list[str]:
    """n texts of `low`..`high` random content words (different lengths, so batches pad)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))
            for _ in range(n)]


def pool(hidden: torch.Tensor, how: str) -> torch.Tensor:
    """Pool the (length, hidden) states of ONE unpadded sequence."""
    hidden = hidden.double()
    if how == "last":
        return hidden[-1]
    if how == "mean":
        return hidden.mean(dim=0)
    if how == "weighted_mean":
        weights = torch.arange(1, hidden.shape[0] + 1, dtype=torch.float64)
        return (hidden * weights[:, None]).sum(dim=0) / weights.sum()
    raise ValueError(how)


def hidden_states(model, input_ids: list[int]) -> torch.Tensor:
    """Final hidden states of one unpadded sequence, straight from the transformers module."""
    backbone = model.model if hasattr(model, "lm_head") else model
    with torch.no_grad():
        out = backbone(input_ids=torch.tensor([input_ids]))
    return out.last_hidden_state[0]


def reference_bag(embedding, weight, special_ids, k: int, weighting: str = "shifted",
                  direction=None, strength: float = 0.0, bias=None) -> dict[int, float]:
    """Brute-force bag of one embedding, following KeyTokenProjector's docstring literally.

    logits l = W e (e moved by strength * direction first), special tokens removed, the k best
    tokens kept, weighted, and only strictly positive weights kept. A zero embedding (an empty
    text) has an empty bag.
    """
    e = np.asarray(embedding, dtype=np.float64)
    if not np.any(e):
        return {}
    if strength:
        e = e + strength * np.asarray(direction, dtype=np.float64)
    logits = np.asarray(weight, dtype=np.float64) @ e
    if bias is not None:
        logits = logits + np.asarray(bias, dtype=np.float64)
    specials = {int(s) for s in special_ids}
    eligible = [t for t in range(len(logits)) if t not in specials]
    ranked = sorted(eligible, key=lambda t: (-logits[t], t))
    top = ranked[:k]
    if weighting == "shifted":
        assert len(ranked) > k, "reference needs a (k+1)-th token"
        threshold = logits[ranked[k]]
        weights = {t: logits[t] - threshold for t in top}
    elif weighting == "softmax":
        values = logits[eligible]
        log_norm = values.max() + np.log(np.exp(values - values.max()).sum())
        weights = {t: float(np.exp(logits[t] - log_norm)) for t in top}
    elif weighting == "log1p_relu":
        weights = {t: float(np.log1p(max(logits[t], 0.0))) for t in top}
    elif weighting == "logit":
        weights = {t: float(logits[t]) for t in top}
    else:
        raise ValueError(weighting)
    return {t: float(w) for t, w in weights.items() if w > 0}


def kth_gap(embedding, weight, special_ids, k: int) -> float:
    """Gap between the k-th and (k+1)-th eligible logits: the top-k is well defined if > 0."""
    logits = np.asarray(weight, dtype=np.float64) @ np.asarray(embedding, dtype=np.float64)
    specials = {int(s) for s in special_ids}
    values = np.sort([v for t, v in enumerate(logits) if t not in specials])[::-1]
    return float(values[k - 1] - values[k])


def csr_row(matrix, row: int) -> dict[int, float]:
    """One row of a scipy CSR matrix as {column: value}."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return {int(c): float(v) for c, v in zip(matrix.indices[start:end], matrix.data[start:end],
                                               strict=True)}


def assert_same_bag(actual: dict[int, float], expected: dict[int, float], rtol=1e-4, atol=1e-5):
    """Same tokens, same weights (up to float32 rounding)."""
    assert set(actual) == set(expected), (sorted(actual), sorted(expected))
    for token, weight in expected.items():
        assert np.isclose(actual[token], weight, rtol=rtol, atol=atol), (token, actual[token],
                                                                         weight)


def pc1_numpy(matrix) -> np.ndarray:
    """v1 of the uncentred matrix by numpy SVD, oriented so the mean has a positive coefficient."""
    m = np.asarray(matrix, dtype=np.float64)
    _, _, vt = np.linalg.svd(m, full_matrices=False)
    v = vt[0]
    return v if m.mean(axis=0) @ v >= 0 else -v


def brute_force_ranking(scores: np.ndarray, k: int) -> list[int]:
    """Positions of the k best strictly positive scores, best first, ties to the lower position."""
    candidates = [i for i in range(len(scores)) if scores[i] > 0]
    candidates.sort(key=lambda i: (-scores[i], i))
    return candidates[:k]


def canonical_ids(tokens: list[str]) -> np.ndarray:
    """The README's merge rule, applied to a vocabulary list: entries equal up to case and one
    leading boundary marker (Ġ, ▁, ##) map to the smallest id spelling that word."""
    first: dict[str, int] = {}
    out = np.arange(len(tokens))
    for i, token in enumerate(tokens):
        word = token
        for marker in ("\u0120", "\u2581", "##"):
            if word.startswith(marker) and len(word) > len(marker):
                word = word[len(marker):]
                break
        out[i] = first.setdefault(word.lower(), i)
    return out


def merge_bag(bag: dict[int, float], mapping) -> dict[int, float]:
    """Sum the weights of a bag's tokens that map to the same canonical id."""
    merged: dict[int, float] = {}
    for token, weight in bag.items():
        key = int(mapping[token]) if mapping is not None else token
        merged[key] = merged.get(key, 0.0) + weight
    return merged


def bm25_idf(df: np.ndarray, n: int) -> np.ndarray:
    """BM25's idf, log(1 + (N - df + 0.5) / (df + 0.5)), and 0 where df = 0."""
    df = np.asarray(df, dtype=np.float64)
    return np.where(df > 0, np.log(1.0 + (n - df + 0.5) / (df + 0.5)), 0.0)


def postings_scores(postings, token_ids, token_weights) -> np.ndarray:
    """Dot products of one query bag with every document (float32), with the compiled kernel's
    arithmetic written out in numpy: float32 products query weight x impact added in query-token
    order, segment by segment, times the power-of-two scale at the end."""
    sums = np.zeros(postings.n_docs, dtype=np.float32)
    for segment in range(postings.n_segments):
        base = segment * postings.segment_docs
        starts, offsets, impacts = postings.block(segment)  # raw lists, of either codec
        for token, weight in zip(np.asarray(token_ids).tolist(),
                                 np.asarray(token_weights).tolist(), strict=True):
            start, end = starts[token], starts[token + 1]
            if start == end:
                continue
            # A posting list names each document once, so this fancy-indexed add is exact.
            docs = base + np.asarray(offsets[start:end]).astype(np.int64)
            sums[docs] += np.float32(weight) * np.asarray(impacts[start:end], dtype=np.float32)
    return sums * np.float32(postings.scale)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best positive scores, best first, ties by lower index
    (numpy partition + lexsort: the reference selection for the kernel's heap)."""
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        # Keep every candidate tied with the k-th score so the tie-break below sees them all.
        kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
        candidates = candidates[scores[candidates] >= kth]
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    chosen = candidates[order]
    return chosen, scores[chosen]


def raw_arrays(postings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, uint16 offsets, impacts) of postings of either codec, as the raw codec stores
    them: the packed lists decoded segment by segment."""
    blocks = [postings.block(segment) for segment in range(postings.n_segments)]
    return (np.asarray(postings.indptr), np.concatenate([b[1] for b in blocks]),
            np.concatenate([b[2] for b in blocks]))
