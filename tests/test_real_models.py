"""Integration: the two embedded offline models on a slice of Cranfield.

Relevant documents (qrels/test.tsv, grade > 0) of a few queries are mixed with random others;
a working retriever ranks them well above where a random ranking would put them.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.sparse as sp
from refimpl import brute_force_ranking, postings_scores

from tokretrieve import SparseSearcher, build_index, index_from_embeddings
from tokretrieve.corpus import read_documents, read_qrels, read_queries
from tokretrieve.search import ModelQueryEncoder, TokenQueryEncoder

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


def mean_normalised_rank(index, encoder, queries, relevant, mode):
    """Mean over (query, relevant doc) of rank / N, documents without a positive score sharing
    the remaining ranks equally. A random ranking gives (N + 1) / 2N, about 0.5."""
    n = len(index)
    ranks = []
    searcher = SparseSearcher.from_index(index, mode=mode, encoder=encoder)
    results = searcher.batch_search([text for _, text in queries], [q for q, _ in queries], k=n)
    for query_id, hits in results.items():
        position = {hit.doc_id: i + 1 for i, hit in enumerate(hits)}
        unranked = (len(hits) + 1 + n) / 2
        ranks += [position.get(d, unranked) / n for d in relevant[query_id]]
    return float(np.mean(ranks)), (n + 1) / (2 * n), len(ranks)


# ---------------------------------------------------------------------------------- minilm
def test_minilm_key_tokens_of_a_cranfield_title(minilm):
    """MiniLM (mean pooling, tied word embeddings) puts 'wing' among the top-10 key tokens."""
    text = "experimental investigation of the aerodynamics of a wing in a slipstream"
    words = content_words(minilm.with_bags(bag_size=10).key_tokens(text, top_k=10))
    assert len(words) == 10
    assert "wing" in words


@pytest.fixture(scope="module")
def minilm_cranfield(minilm, cranfield_dir, tmp_path_factory):
    docs, queries, relevant = cranfield_slice(cranfield_dir, 10, 8, 100)
    index = build_index(docs, minilm, tmp_path_factory.mktemp("minilm") / "cran",
                        progress=False)
    return index, queries, relevant, docs


@pytest.mark.parametrize("mode,threshold", [("model", 0.3), ("tokens", 0.38)])
def test_minilm_ranks_relevant_documents_high(minilm_cranfield, minilm, mode, threshold):
    """Both query modes put the judged-relevant documents far above a random ranking."""
    index, queries, relevant, _ = minilm_cranfield
    mean_rank, random_rank, pairs = mean_normalised_rank(index, minilm, queries, relevant, mode)
    assert pairs >= 20
    assert mean_rank < threshold < random_rank, (mode, mean_rank, random_rank)


def test_minilm_index_reloads_without_the_model(minilm_cranfield):
    """The Cranfield index reopens from disk in a fresh process and answers tokens-mode queries
    identically without importing torch or loading any model weights beyond the tokenizer."""
    import json
    import subprocess
    import sys

    index, queries, _, _ = minilm_cranfield
    texts = [text for _, text in queries[:3]]
    here = SparseSearcher.from_index(index, mode="tokens")
    expected = [[[h.doc_id, h.score] for h in here.search(text)] for text in texts]
    code = (
        "import json, sys\n"
        "from tokretrieve.index.sparse import SparseIndex\n"
        "index = SparseIndex.load(sys.argv[1])\n"
        "assert 'torch' not in sys.modules, 'opening an index imported torch'\n"
        "from tokretrieve.search import SparseSearcher\n"
        "searcher = SparseSearcher.from_index(index, mode='tokens')\n"
        "texts = json.loads(sys.argv[2])\n"
        "hits = [[[h.doc_id, h.score] for h in searcher.search(t)] for t in texts]\n"
        "loaded = 'transformers.modeling_utils' in sys.modules\n"
        "print(json.dumps({'hits': hits, 'model': loaded}))\n")
    done = subprocess.run([sys.executable, "-c", code, str(index.path), json.dumps(texts)],
                          capture_output=True, text=True, check=True, timeout=120)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["hits"] == expected
    assert answer["model"] is False  # no model class was ever imported


def test_minilm_kernel_equals_numpy_reference_on_real_bags(minilm_cranfield, minilm):
    """On real bags (k=512, uint8 impacts) and real query bags of both modes, the compiled
    kernel returns exactly the top-k of the plain-numpy Postings.scores, and cutting the same
    bags into segments of 16 documents changes nothing."""
    index, queries, _, docs = minilm_cranfield
    texts = [text for _, text in queries]
    segmented = index_from_embeddings(
        list(np.asarray(index.doc_ids)), np.asarray(index.embeddings), minilm, path=None,
        segment_docs=16, texts=[text for _, text in docs])
    assert segmented.postings.n_segments == 7
    bags = sp.vstack([ModelQueryEncoder.for_index(index, minilm).encode(texts),
                      TokenQueryEncoder.for_index(index).encode(texts)]).tocsr()
    for k in (1, 10, 100):
        scores, ids = index.search(bags, k)
        segmented_scores, segmented_ids = segmented.search(bags, k)
        np.testing.assert_array_equal(ids, segmented_ids)
        np.testing.assert_array_equal(scores, segmented_scores)
        for row in range(bags.shape[0]):
            start, end = bags.indptr[row], bags.indptr[row + 1]
            reference = postings_scores(index.postings, bags.indices[start:end],
                                        bags.data[start:end])
            expected = brute_force_ranking(reference, k)
            assert ids[row][ids[row] >= 0].tolist() == expected
            assert scores[row][ids[row] >= 0].tolist() == [float(reference[i])
                                                          for i in expected]


# ---------------------------------------------------------------------------------- smollm2
def test_smollm2_key_tokens_of_a_plain_sentence(smollm2):
    """SmolLM2 with PromptEOL: the pangram's content words come first."""
    words = content_words(smollm2.with_bags(bag_size=10).key_tokens(
        "The quick brown fox jumps over the lazy dog.", top_k=10))
    assert {"fox", "dog", "quick"} & set(words), words
    assert len({"quick", "brown", "fox", "jumps", "lazy", "dog"} & set(words)) >= 3, words


def test_smollm2_ranks_relevant_documents_high(smollm2, cranfield_dir, tmp_path):
    """About 40 short Cranfield documents with SmolLM2 (model-mode queries): relevant ones rank
    far above random."""
    docs, queries, relevant = cranfield_slice(cranfield_dir, 10, 3, 40)
    index = build_index(docs, smollm2, tmp_path / "cran", progress=False)
    mean_rank, random_rank, pairs = mean_normalised_rank(index, smollm2, queries, relevant,
                                                         "model")
    assert pairs >= 15
    assert mean_rank < 0.36 < random_rank, (mean_rank, random_rank)


def test_smollm2_alias_converts_and_loads_from_a_fresh_cache(smollm2, tmp_path, monkeypatch):
    """The GGUF checkpoint de-quantizes into an empty cache, loads, and matches the session's
    copy bit for bit; a second load reuses the cached safetensors without parsing the GGUF."""
    from tokretrieve import Encoder
    from tokretrieve.encoding.models import _dequantized_copy, alias_path

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


# ---------------------------------------------------------------------------------- splade-tiny
@pytest.fixture(scope="module")
def splade_tiny():
    """SPLADE-tiny (a real 2-layer BertForMaskedLM with its MLM head), where installed."""
    from tokretrieve import Encoder
    from tokretrieve.encoding import offline

    if offline.installed_path("splade-tiny") is None:
        pytest.skip("splade-tiny is not installed: make install-splade")
    return Encoder.load("splade-tiny", max_length=64, device="cpu")


def test_splade_tiny_decodes_through_its_real_mlm_head(splade_tiny):
    """The alias's projection is its MLM head, transform included: the logits of a pooled state
    equal transformers' own BertForMaskedLM head on it, and the pangram's words (or their
    inflections) are among its key tokens. SPLADE is trained to max-pool every position's
    logits, so a mean-pooled state decodes less sharply than SPLADE's own bags."""
    import torch
    from transformers import BertForMaskedLM

    assert splade_tiny.model.head_description == "own MLM head"
    reference = BertForMaskedLM.from_pretrained(splade_tiny.model.source).eval()
    text = "The quick brown fox jumps over the lazy dog."
    pooled = torch.from_numpy(splade_tiny.embed([text]))
    with torch.no_grad():
        expected = reference.cls(pooled)[0]
    got = splade_tiny.projector(exclude_special=False).logits(pooled)[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    words = content_words(splade_tiny.with_bags(bag_size=10).key_tokens(text, top_k=10))
    assert len(words) == 10
    assert len({"quick", "brown", "fox", "jumps", "jumped", "lazy", "dog", "dogs"}
               & set(words)) >= 2, words
