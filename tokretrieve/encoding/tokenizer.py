"""The tokenizer without the model: an index's saved tokenizer, and tokens shown to a reader.

Tokenized queries need no model weights, so they should not pay for loading them either:
importing torch and transformers takes about 2 s, several thousand times the search itself. An
index saves its tokenizer with transformers' `save_pretrained`; when that tokenizer is one of
transformers' fast tokenizers (its `tokenizer.json` run by the `tokenizers` library, which
transformers wraps), `load_tokenizer` runs the same file with `tokenizers` alone, in a few tens
of milliseconds. `SavedTokenizer` offers the part of the transformers tokenizer API that
tokretrieve calls on a query path, with the same ids and texts: tests/test_encoding_tokenizer.py
checks it against transformers on every tokenizer at hand. Any other tokenizer (a slow one, a
class that changes what it reads, a decoder that cleans spaces up) loads through transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Tokenizer classes whose transformers implementation encodes and decodes with the saved
# tokenizer.json as it is (checked against transformers by tests/test_encoding_tokenizer.py).
FAST_CLASSES = frozenset({"BertTokenizer", "GemmaTokenizer", "MPNetTokenizer",
                          "PreTrainedTokenizerFast", "TokenizersBackend"})

# The special tokens transformers names in a tokenizer_config.json (all_special_ids).
_NAMED_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                  "mask_token")


class SavedTokenizer:
    """A saved fast tokenizer run by `tokenizers` alone, with the transformers methods that
    tokretrieve's query path calls (`__call__` without special tokens, `all_special_ids`,
    `decode`, `convert_ids_to_tokens`, `get_vocab`, `len`)."""

    def __init__(self, backend, all_special_ids: list[int]):
        self.backend = backend
        self.backend.no_truncation()  # transformers sets both per call; a saved file may hold
        self.backend.no_padding()  # its last settings
        self.all_special_ids = all_special_ids

    def __call__(self, texts: Sequence[str], add_special_tokens: bool = False,
                 truncation: bool = False, max_length: int | None = None
                 ) -> dict[str, list[list[int]]]:
        if add_special_tokens:
            raise ValueError("SavedTokenizer encodes without special tokens only")
        encoded = [e.ids for e in self.backend.encode_batch(list(texts),
                                                            add_special_tokens=False)]
        if truncation and max_length is not None:
            encoded = [ids[:max_length] for ids in encoded]
        return {"input_ids": encoded}

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.backend.decode(list(token_ids), skip_special_tokens=False)

    def convert_ids_to_tokens(self, token_ids: Sequence[int]) -> list[str | None]:
        return [self.backend.id_to_token(int(i)) for i in token_ids]

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)


def load_tokenizer(folder: str | Path):
    """A tokenizer saved in a local folder, alone: the cheap query path needs no model weights.
    A fast tokenizer of a known class runs on `tokenizers` (SavedTokenizer); any other loads
    through transformers, from local files only: transformers takes a path it cannot find for
    a hub repo name and spends its retries asking the hub for it."""
    folder = Path(folder)
    saved = _saved_fast(folder)
    if saved is not None:
        return saved
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _saved_fast(folder: Path) -> SavedTokenizer | None:
    """The folder's tokenizer as a SavedTokenizer, or None where transformers could read it
    otherwise: no tokenizer.json, another class or backend, space clean-up on decode, or the
    special-token files of older transformers beside the config."""
    file, config_file = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if not (file.is_file() and config_file.is_file()) or any(
            (folder / name).exists() for name in ("special_tokens_map.json", "added_tokens.json")):
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # transformers says what is wrong with it
    if (not isinstance(config, dict) or config.get("backend") != "tokenizers"
            or config.get("tokenizer_class") not in FAST_CLASSES
            or config.get("clean_up_tokenization_spaces")):
        return None
    special = _special_tokens(config)
    if special is None:
        return None
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_file(str(file))
    except Exception:  # tokenizers raises a plain Exception for a file it cannot read
        return None  # transformers reports it in its words
    ids = [backend.token_to_id(token) for token in dict.fromkeys(special)]
    if None in ids:
        return None  # transformers would add the missing token to the vocabulary
    return SavedTokenizer(backend, ids)


def _special_tokens(config: dict) -> list[str] | None:
    """The special tokens of a tokenizer_config.json as transformers 5 lists them
    (all_special_tokens): the named ones, then the model-specific ones (image_token and the
    like, in the file's order), then the extra ones; None for a form whose reading is not
    checked against transformers (a token written as an object, extra tokens given by name or
    under both of their names, model_specific_special_tokens other than the file's own)."""
    extra_keys = [key for key in ("extra_special_tokens", "additional_special_tokens")
                  if key in config]
    extra = config[extra_keys[0]] if len(extra_keys) == 1 else None if extra_keys else []
    named = [config.get(key) for key in _NAMED_SPECIAL]
    explicit = config.get("model_specific_special_tokens") or {}
    if (not isinstance(extra, list) or not isinstance(explicit, dict)
            or not all(value is None or isinstance(value, str) for value in named)
            or not all(isinstance(value, str) for value in [*extra, *explicit.values()])):
        return None
    # (add_bos_token and the like end in _token too, but are switches, not tokens)
    model_specific = {key: value for key, value in config.items() if key.endswith("_token")
                      and key not in _NAMED_SPECIAL and isinstance(value, str)}
    if explicit and explicit != model_specific:
        return None  # transformers 5 reads the two together in ways not checked here
    return [value for value in named if value is not None] + list(model_specific.values()) + extra


def bag_tokens(tokenizer, token_ids: np.ndarray, weights: np.ndarray) -> list[tuple[str, float]]:
    """Readable (token, weight) pairs, heaviest first."""
    order = np.argsort(-np.asarray(weights), kind="stable")
    return [(token_text(tokenizer, int(token_ids[i])), float(weights[i])) for i in order]


def token_text(tokenizer, token_id: int) -> str:
    """A token as a reader sees it: decoded, with the word-boundary space made visible as '_'."""
    text = tokenizer.decode([token_id])
    return "_" + text[1:] if text.startswith(" ") and len(text) > 1 else text
