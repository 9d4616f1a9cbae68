"""The harness on a collection built here, small enough that every ranking is known by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ir_measures
import pytest

from bench.__main__ import main
from bench.datasets import dataset_name, load_collection, unavailable_reason
from bench.metrics import evaluate
from bench.runner import Options, run_dataset
from bench.runs import finalize
from bench.systems import BM25System, SparseConfig

DOCS = {
    "d1": "wing flutter supersonic speed",
    "d2": "boundary layer heat transfer",
    "d3": "heat conduction shell",
    "d4": "wing flutter vibration",
    "d5": "rocket nozzle gas temperature",
}
QUERIES = {
    "q1": "conduction",  # only d3 has the word
    "q2": "flutter",  # d1 and d4; the shorter d4 ranks first, the relevant d1 second
    "d4": "flutter vibration",  # shares its id with d4, which matches best
    "q9": "rocket",  # judged, but nothing relevant: not a query the benchmark can score
}
QRELS = [("q1", "d3", 2), ("q2", "d1", 1), ("d4", "d1", 1), ("q9", "d5", 0)]


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id, text in DOCS.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for qid, text in QUERIES.items():
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, d, g in QRELS]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def tiny_beir(tmp_path):
    return write_beir(tmp_path / "tiny")


def test_collection_keeps_only_queries_that_can_score(tiny_beir):
    collection = load_collection(str(tiny_beir))
    assert collection.name == "tiny"
    assert collection.doc_ids == list(DOCS)
    assert collection.query_ids == ["q1", "q2", "d4"]
    assert set(collection.qrels) == {"q1", "q2", "d4"}


def test_limit_docs_keeps_the_judgments_among_the_kept_documents(tiny_beir):
    collection = load_collection(str(tiny_beir), limit_docs=2)
    assert collection.doc_ids == ["d1", "d2"]
    assert collection.query_ids == ["q2", "d4"]  # q1's only relevant document (d3) is gone
    assert collection.qrels == {"q2": {"d1": 1}, "d4": {"d1": 1}}


def test_bm25_run_scores_as_computed_by_hand(tiny_beir):
    collection = load_collection(str(tiny_beir))
    bm25 = BM25System(collection.docs)
    texts = [text for _, text in collection.queries]
    raw = bm25.search_all(collection.query_ids, bm25.tokenize(texts), depth=10)
    assert [doc for doc, _ in raw["q1"]] == ["d3"]  # zero-score documents are not hits
    assert [doc for doc, _ in raw["q2"]] == ["d4", "d1"]
    assert [doc for doc, _ in raw["d4"]] == ["d4", "d1"]

    # q1: relevant at rank 1; q2: at rank 2; d4: its own id dropped, so d1 moves to rank 1.
    means = evaluate(collection.qrels, finalize(raw, depth=10))
    assert means["MRR@10"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert means["nDCG@10"] == pytest.approx((1 + 1 / math.log2(3) + 1) / 3)
    assert means["R@100"] == pytest.approx(1.0)
    kept = evaluate(collection.qrels, finalize(raw, depth=10, identical_ids=True))
    assert kept["MRR@10"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert kept["nDCG@10"] == pytest.approx((1 + 2 / math.log2(3)) / 3)


def test_dataset_specs():
    assert dataset_name("irds:beir/scifact/test") == "beir-scifact-test"
    assert dataset_name("/data/cranfield") == "cranfield"
    assert unavailable_reason("irds:cranfield") is None
    assert "does not exist" in unavailable_reason("/no/such/folder")


def test_absent_default_dataset_is_skipped_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("bench.__main__.DEFAULT_DATASET", str(tmp_path / "missing"))
    assert main(["--output", str(tmp_path / "out")]) == 0
    assert "skipping" in capsys.readouterr().err
    assert main(["--dataset", str(tmp_path / "missing"), "--output", str(tmp_path)]) == 1


def test_whole_suite_on_a_tiny_model(tiny_beir, tiny_bert_dir, tmp_path):
    """Every system, figure and file of a run, with a random-weight model (seconds, no real
    model): the numbers are meaningless, the plumbing is not."""
    # Texts from the tiny tokenizer's vocabulary; depth 3 keeps the 5-document runs short.
    options = Options(models=[str(tiny_bert_dir)], output=tmp_path / "out",
                      cache_dir=tmp_path / "cache", quick=True, depth=3, timing_queries=2,
                      forward_sample=2, base=SparseConfig(k=8), command="test")
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
    assert record["sweeps"]["best"]["model"]["config"]["k"] in (8, 32, 128, 512)
    for name in ("results.json", "report.md", "headline_ndcg10.png"):
        assert (folder / name).is_file()
    assert len(list(folder.glob("sweep_*.png"))) == 3
    assert "| model | system | settings | nDCG@10 |" in (folder / "report.md").read_text()
    runs = list(folder.glob("runs/*/*.trec"))
    assert len(runs) == 10  # bm25 + dense + 4 sparse + 4 hybrids
    for run in runs:
        for row in ir_measures.read_trec_run(str(run)):
            assert row.doc_id != row.query_id  # the identical-id rule held everywhere
    # A second run reads the cached embeddings instead of encoding again.
    _, again = run_dataset(str(tiny_beir), options)
    assert again["models"][str(tiny_bert_dir)]["costs"]["doc_encoding"]["from_cache"]
