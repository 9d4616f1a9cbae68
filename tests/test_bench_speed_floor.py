"""The work floor's accounting: which postings a query scatters and which documents its dense
lists cover (checked against the raw lists the packed ones were made from), the floor's
arithmetic, and the targets' verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from speed_bags import VOCAB, hand_built_bags

from bench.speed.floor import (
    machine_rates,
    measure_corpus,
    query_work,
    render,
    targets,
    work_floor_ms,
)
from bench.speed.frontier import postings_walked
from bench.speed.kernel import QueryBatch
from tokretrieve.index.postings import postings_from_bags

SEGMENT = 300  # four full segments; the head token (90% of the documents) is dense in each


def bags() -> sp.csr_matrix:
    return sp.vstack([hand_built_bags(seed) for seed in range(3)], format="csr")


def batch_of(*queries: list[int]) -> QueryBatch:
    rows = np.zeros((len(queries), VOCAB), dtype=np.float32)
    for q, tokens in enumerate(queries):
        rows[q, tokens] = 1.0
    return QueryBatch.from_bags(sp.csr_matrix(rows))


def raw_postings():
    return postings_from_bags(bags(), "uint8", SEGMENT, scale=2.0 ** -6)


def raw_lists(token: int):
    raw = raw_postings()
    for segment in range(raw.n_segments):
        row, docs, _ = raw.block(segment)
        yield docs[row[token]:row[token + 1]]


def test_without_dense_lists_every_walked_posting_is_a_scatter_add():
    raw = raw_postings()
    batch = batch_of([0, 1, 7], [12, 40, 59], [3])
    work = query_work(raw.packed(None), batch)
    assert work["scattered"].tolist() == postings_walked(raw, batch).tolist()
    assert work["dense_docs"].tolist() == [0, 0, 0]
    assert (work["bytes"] > 0).all()


def test_a_dense_list_costs_the_documents_up_to_its_last_and_no_scatter_add():
    raw = raw_postings()
    head, tail = 0, VOCAB - 1
    work = query_work(raw.packed(), batch_of([head], [tail], [head, tail]))
    covered = sum(int(docs[-1]) + 1 for docs in raw_lists(head) if len(docs))
    tail_postings = sum(len(docs) for docs in raw_lists(tail))
    assert covered > 0 and tail_postings > 0
    assert work["dense_docs"].tolist() == [covered, 0, covered]
    assert work["scattered"].tolist() == [0, tail_postings, tail_postings]


def test_the_work_floor_is_scatter_adds_and_dense_adds_at_their_rates():
    work = {"scattered": np.array([1_000_000, 0]), "dense_docs": np.array([0, 2_000_000])}
    rates = {"scatter_ns": 0.5, "dense_add_ns": 0.05}
    assert work_floor_ms(work, rates).tolist() == pytest.approx([0.5, 0.1])


def test_the_rates_are_positive_and_the_floor_takes_the_cheaper_scatter_add():
    rates = machine_rates()
    assert rates["scatter_ns"] == min(rates["scatter_float32_ns"], rates["scatter_int32_ns"])
    for name in ("scatter_float32", "scatter_int32", "dense_add"):
        assert 0 < rates[f"{name}_ns"] <= rates[f"{name}_ns_median"]


def corpus(tokens_p99: float, floor_p99: float, model_p50: float, floor_p50: float,
           tokens_mean: float, floor_mean: float, bm25_mean: float) -> dict:
    return {"modes": {"tokens": {"kernel": {"p99_ms": tokens_p99, "mean_ms": tokens_mean},
                                 "work_floor": {"p99_ms": floor_p99, "mean_ms": floor_mean}},
                      "model": {"kernel": {"p50_ms": model_p50},
                                "work_floor": {"p50_ms": floor_p50}}},
            "bm25s": {"mean_ms": bm25_mean}}


def test_targets_say_whether_the_kernel_and_the_floor_meet_each_one():
    rows = targets(corpus(tokens_p99=3.1, floor_p99=1.4, model_p50=33.0, floor_p50=4.0,
                          tokens_mean=1.5, floor_mean=0.5, bm25_mean=3.0))
    by_target = {row["target"]: row for row in rows}
    tokens = by_target["tokens p99 <= 1 ms"]
    assert (tokens["kernel_meets"], tokens["floor_meets"]) == (False, False)
    model = by_target["model p50 <= 5 ms"]
    assert (model["kernel_meets"], model["floor_meets"]) == (False, True)
    ratio = by_target[">= 3x BM25S's queries per second"]
    assert ratio["kernel"] == pytest.approx(2.0) and ratio["floor"] == pytest.approx(6.0)
    assert (ratio["kernel_meets"], ratio["floor_meets"]) == (False, True)


def test_the_bm25s_ratio_comes_from_the_largest_corpus_that_has_it():
    large = corpus(tokens_p99=3.1, floor_p99=1.4, model_p50=33.0, floor_p50=4.0,
                   tokens_mean=1.5, floor_mean=0.5, bm25_mean=0.0)
    del large["bm25s"]
    small = {**corpus(tokens_p99=0.3, floor_p99=0.1, model_p50=3.0, floor_p50=1.0,
                      tokens_mean=0.2, floor_mean=0.05, bm25_mean=0.5), "documents": 100_000}
    assert len(targets(large)) == 2
    rows = targets(large, small)
    assert rows[2]["target"] == ">= 3x BM25S's queries per second (at 100,000 documents)"
    assert rows[2]["kernel"] == pytest.approx(2.5) and rows[2]["floor"] == pytest.approx(10.0)
    assert rows[0]["kernel"] == 3.1  # latency targets stay on the large corpus


def test_one_small_corpus_fills_every_table():
    batch = batch_of([0, 1, 7], [12, 40, 59], [3], [0, 20, 30, 45])
    rates = {"scatter_ns": 0.5, "dense_add_ns": 0.05}
    result = measure_corpus(bags(), 2.0 ** -6, {"tokens": batch, "model": batch}, rates,
                            bandwidth=1e10, with_bm25=True)
    for mode in ("tokens", "model"):
        stats = result["modes"][mode]
        assert stats["queries"] == 4
        assert 0 < stats["kernel"]["p50_ms"] <= stats["kernel"]["p99_ms"]
        assert stats["work_floor"]["p50_ms"] > 0
    record = {"command": "python -m bench.speed.floor", "started": "now", "index": "test",
              "machine": {"git": {"commit": "abcdef123456", "dirty": False}},
              "rates": {**rates, **{f"{name}_ns{tail}": 0.5 for name in (
                  "scatter_float32", "scatter_int32", "dense_add") for tail in ("", "_median")}},
              "bandwidth": {"bytes_per_s": 1e10}, "corpora": {"real": result}}
    text = render(record)
    assert "| real | 1,200 | tokens |" in text and "| real | 1,200 | model |" in text
    assert "| tokens p99 <= 1 ms |" in text and "BM25S's queries per second" in text
