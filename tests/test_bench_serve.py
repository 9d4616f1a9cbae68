"""bench.serve, the server load benchmark: the ledger of generations and the checks of answers
against it on hand-made histories, the writer's schedule, the probe token, the figures, the
plan of settings, the report; the server process stopped whatever happens, and the command end
to end on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_beir import write_beir

from bench.serve.__main__ import main as serve_main
from bench.serve.__main__ import parse_args, plan, settings_from
from bench.serve.load import (
    Ack,
    Answer,
    Client,
    Ledger,
    Probe,
    ProbeTokens,
    Setting,
    batch_figures,
    check_answers,
    check_probes,
    latency_figures,
    schedule,
    server_process,
)
from bench.serve.report import render_report
from tokretrieve import build_index


def ledger_of(*acks: tuple[str, str, int, int, float]) -> Ledger:
    return Ledger(1, frozenset({"a", "b"}), [Ack(*ack) for ack in acks])


# ----------------------------------------------------------------------------------- ledger
def test_the_ledger_replays_acknowledged_commits_into_live_sets():
    ledger = ledger_of(("delete", "a", 3, 2, 2.0), ("add", "c", 2, 3, 1.0))  # any order
    live, problems = ledger.live_sets()
    assert problems == []
    assert live == {1: {"a", "b"}, 2: {"a", "b", "c"}, 3: {"b", "c"}}
    oldest = ledger.in_force()
    assert [oldest(t) for t in (0.5, 1.0, 1.5, 2.5)] == [1, 1, 2, 3]


def test_the_ledger_names_gaps_repeats_and_impossible_changes():
    _, problems = ledger_of(("add", "c", 3, 3, 1.0)).live_sets()
    assert problems == ["acknowledged generations [3] are not [2]"]
    _, problems = ledger_of(("add", "a", 2, 2, 1.0), ("delete", "z", 3, 2, 2.0)).live_sets()
    assert problems == ["add of a acknowledged while it was live",
                        "delete of z acknowledged while not live"]
    _, problems = ledger_of(("add", "c", 2, 7, 1.0)).live_sets()
    assert problems == ["generation 2 holds 7 documents, the ledger 3"]


def test_answers_are_checked_against_the_generation_they_name():
    ledger = ledger_of(("add", "c", 2, 3, 1.0), ("delete", "a", 3, 2, 2.0))
    live, _ = ledger.live_sets()
    texts = {"a": "A", "b": "B", "c": "C"}
    answers = [Answer(0.5, 0.1, 1, ["a", "b"], ["A", "B"]),      # fine
               Answer(1.5, 0.1, 2, ["c", "a"], ["C", None]),     # fine, one text missing
               Answer(2.5, 0.1, 3, ["a"], ["B"]),                # a deleted in 3, wrong text
               Answer(2.5, 0.1, 2, ["b"], ["B"]),                # older than acked 3
               Answer(2.5, 0.1, 9, ["b"], ["B"])]                # no such generation
    out = check_answers(answers, live, ledger.in_force(), texts)
    assert {key: out[key] for key in ("answers", "hits", "foreign_hits", "unknown_generation",
                                      "stale", "texts_missing", "texts_wrong")} == {
        "answers": 5, "hits": 7, "foreign_hits": 1, "unknown_generation": 1, "stale": 1,
        "texts_missing": 1, "texts_wrong": 1}
    assert out["examples"][0] == "hits ['a'] are not live in generation 3"


def test_a_probe_must_find_its_document_exactly_when_it_is_live():
    live = {1: frozenset({"a"}), 2: frozenset({"a", "c"}), 3: frozenset({"c"})}
    probes = [Probe("c", "t", 0.0, 2, frozenset({"c"})),        # live, found
              Probe("a", "t", 0.0, 3, frozenset()),             # deleted, absent
              Probe("c", "t", 0.0, 1, frozenset({"c"})),        # found before its add
              Probe("c", "t", 0.0, 3, frozenset({"a"})),        # missing while live
              Probe("a", "t", 0.0, 2, frozenset({"x", "y"}))]   # k hits: cannot tell
    out = check_probes(probes, live, k=2)
    assert (out["probes"], out["wrong"], out["inconclusive"]) == (5, 2, 1)
    assert out["examples"] == [
        "c (not live in generation 1) found in the answer for 't'",
        "c (live in generation 3) missing from the answer for 't'"]


# ---------------------------------------------------------------------------------- writer
def test_the_schedule_adds_and_deletes_in_turn_and_only_deletes_live_documents():
    base = [f"b{i}" for i in range(6)]
    ops = schedule(21, base, ["t0", "t1"], prefix="w", seed=1)
    assert len(ops) == 21
    assert [op for op, _, _ in ops[:4]] == ["add", "delete", "add", "delete"]
    live = set(base)
    for op, doc_id, text in ops:
        if op == "add":
            assert doc_id not in live and text in ("t0", "t1")
            live.add(doc_id)
        else:
            assert doc_id in live and text is None
            live.remove(doc_id)
    deleted_base = set(base) - live
    assert len(deleted_base) == 3  # at most half of the base, then the writer's own adds
    assert schedule(21, base, ["t0", "t1"], prefix="w", seed=1) == ops  # seeded


class WordTokenizer:
    """Splits on spaces; 'x-y' is two tokens (ids from the vocabulary)."""

    def __call__(self, text, add_special_tokens=False):
        vocab = {"heat": 0, "flow": 1, "wing": 2, "x": 3, "y": 4}
        return {"input_ids": [vocab.get(w, 9) for w in text.replace("-", " - ").split()]}


def test_the_probe_token_is_the_rarest_that_a_query_reproduces():
    tokens = ProbeTokens(WordTokenizer(), np.array([50, 3, 7, 1, 1]))
    bag = [{"token": "heat", "weight": 2.0}, {"token": "wing", "weight": 1.0},
           {"token": "flow", "weight": 0.5}, {"token": "x-y", "weight": 3.0},
           {"token": "x", "weight": 0.0}]
    assert tokens.pick(bag) == "flow"  # x is rarer but weighs 0; x-y is two tokens
    assert tokens.pick([{"token": "x-y", "weight": 1.0}]) is None


# --------------------------------------------------------------------------------- figures
def test_throughput_counts_answers_completed_in_time_and_latency_all():
    answers = [Answer(t, s, 1, [], []) for t, s in ((0.0, 0.1), (0.5, 0.2), (1.9, 0.2))]
    out = latency_figures(answers, start=0.0, deadline=2.0)
    assert (out["answers"], out["completed_in_time"], out["qps"]) == (3, 2, 1.0)
    assert out["p50_ms"] == pytest.approx(200.0) and out["n"] == 3


def test_batch_figures():
    out = batch_figures([1, 3, 1, 4])
    assert out == {"batches": 4, "queries": 9, "mean": 2.25, "max": 4, "shared": 7 / 9,
                   "sizes": {"1": 2, "3": 1, "4": 1}}
    assert batch_figures([])["batches"] == 0


# ------------------------------------------------------------------------- plan and report
def test_the_plan_runs_tokens_once_per_client_count_and_windows_side_by_side():
    settings = settings_from(parse_args(["--clients", "1,4", "--windows", "0,0.01"]))
    assert plan(settings) == [Setting("tokens", 0.005, 1), Setting("tokens", 0.005, 4),
                              Setting("model", 0.0, 1), Setting("model", 0.01, 1),
                              Setting("model", 0.0, 4), Setting("model", 0.01, 4)]
    quick = settings_from(parse_args(["--quick", "--modes", "model"]))
    assert (quick["clients"], quick["seconds"]) == ([1, 4], 2.0)
    assert [s.mode for s in plan(quick)] == ["model"] * 4
    for bad in (["--modes", "dense"], ["--clients", "0"], ["--seconds", "0"]):
        with pytest.raises(SystemExit):
            settings_from(parse_args(bad))


def _run(mode: str, window: float, clients: int, qps: float) -> dict:
    empty = {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan")}
    return {"mode": mode, "window_s": window, "clients": clients, "server_threads": {},
            "load": {"qps": qps, "p50_ms": 1000 / qps, "p99_ms": 2000 / qps,
                     "mean_ms": 1000 / qps, "answers": int(qps * 10), "n": int(qps * 10)},
            "error_count": 0, "errors": {}, "hung_threads": 0,
            "batching": batch_figures([1] * 5 if window == 0 else [2, 2]) if mode == "model"
            else None,
            "cpu": {"server_s": 10.0, "clients_s": 1.0, "elapsed_s": 10.0, "cores": 2},
            "writer": {"adds": 1, "deletes": 0, "add_ms": empty, "delete_ms": empty,
                       "errors": {}, "late_s": 0.0},
            "consistency": {"ledger_problems": [], "generations": 2,
                            "answers": {"answers": 10, "hits": 100, "foreign_hits": 0,
                                        "unknown_generation": 0, "stale": 0,
                                        "texts_missing": 0, "texts_wrong": 0, "examples": []},
                            "probes": {"probes": 1, "wrong": 0, "inconclusive": 0,
                                       "examples": []},
                            "final": {"ok": True, "lookups_wrong": []}}}


def test_the_report_shows_each_setting_and_the_ratio_to_window_zero():
    record = {"command": "python -m bench.serve", "started": "2026-01-01T00:00:00",
              "machine": {"cpu": "CPU", "cpu_count": 2, "load_avg": [0.1], "git":
                          {"commit": "abcdef0123", "dirty": False}},
              "settings": {"k": 10, "seconds": 10.0, "write_rate": 2.0},
              "collection": {"name": "tiny", "documents": 5, "queries": 3},
              "model": {"model": "m"},
              "runs": [_run("tokens", 0.005, 1, 200.0), _run("model", 0.0, 4, 40.0),
                       _run("model", 0.005, 4, 50.0)]}
    report = render_report(record)
    assert "| tokens | - | 1 | 200.0 | 5.0 | 10.0 |" in report
    assert "| 4 | 5 ms | 50.0 | 20.0 | 40.0 | 2.00 | 2 | 2 | 1.25x | 0.80x | 0.80x |" in report
    assert "| 4 | 0 ms | 40.0 | 25.0 | 50.0 | 1.00 | 1 | 5 | - | - | - |" in report
    assert "- none: no error" in report and "nan" not in report and "abcdef0" in report
    record["runs"][1]["errors"] = {"500": 2}
    record["runs"][1]["consistency"]["answers"]["examples"] = ["hits ['x'] are not live"]
    assert ("- model, window 0 ms, 4 clients: error 500: 2; hits ['x'] are not live"
            in render_report(record))


# ------------------------------------------------------------------------ real processes
@pytest.fixture
def tiny_index(tiny_encoder, tmp_path):
    encoder = tiny_encoder("llama", "prompteol").with_bags(bag_size=8, weighting="shifted")
    path = tmp_path / "idx"
    build_index([("d1", "wing lift"), ("d2", "heat flow")], encoder, path, pc1_strength=0.0,
                progress=False)
    return path


def test_the_server_process_answers_and_is_stopped_whatever_happens(tiny_index, tmp_path):
    with pytest.raises(RuntimeError, match="inside"), \
            server_process(tiny_index, None, 0.0, tmp_path) as server:
        client = Client(server.port)
        status, body = client.call("GET", "/_bench/batches?since=0")
        client.close()
        assert status == 200 and body["window_s"] == 0.0 and body["pid"] == server.pid
        raise RuntimeError("inside")
    assert server.process.poll() is not None  # stopped by the context manager
    with pytest.raises(OSError):  # nothing listens there any more
        Client(server.port, timeout=5).call("GET", "/health")


def test_the_command_writes_results_and_a_report_that_re_renders(tiny_bert_dir, tmp_path,
                                                                 capsys):
    corpus = write_beir(tmp_path / "beir")
    scratch = tmp_path / "scratch"
    code = serve_main(["--corpus", str(corpus), "--model", str(tiny_bert_dir),
                       "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
                       "--scratch", str(scratch), "--modes", "model", "--clients", "2",
                       "--windows", "0.005", "--seconds", "1", "--write-rate", "4"])
    assert code == 0
    (folder,) = (tmp_path / "out").iterdir()
    record = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert record["machine"]["git"]["commit"] is not None
    (run,) = record["runs"]
    assert (run["mode"], run["clients"], run["window_s"]) == ("model", 2, 0.005)
    assert run["error_count"] == 0 and run["hung_threads"] == 0
    assert run["load"]["answers"] > 0 and run["batching"]["queries"] >= run["load"]["answers"]
    check = run["consistency"]
    assert check["final"]["ok"] and not check["ledger_problems"]
    assert run["writer"]["adds"] >= 1 and check["probes"]["probes"] >= 1
    assert check["answers"]["foreign_hits"] == check["answers"]["stale"] == 0
    assert check["probes"]["wrong"] == 0
    for title in ("## Throughput and latency", "## What micro-batching buys",
                  "## Writes and consistency", "## Errors and problems"):
        assert title in report
    assert render_report(record) == report and "nan" not in report
    assert list(scratch.iterdir()) == []
    assert "wrote" in capsys.readouterr().out
