"""The encoding benchmark's report renders a measured row into the cells its header names;
its command line refuses bad sizes before any work."""

from __future__ import annotations

import pytest
from refimpl import WORDS

from bench.encoding.__main__ import main
from bench.encoding.measure import FlopCache, measure_bags, measure_encoding, time_breakdown
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


def test_breakdown_rows_are_its_classes_numbers():
    seconds = {"aten::addmm": 3.0, "aten::_scaled_dot_product_flash_attention_for_cpu": 1.5,
               "aten::gelu": 0.3, "aten::native_layer_norm": 0.2}
    flops = {"aten::addmm": 6e11, "aten::_scaled_dot_product_flash_attention_for_cpu": 6e10}
    breakdown = {"dtype": "bfloat16", "threads": 1, "docs_per_s": 12.5, "embed_s": 5.5,
                 **time_breakdown(seconds, flops, 400.0)}
    record = new_record(
        "test", bf16={"native": True},
        settings={"docs": 4, "sweep_docs": 4, "corpus": "c", "corpus_docs": 4,
                  "max_length": 256, "matmul_sizes": [64], "bag_size": 3},
        matmul={}, models={"tiny": {"rows": [], "bags": {},
                                    "breakdown": {"bfloat16": breakdown}}})
    report = render_report(record)
    assert "## Where the time goes" in report
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in report.splitlines() if line.startswith("| tiny | bfloat16")]
    # ops 5.0 s of 5.5 s; addmm 6e11 / 3 s = 200 GFLOP/s, 50% of 400; attention 40, 10%
    assert rows == [
        ["tiny", "bfloat16", "12.5", "91%", "matrix products", "60%", "90.9%", "200", "50%",
         "addmm 60%"],
        ["tiny", "bfloat16", "12.5", "91%", "attention", "30%", "9.1%", "40", "10%",
         "_scaled_dot_product_flash_attention_for_cpu 30%"],
        ["tiny", "bfloat16", "12.5", "91%", "other", "10%", "0.0%", "-", "-",
         "gelu 6%, native_layer_norm 4%"]]


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


def test_sweep_rows_interleave_the_rounds_and_keep_each_settings_median(tiny_encoder,
                                                                       monkeypatch):
    import bench.encoding.__main__ as bench_main

    encoder = tiny_encoder("bert", "mean", batch_size=2)
    order = []
    speeds = iter([3.0, 10.0, 1.0, 30.0, 2.0, 20.0])  # rounds of (setting A, setting B)

    def fake_measure(sized, texts, threads, flops, references):
        order.append((threads, sized.batch_size, sized.side_by_side))
        return {"threads": threads, "batch_size": sized.batch_size,
                "side_by_side": sized.side_by_side, "docs_per_s": next(speeds)}, None

    monkeypatch.setattr(bench_main, "measure_encoding", fake_measure)
    monkeypatch.setattr(bench_main, "_progress", lambda row: None)
    rows = bench_main.sweep_rows("tiny", encoder, ["a text"], [(2, 8, True), (2, 4, False)], 3,
                                 None, {})
    assert order == [(2, 8, True), (2, 4, False)] * 3  # interleaved, not one setting at a time
    assert [r["rounds_docs_per_s"] for r in rows] == [[3.0, 1.0, 2.0], [10.0, 30.0, 20.0]]
    assert [r["docs_per_s"] for r in rows] == [2.0, 20.0]  # the median round of each
    assert [(r["batch_size"], r["side_by_side"], r["set"]) for r in rows] == [
        (8, True, "sweep"), (4, False, "sweep")]


def test_bad_matmul_sizes_are_refused_before_any_work():
    with pytest.raises(SystemExit, match="--matmul-sizes: bad item '0'"):
        main(["--matmul-sizes", "0,512"])


@pytest.mark.parametrize("flag, value, message", [
    ("--models", "minilm,{tmp}/no-such-model", "model folder not found: .*no-such-model"),
    ("--corpus", "{tmp}/no-such-corpus", "file not found: .*no-such-corpus"),
])
def test_a_bad_model_or_corpus_is_one_message_before_any_work(tmp_path, monkeypatch, flag,
                                                              value, message):
    import bench.encoding.__main__ as bench_main

    def no_timing(*args, **kwargs):
        raise AssertionError("timed torch.mm before refusing the input")

    monkeypatch.setattr(bench_main, "measure_matmul", no_timing)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "a wing"}\n', encoding="utf-8")
    output = tmp_path / "results"
    with pytest.raises(SystemExit, match=f"^error: {message}"):
        main(["--corpus", str(corpus), flag, value.format(tmp=tmp_path),
              "--output", str(output)])
    assert not output.exists()  # no results folder for a run that never started
