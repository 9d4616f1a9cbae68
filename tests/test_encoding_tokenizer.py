"""tokretrieve.encoding.tokenizer: a saved fast tokenizer run by `tokenizers` alone gives what
transformers gives for the same folder (ids, special ids, tokens, decoded texts, the query
bags), on every fast tokenizer at hand; other folders load through transformers; and tokenized
queries, from Python and from the command line, import neither torch nor transformers (nor
FAISS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CRANFIELD, word_tokenizer

from tokretrieve.encoding.literal import MAX_LITERAL_TOKENS, token_counts
from tokretrieve.encoding.tokenizer import SavedTokenizer, load_tokenizer
from tokretrieve.errors import ModelLoadError

ODD_TEXTS = [
    "", " ", "Café naïve résumé — 東京 ☃ 🙂 ﬁ ß ÀÉÎ", "don't it's ,.?! \t tabs  double  space",
    "[UNK] [CLS] [SEP] [MASK] [PAD] <s> </s> <unk> <pad> <mask> <|im_start|> <|endoftext|>",
    "wing " * 700,  # past the truncation length
]


def _texts() -> list[str]:
    texts = list(ODD_TEXTS)
    if (CRANFIELD / "corpus.jsonl").is_file():
        with (CRANFIELD / "corpus.jsonl").open() as lines:
            texts += [json.loads(line)["text"] for _, line in zip(range(300), lines, strict=False)]
        with (CRANFIELD / "queries.jsonl").open() as lines:
            texts += [json.loads(line)["text"] for line in lines]
    return texts


def _saved(kind: str, folder: Path):
    """The tokenizer of `kind`, saved as an index saves its own (save_pretrained)."""
    if kind in ("llama", "bert"):
        tokenizer = word_tokenizer(kind)
    elif kind == "imported":
        from tokretrieve.interop.imported import _word_tokenizer

        tokenizer = _word_tokenizer({"wing": 0, "flutter": 1, "⟦7⟧": 2}, 5)
    else:
        from tokretrieve.encoding.models import load_model_tokenizer

        try:
            tokenizer = load_model_tokenizer(kind)
        except ModelLoadError as error:
            pytest.skip(f"{kind} is not installed here: {error}")
    tokenizer.save_pretrained(folder)
    return folder


# Every tokenizer at hand but SPLADE-tiny's, whose config asks for clean-up on decode (it loads
# through transformers: test_other_tokenizers_load_through_transformers).
@pytest.mark.parametrize("kind", ["llama", "bert", "imported", "minilm", "mpnet", "smollm2",
                                  "gemma3", "embeddinggemma"])
def test_saved_tokenizer_equals_transformers(kind, tmp_path):
    """Each of these tokenizers takes the fast path, and every answer the query path reads
    from it equals transformers' answer for the same folder."""
    from transformers import AutoTokenizer

    folder = _saved(kind, tmp_path / kind)
    fast = load_tokenizer(folder)
    reference = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert isinstance(fast, SavedTokenizer)
    texts = [" " + text.strip() for text in _texts()]
    options = dict(add_special_tokens=False, truncation=True, max_length=MAX_LITERAL_TOKENS)
    assert fast(texts, **options)["input_ids"] == reference(texts, **options)["input_ids"]
    assert fast.all_special_ids == reference.all_special_ids
    assert len(fast) == len(reference)
    assert fast.get_vocab() == reference.get_vocab()
    ids = list(range(len(reference) + 2))  # past the vocabulary too
    assert fast.convert_ids_to_tokens(ids) == reference.convert_ids_to_tokens(ids)
    assert [fast.decode([i]) for i in ids] == [reference.decode([i]) for i in ids]
    vocab_size = len(reference)
    ours = token_counts(fast, _texts(), vocab_size)
    theirs = token_counts(reference, _texts(), vocab_size)
    assert ours.nnz > 0 and (ours != theirs).nnz == 0


def _edited_config(tmp_path: Path, **changes) -> Path:
    folder = _saved("bert", tmp_path / "bert")
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.update(changes)
    config_file.write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("changes", [
    {"clean_up_tokenization_spaces": True},  # decode would clean spaces up
    {"tokenizer_class": "BertTokenizerFast"},  # a class name not checked against the file
    {"extra_special_tokens": {"image": "[MASK]"}},  # extra tokens given by name
    {"image_token": "wing", "model_specific_special_tokens": {"audio_token": "flutter"}},
    {"extra_special_tokens": [], "additional_special_tokens": ["wing"]},  # both names
    {"unk_token": "no such token"},  # transformers would add it to the vocabulary
])
def test_other_tokenizers_load_through_transformers(changes, tmp_path):
    """A folder the fast path does not know how transformers reads is left to transformers."""
    tokenizer = load_tokenizer(_edited_config(tmp_path, **changes))
    assert not isinstance(tokenizer, SavedTokenizer)


def test_older_special_token_files_load_through_transformers(tmp_path):
    folder = _saved("bert", tmp_path / "bert")
    (folder / "special_tokens_map.json").write_text(json.dumps({"unk_token": "[UNK]"}))
    assert not isinstance(load_tokenizer(folder), SavedTokenizer)


@pytest.mark.parametrize("changes", [
    {"additional_special_tokens": ["wing"]},
    {"extra_special_tokens": ["wing", "flutter"]},
    {"image_token": "wing", "audio_token": "flutter", "add_bos_token": True},  # model-specific
    {"image_token": "wing", "model_specific_special_tokens": {"image_token": "wing"}},
])
def test_special_ids_equal_transformers(changes, tmp_path):
    """Extra special tokens under either name, and model-specific ones, give transformers'
    special ids."""
    from transformers import AutoTokenizer

    folder = _edited_config(tmp_path, **changes)
    fast = load_tokenizer(folder)
    assert isinstance(fast, SavedTokenizer)
    reference = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert fast.all_special_ids == reference.all_special_ids


def test_special_tokens_must_be_encoded_without(tmp_path):
    fast = load_tokenizer(_saved("bert", tmp_path / "bert"))
    with pytest.raises(ValueError, match="without special tokens"):
        fast(["wing"], add_special_tokens=True)


_PROBE = """
import json, sys
from tokretrieve.cli import main
from tokretrieve import SparseSearcher
hits = SparseSearcher.from_index(sys.argv[1], mode="tokens").search(sys.argv[2], k=3)
code = main(["search", "--index", sys.argv[1], "--mode", "tokens", sys.argv[2]])
print(json.dumps({"hits": [[h.doc_id, h.score, h.matched] for h in hits], "code": code,
                  "loaded": sorted({"faiss", "torch", "transformers"} & set(sys.modules))}))
"""


@pytest.mark.parametrize("built", ["log1p_uint8"], indirect=True)
def test_tokenized_queries_load_no_model_library(built):
    """A fresh interpreter searching with tokenized queries, from Python and from the command
    line, imports neither torch nor transformers (nor FAISS, which only the dense index needs),
    and finds what the searcher finds with transformers' tokenizer in this process."""
    from transformers import AutoTokenizer

    from tokretrieve.search import SparseSearcher, TokenQueryEncoder

    index, _, _ = built
    folder = Path(index.path) / index.manifest.contents.base / "tokenizer"
    reference = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    query = " ".join(reference.convert_ids_to_tokens(index.document_bag(0)[0].tolist()))
    run = subprocess.run([sys.executable, "-c", _PROBE, str(index.path), query],
                         capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [] and report["code"] == 0
    expected = SparseSearcher(index, TokenQueryEncoder.for_index(index, tokenizer=reference),
                              reference).search(query, k=3)
    assert expected
    assert [[h.doc_id, h.score, [list(m) for m in h.matched]] for h in expected] == \
        report["hits"]
