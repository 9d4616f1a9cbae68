"""Small hand-built 'real' bags for the speed benchmark's tests (generator and kernel harness)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Well-separated document fractions for the head of the vocabulary, a long thin tail after it.
HEAD = [0.9, 0.7, 0.55, 0.4, 0.3]
VOCAB = 60
REAL_DOCS = 400


def hand_built_bags(seed: int = 7) -> sp.csr_matrix:
    """Small 'real' doc-major bags: every token in a document independently with its own
    fraction, one empty document, positive weights that differ per token."""
    rng = np.random.default_rng(seed)
    fractions = np.concatenate([HEAD, np.linspace(0.12, 0.01, VOCAB - len(HEAD))])
    present = rng.random((REAL_DOCS, VOCAB)) < fractions
    present[0] = False
    weights = (rng.random((REAL_DOCS, VOCAB)) + 0.1) * (1 + np.arange(VOCAB)) / VOCAB
    return sp.csr_matrix(np.where(present, weights, 0.0).astype(np.float32))
