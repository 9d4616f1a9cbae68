"""The encoder on a CUDA device computes what it computes on the CPU: the same embeddings (the
forward, padding and pooling on the device) and the same key tokens (the projection and top-k
on the device). Skipped where torch sees no CUDA device, as on the CI machines; `make test` on
a GPU machine runs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from refimpl import random_texts

from tokretrieve import Encoder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="torch sees no CUDA device")

TEXTS = random_texts(9, seed=5, low=1, high=30)  # lengths that pad within every batch
BAG_SIZE = 8


@pytest.fixture(params=["bert", "llama"])
def model(request, tiny_bert_dir, tiny_llama_dir):
    """(folder, method) of a tiny encoder and a tiny decoder."""
    return ((str(tiny_bert_dir), "mean") if request.param == "bert"
            else (str(tiny_llama_dir), "prompteol"))


def test_cuda_embeddings_and_bags_equal_the_cpus(model):
    folder, method = model
    cpu = Encoder.load(folder, method=method, device="cpu", batch_size=4, bag_size=BAG_SIZE)
    gpu = Encoder.load(folder, method=method, device="cuda", batch_size=4, bag_size=BAG_SIZE)
    assert gpu.model.device.type == "cuda"
    embeddings = cpu.embed(TEXTS)
    np.testing.assert_allclose(gpu.embed(TEXTS), embeddings, rtol=1e-4, atol=1e-5)
    on_cpu, on_gpu = cpu.bags(embeddings), gpu.bags(embeddings)
    assert (on_gpu.getnnz(axis=1) == BAG_SIZE).all()
    np.testing.assert_allclose(on_gpu.toarray(), on_cpu.toarray(), rtol=1e-4, atol=1e-6)


def test_auto_dtype_on_cuda_takes_bf16_where_the_device_computes_it(model):
    folder, method = model
    auto = Encoder.load(folder, method=method, device="cuda", dtype="auto")
    assert auto.dtype == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    reference = Encoder.load(folder, method=method, device="cpu").embed(TEXTS)
    got = auto.embed(TEXTS)
    assert got.dtype == np.float32  # embeddings leave the encoder as float32 in any dtype
    cosine = (got * reference).sum(1) / (np.linalg.norm(got, axis=1)
                                         * np.linalg.norm(reference, axis=1))
    assert cosine.min() > 0.99
