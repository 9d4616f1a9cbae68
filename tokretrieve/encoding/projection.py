"""Projection of text embeddings to key-token bags, with the first-principal-component adjustment.

arXiv 2406.17378 finds that a text embedding sent through the LM head ranks the text's key tokens
first once the embedding's first principal component (PC1) is adjusted: the component all
embeddings share dominates the logits with tokens that say little about any one text. This module
holds that arithmetic, independent of any model: PC1 estimation, the adjustment, and top-k
selection of positive token weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from tokretrieve.encoding.choices import WEIGHTINGS, Weighting
from tokretrieve.errors import TokretrieveError, check_count


def first_principal_direction(embeddings: np.ndarray, max_sample: int = 10_000,
                              seed: int = 0) -> np.ndarray:
    """The first right singular vector v1 of the (uncentred) embedding matrix, unit length.

    Matches the authors' definition in Arthurizijar/Text_aligns_tokens, spectral_analyze.py
    (`get_top_eigen_vector`): `torch.svd` of the raw embedding matrix, no mean subtracted, and
    v1 = V[:, 0]. SVD fixes v1 only up to sign, so we orient it such that the corpus mean has a
    positive coefficient on it: a negative strength then always removes part of the shared
    component, whichever sign the solver returned.
    """
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise TokretrieveError(
            f"PC1 needs a non-empty 2-D matrix of embeddings, got shape {matrix.shape}")
    if matrix.shape[0] > max_sample:
        rows = np.random.default_rng(seed).choice(matrix.shape[0], max_sample, replace=False)
        matrix = matrix[np.sort(rows)]
    _, _, vt = np.linalg.svd(matrix, full_matrices=False)
    direction = vt[0]
    if matrix.mean(axis=0) @ direction < 0:
        direction = -direction
    return direction.astype(np.float32)


@dataclass(frozen=True)
class PC1Adjustment:
    """Move every embedding by `strength` along the unit direction v1: e' = e + strength * v1.

    This is the authors' `embs + alpha * top1_eigenvec` (spectral_analyze.py, `get_prob_dist`),
    with the strength in the embedding's own units (their default for GPT-Neo is -47).
    """

    direction: np.ndarray
    strength: float

    def apply(self, embeddings: torch.Tensor) -> torch.Tensor:
        if self.strength == 0.0:
            return embeddings
        direction = torch.as_tensor(self.direction, dtype=embeddings.dtype,
                                    device=embeddings.device)
        return embeddings + self.strength * direction


def check_weighting(weighting: str) -> str:
    if weighting not in WEIGHTINGS:
        raise TokretrieveError(
            f"unknown weighting '{weighting}': choose one of {', '.join(WEIGHTINGS)}")
    return weighting


@dataclass
class KeyTokenProjector:
    """Maps pooled embeddings to vocabulary logits and keeps each text's top-k positive tokens.

    Weights, by `weighting` (the logit of token t is l_t, l_(k+1) the (k+1)-th largest):
    - shifted:    l_t - l_(k+1). Invariant to the logits' per-text offset (like softmax), linear
                  in the logit, and zero exactly at the cut-off, so the bag has no cliff at k.
    - softmax:    the probability of t over the whole vocabulary.
    - log1p_relu: log(1 + max(l_t, 0)), SPLADE's saturation.
    - logit:      l_t itself, kept where positive.
    Tokens whose weight is not strictly positive are dropped, and so are special tokens.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    excluded_ids: np.ndarray
    adjustment: PC1Adjustment | None = None
    # An MLM head's transform (BERT: dense, GELU, layer norm) applied to the adjusted
    # embedding before the decoder matrix `weight`; None for LM heads and tied embeddings.
    transform: torch.nn.Module | None = None

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of pooled embeddings only, never of every sequence position."""
        embeddings = embeddings.to(device=self.weight.device, dtype=self.weight.dtype)
        if self.adjustment is not None:
            embeddings = self.adjustment.apply(embeddings)
        if self.transform is not None:
            embeddings = self.transform(embeddings)
        logits = embeddings @ self.weight.T
        if self.bias is not None:
            logits = logits + self.bias
        logits = logits.float()
        if len(self.excluded_ids):
            logits[:, torch.as_tensor(self.excluded_ids, device=logits.device)] = -torch.inf
        return logits

    def bags(self, embeddings: torch.Tensor, k: int,
             weighting: Weighting) -> sp.csr_matrix:
        """Top-k positive-weight tokens of each embedding, as a (texts x vocab) CSR matrix."""
        k = check_count(k, "bag_size")
        check_weighting(weighting)
        logits = self.logits(embeddings)
        vocab = logits.shape[1]
        take = min(k + 1, vocab) if weighting == "shifted" else min(k, vocab)
        values, ids = torch.topk(logits, take, dim=1)
        if weighting == "shifted":
            # The cut-off is the (k+1)-th *usable* logit; where fewer than k+1 tokens are usable
            # (excluded tokens are -inf), the lowest usable logit, so that token weighs 0.
            lowest_usable = logits.masked_fill(~torch.isfinite(logits), torch.inf).amin(
                dim=1, keepdim=True)
            cutoff = values[:, k:k + 1] if take > k else lowest_usable
            cutoff = torch.where(torch.isfinite(cutoff), cutoff, lowest_usable)
            values, ids = values[:, :k] - cutoff, ids[:, :k]
        elif weighting == "softmax":
            values = torch.exp(values - torch.logsumexp(logits, dim=1, keepdim=True))
        elif weighting == "log1p_relu":
            values = torch.log1p(values.clamp(min=0))
        return _rows_to_csr(ids.cpu().numpy(), values.cpu().numpy(), vocab)


def _rows_to_csr(ids: np.ndarray, values: np.ndarray, vocab: int) -> sp.csr_matrix:
    """Build CSR rows from per-row (ids, values), keeping strictly positive finite values."""
    keep = np.isfinite(values) & (values > 0)
    counts = keep.sum(axis=1)
    indptr = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    matrix = sp.csr_matrix(
        (values[keep].astype(np.float32), ids[keep].astype(np.int32), indptr),
        shape=(len(ids), vocab),
    )
    matrix.sort_indices()
    return matrix
