"""Pooling: the final hidden states of a text's tokens to one vector, the way a model was trained.

The rules (a model's recipe names one, tokretrieve.encoding.recipes): mean, position-weighted mean
(SGPT), last token, first token (BERT's [CLS]). They read the positions to pool from a mask, so
they hold for either padding side and for recipes that pool the text without its prompt.
"""

from __future__ import annotations

import torch

from tokretrieve.encoding.recipes import Pooling


def pool(pooling: Pooling, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pool (batch, length, hidden) states over the positions `mask` (batch, length) marks."""
    mask = mask.to(hidden.dtype)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling in ("cls", "last"):
        # the first or last marked position of each row, wherever the padding lies
        marked = mask > 0
        positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(marked)
        if pooling == "cls":
            index = torch.where(marked, positions, hidden.shape[1]).min(dim=1).values
        else:
            index = torch.where(marked, positions, -1).max(dim=1).values
        return hidden[rows, index.clamp(min=0)]
    if pooling == "weighted_mean":
        # SGPT: the i-th pooled token (1-based) weighs i, so later tokens, which have attended
        # to more of the text in a causal model, count more.
        mask = mask * torch.cumsum(mask, dim=1)
    summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
    return summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
