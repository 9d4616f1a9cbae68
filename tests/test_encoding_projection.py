"""Key-token bags and the PC1 adjustment against brute-force numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from refimpl import (
    assert_same_bag,
    csr_row,
    hidden_states,
    kth_gap,
    pc1_numpy,
    pool,
    random_texts,
    reference_bag,
)

from tokretrieve.encoding.projection import (
    WEIGHTINGS,
    KeyTokenProjector,
    PC1Adjustment,
    first_principal_direction,
)
from tokretrieve.errors import TokretrieveError, check_count

TEXTS = random_texts(9, seed=21)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("k", [1, 5, 20])
def test_bags_equal_brute_force_top_k(tiny_encoder, llama_reference, weighting, k):
    """Encoder.bags = top-k of (pooled embedding @ lm_head.T) without special tokens, weighted
    as documented, positive weights only. The pooled embedding is recomputed from the model."""
    model, tokenizer = llama_reference
    encoder = tiny_encoder("llama", "prompteol")
    bags = encoder.with_bags(bag_size=k, weighting=weighting).bags(encoder.embed(TEXTS))
    weight = model.lm_head.weight.detach().numpy()
    specials = tokenizer.all_special_ids
    for row, text in enumerate(TEXTS):
        ids = tokenizer(f'This sentence : "{text}" means in one word:"')["input_ids"]
        embedding = pool(hidden_states(model, ids), "last").numpy()
        assert kth_gap(embedding, weight, specials, k) > 1e-3  # the top-k is well defined
        expected = reference_bag(embedding, weight, specials, k, weighting)
        assert 0 < len(expected) <= k or weighting in ("log1p_relu", "logit")
        assert_same_bag(csr_row(bags, row), expected)
        assert not set(csr_row(bags, row)) & set(specials)


@pytest.mark.parametrize("weighting", [None, "shifted"])
def test_bags_equal_brute_force_for_bert(tiny_encoder, bert_reference, weighting):
    """Same for the BERT path, whose projection is the input embedding matrix; without a
    weighting argument the README's default (softmax) applies."""
    model, tokenizer = bert_reference
    encoder = tiny_encoder("bert", "mean")
    embeddings = encoder.embed(TEXTS)
    bags = encoder.with_bags(bag_size=6, weighting=weighting).bags(embeddings)
    weight = model.embeddings.word_embeddings.weight.detach().numpy()
    for row, text in enumerate(TEXTS):
        embedding = pool(hidden_states(model, tokenizer(text)["input_ids"]), "mean").numpy()
        expected = reference_bag(embedding, weight, tokenizer.all_special_ids, 6,
                                 weighting or "softmax")
        assert_same_bag(csr_row(bags, row), expected)


def test_key_tokens_are_the_bag_heaviest_first(tiny_encoder, llama_reference):
    """key_tokens lists the bag's tokens, decoded, by decreasing weight."""
    model, tokenizer = llama_reference
    encoder = tiny_encoder("llama", "prompteol")
    text = TEXTS[3]
    ids = tokenizer(f'This sentence : "{text}" means in one word:"')["input_ids"]
    embedding = pool(hidden_states(model, ids), "last").numpy()
    expected = reference_bag(embedding, model.lm_head.weight.detach().numpy(),
                             tokenizer.all_special_ids, 7)
    ranked = sorted(expected.items(), key=lambda item: -item[1])
    got = encoder.with_bags(bag_size=7, weighting="shifted").key_tokens(text, top_k=7)
    assert [token for token, _ in got] == [tokenizer.convert_ids_to_tokens(t) for t, _ in ranked]
    np.testing.assert_allclose([w for _, w in got], [w for _, w in ranked], rtol=1e-4, atol=1e-5)


def test_shifted_weights_by_hand():
    """A 6-token vocabulary with hand-set logits: shifted = l_t - l_(k+1), special dropped."""
    # embedding e = [1], W = column of logits: l = [5, 1, 9(special), 3, 2, -1]
    weight = torch.tensor([[5.0], [1.0], [9.0], [3.0], [2.0], [-1.0]])
    projector = KeyTokenProjector(weight, None, np.array([2]))
    bags = projector.bags(torch.tensor([[1.0]]), k=2, weighting="shifted")
    # top-2 of the non-special logits: token 0 (5), token 3 (3); the 3rd is token 4 (2)
    assert csr_row(bags, 0) == {0: 3.0, 3: 1.0}
    softmax = csr_row(projector.bags(torch.tensor([[1.0]]), k=2, weighting="softmax"), 0)
    norm = np.exp([5.0, 1.0, 3.0, 2.0, -1.0]).sum()
    assert softmax.keys() == {0, 3}
    np.testing.assert_allclose([softmax[0], softmax[3]], np.exp([5.0, 3.0]) / norm, rtol=1e-6)
    # a bias is added to the logits before ranking
    bias = torch.tensor([0.0, 10.0, 0.0, 0.0, 0.0, 0.0])
    biased = KeyTokenProjector(weight, bias, np.array([2])).bags(torch.tensor([[1.0]]), 1,
                                                                 weighting="shifted")
    assert csr_row(biased, 0) == {1: 6.0}


def test_negative_logits_are_dropped_for_logit_weightings():
    """log1p_relu and logit keep only strictly positive weights."""
    weight = torch.tensor([[2.0], [-1.0], [-3.0], [0.0]])
    projector = KeyTokenProjector(weight, None, np.array([], dtype=np.int64))
    e = torch.tensor([[1.0]])
    assert csr_row(projector.bags(e, k=3, weighting="logit"), 0) == {0: 2.0}
    got = csr_row(projector.bags(e, k=4, weighting="log1p_relu"), 0)
    assert got.keys() == {0} and np.isclose(got[0], np.log(3.0))


def test_zero_embeddings_give_empty_bags_in_large_batches(tiny_encoder, llama_reference):
    """More rows than the 256-row chunk: every row matches the reference, zero rows are empty
    even under a PC1 adjustment (an empty text has no content to match)."""
    model, tokenizer = llama_reference
    encoder = tiny_encoder("llama", "prompteol")
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(300, 32)).astype(np.float32)
    embeddings[[0, 257, 299]] = 0.0
    direction = pc1_numpy(embeddings).astype(np.float32)
    adjustment = PC1Adjustment(direction, -0.7)
    bags = encoder.with_bags(bag_size=4, weighting="shifted", adjustment=adjustment).bags(
        embeddings)
    assert bags.shape == (300, len(tokenizer))
    weight = model.lm_head.weight.detach().numpy()
    for row in range(300):
        expected = reference_bag(embeddings[row], weight, tokenizer.all_special_ids, 4,
                                 direction=direction, strength=-0.7)
        assert_same_bag(csr_row(bags, row), expected)
    assert [bags.indptr[r + 1] - bags.indptr[r] for r in (0, 257, 299)] == [0, 0, 0]


def test_shifted_bag_when_k_covers_the_usable_vocabulary():
    """With k = number of usable tokens there is no (k+1)-th usable logit; the projector's own
    fallback (k+1 > vocab) shifts by the lowest kept logit, so the bag should be every usable
    token but the lowest, weighted l_t - min."""
    weight = torch.tensor([[5.0], [1.0], [9.0], [3.0], [2.0]])
    projector = KeyTokenProjector(weight, None, np.array([2]))  # 4 usable tokens
    bags = projector.bags(torch.tensor([[1.0]]), k=4, weighting="shifted")
    assert csr_row(bags, 0) == {0: 4.0, 3: 2.0, 4: 1.0}


def test_check_count():
    """A count must be a positive int (numpy ints too); bools, floats, zero and negatives are
    refused, naming the parameter."""
    assert check_count(3, "k") == 3 and check_count(np.int64(2), "bag_size") == 2
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(TokretrieveError, match="bag_size must be a positive integer"):
            check_count(bad, "bag_size")


def test_encode_decode_reads_like_a_sparse_encoder(tiny_encoder, llama_reference):
    """encode_document / encode_query give (texts x vocabulary) bags by the recipe, the query
    side with the method's query wrap; decode lists a bag's (token, weight) heaviest first,
    cut at top_k; key_tokens = decode(encode(text)). Checked against the brute-force bag."""
    model, tokenizer = llama_reference
    encoder = tiny_encoder("llama", "sgpt").with_bags(bag_size=9, weighting="shifted")
    weight = model.lm_head.weight.detach().numpy()
    documents = encoder.encode_document(TEXTS[:3])
    queries = encoder.encode_query(TEXTS[:3], bag_size=4)
    assert documents.shape == queries.shape == (3, len(tokenizer))
    for row, text in enumerate(TEXTS[:3]):
        for bags, wrap, size in ((documents, "{}", 9), (queries, "[]", 4)):
            ids = tokenizer(wrap[0] + " " + text + " " + wrap[1])["input_ids"]
            embedding = pool(hidden_states(model, ids), "weighted_mean").numpy()
            expected = reference_bag(embedding, weight, tokenizer.all_special_ids, size)
            assert_same_bag(csr_row(bags, row), expected)
    decoded = encoder.decode(documents)
    assert len(decoded) == 3
    first = sorted(csr_row(documents, 0).items(), key=lambda item: -item[1])
    assert [t for t, _ in decoded[0]] == [tokenizer.convert_ids_to_tokens(t) for t, _ in first]
    assert encoder.decode(documents[0], top_k=2) == decoded[0][:2]
    alone = encoder.key_tokens(TEXTS[0], top_k=3)  # a batch of one: other padding, same bag
    assert [t for t, _ in alone] == [t for t, _ in decoded[0][:3]]
    np.testing.assert_allclose([w for _, w in alone], [w for _, w in decoded[0][:3]], rtol=1e-5)
    with pytest.raises(TokretrieveError, match="top_k must be a positive integer"):
        encoder.decode(documents[0], top_k=0)


def test_unknown_weighting_refused(tiny_encoder):
    """A weighting outside the four documented ones is refused, naming the valid ones."""
    encoder = tiny_encoder("llama", "prompteol")
    with pytest.raises(TokretrieveError, match=r"unknown weighting 'bm25'.*shifted"):
        encoder.with_bags(weighting="bm25")
    with pytest.raises(TokretrieveError, match="bag_size must be a positive integer"):
        encoder.with_bags(bag_size=0)


# ---------------------------------------------------------------------------------------- PC1
def test_pc1_matches_numpy_svd_of_uncentred_matrix():
    """v1 = first right singular vector of the raw matrix (not centred), unit norm, oriented
    so the corpus mean has a positive coefficient."""
    rng = np.random.default_rng(1)
    shared = rng.normal(size=16)
    matrix = rng.normal(size=(50, 16)) + 3.0 * shared  # a strong common component
    got = first_principal_direction(matrix)
    assert got.dtype == np.float32 and got.shape == (16,)
    assert np.isclose(np.linalg.norm(got), 1.0, atol=1e-6)
    np.testing.assert_allclose(got, pc1_numpy(matrix), atol=1e-5)
    assert matrix.mean(axis=0) @ got > 0
    # flipping every row flips the mean, hence the orientation
    np.testing.assert_allclose(first_principal_direction(-matrix), -pc1_numpy(matrix),
                               atol=1e-5)
    # uncentred: the answer is not the PC1 of the centred matrix
    centred = pc1_numpy(matrix - matrix.mean(axis=0))
    assert abs(got @ centred) < 0.9


def test_pc1_subsamples_rows():
    """Over max_sample rows only a random subset counts: with orthogonal rows of distinct norms
    and max_sample=1, v1 is one row's own direction; the seed picks which, reproducibly."""
    matrix = np.diag(np.arange(1.0, 9.0))
    picks = set()
    for seed in range(12):
        got = first_principal_direction(matrix, max_sample=1, seed=seed)
        basis = np.flatnonzero(np.abs(got) > 0.5)
        assert len(basis) == 1 and np.isclose(got[basis[0]], 1.0)
        picks.add(int(basis[0]))
        np.testing.assert_array_equal(got, first_principal_direction(matrix, 1, seed))
    assert len(picks) > 1  # not always the same row
    # with max_sample >= rows, the whole matrix counts: v1 is the largest row's direction
    np.testing.assert_allclose(first_principal_direction(matrix, max_sample=8),
                               np.eye(8)[7], atol=1e-6)


def test_pc1_subsample_is_close_to_full_answer():
    """A large subsample of data with one dominant direction finds that direction."""
    rng = np.random.default_rng(2)
    shared = rng.normal(size=24)
    matrix = rng.normal(size=(3000, 24)) + 4.0 * shared
    got = first_principal_direction(matrix, max_sample=500, seed=3)
    assert got @ pc1_numpy(matrix) > 0.999


@pytest.mark.parametrize("bad", [np.zeros((0, 4)), np.zeros(4)])
def test_pc1_refuses_bad_shapes(bad):
    """PC1 of an empty or 1-D input is refused with a message naming the shape problem."""
    with pytest.raises(TokretrieveError, match="non-empty 2-D"):
        first_principal_direction(bad)


def test_pc1_adjustment_apply():
    """apply(e) = e + strength * v1 for every row; strength 0 is the identity."""
    rng = np.random.default_rng(4)
    direction = rng.normal(size=8).astype(np.float32)
    direction /= np.linalg.norm(direction)
    embeddings = torch.from_numpy(rng.normal(size=(5, 8)).astype(np.float32))
    got = PC1Adjustment(direction, -2.5).apply(embeddings)
    expected = embeddings.numpy() - 2.5 * direction[None, :]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(PC1Adjustment(direction, 0.0).apply(embeddings), embeddings)
