"""The encoding benchmark's arithmetic, checked against answers worked out by hand.

bench.encoding reports padding waste, forward GFLOP/s and its fraction of a timed torch.mm;
if the batching replica, the FLOP count or the ratios were wrong, every number in its report
would be. The FLOP counts are compared with the textbook count of each tiny architecture
(2 x in x out per token for every Linear, 4 x heads x width^2 x head_dim per sequence for
attention), so a counter that skipped attention on CPU, or counted padding wrongly, fails here.
Only the tiny random-weight models of conftest.py are run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from refimpl import WORDS

from bench.encoding.measure import (
    FlopCache,
    busy_seconds,
    count_forward_flops,
    cpu_share,
    evenly_spaced,
    fraction_of,
    gflops,
    in_order_batches,
    length_sorted_batches,
    matmul_flops_counted,
    measure_bags,
    measure_breakdown,
    measure_encoding,
    mm_flops,
    observe_backbone,
    op_class,
    padding_waste,
    refer_breakdown,
    time_breakdown,
)

# Tiny models of conftest.py: hidden 32, 2 layers, intermediate 64.
LAYERS = 2


def llama_linear_flops(rows: int, width: int) -> int:
    """Tiny Llama backbone's Linear layers: q/o 32x32, k/v 32x16 (2 KV heads of 8), gate/up
    32x64, down 64x32. No LM head (the backbone is the base model)."""
    return rows * LAYERS * width * 2 * (32 * 32 * 2 + 32 * 16 * 2 + 32 * 64 * 2 + 64 * 32)


def llama_attention_flops(rows: int, width: int) -> int:
    """Tiny Llama's attention: QK^T and AV over 4 query heads of 8 dimensions."""
    return rows * LAYERS * 2 * (2 * 4 * width * width * 8)


def llama_flops(rows: int, width: int) -> int:
    return llama_linear_flops(rows, width) + llama_attention_flops(rows, width)


def bert_flops(rows: int, width: int) -> int:
    """Tiny BERT: q/k/v/o 32x32, intermediate 32x64 and 64x32; 2 heads of 16; plus the pooler,
    one 32x32 dense on each row's first position."""
    linear = 2 * (4 * 32 * 32 + 32 * 64 + 64 * 32)
    attention = 2 * (2 * 2 * width * width * 16)
    return rows * (LAYERS * (width * linear + attention) + 2 * 32 * 32)


def text_of(words: int, offset: int = 0) -> str:
    return " ".join(WORDS[offset:offset + words])


# ------------------------------------------------------------------------------ padding waste
def test_length_sorted_batches_and_waste_by_hand():
    lengths = [3, 7, 5, 2, 7]
    batches = length_sorted_batches(lengths, 2)
    assert batches == [[1, 4], [2, 0], [3]]  # longest first, ties in input order
    # Widths 7, 5, 2: 14 + 10 + 2 = 26 positions for 24 tokens.
    assert padding_waste(lengths, batches) == {"positions": 26, "tokens": 24,
                                               "waste": pytest.approx(2 / 26)}
    # Unsorted: [3, 7], [5, 2], [7] -> widths 7, 5, 7: 31 positions.
    assert in_order_batches(5, 2) == [[0, 1], [2, 3], [4]]
    assert padding_waste(lengths, in_order_batches(5, 2))["waste"] == pytest.approx(7 / 31)


def test_waste_is_zero_for_equal_lengths_and_for_batches_of_one():
    assert padding_waste([4, 4, 4], length_sorted_batches([4, 4, 4], 2))["waste"] == 0.0
    assert padding_waste([9, 1, 5], in_order_batches(3, 1))["waste"] == 0.0
    assert padding_waste([], [])["waste"] == 0.0
    with pytest.raises(ValueError):
        length_sorted_batches([1, 2], 0)


def test_busy_seconds_is_the_length_of_the_union_of_intervals():
    assert busy_seconds([]) == 0.0
    assert busy_seconds([(0.0, 2.0)]) == 2.0
    # overlapping (0-2, 1-3 -> 0-3), nested (4-10 holds 5-6) and touching (10-11): 3 + 7
    assert busy_seconds([(4.0, 10.0), (1.0, 3.0), (0.0, 2.0), (5.0, 6.0), (10.0, 11.0)]) == 10.0


def test_observed_batches_are_the_encoders_and_match_the_replica(tiny_encoder):
    encoder = tiny_encoder("bert", "mean", batch_size=2)
    texts = [text_of(3), text_of(7, 3), text_of(5, 10), text_of(2, 15), text_of(7, 17)]
    with torch.inference_mode(), observe_backbone(encoder.model.backbone) as log:
        encoder.embed(texts)
    # [CLS] + words + [SEP]: lengths 5, 9, 7, 4, 9 -> batches (9, 9), (7, 5), (4), logged in
    # the order they started (batches may run side by side).
    assert sorted(log.shapes, key=lambda shape: -shape[1]) == [(2, 9), (2, 7), (1, 4)]
    assert all(ids.shape == mask.shape for ids, mask in zip(log.input_ids, log.masks, strict=True))
    assert log.tokens == 34 and log.positions == 36
    assert log.waste == pytest.approx(2 / 36)
    assert len(log.intervals) == 3 and all(end > start for start, end in log.intervals)
    lengths = [len(ids) for ids in encoder.input_ids(texts)]
    assert padding_waste(lengths, length_sorted_batches(lengths, 2))["waste"] == log.waste
    # The hooks are gone afterwards: a further call is not logged.
    encoder.embed(texts[:1])
    assert len(log.masks) == 3


# ---------------------------------------------------------------------------------- FLOP counts
@pytest.mark.parametrize("model, formula", [("llama", llama_flops), ("bert", bert_flops)])
def test_forward_flops_match_the_architecture_including_attention(tiny_encoder, model, formula):
    encoder = tiny_encoder(model, "mean")
    ids = torch.full((2, 5), 5, dtype=torch.long)
    mask = torch.ones((2, 5), dtype=torch.long)
    mask[1, 3:] = 0  # padding does not change the shapes the forward computes
    assert count_forward_flops(encoder.model.backbone, ids, mask)["total"] == formula(2, 5)


def test_flop_cache_counts_real_batches_row_by_row(tiny_encoder):
    encoder = tiny_encoder("llama", "prompteol", batch_size=3)
    texts = [text_of(n, 2 * n) for n in (4, 9, 1, 6, 6, 2, 8)]
    with torch.inference_mode(), observe_backbone(encoder.model.backbone) as log:
        encoder.embed(texts)
    cache = FlopCache(encoder.model.backbone)
    assert cache.batch_flops(log) == sum(llama_flops(b, w) for b, w in log.shapes)
    check = cache.check(log, rows=2)
    assert check["direct"] == llama_flops(2, check["width"]) and check["ratio"] == 1.0


def test_matmul_flops_counted_is_two_m_n_k():
    assert matmul_flops_counted(64, torch.float32) == 2 * 64**3
    assert matmul_flops_counted(48, torch.bfloat16) == mm_flops(48, 48, 48) == 221_184


# ------------------------------------------------------------------------------- the ratios
def test_gflops_fraction_and_cpu_share_arithmetic():
    assert mm_flops(1000, 1000, 1000) == 2_000_000_000
    assert gflops(2e9, 0.5) == 4.0
    assert math.isnan(gflops(1e9, 0.0))
    assert fraction_of(50.0, 200.0) == 0.25
    assert math.isnan(fraction_of(50.0, 0.0)) and math.isnan(fraction_of(50.0, None))
    # 3 CPU-seconds over 2 s of wall time on 2 threads: 75 % of the two cores.
    assert cpu_share(3.0, 2.0, 2) == 0.75
    assert math.isnan(cpu_share(1.0, 0.0, 2))


def test_evenly_spaced_keeps_both_ends():
    assert evenly_spaced(4, 10) == [0, 3, 6, 9]
    assert evenly_spaced(20, 10) == list(range(10))
    assert evenly_spaced(0, 10) == []


def test_measure_encoding_row_is_consistent(tiny_encoder):
    encoder = tiny_encoder("bert", "mean", batch_size=2)
    texts = [text_of(n, n) for n in (3, 8, 5, 1)] + ["   "]
    cache = FlopCache(encoder.model.backbone)
    reference = 500.0
    row, embeddings = measure_encoding(encoder, texts, 1, cache, {(1, "float32"): reference})
    assert embeddings.shape == (5, 32) and not embeddings[4].any()  # blank text: zero vector
    assert row["docs"] == 5 and row["batches"] == 2  # the blank text never reaches the model
    assert row["tokens"] == 5 + 10 + 7 + 3 and row["replica_matches"]
    assert row["flops"] == bert_flops(2, 10) + bert_flops(2, 5)
    assert row["forward_gflops"] == pytest.approx(row["flops"] / row["forward_s"] / 1e9)
    assert row["fraction_of_matmul"] == pytest.approx(row["forward_gflops"] / reference)
    assert row["docs_per_s"] == pytest.approx(5 / row["embed_s"])
    assert 0 < row["forward_share"] <= 1
    bags = measure_bags(encoder, embeddings, 3, 1, repeats=2)
    assert bags["docs"] == 5 and 0 < bags["nnz_per_doc"] <= 3
    assert bags["bag_size"] == 3
    assert np.isfinite(row["cpu_share"])


# ---------------------------------------------------------------------------- time breakdown
def test_ops_are_classed_as_the_reference_matmul_attention_or_other():
    assert [op_class(op) for op in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")] \
        == ["matrix products"] * 4
    assert op_class("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert op_class("aten::scaled_dot_product_attention") == "attention"
    # wrappers whose work is a nested mm, and element-wise ops, are neither
    assert {op_class(op) for op in ("aten::linear", "aten::matmul", "aten::gelu",
                                    "aten::native_layer_norm", "aten::copy_")} == {"other"}


def test_time_breakdown_by_hand():
    seconds = {"aten::addmm": 2.0, "aten::mm": 1.0, "aten::gelu": 0.6, "aten::copy_": 0.4,
               "aten::_scaled_dot_product_flash_attention_for_cpu": 1.0}
    flops = {"aten::addmm": 4e11, "aten::mm": 2e11,
             "aten::_scaled_dot_product_flash_attention_for_cpu": 5e10}
    b = time_breakdown(seconds, flops, 400.0)
    assert b["ops_s"] == pytest.approx(5.0) and b["flops"] == 650_000_000_000
    products, attention, other = (b["classes"][name] for name in
                                  ("matrix products", "attention", "other"))
    # 6e11 FLOPs in 3 s: 200 GFLOP/s, half the 400 of the reference
    assert products["seconds"] == 3.0 and products["time_share"] == pytest.approx(0.6)
    assert products["flop_share"] == pytest.approx(6 / 6.5)
    assert products["gflops"] == pytest.approx(200.0)
    assert products["fraction_of_matmul"] == pytest.approx(0.5)
    assert attention["gflops"] == pytest.approx(50.0)
    assert attention["fraction_of_matmul"] == pytest.approx(0.125)
    assert other["seconds"] == pytest.approx(1.0) and other["flops"] == 0
    assert other["gflops"] is None and other["fraction_of_matmul"] is None
    assert other["ops"] == {"aten::gelu": 0.6, "aten::copy_": 0.4}
    # a better reference (the end of the run's) re-divides every class
    refer_breakdown(b, 200.0)
    assert b["matmul_gflops"] == 200.0 and products["fraction_of_matmul"] == pytest.approx(1.0)
    assert attention["fraction_of_matmul"] == pytest.approx(0.25)


def test_breakdown_of_a_real_embed_counts_the_architectures_flops(tiny_encoder):
    encoder = tiny_encoder("llama", "prompteol", batch_size=3)
    texts = [text_of(n, 2 * n) for n in (4, 9, 1, 6, 6, 2, 8)]
    with torch.inference_mode(), observe_backbone(encoder.model.backbone) as log:
        encoder.embed(texts)
    threads = torch.get_num_threads()
    b = measure_breakdown(encoder, texts, FlopCache(encoder.model.backbone), 100.0)
    assert torch.get_num_threads() == threads  # profiled on one thread, then restored
    classes = b["classes"]
    # the profiled run forms the same batches: the textbook counts of each part
    assert classes["matrix products"]["flops"] == sum(llama_linear_flops(r, w)
                                                      for r, w in log.shapes)
    assert classes["attention"]["flops"] == sum(llama_attention_flops(r, w)
                                                for r, w in log.shapes)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in classes["attention"]["ops"]
    assert sum(c["seconds"] for c in classes.values()) == pytest.approx(b["ops_s"])
    assert 0 < b["ops_s"] < b["embed_s"] * 1.05  # one thread: the ops' times do not overlap
    assert b["threads"] == 1 and b["docs"] == 7 and b["docs_per_s"] == pytest.approx(
        7 / b["embed_s"])
    assert sum(c["time_share"] for c in classes.values()) == pytest.approx(1.0)
