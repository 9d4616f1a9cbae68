"""tokretrieve.encoding.vocabulary: variant maps against the test vocabulary's known groups."""

from __future__ import annotations

from refimpl import VARIANT_GROUPS

from tokretrieve.encoding.vocabulary import variant_map


def test_variant_map_groups_case_and_boundary_markers(tiny_encoder):
    """variant_map sends every variant to the plain lower-case word's id and leaves
    every other token alone."""
    tokenizer = tiny_encoder("llama", "prompteol").tokenizer
    vocab = tokenizer.get_vocab()
    mapping = variant_map(tokenizer, len(vocab))
    grouped = {}
    for word, variants in VARIANT_GROUPS.items():
        for variant in variants:
            assert mapping[vocab[variant]] == vocab[word]
            grouped[vocab[variant]] = vocab[word]
    for token_id in range(len(vocab)):
        assert mapping[token_id] == grouped.get(token_id, token_id)
