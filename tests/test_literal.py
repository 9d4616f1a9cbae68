"""Literal weights (tokretrieve.encoding.literal): BM25 over a document's own tokens beside its
aligned bag, checked against BM25 computed here from whitespace-split words (the tiny models'
tokenizers are word-level), with statistics frozen at build time."""

from __future__ import annotations

import numpy as np
import pytest

from tokretrieve import SparseIndex, TokenQueryEncoder
from tokretrieve.build import add_documents, build_index, index_from_embeddings, reusable_index
from tokretrieve.encoding.literal import LiteralWeights
from tokretrieve.errors import TokretrieveError

DOCS = [("d1", "heat flow a wing wing"),
        ("d2", "shock wave cone speed"),
        ("d3", "heat transfer in a boundary layer plate plate plate"),
        ("d4", "flow")]
ADDED = [("d5", "wing heat heat surface")]
K1, B = 1.2, 0.75


def reference_bm25(texts: list[str], vocab: dict[str, int], idf_texts: list[str],
                   mean_length: float | None = None) -> dict[tuple[int, int], float]:
    """BM25 impacts {(doc, token id): weight} of `texts`, idf and mean length from
    `idf_texts` (the build's documents), special tokens never among the words."""
    n = len(idf_texts)
    df: dict[str, int] = {}
    for text in idf_texts:
        for word in set(text.split()):
            df[word] = df.get(word, 0) + 1
    if mean_length is None:
        mean_length = float(np.mean([len(t.split()) for t in idf_texts]))
    out = {}
    for d, text in enumerate(texts):
        words = text.split()
        for word in set(words):
            if word not in df:
                continue
            tf = words.count(word)
            idf = np.log(1 + (n - df[word] + 0.5) / (df[word] + 0.5))
            out[(d, vocab[word])] = idf * tf * (K1 + 1) / (
                tf + K1 * (1 - B + B * len(words) / mean_length))
    return out


def as_dict(bags) -> dict[tuple[int, int], float]:
    coo = bags.tocoo()
    return {(int(r), int(c)): float(v) for r, c, v in zip(coo.row, coo.col, coo.data,
                                                          strict=True)}


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder("bert", "mean").with_bags(
        literal=LiteralWeights(alpha=0.0, k1=K1, b=B, stopwords=False))


def test_literal_bags_are_bm25_of_the_documents_tokens(encoder):
    texts = [t for _, t in DOCS]
    index = index_from_embeddings([d for d, _ in DOCS], encoder.embed(texts), encoder,
                                  texts=texts, impacts="float32")
    expected = reference_bm25(texts, encoder.tokenizer.get_vocab(), texts)
    got = as_dict(index.postings.to_bags())
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5)


def test_aligned_half_is_scaled_by_the_mean_weight_ratio(encoder):
    texts = [t for _, t in DOCS]
    embeddings = encoder.embed(texts)
    aligned = encoder.with_bags(literal=False)
    plain = index_from_embeddings([d for d, _ in DOCS], embeddings, aligned, texts=texts,
                                  impacts="float32").postings.to_bags()
    literal = index_from_embeddings([d for d, _ in DOCS], embeddings, encoder, texts=texts,
                                    impacts="float32").postings.to_bags()
    mixed = index_from_embeddings([d for d, _ in DOCS], embeddings,
                                  encoder.with_bags(literal=LiteralWeights(alpha=0.5,
                                                                           stopwords=False)),
                                  texts=texts, impacts="float32")
    scale = 0.5 * literal.data.mean() / plain.data.mean()
    np.testing.assert_allclose(mixed.postings.to_bags().toarray(),
                               (literal + plain * scale).toarray(), rtol=1e-5, atol=1e-7)
    assert mixed.manifest.bags.literal_fit["aligned_scale"] == pytest.approx(scale, rel=1e-5)


def test_stop_words_leave_the_whole_bag(tiny_encoder):
    encoder = tiny_encoder("bert", "mean").with_bags(literal=LiteralWeights(alpha=1.0))
    texts = [t for _, t in DOCS]
    index = index_from_embeddings([d for d, _ in DOCS], encoder.embed(texts), encoder,
                                  texts=texts)
    vocab = encoder.tokenizer.get_vocab()
    stops = [vocab[w] for w in ("a", "in")]
    assert stops and not set(stops) & set(index.postings.to_bags().indices.tolist())
    assert index.literal_idf[stops].max() == 0


def test_literal_weights_need_texts(encoder):
    with pytest.raises(TokretrieveError, match="literal weights need the documents' texts"):
        index_from_embeddings(["d1"], encoder.embed(["heat"]), encoder)


def test_added_documents_use_the_frozen_statistics(encoder, tmp_path):
    build_index(DOCS, encoder, tmp_path / "index", impacts="float32", progress=False)
    index = add_documents(tmp_path / "index", ADDED, encoder, progress=False)
    texts = [t for _, t in DOCS]
    expected = reference_bm25([ADDED[0][1]], encoder.tokenizer.get_vocab(), texts)
    added = as_dict(index.segments[1].postings.to_bags())
    assert added.keys() == expected.keys()  # 'surface' is in no built document: idf 0
    for key, value in expected.items():
        assert added[key] == pytest.approx(value, rel=1e-5)
    compacted = SparseIndex.load(tmp_path / "index")
    assert compacted.manifest.bags.literal == encoder.literal.record()


def test_manifest_round_trip_and_reuse(encoder, tmp_path):
    path = tmp_path / "index"
    built = build_index(DOCS, encoder, path, progress=False)
    loaded = SparseIndex.load(path)
    assert loaded.manifest.bags == built.manifest.bags
    assert loaded.manifest.bags.literal == {"alpha": 0.0, "k1": K1, "b": B, "stopwords": False}
    assert loaded.manifest.bags.literal_fit["mean_length"] == pytest.approx(
        np.mean([len(t.split()) for _, t in DOCS]))
    np.testing.assert_array_equal(loaded.literal_idf, built.literal_idf)
    assert reusable_index(path, DOCS, encoder)[1] == []
    other = encoder.with_bags(literal=LiteralWeights(alpha=0.3, stopwords=False))
    assert [line.split(":")[0] for line in reusable_index(path, DOCS, other)[1]] == [
        "bags.literal"]
    (line,) = reusable_index(path, DOCS, encoder.with_bags(literal=False))[1]
    assert line.startswith("bags.literal: {") and line.endswith("} -> None")


def test_tokenized_queries_default_to_counts_on_literal_bags(encoder, tmp_path):
    literal = build_index(DOCS, encoder, tmp_path / "literal", progress=False)
    aligned = build_index(DOCS, encoder.with_bags(literal=False), tmp_path / "aligned",
                          progress=False)
    assert TokenQueryEncoder.for_index(literal).multipliers is None
    np.testing.assert_array_equal(TokenQueryEncoder.for_index(aligned).multipliers,
                                  aligned.idf.astype(np.float32))
    np.testing.assert_array_equal(TokenQueryEncoder.for_index(literal, "idf").multipliers,
                                  literal.idf.astype(np.float32))
    assert TokenQueryEncoder.for_index(aligned, "count").multipliers is None
