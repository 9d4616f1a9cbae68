"""tokretrieve.index.live and build.add_documents: add, delete, update and compact, checked
against independently built indexes of the same documents.

The reference for any sequence of changes is an index built in one go, in memory, from the
live documents' embeddings with the changed index's own PC1 direction, λ and quantization scale
(the bags are then the same numbers, so results must be identical, scores included).
"""

from __future__ import annotations

import numpy as np
import pytest
from refimpl import random_texts

from tokretrieve import (
    DenseSearcher,
    SparseIndex,
    SparseSearcher,
    TokretrieveError,
    add_documents,
    build_index,
    compact_index,
    delete_documents,
    verify_index,
)
from tokretrieve.encoding.projection import PC1Adjustment, first_principal_direction
from tokretrieve.index.postings import encoded, postings_from_bags
from tokretrieve.index.sparse import in_memory

FIRST = [(f"a{i}", t) for i, t in enumerate(random_texts(14, seed=61, low=3, high=10))]
SECOND = [(f"b{i}", t) for i, t in enumerate(random_texts(9, seed=62, low=3, high=10))]
QUERIES = random_texts(6, seed=63, low=1, high=5)
BAGS = {"bag_size": 6, "weighting": "shifted"}


@pytest.fixture
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(**BAGS)


@pytest.fixture(params=["raw", "packed"])
def index_path(encoder, tmp_path, request):
    """An index of FIRST in blocks of 4 documents, its lists raw or packed: every change
    writes its segments in the index's codec and answers as a fresh (raw) build."""
    path = tmp_path / "idx"
    build_index(FIRST, encoder, path, segment_docs=4, codec=request.param, progress=False)
    return path


def answers(index, encoder, k=8):
    """What a user sees: ids, exact scores and matched tokens, in both sparse modes and dense."""
    out = []
    for mode in ("model", "tokens"):
        searcher = SparseSearcher.from_index(index, mode=mode,
                                             encoder=encoder if mode == "model" else None)
        out += [[(h.doc_id, h.score, h.matched) for h in searcher.search(q, k=k)]
                for q in QUERIES]
    dense = DenseSearcher.from_index(index, encoder=encoder)
    out += [[(h.doc_id, h.score) for h in dense.search(q, k=k)] for q in QUERIES]
    return out


def fresh(changed: SparseIndex, live_docs, encoder) -> SparseIndex:
    """An in-memory index built in one go from `live_docs` (in order) with the changed
    index's PC1 direction, λ and scale: the answer every change must reproduce. The
    documents' embeddings are the ones the changed index stored for them (embedding them again
    in other batches would move their last bits), their text is checked against them."""
    bags = changed.manifest.bags
    fitted = encoder.with_bags(adjustment=PC1Adjustment(np.asarray(changed.pc1_direction),
                                                        float(bags.pc1_strength)))
    embeddings = np.stack([changed.embeddings[changed.position(d)] for d, _ in live_docs])
    np.testing.assert_allclose(embeddings, encoder.embed([t for _, t in live_docs]),
                               rtol=1e-4, atol=1e-5)
    layout = changed.manifest.layout
    postings = postings_from_bags(fitted.bags(embeddings), layout.impacts,
                                  int(layout.segment_docs), scale=float(layout.scale))
    index = in_memory(changed.manifest, postings, np.array([d for d, _ in live_docs]),
                      embeddings, np.asarray(changed.pc1_direction), None)
    index.path = changed.path  # its tokenizer, for tokenized queries
    return index


def test_add_then_search_equals_a_fresh_build(encoder, index_path):
    added = add_documents(index_path, SECOND, encoder, progress=False)
    codec = added.manifest.layout.codec
    assert all(type(s.postings).codec == codec for s in added.segments)
    assert len(added) == len(FIRST) + len(SECOND)
    assert len(added.segments) == 2 and added.manifest.contents.generation == 2
    assert added.manifest.documents_digest is None  # no longer the digest of one corpus
    assert answers(added, encoder) == answers(fresh(added, FIRST + SECOND, encoder), encoder)
    assert verify_index(index_path) == []


def test_pc1_and_lambda_stay_the_index_s_and_drift_is_recorded(encoder, index_path):
    before = SparseIndex.load(index_path)
    added = add_documents(index_path, SECOND, encoder, progress=False)
    np.testing.assert_array_equal(added.pc1_direction, before.pc1_direction)
    assert added.manifest.bags.pc1_strength == before.manifest.bags.pc1_strength
    assert added.manifest.layout.scale == before.manifest.layout.scale
    drift = added.manifest.contents.segments[1].drift
    assert set(drift) == {"pc1_cosine", "norm_ratio", "saturated_weights"}
    new = np.asarray(added.segments[1].embeddings)
    own = first_principal_direction(new)  # the build's own definition of v1
    assert drift["pc1_cosine"] == pytest.approx(abs(float(own @ before.pc1_direction)),
                                                abs=1e-5)
    old = np.asarray(before.embeddings)
    assert drift["norm_ratio"] == pytest.approx(np.linalg.norm(new, axis=1).mean()
                                                / np.linalg.norm(old, axis=1).mean(), rel=1e-5)
    assert added.manifest.contents.segments[0].drift is None


def test_adding_an_existing_id_is_refused_naming_it_unless_update(encoder, index_path):
    with pytest.raises(TokretrieveError, match=r"already in .*'a3'"):
        add_documents(index_path, [("new", "text"), ("a3", "other text")], encoder,
                      progress=False)
    assert len(SparseIndex.load(index_path)) == len(FIRST)  # nothing committed
    changed = [("a3", SECOND[0][1])]
    updated = add_documents(index_path, changed, encoder, update=True, progress=False)
    assert len(updated) == len(FIRST)
    live = [d for d in FIRST if d[0] != "a3"] + changed
    assert answers(updated, encoder) == answers(fresh(updated, live, encoder), encoder)


def test_delete_hides_documents_from_every_query_mode(encoder, index_path):
    gone = ["a0", "a5", "a13"]
    deleted = delete_documents(index_path, gone)
    assert len(deleted) == len(FIRST) - 3 and deleted.manifest.doc_count == len(FIRST) - 3
    live = [d for d in FIRST if d[0] not in gone]
    assert answers(deleted, encoder, k=50) == answers(fresh(deleted, live, encoder), encoder,
                                                      k=50)
    with pytest.raises(TokretrieveError, match=r"not in .*'a0'"):
        delete_documents(index_path, ["a0"])  # already deleted
    with pytest.raises(TokretrieveError, match=r"not in .*'zz'"):
        delete_documents(index_path, ["a1", "zz"])
    assert len(SparseIndex.load(index_path)) == len(FIRST) - 3  # the refused call changed nothing


def test_compaction_answers_like_a_fresh_build_of_the_survivors(encoder, index_path):
    add_documents(index_path, SECOND, encoder, progress=False)
    delete_documents(index_path, ["a1", "b4", "a7"])
    add_documents(index_path, [("b4", FIRST[1][1])], encoder, progress=False)
    before = answers(SparseIndex.load(index_path), encoder)
    compacted = compact_index(index_path)
    assert len(compacted.segments) == 1 and len(compacted.deleted) == 0
    live = ([d for d in FIRST if d[0] not in ("a1", "a7")]
            + [d for d in SECOND if d[0] != "b4"] + [("b4", FIRST[1][1])])
    assert list(compacted.doc_ids) == [d for d, _ in live]
    reference = fresh(compacted, live, encoder)
    assert answers(compacted, encoder) == answers(reference, encoder) == before
    theirs = encoded(reference.postings, compacted.manifest.layout.codec).arrays()
    mine = compacted.postings.arrays()
    assert mine.keys() == theirs.keys()
    for name, array in theirs.items():
        np.testing.assert_array_equal(mine[name], array)
    assert verify_index(index_path) == []


def test_changes_refuse_bad_input_before_committing(encoder, index_path, tmp_path):
    with pytest.raises(TokretrieveError, match="no document ids"):
        delete_documents(index_path, [])
    with pytest.raises(TokretrieveError, match="duplicate ids 'x'"):
        add_documents(index_path, [("x", "one"), ("x", "two")], encoder, progress=False)
    with pytest.raises(TokretrieveError, match="holds no index"):
        delete_documents(tmp_path / "none", ["a"])
    delete_documents(index_path, [d for d, _ in FIRST])
    with pytest.raises(TokretrieveError, match=r"every document .* is deleted"):
        compact_index(index_path)
    assert SparseIndex.load(index_path).manifest.contents.generation == 2


def test_weights_past_the_index_scale_stay_at_the_top_level_and_are_counted():
    """Added bags quantized at an index's scale: a weight past 255 levels is stored as 255
    (never wrapped around to a small level) and counted by `saturated`."""
    import scipy.sparse as sp

    from tokretrieve.index.postings import saturated

    bags = sp.csr_matrix(np.array([[1.0, 0.0, 300.0], [255.0, 256.0, 2.0]], dtype=np.float32))
    postings = postings_from_bags(bags, "uint8", 4, scale=1.0)
    assert postings.to_bags().toarray().tolist() == [[1, 0, 255], [255, 255, 2]]
    assert saturated(bags, 1.0, "uint8") == 2 and saturated(bags, 2.0, "uint8") == 0
    assert saturated(bags, 1.0, "float32") == 0


def segment_files(index) -> set[str]:
    return {p.name for p in (index.path / index.manifest.contents.segments[-1].name).iterdir()
            if p.name.startswith("postings_")}


def test_compaction_can_store_the_lists_in_the_other_codec(encoder, index_path):
    """compact_index(codec=...) re-encodes the lists: same answers, the other codec's files,
    and documents added afterwards are written in it too."""
    index = SparseIndex.load(index_path)
    other = {"raw": "packed", "packed": "raw"}[index.manifest.layout.codec]
    before = answers(index, encoder)
    compacted = compact_index(index_path, codec=other)
    assert compacted.manifest.layout.codec == other
    assert answers(compacted, encoder) == before
    expected_files = {f"postings_{name}.npy" for name in compacted.postings.FILES}
    assert segment_files(compacted) == expected_files
    added = add_documents(index_path, SECOND, encoder, progress=False)
    assert added.manifest.layout.codec == other
    assert segment_files(added) == expected_files
    assert answers(added, encoder) == answers(fresh(added, FIRST + SECOND, encoder), encoder)
    assert verify_index(index_path) == []


def test_a_format_3_raw_index_is_packed_by_compaction(encoder, tmp_path):
    """An index of format 3 (raw lists, no codec in its manifest) becomes a packed index of
    format 5 without encoding anything again."""
    import json

    path = tmp_path / "old"
    build_index(FIRST, encoder, path, segment_docs=4, codec="raw", progress=False)
    before = answers(SparseIndex.load(path), encoder)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["postings_format"]["codec"]
    manifest["format_version"] = 3
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert SparseIndex.load(path).manifest.format_version == 3
    packed = compact_index(path, codec="packed")
    assert (packed.manifest.format_version, packed.manifest.layout.codec) == (5, "packed")
    assert segment_files(packed) == {"postings_indptr.npy", "postings_word_ptr.npy",
                                     "postings_words.npy"}
    assert answers(packed, encoder) == before
    assert verify_index(path) == []


def test_compaction_refuses_a_codec_that_cannot_hold_the_lists(encoder, tmp_path):
    path = tmp_path / "f32"
    build_index(FIRST, encoder, path, impacts="float32", progress=False)
    with pytest.raises(TokretrieveError, match="packed postings hold uint8 impacts"):
        compact_index(path, codec="packed")
    with pytest.raises(TokretrieveError, match="unknown postings codec 'zip'"):
        compact_index(path, codec="zip")
    index = SparseIndex.load(path)
    assert (index.manifest.contents.generation, index.manifest.layout.codec) == (1, "raw")
