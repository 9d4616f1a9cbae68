"""tokretrieve.encoding.models: the precision weights load in (bfloat16 gives the same
embeddings within bf16 precision, is recorded in the index, and the index's model is reloaded
so), and the name a model is recorded by (a local folder's absolute path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokretrieve import Encoder, SparseIndex, TokretrieveError, build_index, index_encoder
from tokretrieve.encoding.encoder import native_bf16

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
    build_index(list(zip(["a", "b", "c"], TEXTS, strict=True)),
                encoder.with_bags(bag_size=4, weighting="shifted"), path, pc1_strength=0.0,
                progress=False)
    index = SparseIndex.load(path)
    assert index.manifest.model.dtype == "bfloat16"
    reloaded = index_encoder(index)  # loaded by name like the builder, hash accepted
    assert reloaded.dtype == "bfloat16"
    assert reloaded.model.content_hash == index.manifest.model.content_hash


def test_unknown_dtype_is_refused(tiny_llama_dir):
    with pytest.raises(TokretrieveError, match=r"unknown dtype 'float8'.*auto"):
        Encoder.load(str(tiny_llama_dir), dtype="float8")


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [
    (True, False, "bfloat16"), (False, True, "bfloat16"), (False, False, "float32")])
def test_auto_dtype_takes_bf16_only_where_the_cpu_has_it(tiny_llama_dir, monkeypatch,
                                                         avx512_bf16, amx, expected):
    """dtype="auto" follows torch's CPU feature probes (set here, so the answer does not
    depend on this machine): emulated bf16 is several times slower than float32."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16,
                        raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert native_bf16("cpu") is (expected == "bfloat16")
    encoder = Encoder.load(str(tiny_llama_dir), method="mean", device="cpu", dtype="auto")
    assert encoder.dtype == expected


def test_auto_dtype_without_torch_probes_or_on_other_devices_is_float32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert native_bf16("cpu") is False
    assert native_bf16("mps") is False


def test_relative_folder_is_recorded_by_its_absolute_path(tiny_llama_dir, tmp_path,
                                                          monkeypatch):
    """A model loaded as './folder' is recorded (name and source) by its absolute path, so an
    index built with it reloads its model from any working directory."""
    folder = tiny_llama_dir.resolve()
    monkeypatch.chdir(folder.parent)
    encoder = Encoder.load(f"./{folder.name}", method="mean", device="cpu")
    assert (encoder.model.name, encoder.model.source) == (str(folder), str(folder))
    path = tmp_path / "idx"
    build_index(list(zip(["a", "b", "c"], TEXTS, strict=True)),
                encoder.with_bags(bag_size=4, weighting="shifted"), path, pc1_strength=0.0,
                progress=False)
    monkeypatch.chdir(tmp_path)  # where './<folder name>' is nothing
    index = SparseIndex.load(path)
    assert index.manifest.model.name == str(folder)
    assert index_encoder(index).model.content_hash == index.manifest.model.content_hash


def test_a_special_token_past_the_embedding_matrix_is_no_error(tiny_llama_dir, tmp_path):
    """EmbeddingGemma's tokenizer holds a special token one past the last row of its
    262,144-row embedding matrix; excluding every special id without a range check raised
    IndexError. Here: the tiny model's tokenizer with one added special token past its rows."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<past-the-rows>"]})
    assert tokenizer.convert_tokens_to_ids("<past-the-rows>") == rows
    tokenizer.save_pretrained(folder)
    encoder = Encoder.load(str(folder), method="prompteol", device="cpu")
    assert encoder.model.vocab_size == rows
    tokens = encoder.key_tokens("wing flutter at supersonic speed", top_k=5)
    assert len(tokens) == 5 and "<past-the-rows>" not in [t for t, _ in tokens]
    bags = encoder.encode_document(["wing flutter", "heat shell"])
    assert bags.shape == (2, rows) and bags.indices.max() < rows
