"""The encoding benchmark's report renders a measured row into the cells its header names."""

from __future__ import annotations

from refimpl import WORDS

from bench.encoding.measure import FlopCache, measure_bags, measure_encoding
from bench.encoding.report import render_report
from bench.toolkit.results import new_record


def test_report_cells_are_the_rows_numbers(tiny_encoder):
    encoder = tiny_encoder("bert", "mean", batch_size=2)
    texts = [" ".join(WORDS[n:2 * n]) for n in (3, 8, 5, 1)] + ["   "]
    row, embeddings = measure_encoding(encoder, texts, 1, FlopCache(encoder.model.backbone),
                                       {(1, "float32"): 500.0})
    bags = measure_bags(encoder, embeddings, 3, 1, repeats=2)
    record = new_record(
        "test", bf16={"native": False},
        settings={"docs": 5, "sweep_docs": 5, "corpus": "c", "corpus_docs": 5,
                  "max_length": 256, "matmul_sizes": [64], "bag_size": 3},
        matmul={}, models={"tiny": {"rows": [{"model": "tiny", "set": "headline", **row}],
                                    "bags": {"float32": bags}}})
    report = render_report(record)
    commit = record["machine"]["git"]["commit"]
    assert report.splitlines()[2].startswith(f"`test` (commit {commit[:12]}")
    line = next(x for x in report.splitlines() if x.startswith("| tiny | headline"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2:7] == ["float32", "1", "2", "one at a time", "5"]
    assert cells[8] == ""  # a headline row: measured once, no rounds
    assert cells[15] == f"{100 * row['fraction_of_matmul']:.0f}%"
    # The bag step's share of encode + bag time (same 5 documents in both).
    share = bags["median_s"] / (bags["median_s"] + row["embed_s"])
    assert cells[18] == f"{100 * share:.1f}%"
    assert "bags of 3" in report


def test_sweep_rows_show_how_batches_ran_and_every_round(tiny_encoder):
    encoder = tiny_encoder("bert", "mean", batch_size=2)
    texts = [" ".join(WORDS[n:2 * n]) for n in (3, 8, 5, 1)]
    row, _ = measure_encoding(encoder, texts, 2, FlopCache(encoder.model.backbone),
                              {(2, "float32"): 500.0})
    headline = {"model": "tiny", "set": "headline", **row}
    sweep = [{**headline, "set": "sweep", "docs_per_s": 2.0, "rounds_docs_per_s": [2.5, 2.0, 1.5]},
             {**headline, "set": "sweep", "side_by_side": False, "docs_per_s": 1.0,
              "rounds_docs_per_s": [1.0, 1.2, 0.9]}]
    record = new_record(
        "test", bf16={"native": False},
        settings={"docs": 4, "sweep_docs": 4, "corpus": "c", "corpus_docs": 4,
                  "max_length": 256, "matmul_sizes": [64], "bag_size": 3},
        matmul={}, models={"tiny": {"rows": [headline, *sweep], "bags": {}}})
    lines = [x for x in render_report(record).splitlines() if x.startswith("| tiny | sweep")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [c[5] for c in cells] == ["side by side", "one at a time"]
    assert [c[8] for c in cells] == ["2.5 / 2.0 / 1.5", "1.0 / 1.2 / 0.9"]
    # vs default: against the sweep row run the headline's way (side by side), 1.0 / 2.0
    assert [c[9] for c in cells] == ["1.00x", "0.50x"]
