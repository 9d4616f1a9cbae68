"""The `tokretrieve` command end to end, on a tiny model and a BEIR folder written by the test."""

from __future__ import annotations

import json

import pytest

from tokretrieve import SparseIndex
from tokretrieve.cli import main

DOCS = [
    ("d1", "wing lift drag"),
    ("d2", "heat transfer flow"),
    ("d3", "shock wave flow"),
    ("d4", "   "),
]
QUERIES = [("q1", "heat flow"), ("q2", "wing drag")]


@pytest.fixture
def beir_folder(tmp_path):
    folder = tmp_path / "mini"
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as handle:
        for doc_id, text in DOCS:
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as handle:
        for qid, text in QUERIES:
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    return folder


def build(folder, model_dir, output, *extra):
    """Fixed projection settings: the tiny model has no measured defaults of its own."""
    return main(["index", str(folder), "--model", str(model_dir), "--output", str(output),
                 "--k", "8", "--weighting", "shifted", "--pc1-strength", "0", *extra])


def test_index_then_search_prints_ranked_hits(beir_folder, tiny_llama_dir, tmp_path, capsys):
    """index writes a loadable index and reports the empty document; search prints a table whose
    first hit is the one SparseIndex.search returns."""
    output = tmp_path / "idx"
    assert build(beir_folder, tiny_llama_dir, output) == 0
    out = capsys.readouterr()
    assert "indexed 4 documents" in out.out and "1 empty" in out.out
    index = SparseIndex.load(output)
    assert index.manifest["doc_count"] == 4 and index.manifest["empty_document_ids"] == ["d4"]

    word = index.document_bag("d2")[0][0].lstrip("_")  # a token d2's bag is sure to hold
    assert main(["search", "--index", str(output), "--mode", "tokens", word]) == 0
    printed = capsys.readouterr().out
    expected = index.search(word, k=10, mode="tokens")
    assert "d2" in [hit.doc_id for hit in expected]
    first_row = printed.splitlines()[2].split()
    assert first_row[:2] == ["1", expected[0].doc_id]


def test_second_index_run_reuses_and_rebuild_rebuilds(beir_folder, tiny_llama_dir, tmp_path,
                                                      capsys):
    output = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, output)
    created = SparseIndex.load(output).manifest["created"]
    capsys.readouterr()
    build(beir_folder, tiny_llama_dir, output)
    assert "reusing" in capsys.readouterr().out
    build(beir_folder, tiny_llama_dir, output, "--k", "4")  # other settings: a new build
    manifest = SparseIndex.load(output).manifest
    assert manifest["projection"]["k"] == 4
    assert manifest["created"] >= created
    assert manifest["postings_format"]["impacts"] == "uint8"
    capsys.readouterr()
    build(beir_folder, tiny_llama_dir, output, "--k", "4", "--impacts", "float32")
    assert "reusing" not in capsys.readouterr().out
    index = SparseIndex.load(output)
    assert index.manifest["postings_format"] == {"impacts": "float32", "scale": 1.0,
                                                 "segment_docs": 65536}
    assert index.postings.impacts.dtype == "float32"


def test_search_topics_writes_trec_run(beir_folder, tiny_llama_dir, tmp_path):
    """The run file has one `qid Q0 docid rank score tag` line per hit, ranks from 1, scores
    non-increasing, and the same hits as batch_search."""
    output = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, output)
    run_file = tmp_path / "run.trec"
    assert main(["search", "--index", str(output), "--topics", str(beir_folder), "--mode",
                 "model", "--hits", "3", "--output", str(run_file)]) == 0
    lines = [line.split() for line in run_file.read_text().splitlines()]
    expected = SparseIndex.load(output).batch_search([t for _, t in QUERIES], k=3)
    assert len(lines) == sum(map(len, expected))
    for qid, hits in zip([q for q, _ in QUERIES], expected, strict=True):
        rows = [row for row in lines if row[0] == qid]
        assert [row[2] for row in rows] == [hit.doc_id for hit in hits]
        assert [int(row[3]) for row in rows] == list(range(1, len(hits) + 1))
        assert all(row[1] == "Q0" and row[5] == "tokretrieve-model" for row in rows)
        scores = [float(row[4]) for row in rows]
        assert scores == sorted(scores, reverse=True)


def test_explain_and_info(beir_folder, tiny_llama_dir, tmp_path, capsys):
    output = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, output)
    capsys.readouterr()
    assert main(["explain", "--index", str(output), "--k", "5", "wing lift"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    expected = SparseIndex.load(output).explain("wing lift", k=5)
    assert len(rows) == len(expected)
    assert [row.split()[-1] for row in rows] == [token for token, _ in expected]
    assert main(["info", "--index", str(output)]) == 0
    info = capsys.readouterr().out
    assert "tokretrieve.sparse v2" in info and "4 (1 empty)" in info
    assert "uint8 impacts" in info


@pytest.mark.parametrize(("argv", "message"), [
    (["search", "--index", "{missing}", "q"], "not a tokretrieve index"),
    (["index", "{bad_json}", "--model", "{model}"], ":2: malformed JSON"),
    (["index", "{folder}", "--model", "no-such-model-anywhere", "--output", "{out}"],
     "could not load model 'no-such-model-anywhere'"),
    (["index", "{folder}", "--model", "{model}", "--k", "0", "--output", "{out}"],
     "k must be a positive integer"),
    (["search", "--index", "{index}"], "no queries"),
])
def test_bad_input_ends_with_one_error_line(argv, message, beir_folder, tiny_llama_dir,
                                            tmp_path, capsys):
    """Bad input gives exit status 2 and an `error:` line naming the problem, no traceback."""
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n')
    index = tmp_path / "idx"
    build(beir_folder, tiny_llama_dir, index)
    capsys.readouterr()
    values = {"missing": tmp_path / "nowhere", "bad_json": bad_json, "model": tiny_llama_dir,
              "folder": beir_folder, "out": tmp_path / "other", "index": index}
    assert main([part.format(**values) for part in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_index_refuses_to_replace_a_folder_that_is_not_an_index(beir_folder, tiny_llama_dir,
                                                                tmp_path, capsys):
    """Writing an index over a user's folder would delete it: refused, folder untouched."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert build(beir_folder, tiny_llama_dir, precious) == 2
    assert "is not a tokretrieve index" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"


def test_demo_names_the_missing_collection(tmp_path, capsys):
    assert main(["demo", "--corpus", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "absent" in err and "make demo CORPUS=" in err


def test_demo_indexes_and_queries_a_beir_folder(beir_folder, tiny_llama_dir, tmp_path, capsys):
    output = tmp_path / "demo-index"
    assert main(["demo", "--corpus", str(beir_folder), "--model", str(tiny_llama_dir),
                 "--output", str(output), "--k", "8", "--weighting", "shifted",
                 "--pc1-strength", "0", "--queries", "2"]) == 0
    out = capsys.readouterr().out
    assert "=== query q1: heat flow" in out and "=== query q2: wing drag" in out
    assert "--- mode tokens" in out and "--- mode model" in out
    assert SparseIndex.load(output).manifest["doc_count"] == 4


def test_pc1_strength_auto_records_the_calibration(beir_folder, tiny_llama_dir, tmp_path, capsys):
    """--pc1-strength auto stores the chosen λ and its curve; the λ is the curve's best point,
    and `calibrate` prints the same choice."""
    output = tmp_path / "idx"
    assert build(beir_folder, tiny_llama_dir, output, "--pc1-strength", "auto") == 0
    projection = SparseIndex.load(output).manifest["projection"]
    calibration = projection["calibration"]
    best = max(point["hit_rate"] for point in calibration["curve"])
    assert projection["pc1_strength"] == calibration["strength"]
    assert any(point["strength"] == calibration["strength"] and point["hit_rate"] == best
               for point in calibration["curve"])
    capsys.readouterr()
    assert main(["calibrate", str(beir_folder), "--model", str(tiny_llama_dir)]) == 0
    chosen = [line for line in capsys.readouterr().out.splitlines() if "<- chosen" in line]
    assert len(chosen) == 1 and float(chosen[0].split()[0]) == pytest.approx(
        calibration["strength"], abs=1e-4)
    assert main(["info", "--index", str(output)]) == 0
    assert "pc1 calibrated" in capsys.readouterr().out


def test_pc1_strength_rejects_words_other_than_auto(beir_folder, tiny_llama_dir, tmp_path,
                                                   capsys):
    with pytest.raises(SystemExit):
        build(beir_folder, tiny_llama_dir, tmp_path / "idx", "--pc1-strength", "strong")
    assert "expected a number or 'auto'" in capsys.readouterr().err
