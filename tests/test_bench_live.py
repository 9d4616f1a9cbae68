"""The live-index benchmark's harness (bench/live) on tiny data: the phase clock, the commits it
times against the package's own add path, the segment series and its exactness checks, the
quality rows, and the command end to end. No timing is asserted, only what was measured."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from refimpl import random_texts
from tiny_beir import write_beir

from bench.live.__main__ import main as live_main
from bench.live.measure import (
    EXCLUSIVE,
    Clocks,
    QuerySet,
    add_commit,
    bags_for,
    build,
    build_segmented,
    compact_commit,
    copy_index,
    delete_commit,
    filesystem,
    median_timing,
    phase_clock,
    quality_rows,
    rankings,
    same_rankings,
    searchers,
    segment_series,
)
from bench.live.report import render_report
from bench.quality.datasets import load_collection
from tokretrieve import add_documents

TEXTS = random_texts(16, seed=71, low=3, high=10)
IDS = [f"d{i}" for i in range(len(TEXTS))]
QUERY_TEXTS = random_texts(5, seed=73, low=1, high=4)
TINY_CLOCKS = Clocks(latency_min_samples=1, latency_budget_s=0.0)  # one pass, no repeats


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(bag_size=6, weighting="shifted")


@pytest.fixture(scope="module")
def embeddings(encoder):
    return encoder.embed(TEXTS)


@pytest.fixture(scope="module")
def queries(encoder):
    return QuerySet([f"q{i}" for i in range(len(QUERY_TEXTS))], QUERY_TEXTS,
                    encoder.embed(QUERY_TEXTS, is_query=True))


# -------------------------------------------------------------------------------- phase clock
class Thing:
    def method(self, x):
        return x + 1

    @classmethod
    def create(cls, x):
        return (cls, x)


def test_phase_clock_times_each_call_and_restores_the_originals():
    module = types.ModuleType("fake")
    module.work = lambda x: 2 * x
    originals = (module.work, vars(Thing)["method"], vars(Thing)["create"])
    targets = [(module, "work", "a"), (Thing, "method", "b"), (Thing, "create", "b")]
    with phase_clock(targets) as phases:
        assert module.work(3) == 6
        assert Thing().method(1) == 2
        assert Thing.create(5) == (Thing, 5)  # still bound to the class
        assert module.work(1) == 2
    assert phases.calls == {"a": 2, "b": 2}
    assert set(phases.seconds) == {"a", "b"} and all(s >= 0 for s in phases.seconds.values())
    assert (module.work, vars(Thing)["method"], vars(Thing)["create"]) == originals

    with pytest.raises(RuntimeError), phase_clock(targets):
        raise RuntimeError("inside")
    assert (module.work, vars(Thing)["method"], vars(Thing)["create"]) == originals


def test_a_target_the_package_no_longer_defines_is_named_and_nothing_stays_patched():
    module = types.ModuleType("fake")
    module.work = lambda x: x
    original = module.work
    with pytest.raises(AttributeError, match="gone"), \
            phase_clock([(module, "work", "a"), (module, "gone", "b")]):
        pass
    assert module.work is original


def test_median_timing_takes_each_phase_median_with_absent_phases_as_zero():
    commits = [{"total_s": 1.0, "phases_s": {"load": 0.4}, "other_s": 0.6},
               {"total_s": 3.0, "phases_s": {"load": 0.8, "drift": 0.2}, "other_s": 2.0},
               {"total_s": 2.0, "phases_s": {"load": 0.6, "drift": 0.4}, "other_s": 1.0}]
    median = median_timing(commits)
    assert median == {"n": 3, "total_s": 2.0, "min_s": 1.0,
                      "phases_s": {"drift": 0.2, "load": 0.6}, "other_s": 1.0}


def test_same_rankings_compares_ids_and_scores_in_order():
    before = {"tokens": {"q1": [("a", 2.0), ("b", 1.0)], "q2": []},
              "model": {"q1": [("a", 1.0)]}}
    assert same_rankings(before, before)["same"]
    swapped = {"tokens": {"q1": [("b", 1.0), ("a", 2.0)], "q2": []},
               "model": {"q1": [("a", 1.0000001)]}}
    result = same_rankings(before, swapped)
    assert not result["same"]
    assert result["tokens"] == {"same": False, "differing_queries": 1, "queries": 2}
    assert result["model"]["differing_queries"] == 1


# ------------------------------------------------------------------------------------ commits
def _answers(index, encoder, queries):
    return rankings(searchers(index, encoder, queries), queries, k=8)


def test_add_commit_commits_what_add_documents_commits(encoder, queries, tmp_path):
    first = 10
    base = build(tmp_path / "timed", IDS[:first], encoder.embed(TEXTS[:first]), encoder)
    copy_index(tmp_path / "timed", tmp_path / "package")
    rest = encoder.embed(TEXTS[first:])  # what add_documents embeds: these texts, one call
    added, timing = add_commit(tmp_path / "timed", IDS[first:],
                               bags_for(base, encoder, rest), rest)
    package = add_documents(tmp_path / "package", list(zip(IDS[first:], TEXTS[first:],
                                                           strict=True)),
                            encoder, progress=False)

    assert len(added.segments) == len(package.segments) == 2
    assert added.doc_ids.tolist() == package.doc_ids.tolist() == IDS
    np.testing.assert_array_equal(added.embeddings, package.embeddings)
    assert (added.manifest.contents.segments[-1].drift
            == package.manifest.contents.segments[-1].drift)
    assert set(added.manifest.contents.segments[-1].drift) == {
        "pc1_cosine", "norm_ratio", "saturated_weights"}
    assert _answers(added, encoder, queries) == _answers(package, encoder, queries)

    assert timing["docs"] == len(IDS) - first and timing["bag_entries"] > 0
    # the open inside `changing` verifies checksums; the reload after the commit does not
    assert timing["calls"]["load"] == 2 and timing["calls"]["verify"] == 1
    assert {timing["calls"][p] for p in ("postings", "write", "manifest", "drift")} == {1}
    covered = sum(timing["phases_s"].get(p, 0.0) for p in EXCLUSIVE)
    assert timing["other_s"] == pytest.approx(timing["total_s"] - covered)
    assert timing["other_s"] >= 0


def test_delete_and_compact_commits_are_the_package_commits(encoder, embeddings, tmp_path):
    path = tmp_path / "idx"
    build_segmented(path, IDS, embeddings, encoder, 2)
    deleted, timing = delete_commit(path, IDS[:3])
    assert len(deleted) == len(IDS) - 3 and timing["ids"] == 3
    assert timing["calls"]["load"] == 2 and "postings" not in timing["calls"]
    compacted, timing = compact_commit(path)
    assert len(compacted.segments) == 1 and len(compacted) == len(IDS) - 3
    assert compacted.doc_ids.tolist() == IDS[3:]
    assert (timing["segments_before"], timing["positions_before"],
            timing["deleted_before"], timing["live_docs"]) == (2, len(IDS), 3, len(IDS) - 3)
    assert timing["calls"]["postings"] == 1 and timing["calls"]["to_bags"] == 2


def test_build_segmented_is_one_build_and_one_add_per_further_segment(encoder, embeddings,
                                                                      tmp_path):
    index, adds = build_segmented(tmp_path / "idx", IDS, embeddings, encoder, 3)
    assert [len(s) for s in index.segments] == [6, 5, 5]
    assert index.doc_ids.tolist() == IDS
    assert len(adds) == 2 and all(a["docs"] == 5 for a in adds)
    assert all(set(a["drift"]) == {"pc1_cosine", "norm_ratio", "saturated_weights"}
               for a in adds)
    # every segment carries the first build's PC1 direction: the stored bags are those the
    # first build's encoder makes
    first = build(tmp_path / "first", IDS[:6], embeddings[:6], encoder)
    np.testing.assert_array_equal(index.pc1_direction, first.pc1_direction)


def test_segment_series_measures_every_state_and_checks_each_compaction(
        encoder, embeddings, queries, tmp_path):
    root = tmp_path / "scratch"
    root.mkdir()
    series = segment_series(root, IDS, embeddings, encoder, queries, 2, [0.25, 0.5], seed=0,
                            repeats=1, clocks=TINY_CLOCKS, progress=lambda line: None)
    states = series["states"]
    assert [s["state"] for s in states] == ["added", "compacted", "deleted", "deleted",
                                            "compacted"]
    assert [s["segments"] for s in states] == [2, 1, 2, 2, 1]
    assert [s["live_docs"] for s in states] == [16, 16, 12, 8, 8]
    assert [s["deleted"] for s in states] == [0, 0, 4, 8, 0]
    assert [s["deleted_fraction"] for s in states] == [0.0, 0.0, 0.25, 0.5, 0.5]
    for state in states:
        for mode in ("tokens", "model"):
            measured = state["latency"][mode]
            assert measured["queries"] == len(QUERY_TEXTS)
            assert measured["search"]["n"] == measured["scoring"]["n"] == len(QUERY_TEXTS)
    assert [e["deleted_fraction"] for e in series["exact"]] == [0.0, 0.5]
    assert all(e["same"] for e in series["exact"])
    assert [d["fraction"] for d in series["deletes"]] == [0.25, 0.5]
    assert [d["ids"] for d in series["deletes"]] == [4, 4]
    assert series["compaction"]["median"]["n"] == 1
    assert len(series["adds"]) == 1
    assert list(root.iterdir()) == []  # every index it wrote is gone


def test_quality_rows_build_then_add_and_check_the_compaction(tiny_encoder, tmp_path):
    collection = load_collection(str(write_beir(tmp_path / "beir")))
    encoder = tiny_encoder("bert", "mean")
    embeddings = encoder.embed([text for _, text in collection.docs])
    queries = QuerySet(collection.query_ids, [text for _, text in collection.queries],
                       encoder.embed([text for _, text in collection.queries], is_query=True))
    root = tmp_path / "scratch"
    root.mkdir()
    rows = quality_rows(root, collection.doc_ids, embeddings, encoder, queries,
                        collection.qrels, [60], progress=lambda line: None)
    full, added = rows
    assert (full["first_docs"], full["added_docs"], full["segments"]) == (5, 0, 1)
    assert (added["first_docs"], added["added_docs"], added["segments"]) == (3, 2, 2)
    assert added["compaction_keeps_top10"]["same"]
    assert set(added["drift"]) == {"pc1_cosine", "norm_ratio", "saturated_weights"}
    for row in rows:
        for mode in ("tokens", "model"):
            assert 0.0 <= row["metrics"][mode]["nDCG@10"] <= 1.0
    assert list(root.iterdir()) == []


# ------------------------------------------------------------------------------- the command
def test_the_command_writes_results_and_a_report_that_re_renders(tiny_bert_dir, tmp_path,
                                                                 capsys):
    corpus = write_beir(tmp_path / "beir")
    scratch = tmp_path / "scratch"
    code = live_main(["--corpus", str(corpus), "--model", str(tiny_bert_dir),
                      "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
                      "--scratch", str(scratch), "--batches", "2", "--deletes", "1",
                      "--segments", "1,2", "--deleted", "20,40", "--first", "60",
                      "--repeats", "1", "--latency-samples", "1", "--latency-budget", "0"])
    assert code == 0
    (folder,) = (tmp_path / "out").iterdir()
    record = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert record["machine"]["git"]["commit"] is not None
    assert record["collection"]["documents"] == 5 and record["collection"]["queries"] == 3
    assert [r["batch"] for r in record["adds"]] == [2]
    assert [r["ids"] for r in record["deletes"]] == [1]
    assert [s["segments"] for s in record["search"]] == [1, 2]
    assert len(record["quality"]) == 2 and record["settings"]["repeats"] == 1
    assert record["embeddings"]["from_cache"] is False
    for title in ("## Adds", "## Deletes", "## Search latency", "## Compaction",
                  "## Quality and drift"):
        assert title in report
    assert "nan" not in report
    assert render_report(record) == report
    assert list(scratch.iterdir()) == []
    assert "wrote" in capsys.readouterr().out


def test_sizes_beyond_the_collection_are_refused_before_any_model_loads(tmp_path):
    corpus = write_beir(tmp_path / "beir")
    with pytest.raises(SystemExit, match="--batches"):
        live_main(["--corpus", str(corpus), "--model", str(tmp_path / "no-model"),
                   "--batches", "5", "--output", str(tmp_path / "out")])
    assert live_main(["--corpus", str(tmp_path / "absent"), "--output",
                      str(tmp_path / "out")]) == 1


def test_filesystem_names_the_mount_holding_a_path(tmp_path):
    found = filesystem(tmp_path)
    assert set(found) == {"mount", "type"}
    if found["mount"] is not None:
        assert str(tmp_path.resolve()).startswith(found["mount"].rstrip("/"))
