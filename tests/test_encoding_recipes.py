"""Model recipes, family by family: each family as a tiny random-weight checkpoint saved in its
hub layout (architecture, model type, sentence-transformers files, a separate backbone where the
family decodes through one), loaded by folder through `Encoder.load`, and checked against a plain
transformers forward pass pooled by hand, or against sentence-transformers itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from refimpl import PROMPT_TOKENS, WORDS, hidden_states, pool, random_texts
from tiny_beir import write_beir

from tokretrieve import Encoder, SparseIndex, build_index, index_encoder
from tokretrieve.cli import main
from tokretrieve.encoding.recipes import FAMILIES, RECIPE_FIELDS, WEB_SEARCH
from tokretrieve.errors import ModelLoadError, TokretrieveError
from tokretrieve.search.searcher import DenseSearcher

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
# The words of the families' prompts, as a Whitespace pre-tokenizer splits them, so that no
# prompt token is [UNK] ("<|user|>" splits into "<|", "user", "|>").
PROMPT_WORDS = ["task", "search", "result", "|", "query", "title", "none", "text", "Instruct",
                "Given", "web", "retrieve", "relevant", "passages", "that", "answer", "the",
                "Query", "<|", "|>", "user", "embed", "answering"]
GEMMA_QUERY = "task: search result | query: "
GEMMA_DOCUMENT = "title: none | text: "
QWEN_QUERY = f"Instruct: {WEB_SEARCH}\nQuery:"
E5_QUERY = f"Instruct: {WEB_SEARCH}\nQuery: "
GRIT_QUERY = f"<|user|>\n{WEB_SEARCH}\n<|embed|>\n"
GRIT_DOCUMENT = "<|embed|>\n"
TEXTS = random_texts(5, seed=3, low=1, high=14)  # different lengths: batches pad
PAST_THE_ROWS = "<past-the-rows>"


def tokenizer(bos: bool = True):
    """A WordLevel tokenizer knowing the test words and every prompt's words: <s> before each
    text where `bos` (Llama, Mistral, Gemma), nothing added otherwise (Qwen, GPT-Neo)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = list(dict.fromkeys(SPECIALS + PROMPT_TOKENS + PROMPT_WORDS + WORDS))
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                   unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def special_ids(tok) -> dict:
    return {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id}


def save(model, tok, folder: Path) -> Path:
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def unit_head(model):
    """Unit-scale LM head, so that top-k choices are far from float ties."""
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, 1.0)
    return model


def write_st_files(folder: Path, pooling: str, after: list[str], prompts: dict | None,
                   dims: int = 32) -> None:
    """The sentence-transformers files of a hub checkpoint, as the hub holds them (the
    Transformer at the root, a Pooling module, modules after it written by the caller)."""
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    for number, kind in enumerate(after, start=2):
        modules.append({"idx": number, "name": str(number), "path": f"{number}_{kind}",
                        "type": f"sentence_transformers.models.{kind}"})
        (folder / f"{number}_{kind}").mkdir()
    (folder / "modules.json").write_text(json.dumps(modules))
    modes = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
             "weightedmean_tokens", "lasttoken")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": dims, **{f"pooling_mode_{m}": m == pooling for m in modes},
         "include_prompt": True}))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    if prompts is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps(
            {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}))


def plain_ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def last_hidden(model, ids: list[int]) -> torch.Tensor:
    """Final hidden states of one unpadded sequence, from the bare transformers module."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state[0].double()


# ------------------------------------------------------------------------------- EmbeddingGemma
@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    """EmbeddingGemma's layout: a bidirectional Gemma3TextModel, mean Pooling, Dense 32->64,
    Dense 64->32 (no bias, Identity), Normalize, its two prompts; and a tokenizer holding a
    special token one past the embedding matrix's last row (EmbeddingGemma's id 262144)."""
    from transformers import Gemma3TextConfig, Gemma3TextModel

    folder = tmp_path_factory.mktemp("gemma") / "embeddinggemma-tiny"
    tok = tokenizer()
    rows = len(tok)
    config = Gemma3TextConfig(
        vocab_size=rows, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
        sliding_window=64, use_bidirectional_attention=True, **special_ids(tok))
    config.architectures = ["Gemma3TextModel"]
    torch.manual_seed(0)
    model = Gemma3TextModel(config)
    tok.add_special_tokens({"additional_special_tokens": [PAST_THE_ROWS]})
    assert tok.convert_tokens_to_ids(PAST_THE_ROWS) == rows
    save(model, tok, folder)
    write_st_files(folder, "mean_tokens", ["Dense", "Dense", "Normalize"],
                   {"query": GEMMA_QUERY, "document": GEMMA_DOCUMENT})
    from safetensors.torch import save_file

    for number, (inputs, outputs) in ((2, (32, 64)), (3, (64, 32))):
        dense = folder / f"{number}_Dense"
        (dense / "config.json").write_text(json.dumps(
            {"in_features": inputs, "out_features": outputs, "bias": False,
             "activation_function": "torch.nn.modules.linear.Identity"}))
        save_file({"linear.weight": torch.randn(outputs, inputs) / inputs ** 0.5},
                  str(dense / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def gemma(gemma_dir):
    return Encoder.load(str(gemma_dir), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def gemma_st(gemma_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gemma_dir), device="cpu")


def test_embeddinggemma_family_and_prompts(gemma):
    """Matched by its bidirectional Gemma 3 config; its prompts come from its files."""
    method = gemma.method
    assert (method.name, method.attention, method.pooling, method.head) == (
        "embeddinggemma", "bidirectional", "mean", "tied")
    assert gemma.model.backbone.config.use_bidirectional_attention is True
    tok = gemma.tokenizer
    for is_query, prompt in ((True, GEMMA_QUERY), (False, GEMMA_DOCUMENT)):
        ids = gemma.input_ids(["wing flutter"], is_query=is_query)[0]
        assert ids == tok(prompt + "wing flutter")["input_ids"]
        assert tok.unk_token_id not in ids


@pytest.mark.parametrize("side", ["query", "document"])
def test_embeddinggemma_sentence_embedding_is_sentence_transformers(gemma, gemma_st, side):
    """Pooled states through Dense, Dense, Normalize equal sentence-transformers' encode of the
    same texts with the same named prompt (batched, padded)."""
    got = gemma.sentence_embedding(gemma.embed(TEXTS, is_query=side == "query"))
    expected = gemma_st.encode(TEXTS, prompt_name=side, convert_to_numpy=True)
    assert got.shape == expected.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_embeddinggemma_prompts_come_from_its_files(gemma_dir, tmp_path):
    """Prompts the folder's config_sentence_transformers.json names replace the family's
    (they are its authors'), and the recipe keeps the family's name."""
    from sentence_transformers import SentenceTransformer

    folder = shutil.copytree(gemma_dir, tmp_path / "embeddinggemma-qa")
    prompts = {"query": "task: question answering | query: ", "document": GEMMA_DOCUMENT}
    file = folder / "config_sentence_transformers.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "prompts": prompts}))
    encoder = Encoder.load(str(folder), device="cpu")
    assert (encoder.method.name, encoder.method.query_prompt) == (
        "embeddinggemma", "task: question answering | query: {text}")
    tok = encoder.tokenizer
    ids = encoder.input_ids(["wing flutter"], is_query=True)[0]
    assert ids == tok(prompts["query"] + "wing flutter")["input_ids"]
    assert tok.unk_token_id not in ids
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, prompt_name="query")
    np.testing.assert_allclose(encoder.sentence_embedding(encoder.embed(TEXTS, is_query=True)),
                               expected, rtol=1e-5, atol=1e-5)


def test_embeddinggemma_attention_is_bidirectional(gemma, gemma_dir):
    """The last word changes the first position's state: nothing causal is left; the same
    checkpoint run causal (an override) keeps it, so the probe does tell them apart."""
    tok = gemma.tokenizer
    first = [tok("wing flutter heat")["input_ids"], tok("wing flutter shell")["input_ids"]]

    def first_state(encoder, ids):
        with torch.no_grad():
            return encoder.model.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0, 0]

    assert not torch.allclose(first_state(gemma, first[0]), first_state(gemma, first[1]))
    causal = Encoder.load(str(gemma_dir), device="cpu", overrides={"attention": "causal"})
    assert causal.method.name == "embeddinggemma+"
    torch.testing.assert_close(first_state(causal, first[0]), first_state(causal, first[1]))


def test_embeddinggemma_special_token_past_the_rows(gemma):
    """Key tokens work (no IndexError on the id past the matrix) and never hold that token."""
    rows = gemma.model.vocab_size
    assert gemma.tokenizer.convert_tokens_to_ids(PAST_THE_ROWS) == rows
    tokens = gemma.key_tokens("wing flutter at supersonic speed", top_k=5)
    assert len(tokens) == 5 and PAST_THE_ROWS not in [t for t, _ in tokens]
    bags = gemma.encode_document(TEXTS)
    assert bags.shape == (len(TEXTS), rows) and bags.indices.max() < rows


def test_embeddinggemma_dense_baseline_is_cosine_over_its_sentence_embeddings(
        gemma, gemma_st, tmp_path):
    """The dense side of an index built with it ranks and scores like cosine over
    sentence-transformers' embeddings (documents with the document prompt, queries with the
    query one)."""
    docs = [(f"d{i}", text) for i, text in enumerate(TEXTS)]
    build_index(docs, gemma, tmp_path / "idx", pc1_strength=0.0, progress=False)
    searcher = DenseSearcher.from_index(tmp_path / "idx")
    documents = gemma_st.encode(TEXTS, prompt_name="document", convert_to_numpy=True)
    for query in ("heat transfer wing", "rocket nozzle"):
        vector = gemma_st.encode([query], prompt_name="query", convert_to_numpy=True)[0]
        cosine = documents @ vector / np.linalg.norm(documents, axis=1) / np.linalg.norm(vector)
        hits = searcher.search(query, k=len(docs))
        assert [hit.doc_id for hit in hits] == [f"d{i}" for i in np.argsort(-cosine)]
        np.testing.assert_allclose([hit.score for hit in hits], np.sort(cosine)[::-1],
                                   atol=1e-5)


def test_a_folder_saved_by_sentence_transformers_6_loads(gemma_dir, tmp_path):
    """sentence-transformers 6 writes its Pooling config as {"pooling_mode": "mean"}; a folder
    it saved should load with that pooling."""
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(str(gemma_dir), device="cpu").save(str(tmp_path / "saved"))
    pooling = json.loads((tmp_path / "saved" / "1_Pooling" / "config.json").read_text())
    assert pooling.get("pooling_mode") == "mean"
    assert Encoder.load(str(tmp_path / "saved"), device="cpu").method.pooling == "mean"


# ------------------------------------------------------------------------------ Qwen3-Embedding
@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """Qwen3-Embedding-0.6B's layout: a Qwen3ForCausalLM with tied embeddings, last-token
    Pooling, the instruction as query prompt and none for documents; no BOS."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder = tmp_path_factory.mktemp("qwen") / "Qwen3-Embedding-tiny"
    tok = tokenizer(bos=False)
    config = Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=8, max_position_embeddings=512, tie_word_embeddings=True,
                         **special_ids(tok))
    torch.manual_seed(1)
    save(Qwen3ForCausalLM(config), tok, folder)
    assert json.loads((folder / "config.json").read_text())["architectures"] == [
        "Qwen3ForCausalLM"]
    write_st_files(folder, "lasttoken", ["Normalize"], {"query": QWEN_QUERY, "document": ""})
    return folder


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return Encoder.load(str(qwen_dir), device="cpu", batch_size=8)


def test_qwen3_embedding_recipe_and_ids(qwen):
    method = qwen.method
    assert (method.name, method.pooling, method.append_eos, method.padding_side) == (
        "qwen3-embedding", "last", True, "left")
    tok = qwen.tokenizer
    prompt = plain_ids(tok, QWEN_QUERY)
    for is_query in (True, False):
        for text, ids in zip(TEXTS, qwen.input_ids(TEXTS, is_query=is_query), strict=True):
            expected = (prompt if is_query else []) + plain_ids(tok, text) + [tok.eos_token_id]
            assert ids == expected
    assert tok.unk_token_id not in prompt


@pytest.mark.parametrize("is_query", [True, False])
def test_qwen3_embedding_is_the_eos_state_alone_and_batched(qwen, qwen_dir, is_query):
    """The embedding is the last (EOS) hidden state of a plain forward over exactly those ids,
    alone; a left-padded batch gives the same."""
    from transformers import Qwen3ForCausalLM

    reference = Qwen3ForCausalLM.from_pretrained(qwen_dir, dtype=torch.float32).eval().model
    batched = qwen.embed(TEXTS, is_query=is_query)
    for row, ids in enumerate(qwen.input_ids(TEXTS, is_query=is_query)):
        expected = last_hidden(reference, ids)[-1].numpy()
        np.testing.assert_allclose(qwen.embed([TEXTS[row]], is_query=is_query)[0], expected,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batched[row], expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ SGPT
def save_gpt_neo(folder: Path, seed: int, causal: bool, hidden: int = 32,
                 extra_rows: int = 0) -> Path:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM, GPTNeoModel

    tok = tokenizer(bos=False)
    config = GPTNeoConfig(vocab_size=len(tok) + extra_rows, hidden_size=hidden, num_layers=2,
                          num_heads=4, attention_types=[[["global", "local"], 1]],
                          intermediate_size=64, window_size=16, max_position_embeddings=512,
                          tie_word_embeddings=False, **special_ids(tok))
    torch.manual_seed(seed)
    model = unit_head(GPTNeoForCausalLM(config)) if causal else GPTNeoModel(config)
    return save(model, tok, folder)


@pytest.fixture(scope="module")
def sgpt_dirs(tmp_path_factory):
    """(embedder, backbone): a bare GPTNeoModel named as SGPT's specb checkpoints, and the
    GPT-Neo causal LM (untied head) whose LM head decodes it."""
    root = tmp_path_factory.mktemp("neo")
    embedder = save_gpt_neo(root / "SGPT-tiny-weightedmean-msmarco-specb-bitfit", 2, False)
    write_st_files(embedder, "weightedmean_tokens", [], None)
    return embedder, save_gpt_neo(root / "gpt-neo-tiny", 3, True)


@pytest.fixture(scope="module")
def sgpt(sgpt_dirs):
    return Encoder.load(str(sgpt_dirs[0]), device="cpu", batch_size=8,
                        overrides={"head": str(sgpt_dirs[1])})


def test_sgpt_decodes_through_its_backbones_lm_head(sgpt, sgpt_dirs):
    from transformers import GPTNeoForCausalLM, GPTNeoModel

    backbone = GPTNeoForCausalLM.from_pretrained(sgpt_dirs[1], dtype=torch.float32)
    own = GPTNeoModel.from_pretrained(sgpt_dirs[0], dtype=torch.float32)
    assert (sgpt.method.name, sgpt.method.head) == ("sgpt+", str(sgpt_dirs[1]))
    torch.testing.assert_close(sgpt.model.projection_weight, backbone.lm_head.weight)
    assert sgpt.model.projection_transform is None and sgpt.model.projection_bias is None
    assert not torch.allclose(backbone.lm_head.weight, own.wte.weight)
    assert not torch.allclose(backbone.lm_head.weight, backbone.transformer.wte.weight)


@pytest.mark.parametrize(("is_query", "brackets"), [(True, "[]"), (False, "{}")])
def test_sgpt_brackets_and_weighted_mean(sgpt, sgpt_dirs, is_query, brackets):
    """Queries in [ ], documents in { }; position-weighted mean of a plain forward."""
    from transformers import GPTNeoModel

    reference = GPTNeoModel.from_pretrained(sgpt_dirs[0], dtype=torch.float32).eval()
    tok = sgpt.tokenizer
    got = sgpt.embed(TEXTS, is_query=is_query)
    for row, text in enumerate(TEXTS):
        ids = tok(f"{brackets[0]}{text}{brackets[1]}")["input_ids"]
        assert sgpt.input_ids([text], is_query=is_query)[0] == ids
        assert tok.convert_ids_to_tokens([ids[0], ids[-1]]) == list(brackets)
        expected = pool(hidden_states(reference, ids), "weighted_mean").numpy()
        np.testing.assert_allclose(got[row], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("hidden", "extra_rows", "shapes"),
                         [(48, 0, ("width 48", "width 32")), (32, 5, ("{b} tokens", "{e} tokens"))])
def test_a_backbone_of_another_shape_is_refused(sgpt_dirs, tmp_path, hidden, extra_rows, shapes):
    other = save_gpt_neo(tmp_path / "gpt-neo-other", 4, True, hidden, extra_rows)
    rows = len(tokenizer(bos=False))
    with pytest.raises(ModelLoadError) as raised:
        Encoder.load(str(sgpt_dirs[0]), device="cpu", overrides={"head": str(other)})
    message = str(raised.value)
    for shape in shapes:
        assert shape.format(b=rows + extra_rows, e=rows) in message
    assert str(other) in message


def test_sgpt_index_records_the_head_and_reloads_it(sgpt, sgpt_dirs, tmp_path):
    """The backbone head is stored in the manifest's recipe; the encoder reloaded from it
    decodes through the same head and gives the queries the same bags."""
    docs = [(f"d{i}", text) for i, text in enumerate(TEXTS)]
    build_index(docs, sgpt, tmp_path / "idx", pc1_strength=0.0, progress=False)
    index = SparseIndex.load(tmp_path / "idx")
    assert index.manifest.model.recipe["head"] == str(sgpt_dirs[1])
    reloaded = index_encoder(index)
    assert reloaded.method == sgpt.method
    torch.testing.assert_close(reloaded.model.projection_weight, sgpt.model.projection_weight)
    queries = ["heat transfer wing", "rocket nozzle gas"]
    expected = index_encoder(index, sgpt).encode_query(queries)
    got = reloaded.encode_query(queries)
    assert got.nnz > 0 and (got != expected).nnz == 0


def test_a_relative_head_is_recorded_so_that_it_reloads_elsewhere(sgpt_dirs, tmp_path,
                                                                  monkeypatch):
    embedder, backbone = sgpt_dirs
    monkeypatch.chdir(backbone.parent)
    encoder = Encoder.load(str(embedder), device="cpu", overrides={"head": f"./{backbone.name}"})
    build_index([("d1", "wing heat"), ("d2", "rocket gas")], encoder, tmp_path / "idx",
                pc1_strength=0.0, progress=False)
    monkeypatch.chdir(tmp_path)
    reloaded = index_encoder(SparseIndex.load(tmp_path / "idx"))
    torch.testing.assert_close(reloaded.model.projection_weight,
                               encoder.model.projection_weight)


# ------------------------------------------------------------------------------------ e5-mistral
def save_mistral(folder: Path, seed: int) -> Path:
    from transformers import MistralConfig, MistralForCausalLM

    tok = tokenizer()
    config = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=8, max_position_embeddings=512, sliding_window=None,
                           tie_word_embeddings=False, **special_ids(tok))
    torch.manual_seed(seed)
    return save(unit_head(MistralForCausalLM(config)), tok, folder)


@pytest.fixture(scope="module")
def mistral_dirs(tmp_path_factory):
    """(e5-mistral embedder, Mistral backbone, GritLM): three MistralForCausalLM folders."""
    root = tmp_path_factory.mktemp("mistral")
    return (save_mistral(root / "e5-mistral-tiny-instruct", 5),
            save_mistral(root / "Mistral-tiny-v0.1", 6), save_mistral(root / "GritLM-tiny", 7))


def test_e5_mistral_default_head_is_a_hub_id_refused_offline(mistral_dirs):
    with pytest.raises(ModelLoadError, match=r"mistralai/Mistral-7B-v0\.1"):
        Encoder.load(str(mistral_dirs[0]), device="cpu")


def test_the_offline_head_error_is_said_once(mistral_dirs):
    with pytest.raises(ModelLoadError) as raised:
        Encoder.load(str(mistral_dirs[0]), device="cpu")
    assert str(raised.value).count("could not load model") == 1


def test_e5_mistral_with_a_local_backbone(mistral_dirs):
    """With --head a local backbone: instruction + text + EOS, the EOS state pooled (left
    padding in batches), decoded through the backbone's LM head."""
    from transformers import MistralForCausalLM

    embedder, backbone, _ = mistral_dirs
    encoder = Encoder.load(str(embedder), device="cpu", batch_size=8,
                           overrides={"head": str(backbone)})
    method = encoder.method
    assert (method.name, method.pooling, method.append_eos, method.padding_side) == (
        "e5-mistral+", "last", True, "left")
    head = MistralForCausalLM.from_pretrained(backbone, dtype=torch.float32).lm_head.weight
    torch.testing.assert_close(encoder.model.projection_weight, head)
    reference = MistralForCausalLM.from_pretrained(embedder, dtype=torch.float32).eval()
    tok = encoder.tokenizer
    got = encoder.embed(TEXTS, is_query=True)
    for row, text in enumerate(TEXTS):
        ids = tok(E5_QUERY + text)["input_ids"] + [tok.eos_token_id]
        assert encoder.input_ids([text], is_query=True)[0] == ids
        expected = last_hidden(reference.model, ids)[-1].numpy()
        np.testing.assert_allclose(got[row], expected, rtol=1e-4, atol=1e-5)
    assert encoder.input_ids(["wing"])[0] == tok("wing")["input_ids"] + [tok.eos_token_id]


# ---------------------------------------------------------------------------------------- GritLM
def test_gritlm_bidirectional_is_refused_on_mistral(mistral_dirs):
    with pytest.raises(ModelLoadError, match="--attention causal"):
        Encoder.load(str(mistral_dirs[2]), device="cpu")


def test_gritlm_run_causal_pools_the_text_only(mistral_dirs):
    """pool_prompt off: the mean of the hidden states over the text's own positions of a
    forward over the whole prompt + text, for both sides, in a padded batch."""
    from transformers import MistralForCausalLM

    encoder = Encoder.load(str(mistral_dirs[2]), device="cpu", batch_size=8,
                           overrides={"attention": "causal"})
    assert (encoder.method.name, encoder.method.pool_prompt) == ("gritlm+", False)
    reference = MistralForCausalLM.from_pretrained(mistral_dirs[2], dtype=torch.float32)
    tok = encoder.tokenizer
    for is_query, prompt in ((True, GRIT_QUERY), (False, GRIT_DOCUMENT)):
        got = encoder.embed(TEXTS, is_query=is_query)
        for row, text in enumerate(TEXTS):
            ids = tok(prompt + text)["input_ids"]
            assert encoder.input_ids([text], is_query=is_query)[0] == ids
            hidden = last_hidden(reference.eval().model, ids)
            text_only = hidden[-len(plain_ids(tok, text)):].mean(dim=0).numpy()
            np.testing.assert_allclose(got[row], text_only, rtol=1e-4, atol=1e-5)
            assert not np.allclose(got[row], hidden.mean(dim=0).numpy(), atol=1e-3)


def test_llm2vec_layout(mistral_dirs, tmp_path):
    """LLM2Vec (a Mistral run bidirectionally by its authors' code) is matched by its name and
    refused as transformers' Mistral cannot switch its attention; run causal with a local
    backbone head, it pools the query's text without its instruction."""
    from transformers import MistralForCausalLM

    folder = tmp_path / "LLM2Vec-tiny-mntp-supervised"
    shutil.copytree(mistral_dirs[2], folder)
    with pytest.raises(ModelLoadError, match="--attention causal"):
        Encoder.load(str(folder), device="cpu")
    encoder = Encoder.load(str(folder), device="cpu", overrides={
        "attention": "causal", "head": str(mistral_dirs[1])})
    assert (encoder.method.pooling, encoder.method.pool_prompt) == ("mean", False)
    reference = MistralForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    text = TEXTS[0]
    ids = encoder.input_ids([text], is_query=True)[0]
    hidden = last_hidden(reference.model, ids)
    own = len(plain_ids(encoder.tokenizer, text))
    np.testing.assert_allclose(encoder.embed([text], is_query=True)[0],
                               hidden[-own:].mean(dim=0).numpy(), rtol=1e-4, atol=1e-5)


def test_gte_qwen2_layout(tmp_path):
    """gte-Qwen2 (a Qwen2ForCausalLM named gte-…-instruct): last token with EOS appended and
    the e5-style instruction; its bidirectional attention is refused on transformers' Qwen2,
    and run causal it is the EOS state of exactly those ids."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = tokenizer(bos=False)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         **special_ids(tok))
    torch.manual_seed(8)
    folder = save(Qwen2ForCausalLM(config), tok, tmp_path / "gte-Qwen2-tiny-instruct")
    with pytest.raises(ModelLoadError, match="--attention causal"):
        Encoder.load(str(folder), device="cpu")
    encoder = Encoder.load(str(folder), device="cpu", batch_size=8,
                           overrides={"attention": "causal"})
    recipe = encoder.method
    assert (recipe.pooling, recipe.append_eos, recipe.padding_side) == ("last", True, "left")
    reference = Qwen2ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    loaded = encoder.tokenizer  # the tokenizer class the folder loads as (Qwen2's)
    got = encoder.embed(TEXTS, is_query=True)
    for row, text in enumerate(TEXTS):
        prompted = recipe.query_prompt.replace("{text}", text)
        ids = [*plain_ids(loaded, prompted), loaded.eos_token_id]
        assert encoder.input_ids([text], is_query=True)[0] == ids
        np.testing.assert_allclose(got[row], last_hidden(reference.model, ids)[-1].numpy(),
                                   rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- MLM and MPNet
@pytest.fixture(scope="module")
def bert_mlm_dir(tmp_path_factory):
    """A SPLADE-like BertForMaskedLM saved with its MLM head (transform, tied decoder, a
    non-zero bias)."""
    from conftest import word_tokenizer
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path_factory.mktemp("mlm") / "splade-tiny"
    tok = word_tokenizer("bert")
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                        pad_token_id=tok.pad_token_id)
    torch.manual_seed(8)
    model = BertForMaskedLM(config)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.normal_(0.0, 1.0)
        model.cls.predictions.bias.normal_(0.0, 1.0)
        model.cls.predictions.transform.LayerNorm.weight.normal_(1.0, 0.5)
    return save(model, tok, folder)


def test_mlm_projection_is_the_whole_mlm_head(bert_mlm_dir):
    from transformers import BertForMaskedLM

    encoder = Encoder.load(str(bert_mlm_dir), device="cpu")
    assert encoder.model.head_description == "own MLM head"
    reference = BertForMaskedLM.from_pretrained(bert_mlm_dir, dtype=torch.float32).eval()
    tok = encoder.tokenizer
    pooled = encoder.embed(TEXTS)
    for row, text in enumerate(TEXTS):
        expected = pool(hidden_states(reference.bert, tok(text)["input_ids"]), "mean")
        np.testing.assert_allclose(pooled[row], expected.numpy(), rtol=1e-4, atol=1e-5)
    pooled = torch.from_numpy(pooled)
    logits = encoder.projector().logits(pooled)
    with torch.no_grad():
        expected = reference.cls(pooled)
    specials = tok.all_special_ids
    kept = torch.ones(logits.shape[1], dtype=torch.bool)
    kept[specials] = False
    assert torch.isneginf(logits[:, specials]).all()
    torch.testing.assert_close(logits[:, kept], expected[:, kept], rtol=1e-5, atol=1e-5)
    embeddings = reference.bert.embeddings.word_embeddings.weight
    assert not torch.allclose(logits[:, kept], (pooled @ embeddings.T)[:, kept], atol=1e-2)


@pytest.fixture(scope="module")
def mpnet_dir(tmp_path_factory):
    """all-mpnet-base-v2's layout: config says MPNetForMaskedLM but only the encoder's weights
    are saved (no lm_head), mean Pooling and Normalize."""
    from conftest import word_tokenizer
    from transformers import MPNetConfig, MPNetModel

    folder = tmp_path_factory.mktemp("mpnet") / "all-mpnet-tiny"
    tok = word_tokenizer("bert")
    config = MPNetConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=514, pad_token_id=tok.pad_token_id)
    torch.manual_seed(9)
    save(MPNetModel(config), tok, folder)
    saved = json.loads((folder / "config.json").read_text())
    saved["architectures"] = ["MPNetForMaskedLM"]
    (folder / "config.json").write_text(json.dumps(saved))
    write_st_files(folder, "mean_tokens", ["Normalize"], None)
    return folder


def test_mpnet_without_head_weights_falls_back_to_tied_embeddings(mpnet_dir):
    from sentence_transformers import SentenceTransformer
    from transformers import MPNetModel

    encoder = Encoder.load(str(mpnet_dir), device="cpu")
    reference = MPNetModel.from_pretrained(mpnet_dir, dtype=torch.float32)
    assert encoder.model.head_description == "tied input embeddings"
    assert encoder.model.projection_transform is None and encoder.model.projection_bias is None
    torch.testing.assert_close(encoder.model.projection_weight,
                               reference.embeddings.word_embeddings.weight)
    expected = SentenceTransformer(str(mpnet_dir), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(encoder.sentence_embedding(encoder.embed(TEXTS)), expected,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ModelLoadError, match="no LM head of its own"):
        Encoder.load(str(mpnet_dir), device="cpu", overrides={"head": "own"})


# ------------------------------------------------------------------------------------ overrides
@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A plain causal LM (the PromptEOL family) whose vocabulary holds the prompt words."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=False,
                         **special_ids(tok))
    torch.manual_seed(10)
    folder = tmp_path_factory.mktemp("llama") / "tiny-llama"
    return save(unit_head(LlamaForCausalLM(config)), tok, folder)


@pytest.fixture(scope="module")
def prompted(llama_dir):
    return Encoder.load(str(llama_dir), device="cpu", overrides={"query_prompt": "query : {text}"})


def test_a_query_prompt_override(prompted, llama_dir):
    """The override changes the query side only; the recipe's name says it was changed; the
    embedding is the last state of a plain forward over BOS, prompt, text."""
    from transformers import LlamaForCausalLM

    assert prompted.method.name == "prompteol+"
    assert prompted.method.query_prompt == "query : {text}"
    tok = prompted.tokenizer
    ids = prompted.input_ids(["wing flutter"], is_query=True)[0]
    assert ids == [tok.bos_token_id, *plain_ids(tok, "query :"), *plain_ids(tok, "wing flutter")]
    assert tok.unk_token_id not in ids
    reference = LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()
    np.testing.assert_allclose(prompted.embed(["wing flutter"], is_query=True)[0],
                               last_hidden(reference.model, ids)[-1].numpy(), rtol=1e-4,
                               atol=1e-5)
    document = prompted.input_ids(["wing flutter"])[0]
    assert document == tok('This sentence : "wing flutter" means in one word:"')["input_ids"]


def test_an_override_is_stored_in_the_index_and_reloaded(prompted, tmp_path):
    docs = [(f"d{i}", text) for i, text in enumerate(TEXTS)]
    build_index(docs, prompted, tmp_path / "idx", pc1_strength=0.0, progress=False)
    index = SparseIndex.load(tmp_path / "idx")
    assert index.manifest.model.recipe["query_prompt"] == "query : {text}"
    assert index.manifest.model.recipe["name"] == "prompteol+"
    assert index_encoder(index).method == prompted.method


def test_bad_overrides_are_refused(llama_dir):
    with pytest.raises(TokretrieveError, match="unknown recipe field") as raised:
        Encoder.load(str(llama_dir), device="cpu", overrides={"bogus": 1})
    assert all(field in str(raised.value) for field in RECIPE_FIELDS)
    with pytest.raises(TokretrieveError, match="at most one"):
        Encoder.load(str(llama_dir), device="cpu",
                     overrides={"query_prompt": "{text} and {text}"})
    long_prompt = {"query_prompt": "query " * 20 + "{text}"}
    Encoder.load(str(llama_dir), device="cpu", max_length=16)  # PromptEOL alone fits
    with pytest.raises(TokretrieveError, match="leaves no room for text"):
        Encoder.load(str(llama_dir), device="cpu", max_length=16, overrides=long_prompt)


def test_the_family_is_read_from_the_checkpoints_own_name():
    """A plain Mistral from the hub cache (a snapshot folder named by a commit hash that holds
    'e5') or a Llama under a folder named after an experiment stays a plain causal LM, and a
    hash with '8b' gives Qwen3-Embedding-0.6B no 8B backbone."""
    from types import SimpleNamespace

    from tokretrieve.encoding.recipes import family_recipe

    def causal(kind: str, architecture: str):
        return SimpleNamespace(model_type=kind, architectures=[architecture])

    mistral = causal("mistral", "MistralForCausalLM")
    snapshot = "/hub/models--mistralai--Mistral-7B-v0.1/snapshots/9e5a7c0d41"
    assert family_recipe(snapshot, mistral).name == "prompteol"
    assert family_recipe("/runs/sgpt-vs-gritlm/llama", causal("llama", "LlamaForCausalLM")
                         ).name == "prompteol"
    qwen = causal("qwen3", "Qwen3ForCausalLM")
    assert family_recipe("/hub/models--Qwen--Qwen3-Embedding-0.6B/snapshots/0a8b1c", qwen
                         ).head == "auto"


def test_cli_index_stores_the_override_and_recipes_lists_every_family(llama_dir, tmp_path,
                                                                       capsys):
    corpus = write_beir(tmp_path / "beir")
    output = tmp_path / "idx"
    assert main(["index", str(corpus), "--model", str(llama_dir), "--query-prompt",
                 "query : {text}", "--output", str(output), "--bag-size", "8",
                 "--pc1-strength", "0"]) == 0
    recipe = SparseIndex.load(output).manifest.model.recipe
    assert (recipe["name"], recipe["query_prompt"]) == ("prompteol+", "query : {text}")
    capsys.readouterr()
    assert main(["recipes"]) == 0
    printed = capsys.readouterr().out
    assert all(family.label in printed for family in FAMILIES)
