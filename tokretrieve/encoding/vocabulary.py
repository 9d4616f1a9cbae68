"""Token variants: one vocabulary entry per word, whatever its case or word-boundary marker.

An LM head spreads one word over several entries: 'The', 'the' and 'ĠThe' (GPT-2 style BPE marks
a leading space with 'Ġ', SentencePiece with '▁', WordPiece marks continuations with '##').
PromptEOL makes it worse for the cheap query path: the token predicted after an opening quote is
the no-space form ('heat'), while a tokenized query yields the word-initial form ('Ġheat'), so the
two would never meet. Mapping every entry to one canonical id per normalised form, in document
bags and in queries alike, lets them meet.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

BOUNDARY_MARKERS = ("Ġ", "▁", "##", " ")


def normalise_token(token: str) -> str:
    """The word a vocabulary entry spells, lower-cased, without boundary markers."""
    for marker in BOUNDARY_MARKERS:
        if token.startswith(marker) and len(token) > len(marker):
            token = token[len(marker):]
            break
    return token.lower()


def variant_map(tokenizer, vocab_size: int) -> np.ndarray:
    """For each token id, the smallest id spelling the same normalised word (int32, vocab_size).

    Ids the tokenizer does not know (padding rows of an LM head) map to themselves.
    """
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    canonical: dict[str, int] = {}
    mapping = np.arange(vocab_size, dtype=np.int32)
    for token_id, token in enumerate(tokens):
        if token is None:
            continue
        mapping[token_id] = canonical.setdefault(normalise_token(token), token_id)
    return mapping


def merge_variants(bags: sp.csr_matrix, token_map: np.ndarray | None) -> sp.csr_matrix:
    """Re-key bag columns through `token_map` (variant_map), summing the weights of merged
    variants; bags unchanged when there is no map."""
    if token_map is None:
        return bags
    merged = sp.csr_matrix((bags.data, token_map[bags.indices], bags.indptr), shape=bags.shape)
    merged.sum_duplicates()
    return merged
