"""How well an embedding's key tokens match its own text, and the PC1 strength that matches best.

arXiv 2406.17378 claims that an embedder's pooled embedding, sent through the LM head, ranks the
text's own tokens first, that embedder and backbone differ mainly along the first principal
component (PC1), and that moving an embedding along PC1 (e' = e + λ·v1) sharpens the alignment.
This module measures those claims on a corpus sample, so a user can check them for their own
model and pick λ without relevance judgments:

- alignment metrics (hit rate @k, reciprocal rank of the text's own tokens), computed from logits
  and a (texts x vocab) mask of each text's own tokens, so tests can build both by hand;
- the spectrum of the embeddings, uncentred as in the authors' code (Arthurizijar/
  Text_aligns_tokens, spectral_analyze.py), and their `before_after_variation`: the mean change
  per principal component between a backbone's embeddings and the embedder's;
- calibration of λ: the grid point with the best hit rate @k on a sample of the corpus.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from tokretrieve.encoding.encoder import Encoder
from tokretrieve.encoding.projection import (
    KeyTokenProjector,
    PC1Adjustment,
    first_principal_direction,
)
from tokretrieve.encoding.vocabulary import variant_map
from tokretrieve.errors import TokretrieveError

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50)
# λ grid in multiples of the mean embedding norm: λ is in the embedding's own units and norms
# differ by orders of magnitude between models (MiniLM ~5, SmolLM2 ~55), so a fixed absolute
# grid would suit only one of them. Mostly negative: a negative λ removes the shared component.
DEFAULT_GRID: tuple[float, ...] = (-2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5)
DEFAULT_CALIBRATION_K = 10
DEFAULT_SAMPLE = 300
# An own token found in more than this share of the sample's texts says nothing about any one
# text ('the', 'of'): it is not counted as a hit, else the shared component's favourite tokens,
# which occur in every text, would score as aligned.
DEFAULT_MAX_DF = 0.5


# ---------------------------------------------------------------------------- own tokens
def own_token_mask(own_token_ids: Sequence[Sequence[int]], vocab_size: int,
                   token_map: np.ndarray | None = None,
                   ignore: Collection[int] = ()) -> torch.Tensor:
    """(texts x vocab) booleans: True where a vocabulary entry spells one of the text's tokens.

    With `token_map` (tokenizer variant ids to one canonical id, see vocabulary.variant_map)
    every variant of an own token counts ('heat', 'Ġheat', 'Heat'), because PromptEOL predicts
    the no-space form of a word that the text holds in its word-initial form. `ignore` holds
    canonical ids that never count as own tokens (function words, punctuation).
    """
    canonical = (np.arange(vocab_size) if token_map is None
                 else np.asarray(token_map, dtype=np.int64)[:vocab_size])
    if len(canonical) != vocab_size:
        raise TokretrieveError(f"token_map has {len(canonical)} entries for a vocabulary of "
                               f"{vocab_size}")
    skip = np.fromiter(ignore, dtype=np.int64)
    mask = np.zeros((len(own_token_ids), vocab_size), dtype=bool)
    for row, ids in enumerate(own_token_ids):
        ids = np.asarray(ids, dtype=np.int64)
        own = np.setdiff1d(canonical[ids[(ids >= 0) & (ids < vocab_size)]], skip)
        mask[row] = np.isin(canonical, own)
    return torch.from_numpy(mask)


def own_token_ids(encoder: Encoder, texts: Sequence[str]) -> list[list[int]]:
    """The token ids of each text alone, as the encoder feeds them (same truncation), without
    the method's prompt and the special tokens: the prompt's words ('sentence', 'means', 'word')
    are in every input and are no text's own tokens."""
    special = set(encoder.tokenizer.all_special_ids)
    return [[t for t in ids if t not in special] for ids in encoder.text_ids(list(texts))]


def uninformative_tokens(tokenizer, token_map: np.ndarray, own_ids: Sequence[Sequence[int]],
                         max_df: float = DEFAULT_MAX_DF) -> set[int]:
    """Canonical ids that do not count as own tokens: those spelling no letter or digit
    (punctuation, whitespace, byte pieces) and those in more than `max_df` of the texts.

    Found from the sample itself, so the rule needs no stopword list and no language.
    """
    if not 0.0 < max_df <= 1.0:
        raise TokretrieveError(f"max_df must lie in (0, 1], got {max_df}")
    canonical_sets = [np.unique(token_map[np.asarray(ids, dtype=np.int64)]) for ids in own_ids]
    seen, counts = np.unique(np.concatenate([*canonical_sets, np.zeros(0, dtype=np.int64)]),
                             return_counts=True)
    frequent = {int(t) for t, c in zip(seen, counts, strict=True)
                if c > max_df * max(len(own_ids), 1)}
    # Decoded, not the raw entry: byte-level BPE spells a newline 'Ċ', which looks like a letter.
    wordless = {int(t) for t in seen
                if not any(ch.isalnum() for ch in tokenizer.decode([int(t)]))}
    return frequent | wordless


# ---------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class AlignmentMetrics:
    """How high each text's own tokens rank among its embedding's decoded tokens.

    hit_rate[k]: mean over texts of the share of the top-k decoded tokens that are own tokens.
    mrr: mean over texts of 1 / rank of the best-ranked own token in the whole vocabulary
    (0 for a text whose own tokens are all excluded). best_rank: that rank's median and mean.
    texts: how many texts had at least one own token (the others are left out of every mean).
    """

    hit_rate: dict[int, float]
    mrr: float
    median_best_rank: float
    mean_best_rank: float
    texts: int


def alignment_metrics(logits: torch.Tensor | np.ndarray, own_mask: torch.Tensor,
                      ks: Sequence[int] = DEFAULT_KS) -> AlignmentMetrics:
    """Alignment of decoded tokens (top-k of `logits`; -inf marks excluded special tokens) with
    each text's own tokens (`own_mask`, see own_token_mask)."""
    top_hits, best_rank = _row_statistics(torch.as_tensor(logits), own_mask, max(ks))
    return _aggregate(top_hits, best_rank, own_mask.any(dim=1), ks)


def projected_alignment(embeddings: np.ndarray | torch.Tensor, projector: KeyTokenProjector,
                        own_mask: torch.Tensor, ks: Sequence[int] = DEFAULT_KS,
                        chunk: int = 256) -> AlignmentMetrics:
    """alignment_metrics of embeddings sent through `projector` (its PC1 adjustment included),
    a chunk of texts at a time so that only chunk x vocab logits are held at once."""
    embeddings = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    if len(embeddings) != len(own_mask):
        raise TokretrieveError(f"{len(embeddings)} embeddings but {len(own_mask)} own-token rows")
    hits, ranks = [], []
    with torch.inference_mode():
        for start in range(0, len(embeddings), chunk):
            logits = projector.logits(embeddings[start:start + chunk])
            top_hits, best_rank = _row_statistics(logits, own_mask[start:start + chunk],
                                                  max(ks))
            hits.append(top_hits)
            ranks.append(best_rank)
    return _aggregate(torch.cat(hits), torch.cat(ranks), own_mask.any(dim=1), ks)


def alignment_curve(embeddings: np.ndarray, projector: KeyTokenProjector, own_mask: torch.Tensor,
                    direction: np.ndarray, strengths: Sequence[float],
                    ks: Sequence[int] = DEFAULT_KS,
                    progress: bool = False) -> list[tuple[float, AlignmentMetrics]]:
    """(λ, metrics) for each strength λ of the PC1 adjustment e' = e + λ·direction."""
    curve = []
    for strength in tqdm(list(strengths), desc="alignment vs λ", unit="λ", disable=not progress):
        adjusted = dataclasses.replace(projector,
                                       adjustment=PC1Adjustment(direction, float(strength)))
        curve.append((float(strength), projected_alignment(embeddings, adjusted, own_mask, ks)))
    return curve


def _row_statistics(logits: torch.Tensor, own_mask: torch.Tensor,
                    k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text: whether each of the top-k decoded tokens is an own token, and the rank (1 =
    first) of the best own token; texts with no finite own logit get rank inf."""
    logits = logits.float()
    own_mask = own_mask.to(logits.device)
    if logits.shape != own_mask.shape:
        raise TokretrieveError(f"logits {tuple(logits.shape)} and own-token mask "
                               f"{tuple(own_mask.shape)} differ in shape")
    finite = torch.isfinite(logits)
    values, ids = torch.topk(logits, min(k, logits.shape[1]), dim=1)
    top_hits = own_mask.gather(1, ids) & torch.isfinite(values)
    best = torch.where(own_mask & finite, logits, -torch.inf).max(dim=1).values
    rank = 1.0 + (logits > best.unsqueeze(1)).sum(dim=1).double()
    rank = torch.where(torch.isfinite(best), rank, torch.inf)
    return top_hits.cpu(), rank.cpu()


def _aggregate(top_hits: torch.Tensor, best_rank: torch.Tensor, scored: torch.Tensor,
               ks: Sequence[int]) -> AlignmentMetrics:
    scored = scored.cpu()
    if not scored.any():
        raise TokretrieveError("no text has an own token left to look for: the texts are "
                               "empty, or every token was ruled uninformative")
    hits, ranks = top_hits[scored].double(), best_rank[scored]
    hit_rate = {int(k): float(hits[:, :k].sum(dim=1).div(k).mean()) for k in ks}
    finite = ranks[torch.isfinite(ranks)]
    return AlignmentMetrics(
        hit_rate=hit_rate,
        mrr=float((1.0 / ranks).mean()),
        median_best_rank=float(np.median(ranks.numpy())),  # torch.median takes the lower
        mean_best_rank=float(finite.mean()) if len(finite) else float("inf"),
        texts=int(scored.sum()),
    )


# ---------------------------------------------------------------------------- spectrum
@dataclass(frozen=True)
class Spectrum:
    """Principal components of an embedding matrix.

    singular_values: of the uncentred matrix, as the authors compute v1 (and as the index does).
    energy_share: s_i² / sum_j s_j², the share of the total squared norm on component i.
    centred_variance_share: ordinary PCA's explained-variance ratio (mean removed first), for
    comparison: the uncentred PC1 is mostly the mean direction, which centring takes out.
    mean_norm: the mean L2 norm of the embeddings, the unit of the λ grid.
    mean_cosine: cosine between v1 and the mean embedding (near 1: PC1 is the shared offset).
    """

    singular_values: np.ndarray
    energy_share: np.ndarray
    centred_variance_share: np.ndarray
    mean_norm: float
    mean_cosine: float


def spectrum(embeddings: np.ndarray) -> Spectrum:
    """The spectrum of `embeddings` (texts x hidden); zero rows (empty texts) are dropped."""
    matrix = _present_rows(embeddings)
    singular = np.linalg.svd(matrix, compute_uv=False)
    centred = np.linalg.svd(matrix - matrix.mean(axis=0), compute_uv=False)
    mean = matrix.mean(axis=0)
    direction = first_principal_direction(matrix).astype(np.float64)
    return Spectrum(
        singular_values=singular,
        energy_share=singular**2 / np.sum(singular**2),
        centred_variance_share=(centred**2 / np.sum(centred**2) if np.any(centred)
                                else np.zeros_like(centred)),
        mean_norm=float(np.linalg.norm(matrix, axis=1).mean()),
        mean_cosine=float(mean @ direction / max(np.linalg.norm(mean), 1e-30)),
    )


@dataclass(frozen=True)
class ComponentChange:
    """The authors' `before_after_variation`: V from the backbone's (uncentred) embeddings, and
    for each component i the mean over texts of (embedder coefficient - backbone coefficient).

    Component i is oriented so that the backbone's mean embedding has a non-negative coefficient
    on it (SVD alone leaves the sign to the solver). mean_difference[0] is the authors' λ_v1:
    the move along v1 that takes the backbone's mean embedding to the embedder's.
    first_share: d_1² / Σ d_i², the share of that move of the mean lying on PC1.
    """

    mean_difference: np.ndarray
    backbone_singular_values: np.ndarray
    first_share: float

    @property
    def first_dominates(self) -> bool:
        """Whether PC1 changed more than any other component (in absolute mean change)."""
        return int(np.argmax(np.abs(self.mean_difference))) == 0


def component_change(embedder_embeddings: np.ndarray,
                     backbone_embeddings: np.ndarray) -> ComponentChange:
    """Per-component change between a backbone's and its embedder's embeddings of the same texts.

    Both must share the hidden size: the backbone's components are directions of its own space,
    and the embedder's embeddings are read on them.
    """
    embedder = np.asarray(embedder_embeddings, dtype=np.float64)
    backbone = np.asarray(backbone_embeddings, dtype=np.float64)
    if embedder.ndim != 2 or backbone.ndim != 2 or embedder.shape[1] != backbone.shape[1]:
        raise TokretrieveError(
            f"the embedder's embeddings {embedder.shape} and the backbone's {backbone.shape} "
            "must be matrices of the same hidden size: the per-component change reads both "
            "on the backbone's principal directions")
    if embedder.shape[0] != backbone.shape[0] or embedder.shape[0] == 0:
        raise TokretrieveError(f"need the same non-zero number of texts from both models, got "
                               f"{embedder.shape[0]} and {backbone.shape[0]}")
    _, singular, vt = np.linalg.svd(backbone, full_matrices=False)
    signs = np.where(backbone.mean(axis=0) @ vt.T < 0, -1.0, 1.0)
    basis = vt.T * signs
    difference = ((embedder - backbone) @ basis).mean(axis=0)
    total = float(np.sum(difference**2))
    return ComponentChange(difference, singular,
                           float(difference[0] ** 2 / total) if total > 0 else 0.0)


def _present_rows(embeddings: np.ndarray) -> np.ndarray:
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2:
        raise TokretrieveError(f"embeddings must be a 2-D matrix, got shape {matrix.shape}")
    matrix = matrix[np.any(matrix, axis=1)]
    if len(matrix) == 0:
        raise TokretrieveError("no non-zero embedding to analyse (are all texts empty?)")
    return matrix


# ---------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class Calibration:
    """The PC1 strength λ with the best hit rate @k on a corpus sample, and the whole curve.

    strength: the chosen λ, in embedding units (what --pc1-strength takes).
    curve: (λ, hit rate @k) for each grid point, in grid order.
    mean_norm: the sample's mean embedding norm; the grid is `relative_grid` x mean_norm.
    """

    strength: float
    curve: tuple[tuple[float, float], ...]
    k: int
    mean_norm: float
    relative_grid: tuple[float, ...]
    sample: int

    @property
    def criterion(self) -> str:
        return f"hit@{self.k}"

    def manifest_record(self) -> dict:
        """JSON-ready record for an index manifest's "projection" entry."""
        return {
            "strength": self.strength,
            "criterion": self.criterion,
            "sample": self.sample,
            "mean_norm": self.mean_norm,
            "relative_grid": list(self.relative_grid),
            "curve": [{"strength": s, "hit_rate": h} for s, h in self.curve],
        }


def choose_strength(curve: Sequence[tuple[float, float]]) -> float:
    """The λ with the highest score; among ties (within 1e-12) the smallest |λ|, then the first:
    the least intervention that does as well."""
    if not curve:
        raise TokretrieveError("cannot choose a PC1 strength from an empty grid")
    best = max(score for _, score in curve)
    tied = [strength for strength, score in curve if score >= best - 1e-12]
    return min(tied, key=abs)


def calibration_from_curve(curve: Sequence[tuple[float, AlignmentMetrics]], k: int,
                           mean_norm: float, relative_grid: Sequence[float]) -> Calibration:
    """A Calibration from an alignment curve already computed (with k among its ks)."""
    scores = tuple((strength, metrics.hit_rate[k]) for strength, metrics in curve)
    sample = curve[0][1].texts if curve else 0
    return Calibration(choose_strength(scores), scores, k, mean_norm,
                       tuple(float(g) for g in relative_grid), sample)


def calibrate_from_embeddings(embeddings: np.ndarray, projector: KeyTokenProjector,
                              own_mask: torch.Tensor, direction: np.ndarray,
                              grid: Sequence[float] | None = None, k: int = DEFAULT_CALIBRATION_K,
                              mean_norm: float | None = None,
                              progress: bool = False) -> Calibration:
    """Pick λ from `grid` (multiples of `mean_norm`, by default the embeddings' mean norm) by
    the hit rate @k of the adjusted embeddings' decoded tokens against their own tokens."""
    grid = tuple(DEFAULT_GRID if grid is None else grid)
    if mean_norm is None:
        mean_norm = float(np.linalg.norm(_present_rows(embeddings), axis=1).mean())
    strengths = [g * mean_norm for g in grid]
    curve = alignment_curve(embeddings, projector, own_mask, direction, strengths, (k,), progress)
    return calibration_from_curve(curve, k, mean_norm, grid)


@dataclass(frozen=True)
class AlignmentSample:
    """What the alignment of a corpus sample is measured with: the sampled texts, their
    embeddings, the PC1 direction and mean norm, and the own-token mask."""

    texts: list[str]
    embeddings: np.ndarray
    direction: np.ndarray
    mean_norm: float
    own_ids: list[list[int]]
    own_mask: torch.Tensor
    token_map: np.ndarray
    uninformative: set[int]


def prepare_sample(encoder: Encoder, texts: Sequence[str], embeddings: np.ndarray | None = None,
                   sample: int | None = DEFAULT_SAMPLE, seed: int = 0,
                   max_df: float = DEFAULT_MAX_DF, progress: bool = False) -> AlignmentSample:
    """Sample non-empty texts, embed them (unless `embeddings` of all `texts` are given) and
    find their own tokens.

    v1 and the mean norm come from all the embeddings given, exactly as SparseIndex computes
    v1 for the index they will build; without them, from the sample's own embeddings.
    """
    texts = list(texts)
    if embeddings is not None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.shape != (len(texts), encoder.model.hidden_size):
            raise TokretrieveError(f"embeddings have shape {embeddings.shape}, expected "
                                   f"({len(texts)}, {encoder.model.hidden_size})")
    chosen = sample_indices(texts, sample, seed)
    picked = [texts[i] for i in chosen]
    if embeddings is None:
        sample_embeddings = encoder.embed(picked, progress=progress)
        reference = sample_embeddings
    else:
        sample_embeddings, reference = embeddings[chosen], embeddings
    present = _present_rows(reference)
    token_map = variant_map(encoder.tokenizer, encoder.model.vocab_size)
    own_ids = own_token_ids(encoder, picked)
    skip = uninformative_tokens(encoder.tokenizer, token_map, own_ids, max_df)
    return AlignmentSample(
        texts=picked,
        embeddings=sample_embeddings,
        direction=first_principal_direction(present),
        mean_norm=float(np.linalg.norm(present, axis=1).mean()),
        own_ids=own_ids,
        own_mask=own_token_mask(own_ids, encoder.model.vocab_size, token_map, skip),
        token_map=token_map,
        uninformative=skip,
    )


def sample_indices(texts: Sequence[str], sample: int | None, seed: int = 0) -> list[int]:
    """Positions of up to `sample` non-empty texts, drawn at random (seeded), in corpus order:
    the first texts of a collection are often one topic, so a head slice would be biased."""
    present = [i for i, text in enumerate(texts) if isinstance(text, str) and text.strip()]
    if not present:
        raise TokretrieveError("no non-empty text to analyse")
    if sample is not None and sample <= 0:
        raise TokretrieveError(f"sample must be a positive number of texts, got {sample}")
    if sample is None or sample >= len(present):
        return present
    return sorted(random.Random(seed).sample(present, sample))


def calibrate_pc1_strength(encoder: Encoder, texts: Sequence[str],
                           grid: Sequence[float] | None = None, k: int = DEFAULT_CALIBRATION_K,
                           embeddings: np.ndarray | None = None,
                           sample: int | None = DEFAULT_SAMPLE, seed: int = 0,
                           progress: bool = False) -> Calibration:
    """Choose the PC1 strength λ for indexing `texts` with `encoder`, without relevance data.

    Criterion: the mean hit rate @k (share of each text's top-k decoded tokens that are its own
    informative tokens) over a seeded sample of `sample` texts, maximised over λ = g x mean
    embedding norm for g in `grid` (default DEFAULT_GRID); ties go to the smallest |λ|. Pass the
    corpus `embeddings` when they are already computed (an index build): no text is re-encoded
    and v1 is the one the index will use.
    """
    prepared = prepare_sample(encoder, texts, embeddings, sample, seed, progress=progress)
    return calibrate_from_embeddings(prepared.embeddings, encoder.projector(), prepared.own_mask,
                                     prepared.direction, grid, k, prepared.mean_norm, progress)


# ---------------------------------------------------------------------------- the paper's metrics
@dataclass(frozen=True)
class PaperMetrics:
    """Hit@K, LAR and GAR as the authors define them (Text_aligns_tokens, aligned_token.py):
    T_i = the text's literal token set (with the special tokens its tokenizer adds), T̂ = its
    top decoded tokens, no special token filtered out.

    - hit: mean_i 1[T̂^K_i ∩ T_i ≠ ∅];
    - lar: mean_i |T̂^{|T_i|}_i ∩ T_i| / |T_i| (local alignment);
    - gar: |union_i (T̂^{|T_i|}_i ∩ T_i)| / |union_i T_i| (global: how much of the sample's
      vocabulary its texts' embeddings reach). The authors cut the top list at K; here it
      runs to |T_i| for every text, the definition itself.
    """

    k: int
    hit: float
    lar: float
    gar: float
    texts: int


def paper_metrics(embeddings: np.ndarray, projector: KeyTokenProjector,
                  literal_ids: Sequence[Sequence[int]], k: int = DEFAULT_CALIBRATION_K,
                  chunk: int = 64) -> PaperMetrics:
    """PaperMetrics of embeddings sent through `projector` (its adjustment included); build
    the projector without excluded ids to follow the authors, who filter nothing."""
    if len(embeddings) != len(literal_ids):
        raise TokretrieveError(f"{len(embeddings)} embeddings but {len(literal_ids)} texts")
    depth = max([k, *(len(set(ids)) for ids in literal_ids)])
    return metrics_of_ranking(decoded_ids(embeddings, projector, depth, chunk), literal_ids, k)


def decoded_ids(embeddings: np.ndarray, projector: KeyTokenProjector, depth: int,
                chunk: int = 64) -> np.ndarray:
    """Each embedding's top-`depth` decoded token ids (texts x depth), best first, a chunk of
    texts at a time so that only chunk x vocab logits are held at once."""
    embeddings = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    ranked = []
    with torch.inference_mode():
        for start in range(0, len(embeddings), chunk):
            logits = projector.logits(embeddings[start:start + chunk])
            ranked.append(torch.topk(logits, min(depth, logits.shape[1]), dim=1)
                          .indices.numpy())
    return np.concatenate(ranked) if ranked else np.zeros((0, depth), dtype=np.int64)


def metrics_of_ranking(ranked: np.ndarray, literal_ids: Sequence[Sequence[int]],
                       k: int = DEFAULT_CALIBRATION_K) -> PaperMetrics:
    """PaperMetrics of decoded rankings (texts x depth, depth at least k and every |T_i|)."""
    own = [set(int(t) for t in ids) for ids in literal_ids]
    hits, local, reached = [], [], set()
    for row, text_own in zip(ranked.tolist(), own, strict=True):
        hits.append(bool(text_own & set(row[:k])))
        found = text_own & set(row[:len(text_own)])
        local.append(len(found) / len(text_own) if text_own else 0.0)
        reached |= found
    vocabulary = set().union(*own) if own else set()
    return PaperMetrics(k=k, hit=float(np.mean(hits)) if hits else 0.0,
                        lar=float(np.mean(local)) if local else 0.0,
                        gar=len(reached) / len(vocabulary) if vocabulary else 0.0,
                        texts=len(own))


def literal_token_ids(encoder: Encoder, texts: Sequence[str]) -> list[list[int]]:
    """The authors' T_i: each text tokenized alone with its tokenizer's special tokens (no
    prompt), cut at the encoder's max length."""
    return encoder.tokenizer(list(texts), truncation=True, max_length=encoder.max_length,
                             verbose=False)["input_ids"]
