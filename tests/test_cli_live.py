"""`tokretrieve add / delete / compact / verify / info` end to end, on a tiny model: every
committed change shows in searches and in `info`; bad input is one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tokretrieve import SparseIndex, SparseSearcher
from tokretrieve.cli import main

FIRST = [("d1", "wing lift drag"), ("d2", "heat transfer flow"), ("d3", "shock wave flow")]
MORE = [("e1", "boundary layer heat"), ("e2", "supersonic wing flutter")]


def write_jsonl(file, docs):
    file.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in docs))
    return file


@pytest.fixture
def index_dir(tiny_llama_dir, tmp_path, capsys):
    output = tmp_path / "idx"
    assert main(["index", str(write_jsonl(tmp_path / "first.jsonl", FIRST)), "--model",
                 str(tiny_llama_dir), "--output", str(output), "--bag-size", "8",
                 "--weighting", "shifted", "--pc1-strength", "0"]) == 0
    capsys.readouterr()
    return output


def live_ids(path):
    index = SparseIndex.load(path)
    return [str(d) for i, d in enumerate(index.doc_ids) if not index.deleted_mask[i]]


def test_add_delete_compact_show_in_searches_and_info(index_dir, tmp_path, capsys):
    assert main(["add", str(write_jsonl(tmp_path / "more.jsonl", MORE)), "--index",
                 str(index_dir)]) == 0
    assert "added 2 documents" in capsys.readouterr().out
    assert live_ids(index_dir) == ["d1", "d2", "d3", "e1", "e2"]
    searcher = SparseSearcher.from_index(index_dir, mode="tokens")
    word = searcher.document("e2")[0][0].lstrip("_")
    assert "e2" in [h.doc_id for h in searcher.search(word, k=10)]

    (tmp_path / "gone.txt").write_text("e2\n\nd1\n")
    assert main(["delete", "--index", str(index_dir), "--ids-file",
                 str(tmp_path / "gone.txt")]) == 0
    assert "2 deleted positions" in capsys.readouterr().out
    assert live_ids(index_dir) == ["d2", "d3", "e1"]
    assert main(["search", "--index", str(index_dir), "--mode", "tokens", word]) == 0
    assert " e2 " not in capsys.readouterr().out

    assert main(["info", "--index", str(index_dir)]) == 0
    info = capsys.readouterr().out
    assert "generation: 3: 2 segment(s), 2 deleted position(s)" in info
    assert "documents: 3 (0 empty)" in info and "PC1 cosine" in info

    assert main(["compact", "--index", str(index_dir)]) == 0
    assert "3 documents in one segment, packed lists" in capsys.readouterr().out
    index = SparseIndex.load(index_dir)
    assert len(index.segments) == 1 and list(index.doc_ids) == ["d2", "d3", "e1"]
    assert main(["verify", "--index", str(index_dir)]) == 0
    assert "generation 4 is whole" in capsys.readouterr().out
    assert main(["compact", "--index", str(index_dir), "--postings", "raw"]) == 0
    assert "3 documents in one segment, raw lists" in capsys.readouterr().out
    assert SparseIndex.load(index_dir).manifest.layout.codec == "raw"
    assert main(["search", "--index", str(index_dir), "--mode", "tokens", word]) == 0


def test_update_replaces_and_a_plain_add_of_an_existing_id_is_refused(index_dir, tmp_path,
                                                                      capsys):
    changed = write_jsonl(tmp_path / "changed.jsonl", [("d2", "supersonic wing flutter")])
    assert main(["add", str(changed), "--index", str(index_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'d2'" in err and err.count("\n") == 1
    assert main(["add", str(changed), "--index", str(index_dir), "--update"]) == 0
    assert live_ids(index_dir) == ["d1", "d3", "d2"]
    index = SparseIndex.load(index_dir)
    tokens, _ = index.document_bag(index.position("d2"))
    fresh_tokens, _ = index.document_bag(index.position("d3"))
    assert not np.array_equal(tokens, fresh_tokens)


def test_verify_names_a_damaged_file(index_dir, capsys):
    impacts = index_dir / "seg-000001" / "postings_words.npy"  # packed lists: the default
    data = bytearray(impacts.read_bytes())
    data[140] ^= 0x01  # one bit of the first list changed: only the checksum can tell
    impacts.write_bytes(bytes(data))
    assert main(["verify", "--index", str(index_dir)]) == 1
    err = capsys.readouterr().err
    assert "seg-000001/postings_words.npy does not match its checksum" in err
    assert main(["search", "--index", str(index_dir), "--mode", "tokens", "wing"]) == 2
    assert "postings_words.npy" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["delete", "--index", "{index}"], "no ids to delete"),
    (["delete", "--index", "{index}", "zz"], "'zz'"),
    (["delete", "--index", "{index}", "--ids-file", "{index}/none.txt"], "does not exist"),
    (["compact", "--index", "{index}/nowhere"], "holds no index"),
    (["verify", "--index", "{index}/nowhere"], "not a tokretrieve index"),
])
def test_bad_input_is_one_error_line(index_dir, capsys, argv, message):
    assert main([a.replace("{index}", str(index_dir)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1
