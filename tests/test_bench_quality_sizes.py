"""bench.quality.sizes: an index folder's bytes split by what each file is, counted over the
segment folders of a written index (packed or raw lists alike)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality.sizes import index_folder_bytes
from tokretrieve import index_from_embeddings


@pytest.mark.parametrize("codec", ["raw", "packed"])
def test_index_folder_bytes_count_every_segment_file(tiny_encoder, tmp_path, codec):
    encoder = tiny_encoder("bert", "mean").with_bags(bag_size=8)
    embeddings = np.random.default_rng(3).standard_normal(
        (30, encoder.model.hidden_size)).astype(np.float32)
    path = tmp_path / "index"
    index = index_from_embeddings([f"d{i}" for i in range(30)], embeddings, encoder, path,
                                  pc1_strength=0.0, codec=codec)
    segment = path / index.manifest.contents.segments[0].name
    postings = sum(f.stat().st_size for f in segment.glob("postings_*.npy"))
    tokenizer = sum(f.stat().st_size for f in (path / index.manifest.contents.base
                                               / "tokenizer").rglob("*") if f.is_file())
    sizes = index_folder_bytes(path)
    assert sizes["postings"] == postings > 0
    assert sizes["doc_ids"] == (segment / "doc_ids.npy").stat().st_size
    assert sizes["embeddings"] == (segment / "embeddings.npy").stat().st_size
    assert sizes["tokenizer"] == tokenizer > 0
    assert sizes["search_total"] == postings + sizes["doc_ids"] + tokenizer
