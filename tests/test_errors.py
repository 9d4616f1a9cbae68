"""Bad input at the public entry points (corpus readers, Encoder.load, build_index, the
searchers): every case ends in a tokretrieve error whose message names the problem."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from refimpl import random_texts, raw_arrays

from tokretrieve import (
    CorpusError,
    EmptyQueryError,
    Encoder,
    IndexFormatError,
    ModelLoadError,
    SparseIndex,
    SparseSearcher,
    TokretrieveError,
    build_index,
)
from tokretrieve.corpus import read_documents, read_qrels, read_queries

MODES = ("model", "tokens")

DOCS = [(f"d{i}", t) for i, t in enumerate(random_texts(10, seed=61, low=3, high=8))]


@pytest.fixture
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol")


@pytest.fixture(scope="module")
def small_index(tiny_encoder, tmp_path_factory):
    return build_index(DOCS, tiny_encoder("llama", "prompteol").with_bags(bag_size=6),
                       tmp_path_factory.mktemp("errors") / "idx", progress=False)


@pytest.fixture(scope="module")
def searchers(small_index, tiny_encoder):
    """The small index searched in each query mode (model mode with the building encoder)."""
    return {mode: SparseSearcher.from_index(small_index, mode=mode,
                                            encoder=tiny_encoder("llama", "prompteol"))
            for mode in MODES}


def write_lines(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# ---------------------------------------------------------------------------- corpus files
def test_jsonl_reads_ids_titles_and_texts(tmp_path):
    """A well-formed JSONL file: ids from any id field, title joined before text, blank lines
    skipped, an empty text kept."""
    file = write_lines(tmp_path / "c.jsonl", [
        b'{"_id": "a", "title": "Wing", "text": "flutter at speed"}',
        b"",
        b'{"id": 7, "text": "heat"}',
        b'{"doc_id": "e", "text": ""}',
    ])
    assert read_documents(file) == [("a", "Wing flutter at speed"), ("7", "heat"), ("e", "")]


def test_non_utf8_bytes_name_the_line(tmp_path):
    """Bytes that are not UTF-8 stop the read naming file and line; 'replace' reads them."""
    file = write_lines(tmp_path / "c.jsonl", [
        b'{"_id": "a", "text": "fine"}',
        b'{"_id": "b", "text": "caf\xe9 latin-1"}',
    ])
    with pytest.raises(CorpusError, match=r"c\.jsonl:2: .*not UTF-8"):
        read_documents(file)
    records = read_documents(file, encoding_errors="replace")
    assert records[1] == ("b", "caf\ufffd latin-1")


def test_duplicate_ids_are_refused_and_named(tmp_path, encoder):
    """Duplicate ids are refused in files and in build, listing the ids."""
    file = write_lines(tmp_path / "c.jsonl", [
        b'{"_id": "x1", "text": "a"}', b'{"_id": "x2", "text": "b"}',
        b'{"_id": "x1", "text": "c"}', b'{"_id": "x2", "text": "d"}', b'{"_id": "x3", "text": "e"}',
    ])
    with pytest.raises(CorpusError, match="duplicate ids 'x1', 'x2'"):
        read_documents(file)
    with pytest.raises(CorpusError, match="duplicate ids 'd1'"):
        build_index([*DOCS, ("d1", "again")], encoder, tmp_path / "idx", progress=False)
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("line,message", [
    (b'{"text": "no id here"}', r"c\.jsonl:2: no id field"),
    (b'{"_id": "  ", "text": "blank id"}', r"c\.jsonl:2: no id field"),
    (b'{"_id": "b", "title": "only a title"}', r"c\.jsonl:2: no text field"),
    (b'{"_id": "b", "text": 12}', r"c\.jsonl:2: 'text' and 'title' must be strings"),
    (b'{"_id": "b", "text": "x"', r"c\.jsonl:2: malformed JSON"),
    (b"not json at all", r"c\.jsonl:2: malformed JSON"),
    (b'["b", "x"]', r"c\.jsonl:2: expected a JSON object, got list"),
])
def test_malformed_jsonl_names_line_and_problem(tmp_path, line, message):
    """Each malformed record stops the read with the line number and what is wrong."""
    file = write_lines(tmp_path / "c.jsonl", [b'{"_id": "a", "text": "ok"}', line,
                                              b'{"_id": "c", "text": "ok"}'])
    with pytest.raises(CorpusError, match=message):
        read_documents(file)


def test_tsv_and_beir_folder(tmp_path):
    """TSV files read as id<TAB>text; a bad TSV line is named; a folder needs corpus.jsonl."""
    tsv = tmp_path / "q.tsv"
    tsv.write_text("q1\twing flutter\nq2\theat\twith tab\n", encoding="utf-8")
    assert read_queries(tsv) == [("q1", "wing flutter"), ("q2", "heat\twith tab")]
    tsv.write_text("q1\twing\njust-an-id\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"q\.tsv:2: expected 'id<TAB>text'"):
        read_queries(tsv)
    with pytest.raises(CorpusError, match=r"without corpus.jsonl"):
        read_documents(tmp_path)
    with pytest.raises(CorpusError, match="file not found"):
        read_documents(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("bad_id", ["a b", "a\tb", "a\nb", "a\u00a0b"])  # a no-break space too
def test_ids_with_whitespace_are_refused_naming_the_line(tmp_path, bad_id):
    """An id with a space, tab or newline would shift the columns of a TREC run line: the
    read stops naming the file, the line and the id (leading and trailing blanks are trimmed
    as before)."""
    file = write_lines(tmp_path / "c.jsonl", [b'{"_id": " a ", "text": "ok"}',
                                              json.dumps({"_id": bad_id, "text": "x"}).encode()])
    with pytest.raises(CorpusError, match=rf"c\.jsonl:2: id {re.escape(repr(bad_id))} "
                                          "contains whitespace"):
        read_documents(file)
    tsv = tmp_path / "q.tsv"
    tsv.write_text("q1\tfine\nq 2\twing\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"q\.tsv:2: id 'q 2' contains whitespace"):
        read_queries(tsv)


def test_lone_surrogates_are_refused_naming_the_document(tmp_path, encoder, monkeypatch):
    """A JSON '\\ud800' escape without its pair decodes to a lone surrogate, no character: in a
    text or an id it is refused naming the line (files) or the position (build_index, before
    any encoding), the document and where the surrogate is."""
    file = write_lines(tmp_path / "c.jsonl", [b'{"_id": "a", "text": "ok"}',
                                              b'{"_id": "b", "text": "wing \\ud800 lift"}'])
    with pytest.raises(CorpusError, match=r"c\.jsonl:2: the text of 'b' holds a lone surrogate "
                                          r"\('\\ud800' at character 6\)"):
        read_documents(file)
    write_lines(file, [b'{"_id": "a\\udc80", "text": "ok"}'])
    with pytest.raises(CorpusError, match=r"c\.jsonl:1: id 'a\\udc80' holds a lone surrogate"):
        read_documents(file)
    monkeypatch.setattr(encoder, "embed", lambda *a, **k: pytest.fail("encoded before checking"))
    with pytest.raises(CorpusError, match=r"document 1 \('b'\): the text holds a lone "
                                          r"surrogate \('\\ud800' at character 6\)"):
        build_index([("a", "ok"), ("b", "wing \ud800 lift")], encoder, tmp_path / "i",
                    progress=False)
    with pytest.raises(CorpusError, match=r"document 0: id 'x\\udfff' holds a lone surrogate"):
        build_index([("x\udfff", "ok")], encoder, tmp_path / "i", progress=False)
    assert not (tmp_path / "i").exists()
    monkeypatch.undo()
    with pytest.raises(CorpusError, match=r"text 1 holds a lone surrogate"):
        encoder.encode_query(["ok", "wing \ud800"])  # a query from the Python API


def test_tsv_with_byte_order_mark(tmp_path):
    """A UTF-8 file starting with a BOM (as many Windows editors save it) reads the same ids,
    or is refused; the first id is never silently changed."""
    tsv = tmp_path / "q.tsv"
    tsv.write_bytes("\ufeffq1\twing flutter\nq2\theat\n".encode())
    try:
        records = read_queries(tsv)
    except CorpusError:
        return
    assert [doc_id for doc_id, _ in records] == ["q1", "q2"]


def test_qrels_reading(tmp_path):
    """BEIR qrels (header skipped) and TREC qrels; a malformed row names its line."""
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\t184\t3\n1\t29\t0\n2\t5\t1\n")
    assert read_qrels(tmp_path) == {"1": {"184": 3, "29": 0}, "2": {"5": 1}}
    trec = tmp_path / "run.qrels"
    trec.write_text("1 0 184 2\n1 0 185 1\n")  # TREC qrels, space separated
    assert read_qrels(trec) == {"1": {"184": 2, "185": 1}}
    trec.write_text("1\t0\t184\t2\n")
    assert read_qrels(trec) == {"1": {"184": 2}}
    trec.write_text("1 0 184 2\n1 184 high\n")  # a malformed row names its line
    with pytest.raises(CorpusError, match=r"run\.qrels:2: expected 'query-id doc-id grade'"):
        read_qrels(trec)


def test_records_must_be_id_text_pairs(encoder, tmp_path):
    """build refuses records that are not (non-empty id, str text) pairs, naming them."""
    with pytest.raises(TokretrieveError, match=r"document 1 is not an .id, text. pair"):
        build_index([("a", "x"), ("b",)], encoder, tmp_path / "i", progress=False)
    with pytest.raises(TokretrieveError, match="document 0 has an empty or non-string id"):
        build_index([(" ", "x")], encoder, tmp_path / "i", progress=False)
    with pytest.raises(TokretrieveError, match="document 'a' has a NoneType text"):
        build_index([("a", None)], encoder, tmp_path / "i", progress=False)
    with pytest.raises(TokretrieveError, match="collection is empty"):
        build_index([], encoder, tmp_path / "i", progress=False)


def test_document_ids_with_whitespace_are_refused_before_encoding(encoder, tmp_path,
                                                                 monkeypatch):
    """build_index refuses an id a run file could not hold, naming its position and the id,
    before any document is encoded; nothing is written."""
    monkeypatch.setattr(encoder, "embed", lambda *a, **k: pytest.fail("encoded before checking"))
    for bad in ("d 1", "d\t1", "d1\n"):
        with pytest.raises(TokretrieveError, match=rf"document 1: id {re.escape(repr(bad))} "
                                                   "contains whitespace"):
            build_index([("d0", "wing"), (bad, "heat")], encoder, tmp_path / "i",
                        progress=False)
    assert not (tmp_path / "i").exists()


# ---------------------------------------------------------------------------- empty documents
def test_empty_and_whitespace_texts_become_empty_bags(encoder, tmp_path):
    """Empty and whitespace-only texts are indexed as empty bags: a warning names them, the
    manifest counts them, they never match, and the other documents are unaffected."""
    docs = [*DOCS[:4], ("blank", ""), ("spaces", "  \t \n "), *DOCS[4:]]
    shaped = encoder.with_bags(bag_size=6, weighting="shifted")
    with pytest.warns(UserWarning, match="2 document.*empty.*'blank', 'spaces'"):
        index = build_index(docs, shaped, tmp_path / "idx", pc1_strength=-1.0, progress=False)
    assert index.manifest.empty_documents == 2
    assert index.manifest.empty_document_ids == ("blank", "spaces")
    assert index.manifest.doc_count == len(docs)
    docs_column = raw_arrays(index.postings)[1]
    assert 4 not in docs_column and 5 not in docs_column
    assert not np.asarray(index.embeddings)[[4, 5]].any()
    plain = build_index(DOCS, shaped, tmp_path / "plain", pc1_strength=-1.0, progress=False)
    searcher, plain_searcher = (
        SparseSearcher.from_index(built, mode="model", encoder=encoder, token_weighting="count")
        for built in (index, plain))
    for query in random_texts(3, seed=62):
        with_blanks = searcher.search(query, k=20)
        assert all(h.doc_id not in ("blank", "spaces") for h in with_blanks)
        # PC1 is estimated without the empty rows, so every other bag is exactly the same
        expected = plain_searcher.search(query, k=20)
        assert [(h.doc_id, h.score) for h in with_blanks] == [(h.doc_id, h.score)
                                                              for h in expected]


# ---------------------------------------------------------------------------- index folders
@pytest.mark.parametrize("damage", ["missing", "empty", "garbled"])
def test_damaged_tokenizer_folder_is_a_format_error(small_index, tmp_path, damage):
    """Tokens mode loads the tokenizer saved in the index: a missing, emptied or garbled
    tokenizer/ folder is an IndexFormatError that says to rebuild, never a transformers error
    (or, for a path it cannot find, a hub lookup of a repo named '<index>/tokenizer'). The
    index is opened without checksums, which would name the damage first; a load names a
    missing file the manifest lists even then."""
    copy = tmp_path / "idx"
    shutil.copytree(small_index.path, copy)
    tokenizer = copy / small_index.manifest.contents.base / "tokenizer"
    shutil.rmtree(tokenizer)
    if damage != "missing":
        tokenizer.mkdir()
    if damage == "garbled":
        (tokenizer / "tokenizer.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match=r"tokenizer/\S+ is missing.*rebuild it"):
        SparseIndex.load(copy, verify=False)  # the manifest lists the files that went
    manifest = json.loads((copy / "manifest.json").read_text())  # as format 2 lists none:
    manifest["files"] = {name: digest for name, digest in manifest["files"].items()
                         if "/tokenizer/" not in name}  # then the tokenizer's load must tell
    (copy / "manifest.json").write_text(json.dumps(manifest))
    expected = "is missing" if damage == "missing" else "cannot be loaded"
    with pytest.raises(IndexFormatError, match=rf"tokenizer/ {expected}.*rebuild it"):
        SparseSearcher.from_index(SparseIndex.load(copy, verify=False), mode="tokens")


def test_garbled_tokenizer_file_beside_its_config_is_a_format_error(small_index, tmp_path):
    """A tokenizer.json that cannot be read, its config intact: the fast path leaves it to
    transformers, whose failure becomes the IndexFormatError that says to rebuild."""
    copy = tmp_path / "idx"
    shutil.copytree(small_index.path, copy)
    (copy / small_index.manifest.contents.base / "tokenizer" / "tokenizer.json").write_text(
        "{not json")
    with pytest.raises(IndexFormatError, match=r"tokenizer/ cannot be loaded.*rebuild it"):
        SparseSearcher.from_index(SparseIndex.load(copy, verify=False), mode="tokens")


@pytest.mark.parametrize("fast", [True, False])
def test_index_tokenizer_is_never_looked_up_on_the_hub(small_index, tmp_path, monkeypatch,
                                                       fast):
    """The saved tokenizer loads from local files only: a fast one on `tokenizers` alone,
    with no transformers call at all; any other through transformers, with local_files_only
    (transformers takes any path it cannot read for a hub repo id)."""
    from transformers import AutoTokenizer

    copy = tmp_path / "idx"
    shutil.copytree(small_index.path, copy)
    if not fast:  # a decoder that cleans spaces up is left to transformers
        config_file = copy / small_index.manifest.contents.base / "tokenizer" / \
            "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        config_file.write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}))
    calls = []
    load = AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained",
                        lambda *a, **k: calls.append(k) or load(*a, **k))
    SparseSearcher.from_index(SparseIndex.load(copy, verify=False), mode="tokens")
    if fast:
        assert calls == []
    else:
        assert calls and all(call.get("local_files_only") is True for call in calls)


# ---------------------------------------------------------------------------- models
def test_unknown_model_name(tmp_path):
    """Names that are no alias, folder, GGUF file or reachable hub id: ModelLoadError naming
    the name (and the aliases)."""
    with pytest.raises(ModelLoadError, match=r"could not load model 'no-such-model-xyz'.*minilm"):
        Encoder.load("no-such-model-xyz")
    with pytest.raises(ModelLoadError, match="model folder not found"):
        Encoder.load(str(tmp_path / "missing-folder"))
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        Encoder.load(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match="model name is empty"):
        Encoder.load("  ")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{broken")
    with pytest.raises(ModelLoadError, match="could not load model"):
        Encoder.load(str(tmp_path / "junk"))


def test_typo_of_an_alias_is_refused_without_asking_the_hub(monkeypatch):
    """A bare name close to an alias is a typo: refused at once with the alias it was meant to
    be and the list, without a hub lookup (whose retries take half a minute offline); a name
    like 'org/name' is a hub id and still goes to the hub, where it answers."""
    import tokretrieve.encoding.models as models

    monkeypatch.setattr(models, "hub_reachable", lambda: True)
    asked = []

    def hub(name, source):
        asked.append(source)
        raise models._load_error(name, OSError("no network"))

    monkeypatch.setattr(models, "_config", hub)
    for typo, meant in [("minlm", "minilm"), ("MiniLM", "minilm"), ("smollm", "smollm2")]:
        with pytest.raises(ModelLoadError, match=rf"unknown model '{typo}': did you mean "
                                                 rf"'{meant}'\? Aliases: minilm, smollm2"):
            Encoder.load(typo)
    assert asked == []
    with pytest.raises(ModelLoadError, match="could not load model 'org/minlm'"):
        Encoder.load("org/minlm")
    assert asked == ["org/minlm"]


def test_unwritable_cache_for_a_gguf_copy_names_the_setting(tmp_path, monkeypatch):
    """A GGUF file is de-quantized into the cache once: a cache that cannot be created is a
    ModelLoadError naming the folder and TOKRETRIEVE_CACHE, not an OSError from mkdir."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TOKRETRIEVE_CACHE", str(blocker / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=rf"cannot write the de-quantized copy of {gguf} "
                                             rf"into {blocker / 'cache'} .*TOKRETRIEVE_CACHE"):
        Encoder.load(str(gguf))


def test_unknown_method_and_bad_sizes(tiny_llama_dir):
    """An unknown embedding method or a non-positive max_length is refused at load."""
    with pytest.raises(TokretrieveError, match="unknown embedding method 'max'"):
        Encoder.load(str(tiny_llama_dir), method="max")
    with pytest.raises(TokretrieveError, match="must be positive"):
        Encoder.load(str(tiny_llama_dir), max_length=0)


# ---------------------------------------------------------------------------- counts
@pytest.mark.parametrize(("options", "message"), [
    ({"impacts": "float16"}, "unknown impact type 'float16'"),
    ({"segment_docs": 0}, r"segment_docs must be an integer in \[1, 65536\], got 0"),
    ({"segment_docs": 65537}, "got 65537"),
    ({"segment_docs": 8.0}, "got 8.0"),
])
def test_bad_postings_layout_is_refused_before_encoding(encoder, tmp_path, monkeypatch,
                                                         options, message):
    """An impact type or segment size the format cannot hold is refused before any document
    is encoded, and nothing is written."""
    monkeypatch.setattr(encoder, "embed", lambda *a, **k: pytest.fail("encoded before checking"))
    with pytest.raises(TokretrieveError, match=message):
        build_index(DOCS, encoder, tmp_path / "idx", progress=False, **options)
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("k", [0, -3, 2.5, True, None])
def test_bad_counts_for_build_and_search(encoder, small_index, searchers, tiny_llama_dir,
                                         tmp_path, monkeypatch, k):
    """Each count must be a positive integer and each refusal names its own: the bag size
    (Encoder.load, with_bags: before any weights are loaded or documents encoded), the hits
    (search, batch_search, index.search) and the query bag size (query_bag_size)."""
    import tokretrieve.encoding.encoder as encoder_module

    with pytest.raises(TokretrieveError, match="bag_size must be a positive integer"):
        encoder.with_bags(bag_size=k)
    with monkeypatch.context() as patched:
        patched.setattr(encoder_module, "load_model",
                        lambda *a, **kw: pytest.fail("weights loaded before checking bag_size"))
        with pytest.raises(TokretrieveError, match="bag_size must be a positive integer"):
            Encoder.load(str(tiny_llama_dir), bag_size=k)
    assert not (tmp_path / "idx").exists()
    hits_refused = r"^k must be a positive integer"
    for mode in MODES:
        with pytest.raises(TokretrieveError, match=hits_refused):
            searchers[mode].search(DOCS[0][1], k=k)
        with pytest.raises(TokretrieveError, match=hits_refused):
            searchers[mode].batch_search([DOCS[0][1]], ["q1"], k=k)
    bags = searchers["tokens"].query_encoder.encode([DOCS[0][1]])
    with pytest.raises(TokretrieveError, match=hits_refused):
        small_index.search(bags, k=k)
    if k is not None:  # None is the default: as many query tokens as the documents keep
        with pytest.raises(TokretrieveError, match="bag_size must be a positive integer"):
            SparseSearcher.from_index(small_index, mode="model", encoder=encoder,
                                      query_bag_size=k).search(DOCS[0][1])


def test_query_bag_size_zero_is_refused(small_index, encoder):
    """query_bag_size=0 is refused like bag_size=0, not taken as the index default."""
    with pytest.raises(TokretrieveError, match="bag_size must be a positive integer, got 0"):
        SparseSearcher.from_index(small_index, mode="model", encoder=encoder,
                                  query_bag_size=0).search(DOCS[0][1])


@pytest.mark.parametrize("threads", [0, -1, 1.5])
def test_bad_threads_are_refused(searchers, small_index, threads):
    """A thread count must be a positive integer too, named `threads`."""
    with pytest.raises(TokretrieveError, match="threads must be a positive integer"):
        searchers["tokens"].batch_search([DOCS[0][1]], ["q1"], threads=threads)
    bags = searchers["tokens"].query_encoder.encode([DOCS[0][1]])
    with pytest.raises(TokretrieveError, match="threads must be a positive integer"):
        small_index.search(bags, k=3, threads=threads)


# ---------------------------------------------------------------------------- queries
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_raises(searchers, mode, query):
    """An empty or whitespace-only query raises EmptyQueryError in both modes."""
    with pytest.raises(EmptyQueryError, match="is empty"):
        searchers[mode].search(query)


def test_query_of_unknown_tokens_raises_in_tokens_mode(searchers):
    """Words outside the vocabulary tokenize to <unk> only: no usable token."""
    with pytest.raises(EmptyQueryError, match="tokenizes to no usable token"):
        searchers["tokens"].search("zzyzx qwerty")


def test_unknown_query_mode_and_token_weighting(small_index):
    """Unknown query modes and token weightings are refused, naming the bad value."""
    with pytest.raises(TokretrieveError, match="unknown query mode 'dense'"):
        SparseSearcher.from_index(small_index, mode="dense")
    with pytest.raises(TokretrieveError, match="unknown token weighting 'bm25'"):
        SparseSearcher.from_index(small_index, mode="tokens", token_weighting="bm25")


@pytest.mark.parametrize("mode", MODES)
def test_batch_search_gives_empty_results_for_empty_queries(small_index, searchers, mode):
    """batch_search does not fail the batch: empty (or, in tokens mode, unusable) queries get
    [] and one warning counts them; the others get their normal hits."""
    searcher = searchers[mode]
    df = small_index.postings.document_frequency()
    good = (DOCS[2][1] if mode == "model"
            else searcher.tokenizer.convert_ids_to_tokens(int(np.argmax(df))))
    queries = ["", good, "   ", "zzyzx"] if mode == "tokens" else ["", good, "   "]
    qids = [f"q{i}" for i in range(len(queries))]
    with pytest.warns(UserWarning, match=f"{len(queries) - 1} query"):
        batch = searcher.batch_search(queries, qids, k=5)
    assert list(batch) == qids
    assert batch["q0"] == [] and batch["q2"] == []
    if mode == "tokens":
        assert batch["q3"] == []
    expected = searcher.search(good, k=5)
    assert expected and [h.doc_id for h in batch["q1"]] == [h.doc_id for h in expected]
