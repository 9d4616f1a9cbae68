"""Embedding methods: how a model turns a text into one vector, the way it was trained to.

A method has two halves: the text it wraps around the input (a prompt, SGPT's brackets) and how
it pools the final hidden states. Both halves must match training, or the embedding drifts off the
space the LM head reads. The same method encodes documents and queries (SGPT's brackets differ
between the two, as SGPT-*-specb models expect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from tokretrieve.errors import TokretrieveError

Pooling = Literal["mean", "weighted_mean", "last", "cls"]


@dataclass(frozen=True)
class EmbeddingMethod:
    """A prompt around the text plus a pooling rule over the final hidden states."""

    name: str
    pooling: Pooling
    document_wrap: tuple[str, str] = ("", "")
    query_wrap: tuple[str, str] = ("", "")

    def wrap(self, is_query: bool) -> tuple[str, str]:
        """The (prefix, suffix) placed around a text; the text alone gets truncated."""
        return self.query_wrap if is_query else self.document_wrap

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool (batch, length, hidden) states under a right-padded (batch, length) mask."""
        mask = mask.to(hidden.dtype)
        if self.pooling == "cls":  # the first position's state (BERT's [CLS])
            return hidden[:, 0]
        if self.pooling == "last":
            last = mask.sum(dim=1).long() - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if self.pooling == "weighted_mean":
            # SGPT: position i (1-based) weighs i, so later tokens, which have attended to more
            # of the text in a causal model, count more.
            positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device,
                                     dtype=hidden.dtype)
            mask = mask * positions
        summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)


# PromptEOL (Jiang et al. 2023), the prompt the paper uses for plain generative LLMs: the last
# token's state predicts the one word that sums the sentence up.
PROMPTEOL_WRAP = ('This sentence : "', '" means in one word:"')

METHODS: dict[str, EmbeddingMethod] = {
    "prompteol": EmbeddingMethod("prompteol", "last", PROMPTEOL_WRAP, PROMPTEOL_WRAP),
    # SGPT-*-specb: queries in [ ], documents in { }, position-weighted mean pooling.
    "sgpt": EmbeddingMethod("sgpt", "weighted_mean", ("{", "}"), ("[", "]")),
    "mean": EmbeddingMethod("mean", "mean"),
    "last": EmbeddingMethod("last", "last"),
    # sentence-transformers' CLS and weighted-mean pooling, without any prompt
    "cls": EmbeddingMethod("cls", "cls"),
    "weighted_mean": EmbeddingMethod("weighted_mean", "weighted_mean"),
}


def get_method(name: str) -> EmbeddingMethod:
    """Look a method up by name, naming the valid ones when it is unknown."""
    try:
        return METHODS[name]
    except KeyError:
        raise TokretrieveError(
            f"unknown embedding method '{name}': choose one of {', '.join(METHODS)}"
        ) from None
