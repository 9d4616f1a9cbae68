"""Exports (JSONL vector collections), imports (bags from elsewhere) and the agreement check.

The known answers are the bags the tests write themselves: integer weights over an awkward
vocabulary (BPE and WordPiece markers, punctuation, case, a space, a tab, a 300-character token,
a control character), so an exact route must give back exactly those bags, and an engine's
scores must be plain-Python integer dot products over them.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import scipy.sparse as sp

from tokretrieve.cli import main
from tokretrieve.errors import CorpusError, TokretrieveError
from tokretrieve.index.live import delete_documents
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.interop.agreement import compare, tokretrieve_rankings
from tokretrieve.interop.bags import document_bags, integer_queries
from tokretrieve.interop.export import export_index
from tokretrieve.interop.imported import index_from_vectors
from tokretrieve.interop.jsonl import export_jsonl, index_keys, read_vectors
from tokretrieve.interop.keys import TokenKeys, mapped_key, safe
from tokretrieve.interop.output import staged_folder
from tokretrieve.interop.queries import ExportedQueries
from tokretrieve.search.query_encoders import index_tokenizer
from tokretrieve.search.searcher import SparseSearcher

AWKWARD = ["Ġheat", "▁slab", "##ing", "C++", "Heat", "heat", "é", "flow", "wing", "a",
           "two words", "tab\there", "x" * 300, "bell\u0007", "U.S.", "."]
PLAIN = [f"w{i}" for i in range(30)]
VOCAB = AWKWARD + PLAIN
UNSAFE = {"two words", "tab\there", "x" * 300, "bell\u0007", "U.S.", "."}
DELETED = ["doc7", "doc8", "doc150"]


def random_bags(n: int, seed: int) -> list[tuple[str, dict[str, int]]]:
    """n documents of 1..12 distinct tokens with integer weights 1..255; every 10th document
    repeats its predecessor's bag, so that equal scores (ties) occur."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        if i % 10 == 9:
            bag = dict(docs[-1][1])
        else:
            bag = {t: rng.randint(1, 255) for t in rng.sample(VOCAB, rng.randint(1, 12))}
        docs.append((f"doc{i}", bag))
    return docs


def write_jsonl(path, docs) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for doc_id, bag in docs:
            handle.write(json.dumps({"id": doc_id, "contents": "", "vector": bag}) + "\n")


def dot(a: dict[str, int], b: dict[str, int]) -> int:
    return sum(w * b[t] for t, w in a.items() if t in b)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bags")
    docs = random_bags(300, seed=5)
    write_jsonl(folder / "bags.jsonl", docs)
    return folder / "bags.jsonl", docs


@pytest.fixture(scope="module")
def imported(source, tmp_path_factory):
    """The bags imported (a vocabulary grown from the keys), in blocks of 64 documents, with
    three documents deleted."""
    path = tmp_path_factory.mktemp("imported") / "index"
    index_from_vectors(source[0], path, segment_docs=64, progress=False)
    return delete_documents(path, DELETED)


@pytest.fixture(scope="module")
def exported(imported, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "out"
    queries = [(f"q{i}", text) for i, text in enumerate(
        ["heat flow wing", "w1 w2 w3 w3", "Heat C++ é", "wing", "nothing-here"])]
    meta = export_jsonl(imported, out, queries=queries, query_mode="tokens", part_docs=100,
                        progress=False)
    return out, meta, queries


# ------------------------------------------------------------------------------ keys
def test_keys_map_exactly_the_unsafe_token_texts():
    keys = TokenKeys.from_vocabulary(VOCAB)
    for i, text in enumerate(VOCAB):
        assert keys.keys[i] == (mapped_key(i) if text in UNSAFE else text)
    assert set(keys.mapped) == {mapped_key(VOCAB.index(t)) for t in UNSAFE}
    assert keys.ids()[keys.keys[3]] == 3
    assert safe("x" * 255) and not safe("x" * 256) and not safe("") and not safe("a\u00a0b")


def test_duplicate_token_texts_get_distinct_keys():
    keys = TokenKeys.from_vocabulary(["a", "b", "a"])
    assert keys.keys == ("a", "b", mapped_key(2))


def test_id_style_keys_every_token_by_its_id():
    assert TokenKeys.from_vocabulary(VOCAB[:3], "ids").keys == ("t0", "t1", "t2")
    with pytest.raises(TokretrieveError, match="unknown key style"):
        TokenKeys.from_vocabulary(VOCAB, "names")


def test_an_unknown_key_style_is_refused_for_an_index(imported):
    with pytest.raises(TokretrieveError, match="unknown key style 'bogus'"):
        index_keys(imported, "bogus")


# ------------------------------------------------------------------------------ export
def test_export_gives_back_the_bags_written_less_the_deleted(source, imported, exported):
    out, meta, _ = exported
    texts = index_tokenizer(imported).convert_ids_to_tokens(list(range(len(VOCAB))))
    ids_of = index_keys(imported).ids()
    back = dict(read_vectors(out))
    expected = {doc_id: bag for doc_id, bag in source[1] if doc_id not in DELETED}
    assert set(back) == set(expected)
    assert meta["documents"] == len(expected)
    for doc_id, bag in expected.items():
        # the exported keys, read through the export's own key map, are the tokens written
        keys = {(texts[meta["mapped_keys"][k]] if k in meta["mapped_keys"] else k): w
                for k, w in back[doc_id].items()}
        assert keys == bag, doc_id
        assert all(k in ids_of or k in meta["mapped_keys"] for k in back[doc_id])
    assert sorted(p.name for p in (out / "docs").iterdir()) == ["part-00000.jsonl",
                                                                "part-00001.jsonl",
                                                                "part-00002.jsonl"]
    # integer levels were written, so weight = level x scale (scale 1: weights up to 255)
    assert meta["scale"] == 1.0


def test_exported_queries_are_the_token_queries_quantized(imported, exported):
    out, meta, queries = exported
    searcher = SparseSearcher.from_index(imported, "tokens")
    original = searcher.query_encoder.encode([t for _, t in queries])
    vectors = dict(read_vectors(out / "queries.jsonl"))
    ids_of = index_keys(imported).ids()
    for q, (qid, _) in enumerate(queries):
        row = original.getrow(q)
        scale = meta["queries"]["scales"][qid]
        got = {ids_of[k]: w * scale for k, w in vectors[qid].items()}
        want = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        assert set(got) == {t for t, w in want.items() if w / scale >= 0.5}
        for token, weight in got.items():  # within half a level of the float weight
            assert abs(weight - want[token]) <= scale / 2
    assert vectors["q4"] == {}  # a query without a known token: an empty vector
    lines = (out / "queries.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "q0\theat flow wing" and len(lines) == len(queries)


@pytest.mark.parametrize("block_docs", [1, 7, 4096])
def test_document_bags_in_any_step_are_the_stored_bags(imported, block_docs):
    blocks = list(document_bags(imported, block_docs))
    ids = [d for block in blocks for d in block.doc_ids]
    assert ids == [str(d) for d, gone in zip(imported.doc_ids, imported.deleted_mask,
                                             strict=True) if not gone]
    levels = sp.vstack([block.levels for block in blocks]).tocsr()
    scale = imported.manifest.layout.scale
    for row, doc_id in enumerate(ids):
        tokens, weights = imported.document_bag(imported.position(doc_id))
        order = np.argsort(tokens)
        got = levels.getrow(row)
        assert got.indices.tolist() == tokens[order].tolist()
        assert (got.data * scale).tolist() == weights[order].tolist()


def test_document_bags_of_packed_lists_are_those_of_the_raw_ones(source, imported, tmp_path):
    raw = delete_documents(index_from_vectors(source[0], tmp_path / "raw", segment_docs=64,
                                              codec="raw", progress=False).path, DELETED)
    assert (imported.manifest.layout.codec, raw.manifest.layout.codec) == ("packed", "raw")
    segment = raw.path / raw.manifest.contents.segments[0].name
    assert (segment / "postings_docs.npy").is_file()
    assert not (segment / "postings_words.npy").exists()
    for mine, theirs in zip(document_bags(imported, 7), document_bags(raw, 7), strict=True):
        assert mine.doc_ids == theirs.doc_ids
        assert mine.levels.shape == theirs.levels.shape
        assert (mine.levels != theirs.levels).nnz == 0


def test_integer_queries_put_the_heaviest_token_in_the_top_half_of_the_levels():
    bags = sp.csr_matrix(np.array([[0.0, 3.0, 1.5, 0.001], [0.0, 0.0, 0.0, 0.0],
                                   [-1.0, 0.25, 0.0, 0.0]], dtype=np.float32))
    levels, scales = integer_queries(bags)
    assert levels.toarray().tolist() == [[0, 192, 96, 0], [0, 0, 0, 0], [0, 128, 0, 0]]
    assert scales.tolist() == [2.0 ** -6, 1.0, 2.0 ** -9]


def test_an_export_refuses_to_overwrite_what_is_not_an_export(imported, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TokretrieveError, match="is not a tokretrieve export"):
        export_jsonl(imported, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_interrupted_export_leaves_the_previous_one_whole(imported, tmp_path):
    out = tmp_path / "out"
    export_jsonl(imported, out, progress=False)
    before = (out / "docs" / "part-00000.jsonl").read_text()
    with pytest.raises(RuntimeError), staged_folder(out) as folder:
        (folder / "half.jsonl").write_text("{")
        raise RuntimeError("disk full")
    assert (out / "docs" / "part-00000.jsonl").read_text() == before
    assert not (out / "half.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left


def test_a_float32_index_is_refused(source, tmp_path):
    index = index_from_vectors(source[0], tmp_path / "f32", impacts="float32", progress=False)
    with pytest.raises(TokretrieveError, match="build it with uint8 impacts"):
        list(document_bags(index))


def test_seismic_shape_names_the_text_field_content(imported, tmp_path):
    export_index(imported, "seismic", tmp_path / "s", progress=False)
    line = json.loads((tmp_path / "s" / "docs" / "part-00000.jsonl").read_text().splitlines()[0])
    assert set(line) == {"id", "content", "vector"}


# ------------------------------------------------------------------------------ agreement
def brute_force_engine(out, qids, k, tie_break=str):
    """What an exact integer engine answers for the exported queries: plain-Python dot
    products over the exported files, ties broken by `tie_break` of the id."""
    docs = list(read_vectors(out))
    queries = dict(read_vectors(out / "queries.jsonl"))
    results = {}
    for qid in qids:
        scored = [(d, dot(queries[qid], bag)) for d, bag in docs]
        scored = sorted((s for s in scored if s[1] > 0), key=lambda s: (-s[1], tie_break(s[0])))
        results[qid] = [(d, float(s)) for d, s in scored[:k]]
    return results


@pytest.fixture(scope="module")
def many_queries(imported):
    rng = random.Random(9)
    texts = [" ".join(rng.sample(["heat", "flow", "wing", "a", "C++", "é", "Heat", *PLAIN],
                                 rng.randint(1, 6))) for _ in range(60)]
    return ExportedQueries.encode(imported, [(f"q{i}", t) for i, t in enumerate(texts)],
                                  "tokens")


def test_an_exact_engine_agrees_on_every_query(imported, exported, many_queries, tmp_path):
    out = tmp_path / "out"
    export_jsonl(imported, out, queries=list(zip(many_queries.qids, many_queries.texts,
                                                 strict=True)),
                 query_mode="tokens", progress=False)
    engine = brute_force_engine(out, many_queries.qids, 20)
    agreement = compare(imported, many_queries, engine, 20)
    assert agreement.agrees and agreement.queries == 60
    assert agreement.identical + agreement.tie_order == 60
    assert agreement.max_score_error == 0.0
    # ties broken the other way (reversed ids) are told apart from disagreements
    reversed_ties = brute_force_engine(out, many_queries.qids, 20,
                                       tie_break=lambda d: [-ord(c) for c in d])
    other = compare(imported, many_queries, reversed_ties, 20)
    assert other.agrees and other.tie_order > 0 and other.tied_positions > 0


def test_disagreements_are_caught(imported, many_queries, tmp_path):
    out = tmp_path / "out"
    export_jsonl(imported, out, queries=list(zip(many_queries.qids, many_queries.texts,
                                                 strict=True)),
                 query_mode="tokens", progress=False)
    engine = brute_force_engine(out, many_queries.qids, 10)
    qid = next(q for q in many_queries.qids if len(engine[q]) >= 3
               and engine[q][0][1] != engine[q][1][1])
    wrong_score = {**engine, qid: [(engine[qid][0][0], engine[qid][0][1] + 1),
                                   *engine[qid][1:]]}
    swapped = {**engine, qid: [engine[qid][1], engine[qid][0], *engine[qid][2:]]}
    a_deleted = {**engine, qid: [("doc7", engine[qid][0][1]), *engine[qid][1:]]}
    missing = {**engine, qid: engine[qid][:-1]}
    for bad in (wrong_score, swapped, a_deleted, missing):
        agreement = compare(imported, many_queries, bad, 10)
        assert agreement.mismatches and agreement.mismatches[0].startswith(qid)


def test_tokretrieve_rankings_are_in_integer_units(imported, many_queries):
    rankings = tokretrieve_rankings(imported, many_queries, 5)
    for q, ranking in enumerate(rankings):
        tokens, levels = many_queries.row(q)
        for doc_id, score in ranking:
            position = imported.position(doc_id)
            doc_tokens, weights = imported.document_bag(position)
            stored = dict(zip(doc_tokens.tolist(), weights.tolist(), strict=True))
            assert score == sum(int(lv) * stored.get(int(t), 0)
                                for t, lv in zip(tokens, levels, strict=True))


# ------------------------------------------------------------------------------ import
def test_export_then_import_gives_back_the_same_postings(imported, exported, tmp_path):
    out, _, _ = exported
    tokenizer = imported.path / imported.manifest.contents.base / "tokenizer"
    back = index_from_vectors(out, tmp_path / "back", tokenizer=str(tokenizer),
                              segment_docs=64, progress=False)
    live = [str(d) for d, gone in zip(imported.doc_ids, imported.deleted_mask, strict=True)
            if not gone]
    assert [str(d) for d in back.doc_ids] == live
    assert back.manifest.layout.scale == imported.manifest.layout.scale
    for doc_id in live:
        a = imported.document_bag(imported.position(doc_id))
        b = back.document_bag(back.position(doc_id))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_imported_bags_answer_tokenized_queries_by_the_dot_product(source, imported):
    bags = dict(source[1])
    hits = SparseSearcher.from_index(imported, "tokens", token_weighting="count").search(
        "heat wing", k=300)
    expected = {d: dot({"heat": 1, "wing": 1}, bag) for d, bag in bags.items()
                if d not in DELETED and dot({"heat": 1, "wing": 1}, bag) > 0}
    assert {h.doc_id: h.score for h in hits} == pytest.approx(expected)


def test_an_imported_index_has_no_model(imported):
    with pytest.raises(TokretrieveError, match="holds bags made elsewhere"):
        SparseSearcher.from_index(imported, "model")


@pytest.mark.parametrize(("line", "why"), [
    ('{"id": "a", "vector": {"x": -1}}', "weights are finite numbers >= 0"),
    ('{"id": "a", "vector": {"x": "1"}}', "weights are finite numbers >= 0"),
    ('{"id": "a", "vector": [1, 2]}', "'vector' is not an object"),
    ('{"id": "a"}', "is not a vector record"),
    ('{"id": "a", ', "is not valid JSON"),
    ('{"id": "a b", "vector": {"x": 1}}', "whitespace"),
])
def test_bad_vector_lines_are_refused_naming_the_line(tmp_path, line, why):
    file = tmp_path / "bad.jsonl"
    file.write_text('{"id": "ok", "vector": {"x": 1}}\n' + line + "\n")
    with pytest.raises(CorpusError, match=why) as error:
        index_from_vectors(file, tmp_path / "index", progress=False)
    assert "line 2" in str(error.value) or "'a b'" in str(error.value)
    assert not (tmp_path / "index").exists()


def test_duplicate_ids_and_unknown_tokens_are_refused(tmp_path, imported):
    file = tmp_path / "dup.jsonl"
    write_jsonl(file, [("a", {"x": 1}), ("a", {"y": 2})])
    with pytest.raises(CorpusError, match="appears twice"):
        index_from_vectors(file, tmp_path / "i1", progress=False)
    write_jsonl(file, [("a", {"not-a-token": 1})])
    tokenizer = imported.path / imported.manifest.contents.base / "tokenizer"
    with pytest.raises(CorpusError, match="not in the tokenizer's vocabulary"):
        index_from_vectors(file, tmp_path / "i2", tokenizer=str(tokenizer), progress=False)


# ------------------------------------------------------------------------------ command line
def test_cli_export_and_import(imported, tmp_path, capsys):
    out = tmp_path / "cli-export"
    assert main(["export", "--index", str(imported.path), "--format", "jsonvector",
                 "--output", str(out), "--keys", "ids"]) == 0
    assert "exported 297 documents as jsonvector" in capsys.readouterr().out
    first = json.loads((out / "docs" / "part-00000.jsonl").read_text().splitlines()[0])
    assert all(key.startswith("t") for key in first["vector"])
    assert main(["import", str(out), "--output", str(tmp_path / "again")]) == 0
    again = SparseIndex.load(tmp_path / "again")
    assert len(again) == 297 and again.vocab_size == imported.vocab_size
    assert again.manifest.layout.codec == "packed"
    assert main(["import", str(out), "--output", str(tmp_path / "raw"), "--postings", "raw"]) == 0
    assert SparseIndex.load(tmp_path / "raw").manifest.layout.codec == "raw"


def test_cli_import_refuses_packed_float32_weights(imported, exported, tmp_path, capsys):
    out, _, _ = exported
    assert main(["import", str(out), "--output", str(tmp_path / "f"), "--impacts", "float32",
                 "--postings", "packed"]) == 2
    assert "packed postings hold uint8 impacts" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "jsonvector"], "the jsonvector export writes a folder: give --output"),
    (["--format", "milvus"], "give --uri"),
    (["--format", "jsonvector", "--output", "OUT", "--topics", "MISSING.tsv"], "MISSING"),
])
def test_cli_export_errors_are_one_line(imported, tmp_path, capsys, args, message):
    args = [a.replace("OUT", str(tmp_path / "o")) for a in args]
    assert main(["export", "--index", str(imported.path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_searches_query_vectors_as_given(imported, exported, tmp_path):
    out, _, queries = exported
    run = tmp_path / "run.trec"
    assert main(["search", "--index", str(imported.path), "--query-vectors",
                 str(out / "queries.jsonl"), "--hits", "5", "--output", str(run)]) == 0
    lines = [line.split() for line in run.read_text().splitlines()]
    got: dict[str, list[tuple[str, float]]] = {}
    for qid, _, doc_id, _, score, tag in lines:
        got.setdefault(qid, []).append((doc_id, float(score)))
        assert tag == "tokretrieve-vectors"
    # the vectors' integer weights, searched as given: integer units times the index's scale
    exported_queries = ExportedQueries.encode(imported, queries, "tokens")
    scale = imported.manifest.layout.scale
    for qid, ranking in zip(exported_queries.qids,
                            tokretrieve_rankings(imported, exported_queries, 5), strict=True):
        assert got.get(qid, []) == [(d, s * scale) for d, s in ranking]


def test_query_vectors_with_unknown_tokens_are_refused(imported, tmp_path, capsys):
    file = tmp_path / "q.jsonl"
    write_jsonl(file, [("q1", {"no-such-token": 3})])
    assert main(["search", "--index", str(imported.path), "--query-vectors", str(file)]) == 2
    assert "has token 'no-such-token', which is not in the vocabulary" in capsys.readouterr().err
