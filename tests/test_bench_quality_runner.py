"""The whole quality benchmark on a collection built here (tests/tiny_beir.py), small enough that
every BM25 ranking is known by hand, with a random-weight model: the numbers are meaningless, the
plumbing (systems, figures, files, the record's provenance) is not."""

from __future__ import annotations

import json
import subprocess

import ir_measures
import pytest
from tiny_beir import write_beir

from bench.quality.runner import Options, run_dataset
from bench.quality.systems import SparseConfig
from bench.toolkit import REPO_ROOT


@pytest.fixture
def tiny_beir(tmp_path):
    return write_beir(tmp_path / "tiny")


def test_whole_suite_on_a_tiny_model(tiny_beir, tiny_bert_dir, tmp_path):
    """Every system, figure and file of a run, with a random-weight model (seconds)."""
    # Texts from the tiny tokenizer's vocabulary; depth 3 keeps the 5-document runs short.
    options = Options(models=[str(tiny_bert_dir)], output=tmp_path / "out",
                      cache_dir=tmp_path / "cache", quick=True, depth=3, timing_queries=2,
                      forward_sample=2, throughput_min_s=0.0, base=SparseConfig(bag_size=8),
                      command="test")
    folder, results = run_dataset(str(tiny_beir), options)
    record = results["models"][str(tiny_bert_dir)]
    assert set(record["systems"]) >= {
        "sparse-model", "sparse-tokens", "dense", "bm25", "rrf(sparse-model+dense)",
        "rrf(sparse-tokens+bm25)", "sparse-model-tuned", "sparse-tokens-tuned"}
    for system in record["systems"].values():
        assert all(0.0 <= value <= 1.0 for value in system["metrics"].values())
    assert results["bm25"]["metrics"]["MRR@10"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert record["costs"]["search_latency"]["dense"]["top100"]["n"] == 3
    assert record["sizes"]["dense"]["vectors"] > 0
    assert record["sweeps"]["best"]["model"]["config"]["bag_size"] in (8, 32, 128, 512)
    assert folder.parent == tmp_path / "out" / "tiny"
    for name in ("results.json", "report.md", "headline_ndcg10.png"):
        assert (folder / name).is_file()
    assert len(list(folder.glob("sweep_*.png"))) == 3
    assert "| model | system | settings | nDCG@10 |" in (folder / "report.md").read_text()
    runs = list(folder.glob("runs/*/*.trec"))
    assert len(runs) == 15  # bm25 + dense + 4 sparse + 4 RRF + 4 linear hybrids + union
    union = record["systems"]["sparse-union"]
    assert union["grid"][str((union["setting"]["aligned_tokens"],
                              union["setting"]["token_weighting"]))] == max(
        union["grid"].values())
    assert "## The paper's query" in (folder / "report.md").read_text()
    for left, right in (("sparse-model", "dense"), ("dense", "bm25")):
        linear = record["systems"][f"linear({left}+{right})"]
        assert linear["grid"][str(linear["weight"])] == max(linear["grid"].values())
        assert 0 <= linear["cv"]["held_out_ndcg"] <= max(linear["grid"].values()) + 1e-9
        assert [f["weight"] for f in linear["cv"]["folds"]] and "ranking" not in linear
    assert "## Hybrids: linear fusion" in (folder / "report.md").read_text()
    for run in runs:
        for row in ir_measures.read_trec_run(str(run)):
            assert row.doc_id != row.query_id  # the identical-id rule held everywhere
    # The record says what made it: the command and the commit of this checkout.
    saved = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert saved["command"] == "test"
    assert saved["machine"]["git"]["commit"] == head
    assert saved["models"][str(tiny_bert_dir)]["systems"]["dense"]["metrics"] == pytest.approx(
        record["systems"]["dense"]["metrics"])
    # A second run reads the cached embeddings instead of encoding again.
    _, again = run_dataset(str(tiny_beir), options)
    assert again["models"][str(tiny_bert_dir)]["costs"]["doc_encoding"]["from_cache"]
