"""tokretrieve.encoding.checkpoint: interrupted builds resume from their saved chunks instead
of re-encoding everything."""

from __future__ import annotations

import numpy as np
import pytest

from tokretrieve import SparseIndex, build_index
from tokretrieve.encoding.checkpoint import encode_resumable
from tokretrieve.index.generations import CHECKPOINT

TEXTS = [f"wing lift drag flow {'heat ' * (i % 4)}shock" for i in range(10)]
IDS = [f"d{i}" for i in range(10)]


class Interrupted(Exception):
    pass


def counting(encoder, fail_on_call=None):
    """Wrap encoder.embed to count the texts it encodes and fail on a given call."""
    original, seen = type(encoder).embed.__get__(encoder), []

    def embed(texts, **options):
        if fail_on_call is not None and len(seen) + 1 == fail_on_call:
            raise Interrupted
        seen.append(len(texts))
        return original(texts, **options)

    return embed, seen


def test_resume_encodes_only_the_missing_chunks(tiny_encoder, tmp_path, monkeypatch):
    encoder = tiny_encoder("llama", "prompteol")
    folder = tmp_path / ".idx.encoding"
    embed, seen = counting(encoder, fail_on_call=3)
    monkeypatch.setattr(encoder, "embed", embed)
    with pytest.raises(Interrupted):
        encode_resumable(encoder, IDS, TEXTS, folder, progress=False, chunk_size=4)
    assert seen == [4, 4]
    assert sorted(p.name for p in folder.glob("chunk-*.npy")) == ["chunk-000000.npy",
                                                                  "chunk-000001.npy"]
    embed, seen = counting(encoder)
    monkeypatch.setattr(encoder, "embed", embed)
    resumed = encode_resumable(encoder, IDS, TEXTS, folder, progress=False, chunk_size=4)
    assert seen == [2]  # only the last, never-saved chunk
    monkeypatch.undo()
    np.testing.assert_allclose(resumed, encoder.embed(TEXTS), rtol=1e-5, atol=1e-6)


def test_other_documents_discard_stale_chunks(tiny_encoder, tmp_path, monkeypatch):
    encoder = tiny_encoder("llama", "prompteol")
    folder = tmp_path / ".idx.encoding"
    encode_resumable(encoder, IDS, TEXTS, folder, progress=False, chunk_size=4)
    changed = [*TEXTS[:-1], "shock wave"]
    embed, seen = counting(encoder)
    monkeypatch.setattr(encoder, "embed", embed)
    result = encode_resumable(encoder, IDS, changed, folder, progress=False, chunk_size=4)
    assert seen == [4, 4, 2]  # nothing reused: the saved chunks belong to other documents
    monkeypatch.undo()
    np.testing.assert_allclose(result, encoder.embed(changed), rtol=1e-5, atol=1e-6)


def test_build_removes_its_checkpoint(tiny_encoder, tmp_path):
    encoder = tiny_encoder("llama", "prompteol")
    path = tmp_path / "idx"
    build_index(list(zip(IDS, TEXTS, strict=True)), encoder.with_bags(bag_size=4), path,
                progress=False)
    assert not (path / CHECKPOINT).exists()
    assert len(SparseIndex.load(path)) == len(IDS)
