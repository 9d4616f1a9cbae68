"""Embedding methods: the encoder's vectors equal the pooled hidden states of the exact input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sentence_transformers_folder
from refimpl import PROMPTEOL, SGPT_DOC, SGPT_QUERY, hidden_states, pool, random_texts

from tokretrieve import Encoder
from tokretrieve.encoding.pooling import pool as pool_states
from tokretrieve.encoding.recipes import METHODS, family_recipe, get_method
from tokretrieve.errors import TokretrieveError

TEXTS = random_texts(7, seed=11, low=1, high=20)  # very different lengths: batches pad a lot

# method -> (document wrap, query wrap, pooling) as the README of each method defines them
EXPECTED = {
    "prompteol": (PROMPTEOL, PROMPTEOL, "last"),
    "sgpt": (SGPT_DOC, SGPT_QUERY, "weighted_mean"),
    "mean": (("", ""), ("", ""), "mean"),
    "last": (("", ""), ("", ""), "last"),
}


def reference_embedding(model, tokenizer, text, wrap, how):
    """Tokenize the whole wrapped string at once (with the tokenizer's own special tokens), run
    the model on it alone, pool by hand."""
    full = f"{wrap[0]}{text}{wrap[1]}"
    ids = tokenizer(full)["input_ids"]
    return pool(hidden_states(model, ids), how).numpy(), ids


@pytest.mark.parametrize("method", ["prompteol", "sgpt", "mean", "last"])
@pytest.mark.parametrize("is_query", [False, True])
def test_llama_embedding_matches_reference(tiny_encoder, llama_reference, method, is_query):
    """Each method wraps the text as documented and pools as documented (batched, padded)."""
    model, tokenizer = llama_reference
    encoder = tiny_encoder("llama", method)
    doc_wrap, query_wrap, how = EXPECTED[method]
    wrap = query_wrap if is_query else doc_wrap
    got = encoder.embed(TEXTS, is_query=is_query)
    assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
    for row, text in enumerate(TEXTS):
        expected, ids = reference_embedding(model, tokenizer, text, wrap, how)
        assert encoder.input_ids([text], is_query=is_query)[0] == ids
        np.testing.assert_allclose(got[row], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("is_query", [False, True])
def test_bert_mean_embedding_matches_reference(tiny_encoder, bert_reference, is_query):
    """An encoder-only model: mean over [CLS] text [SEP], padding excluded."""
    model, tokenizer = bert_reference
    encoder = tiny_encoder("bert", "mean")
    assert not encoder.model.is_causal
    got = encoder.embed(TEXTS, is_query=is_query)
    for row, text in enumerate(TEXTS):
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        expected = pool(hidden_states(model, ids), "mean").numpy()
        np.testing.assert_allclose(got[row], expected, rtol=1e-4, atol=1e-5)


def test_bert_projection_is_input_word_embeddings(tiny_encoder, bert_reference):
    """Without an LM head the projection is the (tied) input embedding matrix."""
    model, _ = bert_reference
    encoder = tiny_encoder("bert", "mean")
    torch.testing.assert_close(encoder.model.projection_weight,
                               model.embeddings.word_embeddings.weight)


def test_llama_projection_is_lm_head(tiny_encoder, llama_reference):
    """The projection is the LM head (not the input embeddings, which are untied here), so a
    'last' embedding projected gives the model's own next-token logits."""
    model, tokenizer = llama_reference
    encoder = tiny_encoder("llama", "last")
    torch.testing.assert_close(encoder.model.projection_weight, model.lm_head.weight)
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    text = TEXTS[0]
    with torch.no_grad():
        next_token_logits = model(input_ids=torch.tensor([tokenizer(text)["input_ids"]]))
    embedding = torch.from_numpy(encoder.embed([text]))
    logits = encoder.projector().logits(embedding)[0]
    special = list(tokenizer.all_special_ids)
    mask = torch.ones(logits.shape[0], dtype=torch.bool)
    mask[special] = False
    torch.testing.assert_close(logits[mask], next_token_logits.logits[0, -1][mask],
                               rtol=1e-4, atol=1e-4)
    assert torch.isneginf(logits[special]).all()


@pytest.mark.parametrize("model_kind,method", [("llama", "prompteol"), ("llama", "sgpt"),
                                               ("bert", "mean")])
def test_padding_does_not_change_embeddings(tiny_encoder, model_kind, method):
    """A text embedded alone equals the same text embedded in a padded batch, whatever the
    batch size and order."""
    alone = np.stack([tiny_encoder(model_kind, method, batch_size=1).embed([t])[0]
                      for t in TEXTS])
    batched = tiny_encoder(model_kind, method, batch_size=32).embed(TEXTS)
    reversed_batch = tiny_encoder(model_kind, method, batch_size=3).embed(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reversed_batch, alone, rtol=1e-4, atol=1e-5)


def test_empty_texts_embed_to_zero(tiny_encoder):
    """Empty and whitespace-only texts give zero vectors; their neighbours are unaffected."""
    encoder = tiny_encoder("llama", "prompteol")
    texts = ["", TEXTS[0], "  \t\n", TEXTS[1]]
    got = encoder.embed(texts)
    assert not got[0].any() and not got[2].any()
    np.testing.assert_allclose(got[[1, 3]], encoder.embed([TEXTS[0], TEXTS[1]]), atol=1e-5)
    assert encoder.embed([]).shape == (0, 32)


def test_embed_refuses_non_text(tiny_encoder):
    """A bare string or a non-string item is refused with a message naming it."""
    encoder = tiny_encoder("llama", "prompteol")
    with pytest.raises(TokretrieveError, match="single string"):
        encoder.embed("just one string")
    with pytest.raises(TokretrieveError, match="text 1 is int"):
        encoder.embed(["fine", 3])


@pytest.mark.parametrize("method", ["prompteol", "sgpt"])
def test_truncation_keeps_the_prompt_closing(tiny_encoder, llama_reference, method):
    """Over max_length, the text is cut *inside* the prompt: the closing words stay last, the
    length is exactly max_length, and the embedding is that of the prompt around the text's
    first words."""
    model, tokenizer = llama_reference
    max_length = 16
    encoder = tiny_encoder("llama", method, max_length=max_length)
    doc_wrap, _, how = EXPECTED[method]
    words = random_texts(1, seed=5, low=40, high=40)[0].split()
    closing = tokenizer(doc_wrap[1], add_special_tokens=False)["input_ids"]
    ids = encoder.input_ids([" ".join(words)])[0]
    assert len(ids) == max_length
    assert ids[-len(closing):] == closing
    # bos + opening + first n words + closing == max_length tokens
    opening = tokenizer(doc_wrap[0], add_special_tokens=False)["input_ids"]
    n_words = max_length - 1 - len(opening) - len(closing)
    assert n_words > 0
    expected, ref_ids = reference_embedding(model, tokenizer, " ".join(words[:n_words]),
                                            doc_wrap, how)
    assert ids == ref_ids
    np.testing.assert_allclose(encoder.embed([" ".join(words)])[0], expected, rtol=1e-4,
                               atol=1e-5)


def test_bert_truncation_keeps_sep(tiny_encoder, bert_reference):
    """For [CLS] text [SEP] models the [SEP] survives truncation."""
    _, tokenizer = bert_reference
    encoder = tiny_encoder("bert", "mean", max_length=10)
    ids = encoder.input_ids([random_texts(1, seed=6, low=30, high=30)[0]])[0]
    assert len(ids) == 10
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


def test_very_long_input_does_not_crash(tiny_encoder):
    """A text far longer than max_length (and than the model's positions) embeds fine."""
    encoder = tiny_encoder("llama", "prompteol", max_length=64)
    huge = " ".join(random_texts(1, seed=7, low=5000, high=5000))
    got = encoder.embed([huge, "wing flow"])
    assert np.isfinite(got).all() and got[0].any()
    assert len(encoder.input_ids([huge])[0]) == 64


def test_method_registry_and_family_defaults():
    """Unknown methods are refused naming the valid ones; a checkpoint's family follows its
    configuration (architecture, model type), and its name only where a family shares its
    architecture with plain models."""
    from types import SimpleNamespace

    assert {"prompteol", "sgpt", "mean", "last", "cls", "weighted_mean"} <= set(METHODS)
    with pytest.raises(TokretrieveError, match=r"unknown embedding method 'max'.*prompteol"):
        get_method("max")
    causal = SimpleNamespace(model_type="llama", architectures=["LlamaForCausalLM"])
    encoder = SimpleNamespace(model_type="bert", architectures=["BertModel"])
    neo = SimpleNamespace(model_type="gpt_neo", architectures=["GPTNeoModel"])
    assert family_recipe("/models/some-causal-lm", causal).name == "prompteol"
    # a bidirectional encoder is never given PromptEOL's last-token state
    assert family_recipe("/models/some-encoder", encoder).name == "mean"
    nli = family_recipe("Muennighoff/SGPT-125M-weightedmean-nli-bitfit", neo)
    assert (nli.name, nli.wrap(True), nli.head) == ("sgpt-nli", ("", ""),
                                                     "EleutherAI/gpt-neo-125m")
    specb = family_recipe("Muennighoff/SGPT-1.3B-weightedmean-msmarco-specb-bitfit", neo)
    assert (specb.wrap(True), specb.wrap(False)) == (("[", "]"), ("{", "}"))
    assert specb.head == "EleutherAI/gpt-neo-1.3B"


@pytest.mark.parametrize(("mode", "method"), [("cls_token", "cls"), ("mean_tokens", "mean"),
                                              ("lasttoken", "last"),
                                              ("weightedmean_tokens", "weighted_mean")])
def test_a_sentence_transformers_folder_pools_as_its_pooling_module_says(
        tiny_bert_dir, bert_reference, tmp_path, mode, method):
    """The method comes from the folder's Pooling config, and pools as a plain transformers
    forward pooled by hand does ([CLS] state, mean, last real token, position-weighted mean)."""
    folder = sentence_transformers_folder(tiny_bert_dir, tmp_path / "st", mode)
    encoder = Encoder.load(str(folder), device="cpu")
    assert encoder.method.pooling == method
    model, tokenizer = bert_reference
    texts = ["wing flutter at supersonic speed", "heat"]
    got = encoder.embed(texts)
    for row, text in enumerate(texts):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = model(input_ids=ids).last_hidden_state[0].double()
        positions = torch.arange(1, hidden.shape[0] + 1, dtype=torch.float64)[:, None]
        expected = {"cls": hidden[0], "mean": hidden.mean(dim=0), "last": hidden[-1],
                    "weighted_mean": (hidden * positions).sum(dim=0) / positions.sum()}[method]
        np.testing.assert_allclose(got[row], expected.numpy(), rtol=1e-5, atol=1e-5)


def test_a_pooling_no_method_reproduces_is_refused(tiny_bert_dir, tmp_path):
    folder = sentence_transformers_folder(tiny_bert_dir, tmp_path / "st", "max_tokens")
    with pytest.raises(TokretrieveError, match=r"pooling_mode_max_tokens has no tokretrieve "
                                               r"pooling.*give --method or --pooling"):
        Encoder.load(str(folder), device="cpu")
    assert Encoder.load(str(folder), method="mean", device="cpu").method.name == "mean"


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_by_hand(side):
    """The pooling rules on a hand-made padded batch, padded on either side: weights 1..n over
    the marked tokens, the first and last marked token."""
    hidden = torch.tensor([[[1.0], [2.0], [4.0]], [[3.0], [5.0], [100.0]]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    if side == "left":  # the second row's real tokens moved right, its pad first
        hidden = torch.tensor([[[1.0], [2.0], [4.0]], [[100.0], [3.0], [5.0]]])
        mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    # (1*1 + 2*2 + 3*4) / 6 = 17/6 ; (1*3 + 2*5) / 3 = 13/3
    torch.testing.assert_close(pool_states("weighted_mean", hidden, mask)[:, 0],
                               torch.tensor([17 / 6, 13 / 3]))
    torch.testing.assert_close(pool_states("mean", hidden, mask)[:, 0],
                               torch.tensor([7 / 3, 4.0]))
    torch.testing.assert_close(pool_states("last", hidden, mask)[:, 0],
                               torch.tensor([4.0, 5.0]))
    torch.testing.assert_close(pool_states("cls", hidden, mask)[:, 0],
                               torch.tensor([1.0, 3.0]))


def test_max_length_beyond_the_model_positions(tiny_bert_dir):
    """A max_length larger than the model can take is either capped (long texts still embed)
    or refused at load with a TokretrieveError naming max_length."""
    try:
        encoder = Encoder.load(str(tiny_bert_dir), method="mean", max_length=1000)
    except TokretrieveError as error:
        assert "max_length" in str(error)
        return
    got = encoder.embed([random_texts(1, seed=8, low=800, high=800)[0]])
    assert np.isfinite(got).all()
