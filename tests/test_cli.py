"""The `tokretrieve` command end to end, on a tiny model and a BEIR folder written by the test."""

from __future__ import annotations

import errno
import gzip
import json
import os

import numpy as np
import pytest
import torch

from tokretrieve import SparseIndex, SparseSearcher, index_encoder
from tokretrieve.cli import _parser, main

DOCS = [
    ("d1", "wing lift drag"),
    ("d2", "heat transfer flow"),
    ("d3", "shock wave flow"),
    ("d4", "   "),
]
QUERIES = [("q1", "heat flow"), ("q2", "wing drag")]


def write_corpus(folder, docs):
    with (folder / "corpus.jsonl").open("w") as handle:
        for doc_id, text in docs:
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")


@pytest.fixture
def beir_folder(tmp_path):
    folder = tmp_path / "mini"
    (folder / "qrels").mkdir(parents=True)
    write_corpus(folder, DOCS)
    with (folder / "queries.jsonl").open("w") as handle:
        for qid, text in QUERIES:
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    return folder


def build(folder, model_dir, output, *extra):
    """Fixed projection settings: the tiny model has no measured defaults of its own."""
    return main(["index", str(folder), "--model", str(model_dir), "--output", str(output),
                 "--bag-size", "8", "--weighting", "shifted", "--pc1-strength", "0", *extra])


def test_index_then_search_prints_ranked_hits(beir_folder, tiny_llama_dir, tmp_path, capsys):
    """index writes a loadable index and reports the empty document; search prints a table whose
    first hit is the one SparseSearcher.search returns."""
    output = tmp_path / "idx"
    assert build(beir_folder, tiny_llama_dir, output) == 0
    out = capsys.readouterr()
    assert "indexed 4 documents" in out.out and "1 empty" in out.out
    index = SparseIndex.load(output)
    assert index.manifest.doc_count == 4 and index.manifest.empty_document_ids == ("d4",)

    searcher = SparseSearcher.from_index(index, mode="tokens")
    word = searcher.document("d2")[0][0].lstrip("_")  # a token d2's bag is sure to hold
    assert main(["search", "--index", str(output), "--mode", "tokens", word]) == 0
    printed = capsys.readouterr().out
    expected = searcher.search(word, k=10)
    assert "d2" in [hit.doc_id for hit in expected]
    rows = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert [row[1] for row in rows] == [hit.doc_id for hit in expected]
    # scores a person can read: % of the best hit's; matched tokens: % of the hit's score
    assert [float(row[2]) for row in rows] == [
        pytest.approx(100 * hit.score / expected[0].score, abs=0.06) for hit in expected]
    first = expected[0]
    shown = [int(part.rstrip("%,")) for part in rows[0][4::2]]
    assert shown == [round(100 * c / first.score) for _, c in first.matched[:6]]


def test_second_index_run_reuses_and_rebuild_rebuilds(beir_folder, tiny_llama_dir, tmp_path,
                                                      capsys):
    """Same inputs: the index is reused. Other inputs (bag size, impact type) or --rebuild: a
    new build, and the message names what differed."""
    output = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, output)
    capsys.readouterr()
    build(beir_folder, tiny_llama_dir, output)
    out = capsys.readouterr().out
    assert "reusing" in out and "indexed" not in out
    build(beir_folder, tiny_llama_dir, output, "--bag-size", "4")  # other settings: a new build
    out = capsys.readouterr().out
    assert "reusing" not in out and "indexed 4 documents" in out
    assert "rebuilding" in out and "bags.bag_size: 8 -> 4" in out
    manifest = SparseIndex.load(output).manifest
    assert manifest.bags.bag_size == 4
    assert manifest.layout.impacts == "uint8"
    build(beir_folder, tiny_llama_dir, output, "--bag-size", "4", "--impacts", "float32")
    out = capsys.readouterr().out
    assert "reusing" not in out and "layout.impacts: 'uint8' -> 'float32'" in out
    index = SparseIndex.load(output)
    layout = index.manifest.layout
    assert (layout.impacts, layout.scale, layout.segment_docs) == ("float32", 1.0, 65536)
    assert index.postings.impacts.dtype == "float32"
    build(beir_folder, tiny_llama_dir, output, "--bag-size", "4", "--impacts", "float32",
          "--rebuild")  # same inputs, but asked to rebuild
    out = capsys.readouterr().out
    assert "reusing" not in out and "indexed 4 documents" in out


def test_packed_postings_build_rebuild_and_answer_as_raw(beir_folder, tiny_llama_dir, tmp_path,
                                                        capsys):
    """`--postings packed` (the default) over a raw index of the same inputs rebuilds it
    (naming layout.codec), stores packed words, says so in `info`, and answers every query as
    the raw index did."""
    output = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, output, "--postings", "raw")
    raw = SparseSearcher.from_index(output, mode="tokens")
    expected = [[(h.doc_id, h.score, h.matched) for h in raw.search(q)]
                for q in ("wing", "lift drag", "heat")]
    capsys.readouterr()
    assert build(beir_folder, tiny_llama_dir, output, "--postings", "packed") == 0
    out = capsys.readouterr().out
    assert "rebuilding" in out and "layout.codec: 'raw' -> 'packed'" in out
    index = SparseIndex.load(output)
    assert index.manifest.layout.codec == "packed"
    segment = output / index.manifest.contents.segments[0].name
    assert (segment / "postings_words.npy").is_file()
    assert not (segment / "postings_docs.npy").exists()
    packed = SparseSearcher.from_index(output, mode="tokens")
    assert [[(h.doc_id, h.score, h.matched) for h in packed.search(q)]
            for q in ("wing", "lift drag", "heat")] == expected
    assert main(["info", "--index", str(output)]) == 0
    assert "packed lists of uint8 impacts" in capsys.readouterr().out


def test_other_dtype_over_an_existing_index_rebuilds(beir_folder, tiny_llama_dir, tmp_path,
                                                     capsys):
    """Regression: `--dtype bfloat16` over a float32 index of the same path rebuilds it (the
    message names model.dtype) instead of silently reusing float32 bags; a second bfloat16 run
    then reuses the bfloat16 index."""
    output = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, output)
    assert SparseIndex.load(output).manifest.model.dtype == "float32"
    capsys.readouterr()
    assert build(beir_folder, tiny_llama_dir, output, "--dtype", "bfloat16") == 0
    out = capsys.readouterr().out
    assert "reusing" not in out and "indexed 4 documents" in out
    assert "rebuilding" in out and "model.dtype: 'float32' -> 'bfloat16'" in out
    assert SparseIndex.load(output).manifest.model.dtype == "bfloat16"
    assert build(beir_folder, tiny_llama_dir, output, "--dtype", "bfloat16") == 0
    out = capsys.readouterr().out
    assert "reusing" in out and "indexed" not in out


def test_auto_dtype_builds_in_what_the_cpu_computes_natively(beir_folder, tiny_llama_dir,
                                                             tmp_path, capsys, monkeypatch):
    """`--dtype auto` records the dtype it resolved to: bfloat16 where torch's AVX512-BF16
    probe says yes (set here), and over that index a second `auto` run reuses it; float32
    where no probe does, which rebuilds."""
    output = tmp_path / "idx"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert build(beir_folder, tiny_llama_dir, output, "--dtype", "auto") == 0
    assert SparseIndex.load(output).manifest.model.dtype == "bfloat16"
    capsys.readouterr()
    assert build(beir_folder, tiny_llama_dir, output, "--dtype", "auto") == 0
    assert "reusing" in capsys.readouterr().out
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert build(beir_folder, tiny_llama_dir, output, "--dtype", "auto") == 0
    assert "model.dtype: 'bfloat16' -> 'float32'" in capsys.readouterr().out
    assert SparseIndex.load(output).manifest.model.dtype == "float32"


def test_changed_corpus_at_the_same_path_rebuilds(beir_folder, tiny_llama_dir, tmp_path,
                                                  capsys):
    """The corpus file is the same path but its documents changed: the index is rebuilt,
    naming doc_count and documents_digest (grown) or the digest alone (a text edited)."""
    output = tmp_path / "idx"
    write_corpus(beir_folder, DOCS[:3])
    build(beir_folder, tiny_llama_dir, output)
    assert SparseIndex.load(output).manifest.doc_count == 3
    capsys.readouterr()
    write_corpus(beir_folder, DOCS)  # the corpus grew from 3 to 4 documents
    build(beir_folder, tiny_llama_dir, output)
    out = capsys.readouterr().out
    assert "reusing" not in out and "indexed 4 documents" in out
    assert "rebuilding" in out and "doc_count: 3 -> 4" in out and "documents_digest:" in out
    assert SparseIndex.load(output).manifest.doc_count == 4
    write_corpus(beir_folder, [*DOCS[:3], ("d4", "wing wave")])  # same count, other text
    build(beir_folder, tiny_llama_dir, output)
    out = capsys.readouterr().out
    assert "reusing" not in out and "documents_digest:" in out and "doc_count" not in out
    index = SparseIndex.load(output)
    assert index.manifest.empty_documents == 0
    assert SparseSearcher.from_index(index, mode="tokens").document("d4")


def test_search_topics_writes_trec_run(beir_folder, tiny_llama_dir, tmp_path):
    """The run file has one `qid Q0 docid rank score tag` line per hit, ranks from 1, scores
    non-increasing, and the same hits as batch_search."""
    output = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, output)
    run_file = tmp_path / "run.trec"
    assert main(["search", "--index", str(output), "--topics", str(beir_folder), "--mode",
                 "model", "--hits", "3", "--output", str(run_file)]) == 0
    lines = [line.split() for line in run_file.read_text().splitlines()]
    searcher = SparseSearcher.from_index(output, mode="model")
    expected = searcher.batch_search([t for _, t in QUERIES], [q for q, _ in QUERIES], k=3)
    assert len(lines) == sum(map(len, expected.values()))
    for qid, hits in expected.items():
        rows = [row for row in lines if row[0] == qid]
        assert [row[2] for row in rows] == [hit.doc_id for hit in hits]
        assert [int(row[3]) for row in rows] == list(range(1, len(hits) + 1))
        assert all(row[1] == "Q0" and row[5] == "tokretrieve-model" for row in rows)
        scores = [float(row[4]) for row in rows]
        assert scores == sorted(scores, reverse=True)


def test_model_given_as_relative_folder_searches_from_elsewhere(beir_folder, tiny_llama_dir,
                                                              tmp_path, monkeypatch, capsys):
    """`index --model ./folder`, then model-mode `search` from another working directory: the
    index recorded the folder's absolute path, so its model loads and the search runs."""
    output = tmp_path / "idx"
    monkeypatch.chdir(tiny_llama_dir.parent)
    assert build(beir_folder, f"./{tiny_llama_dir.name}", output) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["search", "--index", str(output), "--mode", "model", "heat flow"]) == 0
    expected = SparseSearcher.from_index(output, mode="model").search("heat flow")
    assert capsys.readouterr().out.splitlines()[3].split()[:2] == ["1", expected[0].doc_id]


def test_explain_and_info(beir_folder, tiny_llama_dir, tmp_path, capsys):
    output = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, output)
    capsys.readouterr()
    assert main(["explain", "--index", str(output), "--tokens", "5", "wing lift"]) == 0
    header, *rows = capsys.readouterr().out.strip().splitlines()
    encoder = index_encoder(SparseIndex.load(output))
    expected = encoder.key_tokens("wing lift", top_k=5)
    assert len(expected) == 5 and header.split()[-1] == "token"
    assert len(rows) == len(expected)
    assert [row.split()[-1] for row in rows] == [token for token, _ in expected]
    # weights a person can read: each token's share of the text's whole bag, in percent
    total = float(encoder.encode_document(["wing lift"]).sum())
    shares = [float(row.split()[0].rstrip("%")) for row in rows]
    assert shares == [pytest.approx(100 * w / total, abs=0.006) for _, w in expected]
    assert main(["info", "--index", str(output)]) == 0
    info = capsys.readouterr().out
    assert "tokretrieve.sparse v5" in info and "4 (1 empty)" in info
    assert "packed lists of uint8 impacts" in info
    assert "bag_size=8, weighting=shifted, pc1_strength=0," in info


@pytest.mark.parametrize(("argv", "message"), [
    (["search", "--index", "{missing}", "q"], "not a tokretrieve index"),
    (["index", "{bad_json}", "--model", "{model}"], ":2: malformed JSON"),
    (["index", "{folder}", "--model", "no-such-model-anywhere", "--output", "{out}"],
     "could not load model 'no-such-model-anywhere'"),
    (["index", "{folder}", "--model", "minlm", "--output", "{out}"],
     "unknown model 'minlm': did you mean 'minilm'?"),
    (["index", "{folder}", "--model", "{model}", "--bag-size", "0", "--output", "{out}"],
     "--bag-size must be a positive integer, got 0"),
    (["index", "{folder}", "--model", "{model}", "--postings", "packed", "--impacts", "float32",
      "--output", "{out}"], "packed postings hold uint8 impacts, not float32"),
    (["search", "--index", "{index}"], "no queries"),
    (["search", "--index", "{index}", "--hits", "0", "q"], "--hits must be a positive integer"),
    (["search", "--index", "{index}", "--threads", "0", "wing"],
     "--threads must be a positive integer, got 0"),
    (["search", "--index", "{index}", "--threads", "-2", "--mode", "tokens", "wing"],
     "--threads must be a positive integer, got -2"),
    (["explain", "--index", "{index}", "--tokens", "0", "wing"],
     "--tokens must be a positive integer, got 0"),
    (["search", "--index", "{index}", "--mode", "tokens", "heat \udcff"],
     r"query 1 holds a lone surrogate ('\udcff' at character 6)"),
    (["info", "--index", "{list_manifest}"], "is not a JSON object"),
])
def test_bad_input_ends_with_one_error_line(argv, message, beir_folder, tiny_llama_dir,
                                            tmp_path, capsys):
    """Bad input gives exit status 2 and an `error:` line naming the problem, no traceback."""
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n')
    list_manifest = tmp_path / "list-index"
    list_manifest.mkdir()
    (list_manifest / "manifest.json").write_text("[1, 2]")
    index = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, index)
    capsys.readouterr()
    values = {"missing": tmp_path / "nowhere", "bad_json": bad_json, "model": tiny_llama_dir,
              "folder": beir_folder, "out": tmp_path / "other", "index": index,
              "list_manifest": list_manifest}
    assert main([part.format(**values) for part in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


@pytest.mark.parametrize(("output", "message"), [
    ("{tmp}", "{tmp} is a folder: give a file name"),
    ("{tmp}/absent/run.trec", "{tmp}/absent does not exist: write the run into an existing"),
    ("{tmp}/a-file/run.trec", "{tmp}/a-file is not a folder"),
    ("{tmp}/locked/run.trec", "cannot write into {tmp}/locked"),
])
def test_search_output_is_checked_before_the_index_is_opened(tmp_path, monkeypatch, capsys,
                                                            output, message):
    """A run file that cannot be written (a folder, a missing or non-folder parent, an
    unwritable folder) is refused while parsing the arguments: no index is opened, no query
    encoded."""
    import tokretrieve.cli as cli

    (tmp_path / "a-file").write_text("")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if "locked" in output and os.access(locked, os.W_OK):
        pytest.skip("permissions do not bind this user (root)")
    monkeypatch.setattr(cli.SparseSearcher, "from_index",
                        lambda *a, **k: pytest.fail("index opened before checking --output"))
    with pytest.raises(SystemExit) as exit_status:
        main(["search", "--index", str(tmp_path), "--mode", "tokens", "--output",
              output.format(tmp=tmp_path), "wing"])
    assert exit_status.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_write_failures_end_in_one_error_line(beir_folder, tiny_llama_dir, tmp_path,
                                              monkeypatch, capsys):
    """A disk that fills while an index is written (no file named in the error: a failed write
    names none) or a read-only file system under the run file: one `error:` line naming the
    path and the cause, exit status 2, no traceback, and no run file."""
    index = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, index)
    capsys.readouterr()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patched:
        patched.setattr(np, "save", disk_full)
        assert build(beir_folder, tiny_llama_dir, tmp_path / "new", "--rebuild") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        f"error: cannot write {tmp_path / 'new'}: No space left on device; free some space or "
        "write elsewhere"]
    run_file = tmp_path / "run.trec"

    def read_only(source, target):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", read_only)
        assert main(["search", "--index", str(index), "--mode", "tokens", "--output",
                     str(run_file), "heat flow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write {run_file}: Read-only file system; write elsewhere"]
    assert list(tmp_path.glob("*run.trec*")) == []


def test_index_refuses_to_replace_a_folder_that_is_not_an_index(beir_folder, tiny_llama_dir,
                                                                tmp_path, capsys):
    """Writing an index over a user's folder would delete it: refused, folder untouched."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert build(beir_folder, tiny_llama_dir, precious) == 2
    assert "holds files that are not an index" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"


def test_demo_names_the_missing_collection(tmp_path, capsys):
    assert main(["demo", "--corpus", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "absent" in err and "make demo CORPUS=" in err


def test_demo_indexes_and_queries_a_beir_folder(beir_folder, tiny_llama_dir, tmp_path, capsys):
    output = tmp_path / "demo-index"
    assert main(["demo", "--corpus", str(beir_folder), "--model", str(tiny_llama_dir),
                 "--output", str(output), "--bag-size", "8", "--weighting", "shifted",
                 "--pc1-strength", "0", "--queries", "2"]) == 0
    out = capsys.readouterr().out
    assert "=== query q1: heat flow" in out and "=== query q2: wing drag" in out
    assert "--- mode tokens" in out and "--- mode model" in out
    assert SparseIndex.load(output).manifest.doc_count == 4


def test_pc1_strength_auto_records_the_calibration(beir_folder, tiny_llama_dir, tmp_path, capsys):
    """--pc1-strength auto stores the chosen λ and its curve; the λ is the curve's best point,
    and `calibrate` prints the same choice."""
    output = tmp_path / "idx"
    assert build(beir_folder, tiny_llama_dir, output, "--pc1-strength", "auto") == 0
    bags = SparseIndex.load(output).manifest.bags
    calibration = bags.calibration
    best = max(point["hit_rate"] for point in calibration["curve"])
    assert bags.pc1_request == "auto"
    assert bags.pc1_strength == calibration["strength"]
    assert any(point["strength"] == calibration["strength"] and point["hit_rate"] == best
               for point in calibration["curve"])
    capsys.readouterr()
    assert main(["calibrate", str(beir_folder), "--model", str(tiny_llama_dir)]) == 0
    chosen = [line for line in capsys.readouterr().out.splitlines() if "<- chosen" in line]
    assert len(chosen) == 1 and float(chosen[0].split()[0]) == pytest.approx(
        calibration["strength"], abs=1e-4)
    assert main(["info", "--index", str(output)]) == 0
    assert "pc1 calibrated" in capsys.readouterr().out


@pytest.mark.parametrize("strength", ["strong", "nan", "inf", "1e999"])
def test_pc1_strength_rejects_words_and_non_finite_numbers(beir_folder, tiny_llama_dir,
                                                          tmp_path, monkeypatch, capsys,
                                                          strength):
    """Anything but 'auto' or a finite number is refused while parsing the arguments, before
    the corpus is read or the model loaded."""
    import tokretrieve.cli as cli

    monkeypatch.setattr(cli, "read_documents", lambda *a, **k: pytest.fail("corpus read"))
    with pytest.raises(SystemExit):
        build(beir_folder, tiny_llama_dir, tmp_path / "idx", "--pc1-strength", strength)
    assert f"expected a finite number or 'auto', got '{strength}'" in capsys.readouterr().err


def test_commands_reading_text_files_take_encoding_errors(beir_folder, tiny_llama_dir,
                                                         tmp_path, capsys):
    """The error for bytes that are not UTF-8 recommends --encoding-errors replace: search
    --topics and calibrate take it too (analyze parses it), and with it the files are read."""
    index = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, index)
    topics = tmp_path / "topics.tsv"
    topics.write_bytes(b"q1\theat flow caf\xe9\n")
    capsys.readouterr()
    search = ["search", "--index", str(index), "--mode", "tokens", "--topics", str(topics)]
    assert main(search) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not UTF-8" in err[0] and "--encoding-errors replace" in err[0]
    assert main([*search, "--encoding-errors", "replace"]) == 0
    assert "query q1: heat flow caf\ufffd" in capsys.readouterr().out
    with (beir_folder / "corpus.jsonl").open("ab") as corpus:
        corpus.write(b'{"_id": "d5", "text": "wing caf\xe9"}\n')
    calibrate = ["calibrate", str(beir_folder), "--model", str(tiny_llama_dir)]
    assert main(calibrate) == 2
    assert "--encoding-errors replace" in capsys.readouterr().err
    assert main([*calibrate, "--encoding-errors", "replace"]) == 0
    assert "<- chosen" in capsys.readouterr().out
    analyze = _parser().parse_args(["analyze", "--corpus", "c", "--output", "o",
                                    "--encoding-errors", "replace"])
    assert analyze.encoding_errors == "replace"


def test_gzipped_corpus_file_is_indexed(beir_folder, tiny_llama_dir, tmp_path, capsys):
    """A corpus.jsonl.gz is read as its contents (it used to be reported as bytes that are not
    UTF-8, with advice to replace them)."""
    gzipped = tmp_path / "corpus.jsonl.gz"
    gzipped.write_bytes(gzip.compress((beir_folder / "corpus.jsonl").read_bytes()))
    assert build(gzipped, tiny_llama_dir, tmp_path / "idx") == 0
    assert "read 4 documents" in capsys.readouterr().out
    assert SparseIndex.load(tmp_path / "idx").manifest.doc_count == 4


def test_analyze_writes_its_report(beir_folder, tiny_llama_dir, tmp_path, capsys):
    """`analyze` writes report.md with its plots into --output and prints where; the report
    names the model and the sampled texts."""
    output = tmp_path / "analysis"
    assert main(["analyze", "--corpus", str(beir_folder), "--model", str(tiny_llama_dir),
                 "--output", str(output), "--sample", "3"]) == 0
    report = output / "report.md"
    assert f"wrote {report}" in capsys.readouterr().out
    text = report.read_text(encoding="utf-8")
    assert str(tiny_llama_dir) in text and "hit@" in text
    assert sorted(p.suffix for p in output.iterdir()) == [".md", ".png", ".png"]


def test_command_line_queries_may_not_take_topic_ids(beir_folder, tiny_llama_dir, tmp_path,
                                                     capsys):
    """Query text on the command line is numbered 1, 2, ...; with --topics whose ids include
    those numbers the run would be ambiguous: one error line saying so. Without a clash both
    are searched."""
    index = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, index)
    topics = tmp_path / "topics.tsv"
    topics.write_text("1\theat flow\nq9\twing drag\n")
    capsys.readouterr()
    assert main(["search", "--index", str(index), "--mode", "tokens", "--topics", str(topics),
                 "shock wave"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "numbered 1" in err[0] and "--topics" in err[0]
    topics.write_text("q8\theat flow\nq9\twing drag\n")
    assert main(["search", "--index", str(index), "--mode", "tokens", "--topics", str(topics),
                 "shock wave"]) == 0
    out = capsys.readouterr().out
    assert "query 1: shock wave" in out and "query q8: heat flow" in out


def test_hybrid_search_prints_the_fused_ranking(beir_folder, tiny_llama_dir, tmp_path, capsys):
    """--mode hybrid fuses --parts with --fusion and --weights: the printed order is
    HybridSearcher's; a weight count that does not match the parts is one error line."""
    from tokretrieve import HybridSearcher

    output = tmp_path / "idx"
    assert build(beir_folder, tiny_llama_dir, output) == 0
    capsys.readouterr()
    argv = ["search", "--index", str(output), "--mode", "hybrid", "--parts", "tokens,dense",
            "--fusion", "linear", "--weights", "1,0.5", "heat flow"]
    assert main(argv) == 0
    printed = [line.split()[1] for line in capsys.readouterr().out.splitlines()
               if line.strip()[:1].isdigit()]
    expected = HybridSearcher.from_index(output, ("tokens", "dense"), fusion="linear",
                                         weights=[1, 0.5]).search("heat flow", k=10)
    assert printed == [h.doc_id for h in expected] and printed
    assert main([*argv[:-3], "--weights", "1", "heat flow"]) == 2
    assert "1 weights for 2 --parts" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "--index", str(output), "--mode", "hybrid", "--parts", "dense", "x"])


def test_literal_weights_are_chosen_on_the_command_line(beir_folder, tiny_llama_dir, tmp_path,
                                                        capsys):
    """--literal on / --literal-alpha store literal weights (the tiny model has none by
    default); bad combinations stop before any model loads."""
    assert build(beir_folder, tiny_llama_dir, tmp_path / "plain") == 0
    assert SparseIndex.load(tmp_path / "plain").manifest.bags.literal is None
    assert build(beir_folder, tiny_llama_dir, tmp_path / "lit", "--literal-alpha", "0.25") == 0
    literal = SparseIndex.load(tmp_path / "lit").manifest.bags.literal
    assert literal["alpha"] == 0.25
    capsys.readouterr()
    assert build(beir_folder, tiny_llama_dir, tmp_path / "bad", "--literal", "off",
                 "--literal-alpha", "1") == 2
    assert "--literal-alpha needs literal weights" in capsys.readouterr().err
    assert build(beir_folder, tmp_path / "no-such-model", tmp_path / "bad",
                 "--literal-alpha", "-1") == 2
    assert "literal alpha must be a finite number >= 0" in capsys.readouterr().err
