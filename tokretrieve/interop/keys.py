"""Token keys: the strings that stand for vocabulary entries once bags leave tokretrieve.

Inside an index a token is an integer id; other engines key postings by strings, and each has
rules for them. Lucene's whitespace tokenizer (Anserini's `--pretokenized` JsonVectorCollection)
splits a term at any whitespace and cuts it at 255 UTF-16 units; OpenSearch's `rank_features`
reads a dot as an object path. A key that broke a rule would split or merge terms silently and
change every score it touches. So a key is the vocabulary's own token text where that is safe
for every target (readable: `Ġheat`, `##ing`, `▁slab`), and `⟦id⟧` otherwise; the mapped keys
are listed in the export's metadata (`TokenKeys.mapped`) and read back by `TokenKeys.ids`.

`style="ids"` gives `t<id>` keys for all tokens (PISA and tools that lowercase terms want
these; they also fit an index whose bags came without a tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tokretrieve.errors import TokretrieveError

KeyStyle = Literal["tokens", "ids"]
KEY_STYLES = ("tokens", "ids")
# Lucene's whitespace tokenizer keeps terms up to this many UTF-16 code units.
MAX_TERM_UNITS = 255
# Characters no exported key may hold: whitespace (Lucene splits there; Python's isspace covers
# Java's Character.isWhitespace), dots (OpenSearch object paths), and the mapped keys' brackets.
_UNSAFE = frozenset(".⟦⟧")


def mapped_key(token_id: int) -> str:
    """The key of a token whose own text is unsafe somewhere (whitespace, a dot, too long)."""
    return f"⟦{token_id}⟧"


def safe(text: str) -> bool:
    """Whether a token text is a key every target engine keeps as one term, unchanged."""
    return (bool(text) and len(text.encode("utf-16-le")) // 2 <= MAX_TERM_UNITS
            and not any(c.isspace() or c in _UNSAFE or not c.isprintable() for c in text))


@dataclass(frozen=True)
class TokenKeys:
    """The key of every token id, and the way back."""

    keys: tuple[str, ...]
    style: str

    @classmethod
    def from_vocabulary(cls, texts: Sequence[str], style: KeyStyle = "tokens") -> TokenKeys:
        """Keys for a vocabulary given as each id's token text (`convert_ids_to_tokens`)."""
        if style not in KEY_STYLES:
            raise TokretrieveError(f"unknown key style '{style}': choose one of "
                                   f"{', '.join(KEY_STYLES)}")
        if style == "ids":
            return cls(tuple(f"t{i}" for i in range(len(texts))), style)
        keys = tuple(text if isinstance(text, str) and safe(text) else mapped_key(i)
                     for i, text in enumerate(texts))
        if len(set(keys)) != len(keys):  # a tokenizer with two ids for one text
            seen: dict[str, int] = {}
            keys = tuple(mapped_key(i) if seen.setdefault(key, i) != i else key
                         for i, key in enumerate(keys))
        return cls(keys, style)

    @classmethod
    def for_tokenizer(cls, tokenizer, vocab_size: int, style: KeyStyle = "tokens") -> TokenKeys:
        """Keys of the first `vocab_size` ids of a Hugging Face tokenizer (ids past the
        tokenizer's own vocabulary, padding rows of an embedding matrix, get mapped keys)."""
        if style == "ids":
            return cls.from_vocabulary([""] * vocab_size, "ids")
        known = len(tokenizer)
        texts = tokenizer.convert_ids_to_tokens(list(range(min(known, vocab_size))))
        return cls.from_vocabulary([*texts, *[""] * (vocab_size - len(texts))], style)

    @property
    def mapped(self) -> dict[str, int]:
        """The keys that replace a token's own text, and their ids (shipped with an export)."""
        return {key: i for i, key in enumerate(self.keys) if key == mapped_key(i)}

    def ids(self) -> dict[str, int]:
        """Key -> token id, for reading exported bags back."""
        return {key: i for i, key in enumerate(self.keys)}
