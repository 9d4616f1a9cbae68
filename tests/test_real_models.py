"""Integration: the two embedded offline models on a slice of Cranfield.

Relevant documents (qrels/test.tsv, grade > 0) of a few queries are mixed with random others;
a working retriever ranks them well above where a random ranking would put them.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from tokretrieve import SparseIndex
from tokretrieve.corpus import read_documents, read_qrels, read_queries

pytestmark = pytest.mark.slow


def content_words(key_tokens):
    """Key tokens as plain lower-case words (word-boundary markers removed)."""
    return [token.lstrip("_Ġ▁").lower() for token, _ in key_tokens]


def cranfield_slice(folder, n_queries, max_relevant, total, seed=0):
    """The first n_queries queries (by id) with 1..max_relevant relevant documents, the union
    of their relevant documents, and random non-empty others up to `total` documents."""
    docs = dict(read_documents(folder))
    queries = dict(read_queries(folder))
    qrels = read_qrels(folder)
    relevant = {q: sorted(d for d, grade in judged.items() if grade > 0 and d in docs)
                for q, judged in qrels.items() if q in queries}
    chosen = [q for q in sorted(relevant, key=int) if 1 <= len(relevant[q]) <= max_relevant]
    chosen = chosen[:n_queries]
    pool = sorted({d for q in chosen for d in relevant[q]}, key=int)
    others = [d for d in sorted(docs, key=int) if d not in set(pool) and docs[d].strip()]
    pool += random.Random(seed).sample(others, total - len(pool))
    return ([(d, docs[d]) for d in pool], [(q, queries[q]) for q in chosen],
            {q: relevant[q] for q in chosen})


def mean_normalised_rank(index, queries, relevant, mode):
    """Mean over (query, relevant doc) of rank / N, documents without a positive score sharing
    the remaining ranks equally. A random ranking gives (N + 1) / 2N, about 0.5."""
    n = len(index)
    ranks = []
    results = index.batch_search([text for _, text in queries], k=n, mode=mode)
    for (query_id, _), hits in zip(queries, results, strict=True):
        position = {hit.doc_id: i + 1 for i, hit in enumerate(hits)}
        unranked = (len(hits) + 1 + n) / 2
        ranks += [position.get(d, unranked) / n for d in relevant[query_id]]
    return float(np.mean(ranks)), (n + 1) / (2 * n), len(ranks)


# ---------------------------------------------------------------------------------- minilm
def test_minilm_key_tokens_of_a_cranfield_title(minilm):
    """MiniLM (mean pooling, tied word embeddings) puts 'wing' among the top-10 key tokens."""
    text = "experimental investigation of the aerodynamics of a wing in a slipstream"
    words = content_words(minilm.key_tokens(text, k=10))
    assert len(words) == 10
    assert "wing" in words


@pytest.fixture(scope="module")
def minilm_cranfield(minilm, cranfield_dir, tmp_path_factory):
    docs, queries, relevant = cranfield_slice(cranfield_dir, 10, 8, 100)
    index = SparseIndex.build(docs, minilm, tmp_path_factory.mktemp("minilm") / "cran",
                              progress=False)
    return index, queries, relevant


@pytest.mark.parametrize("mode,threshold", [("model", 0.3), ("tokens", 0.38)])
def test_minilm_ranks_relevant_documents_high(minilm_cranfield, mode, threshold):
    """Both query modes put the judged-relevant documents far above a random ranking."""
    index, queries, relevant = minilm_cranfield
    mean_rank, random_rank, pairs = mean_normalised_rank(index, queries, relevant, mode)
    assert pairs >= 20
    assert mean_rank < threshold < random_rank, (mode, mean_rank, random_rank)


def test_minilm_index_reloads_without_the_model(minilm_cranfield):
    """The Cranfield index reopens from disk and answers tokens-mode queries identically
    without loading any model weights."""
    index, queries, _ = minilm_cranfield
    reopened = SparseIndex.load(index.path)
    for _, text in queries[:3]:
        assert ([(h.doc_id, h.score) for h in reopened.search(text, mode="tokens")]
                == [(h.doc_id, h.score) for h in index.search(text, mode="tokens")])
    assert reopened._encoder is None


def test_minilm_kernel_equals_numpy_reference_on_real_bags(minilm_cranfield, minilm):
    """On real bags (k=512, uint8 impacts) and real query bags of both modes, the compiled
    kernel returns exactly the top-k of the plain-numpy Postings.scores, and cutting the same
    bags into segments of 16 documents changes nothing."""
    from refimpl import brute_force_ranking

    index, queries, _ = minilm_cranfield
    texts = [text for _, text in queries]
    segmented = SparseIndex.from_embeddings(
        list(np.asarray(index.doc_ids)), np.asarray(index.embeddings), minilm, path=None,
        k=index.k, segment_docs=16)
    assert segmented.postings.n_segments == 7
    bags = index.model_query_bags(texts) + [index.token_query_bag(t) for t in texts]
    for k in (1, 10, 100):
        got = index.search_bags(bags, k=k, matched=False)
        assert [[(h.doc_id, h.score) for h in hits] for hits in got] == \
            [[(h.doc_id, h.score) for h in hits]
             for hits in segmented.search_bags(bags, k=k, matched=False)]
        for (tokens, weights), hits in zip(bags, got, strict=True):
            scores = index.postings.scores(tokens, weights)
            expected = brute_force_ranking(scores, k)
            assert [h.doc_id for h in hits] == [str(index.doc_ids[i]) for i in expected]
            assert [h.score for h in hits] == [float(scores[i]) for i in expected]


# ---------------------------------------------------------------------------------- smollm2
def test_smollm2_key_tokens_of_a_plain_sentence(smollm2):
    """SmolLM2 with PromptEOL: the pangram's content words come first."""
    words = content_words(smollm2.key_tokens("The quick brown fox jumps over the lazy dog.",
                                             k=10))
    assert {"fox", "dog", "quick"} & set(words), words
    assert len({"quick", "brown", "fox", "jumps", "lazy", "dog"} & set(words)) >= 3, words


def test_smollm2_ranks_relevant_documents_high(smollm2, cranfield_dir, tmp_path):
    """About 40 short Cranfield documents with SmolLM2 (model-mode queries): relevant ones rank
    far above random."""
    docs, queries, relevant = cranfield_slice(cranfield_dir, 10, 3, 40)
    index = SparseIndex.build(docs, smollm2, tmp_path / "cran", progress=False)
    mean_rank, random_rank, pairs = mean_normalised_rank(index, queries, relevant, "model")
    assert pairs >= 15
    assert mean_rank < 0.36 < random_rank, (mean_rank, random_rank)


def test_smollm2_alias_converts_and_loads_from_a_fresh_cache(smollm2, tmp_path, monkeypatch):
    """The GGUF checkpoint de-quantizes into an empty cache, loads, and matches the session's
    copy bit for bit; a second load reuses the cached safetensors without parsing the GGUF."""
    from tokretrieve import Encoder
    from tokretrieve.models import _dequantized_copy, alias_path

    monkeypatch.setenv("TOKRETRIEVE_CACHE", str(tmp_path))
    fresh = Encoder.load("smollm2", max_length=128, device="cpu")
    copies = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(copies) == 1 and (copies[0] / "config.json").is_file()
    assert "quantization_config" not in (copies[0] / "config.json").read_text()
    assert fresh.model.content_hash == smollm2.model.content_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == [copies[0].name]  # no staging left

    import transformers

    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF file was parsed again")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_gguf)
    assert _dequantized_copy(alias_path("smollm2")) == copies[0]
