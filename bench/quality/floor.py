"""The floor of /work/shared/ASSETS.md: naive-settings figures measured once on Cranfield,
which the benchmark must reproduce (same naive settings) and beat (its tuned settings).

Naive means: no PC1 adjustment, raw query-token counts (no idf), no variant merging, no literal
weights; min-shifted
logits for MiniLM with bags of 128 tokens, softmax probabilities for SmolLM2 with 256.
"""

from __future__ import annotations

from bench.quality.systems import SparseConfig

FLOOR_CONFIGS = {
    "minilm": SparseConfig(bag_size=128, pc1_strength=0.0, weighting="shifted",
                           merge_variants=False, token_weighting="count", literal=False),
    "smollm2": SparseConfig(bag_size=256, pc1_strength=0.0, weighting="softmax",
                            merge_variants=False, token_weighting="count", literal=False),
}
# nDCG@10 on Cranfield from ASSETS.md ("one quick run, naive settings").
FLOOR_NDCG = {
    "minilm": {"dense": 0.382, "model": 0.212, "tokens": 0.095},
    "smollm2": {"dense": 0.130, "model": 0.036, "tokens": 0.019},
}
FLOOR_BM25_NDCG = 0.352
