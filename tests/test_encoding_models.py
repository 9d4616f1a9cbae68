"""bfloat16 weights: same embeddings within bf16 precision, recorded in the index, reloaded so."""

from __future__ import annotations

import numpy as np
import pytest

from tokretrieve import Encoder, SparseIndex, TokretrieveError

TEXTS = ["wing lift drag flow", "heat transfer shock", "flow wave"]


def test_bfloat16_embeddings_match_float32(tiny_llama_dir):
    full = Encoder.load(str(tiny_llama_dir), method="mean", device="cpu")
    half = Encoder.load(str(tiny_llama_dir), method="mean", device="cpu", dtype="bfloat16")
    assert half.dtype == "bfloat16" and full.dtype == "float32"
    got, want = half.embed(TEXTS), full.embed(TEXTS)
    assert got.dtype == np.float32
    cosine = np.sum(got * want, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.99  # bf16 keeps ~3 significant digits, not the exact values
    assert not np.array_equal(got, want)  # the weights really were cast


def test_index_records_and_reloads_the_dtype(tiny_llama_dir, tmp_path):
    encoder = Encoder.load(str(tiny_llama_dir), method="mean", device="cpu", dtype="bfloat16")
    path = tmp_path / "idx"
    SparseIndex.build(list(zip(["a", "b", "c"], TEXTS, strict=True)), encoder, path, k=4,
                      weighting="shifted", pc1_strength=0.0, progress=False)
    index = SparseIndex.load(path)
    assert index.manifest["model"]["dtype"] == "bfloat16"
    assert index.encoder.dtype == "bfloat16"  # lazily loaded like the builder, hash accepted


def test_unknown_dtype_is_refused(tiny_llama_dir):
    with pytest.raises(TokretrieveError, match="unknown dtype 'float8'"):
        Encoder.load(str(tiny_llama_dir), dtype="float8")
