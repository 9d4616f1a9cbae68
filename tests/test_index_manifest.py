"""tokretrieve.index.manifest: the records an index is described by, read back, refused when
damaged or of another format version, compared field by field to decide reuse; and the model
record, enforced where a model meets the index (index_encoder and the searchers)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from refimpl import random_texts

from tokretrieve import (
    DenseSearcher,
    Encoder,
    IndexFormatError,
    IndexManifest,
    SparseIndex,
    SparseSearcher,
    TokretrieveError,
    build_index,
    index_encoder,
)
from tokretrieve.build import reusable_index
from tokretrieve.corpus import documents_digest
from tokretrieve.index.manifest import UNRECORDED, BagRecord, ModelRecord, PostingsLayout

DOCS = [(f"old{i}", t) for i, t in enumerate(random_texts(12, seed=51, low=3, high=10))]
QUERIES = random_texts(4, seed=53, low=2, high=5)
BAGS = {"bag_size": 6, "weighting": "shifted"}
BUILD = {"pc1_strength": 0.0, "impacts": "float32", "progress": False}


def hits(searcher, query, k=5):
    return [(h.doc_id, round(h.score, 5), [t for t, _ in h.matched])
            for h in searcher.search(query, k=k)]


def results(index, encoder):
    """Both query modes, several queries (model mode with `encoder`)."""
    searchers = {"model": SparseSearcher.from_index(index, mode="model", encoder=encoder),
                 "tokens": SparseSearcher.from_index(index, mode="tokens")}
    return [hits(searchers[mode], q) for q in QUERIES for mode in ("model", "tokens")]


@pytest.fixture
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(**BAGS)


@pytest.fixture(scope="module")
def built(tiny_encoder, tmp_path_factory):
    """One index of DOCS (float32 impacts, λ = 0), built once, and its results."""
    encoder = tiny_encoder("llama", "prompteol").with_bags(**BAGS)
    path = tmp_path_factory.mktemp("manifest") / "idx"
    index = build_index(DOCS, encoder, path, **BUILD)
    return path, results(index, encoder)


@pytest.fixture
def old_index(built, tmp_path):
    """A fresh copy of the built index at tmp_path/idx (tests edit its manifest)."""
    source, _ = built
    path = tmp_path / "idx"
    shutil.copytree(source, path)
    return path


def read_json(path):
    return json.loads((path / "manifest.json").read_text())


def write_json(path, manifest):
    (path / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(path, **changes):
    write_json(path, {**read_json(path), **changes})


# ------------------------------------------------------------------------------ format checks
def test_other_format_version_is_refused(old_index):
    """An index written in another format version is refused, naming both versions."""
    edit_manifest(old_index, format_version=6)
    with pytest.raises(IndexFormatError, match=r"format version 6.*reads versions 2, 3, 4, 5"):
        SparseIndex.load(old_index)


def flatten(path):
    """Move a one-segment format-3 index's files to the folder's root, as formats 1 and 2
    kept them, and drop the format-3 keys from its manifest."""
    manifest = read_json(path)
    for entry in (manifest["base"], manifest["segments"][0]["name"]):
        for item in (path / entry).iterdir():
            item.rename(path / item.name)
        (path / entry).rmdir()
    for key in ("generation", "base", "segments", "deleted", "deleted_count", "files"):
        del manifest[key]
    manifest["format_version"] = 2
    write_json(path, manifest)


def write_format_1(index, path):
    """Rewrite an index folder in format 1 as the README described it: one token-major list,
    int32 document positions, float32 weights, no postings_format record."""
    flatten(path)
    csc = index.postings.to_bags().tocsc()
    csc.sort_indices()
    for name in ("postings_indptr", "postings_docs", "postings_impacts"):
        (path / f"{name}.npy").unlink()
    np.save(path / "postings_indptr.npy", csc.indptr.astype(np.int64))
    np.save(path / "postings_docs.npy", csc.indices.astype(np.int32))
    np.save(path / "postings_weights.npy", csc.data.astype(np.float32))
    manifest = read_json(path)
    del manifest["postings_format"]
    manifest["format_version"] = 1
    write_json(path, manifest)


def test_format_1_index_is_refused_with_a_rebuild_hint(built, old_index, encoder):
    """A format-1 folder is no longer read: every way in (the index, both searchers) refuses
    it with one IndexFormatError saying to rebuild, and leaves the folder as it was; a rebuild
    at that path replaces it and answers like the format-2 index of the same inputs."""
    _, expected = built
    path = old_index
    write_format_1(SparseIndex.load(path), path)
    files = sorted(p.name for p in path.iterdir())
    refusal = r"format version 1; this tokretrieve reads versions 2, 3, 4, 5: rebuild the index"
    with pytest.raises(IndexFormatError, match=refusal):
        SparseIndex.load(path)
    for mode in ("model", "tokens"):
        with pytest.raises(IndexFormatError, match=refusal):
            SparseSearcher.from_index(path, mode=mode, encoder=encoder)
    with pytest.raises(IndexFormatError, match=refusal):
        DenseSearcher.from_index(path, encoder=encoder)
    assert sorted(p.name for p in path.iterdir()) == files
    assert read_json(path)["format_version"] == 1
    build_index(DOCS, encoder, path, **BUILD)
    assert SparseIndex.load(path).manifest.format_version == 5
    assert results(path, encoder) == expected


def test_format_2_index_opens_and_answers_as_before(built, old_index, encoder):
    """A format-2 folder (every file at the root) still opens and answers exactly like the
    format-5 index it was flattened from; changing it in place is refused with a rebuild
    hint; a rebuild turns it into format 5 and removes the old root files, not the user's."""
    _, expected = built
    flatten(old_index)
    (old_index / "notes.txt").write_text("mine")
    assert SparseIndex.load(old_index).manifest.format_version == 2
    assert results(old_index, encoder) == expected
    from tokretrieve.index.live import delete_documents
    with pytest.raises(IndexFormatError, match=r"format 2.*rebuild it"):
        delete_documents(old_index, ["old0"])
    build_index(DOCS, encoder, old_index, **BUILD)
    assert SparseIndex.load(old_index).manifest.format_version == 5
    assert results(old_index, encoder) == expected
    build_index(DOCS[:5], encoder, old_index, **BUILD)  # the format-2 files go a commit later
    assert sorted(p.name for p in old_index.iterdir()) == [
        "base-000001", "base-000002", "manifest.json", "notes.txt", "seg-000001", "seg-000002",
        "writer.lock"]


def test_format_3_index_opens_answers_and_changes_as_before(built, old_index, encoder):
    """A format-3 manifest (no postings codec: raw lists) opens and answers exactly as the
    format-5 index it was written from; a change in place commits it as format 5, raw."""
    _, expected = built
    manifest = read_json(old_index)
    del manifest["postings_format"]["codec"]
    manifest["format_version"] = 3
    write_json(old_index, manifest)
    index = SparseIndex.load(old_index)
    assert (index.manifest.format_version, index.manifest.layout.codec) == (3, "raw")
    assert results(old_index, encoder) == expected
    from tokretrieve.index.live import delete_documents
    changed_index = delete_documents(old_index, ["old0"])
    assert changed_index.manifest.format_version == 5
    assert read_json(old_index)["postings_format"]["codec"] == "raw"
    assert "old0" not in [hit.doc_id for query in QUERIES for hit in
                          SparseSearcher.from_index(old_index, mode="tokens").search(query)]


def test_format_4_index_opens_answers_and_changes_as_before(built, old_index, encoder):
    """A format-4 manifest opens and answers as it did (format 5 only adds dense packed
    lists; format-4 packed lists, all in chunks, are tests/test_index_packing.py's); a change
    in place commits it as format 5."""
    _, expected = built
    manifest = read_json(old_index)
    manifest["format_version"] = 4
    write_json(old_index, manifest)
    index = SparseIndex.load(old_index)
    assert index.manifest.format_version == 4
    assert results(old_index, encoder) == expected
    from tokretrieve.index.live import delete_documents
    assert delete_documents(old_index, ["old0"]).manifest.format_version == 5


def test_other_format_or_damaged_index_is_refused(old_index, tmp_path):
    """Not an index, another kind of index, broken JSON, a missing array: IndexFormatError."""
    path = old_index
    with pytest.raises(IndexFormatError, match="not a tokretrieve index"):
        SparseIndex.load(tmp_path / "nowhere")
    (path / "seg-000001" / "postings_docs.npy").unlink()
    with pytest.raises(IndexFormatError, match=r"postings_docs.npy is missing"):
        SparseIndex.load(path)
    edit_manifest(path, format="tokretrieve.dense")
    with pytest.raises(IndexFormatError, match=r"'tokretrieve.dense' index"):
        SparseIndex.load(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        SparseIndex.load(path)


@pytest.mark.parametrize(("section", "key"), [("projection", "merge_variants"),
                                              ("postings_format", "scale")])
def test_manifest_missing_a_section_key_is_a_format_error(old_index, section, key):
    """A manifest from an unreleased build, without a key inside a record: IndexFormatError
    naming it, never a bare KeyError."""
    manifest = read_json(old_index)
    del manifest[section][key]
    write_json(old_index, manifest)
    with pytest.raises(IndexFormatError, match=f"lacks {section}.{key}"):
        SparseIndex.load(old_index)


@pytest.mark.parametrize("key", ["doc_count", "projection", "vocab_size", "postings_format"])
def test_manifest_missing_a_key_is_a_format_error(old_index, key):
    """A valid-JSON manifest missing a required key is a damaged index: IndexFormatError."""
    manifest = read_json(old_index)
    del manifest[key]
    write_json(old_index, manifest)
    with pytest.raises(IndexFormatError, match=f"lacks {key}"):
        SparseIndex.load(old_index)


# ------------------------------------------------------------------------------ model record
def test_index_refuses_another_model(old_index, other_llama_dir, tiny_encoder, encoder):
    """Pairing the index with an encoder of another model (same tokenizer and shapes, other
    weights) or another embedding method is refused, naming the model that built the index,
    by index_encoder and by every searcher that embeds queries; the building model is accepted
    and gets the index's bag recipe."""
    index = SparseIndex.load(old_index)
    other = Encoder.load(str(other_llama_dir), method="prompteol", device="cpu")
    sgpt = tiny_encoder("llama", "sgpt")
    for wrong, message in ((other, "was built with model"), (sgpt, r"recipe 'prompteol'.*'sgpt'")):
        with pytest.raises(IndexFormatError, match=message):
            index_encoder(index, wrong)
        with pytest.raises(IndexFormatError, match=message):
            SparseSearcher.from_index(old_index, mode="model", encoder=wrong)
        with pytest.raises(IndexFormatError, match=message):
            DenseSearcher.from_index(old_index, encoder=wrong)
        with pytest.raises(IndexFormatError, match=message):  # it would lend its tokenizer
            SparseSearcher.from_index(old_index, mode="tokens", encoder=wrong)
    fitted = index_encoder(index, tiny_encoder("llama", "prompteol"))
    assert (fitted.recipe.bag_size, fitted.weighting) == (6, "shifted")
    assert fitted.recipe.adjustment.strength == index.manifest.bags.pc1_strength


def test_index_with_changed_weights_refuses_lazy_model(old_index):
    """Without an encoder the index's model is reloaded by name; if the weights there changed
    since the build, model-mode search is refused, while tokens mode (no model) still returns
    exactly the hits it gave before."""
    tokens = SparseSearcher.from_index(old_index, mode="tokens")
    # three tokens a document stores: a query that is sure to find it
    query = " ".join(token for token, _ in tokens.document(DOCS[0][0])[:3])
    expected = hits(tokens, query, k=10)
    assert DOCS[0][0] in [doc_id for doc_id, _, _ in expected]
    edit_manifest(old_index, model={**read_json(old_index)["model"], "content_hash": "0" * 64})
    index = SparseIndex.load(old_index)
    assert hits(SparseSearcher.from_index(index, mode="tokens"), query, k=10) == expected
    with pytest.raises(IndexFormatError, match="was built with model"):
        SparseSearcher.from_index(index, mode="model")
    with pytest.raises(IndexFormatError, match="was built with model"):
        index_encoder(index)


# ------------------------------------------------------------------------------ records
BASE = IndexManifest(
    doc_count=3, vocab_size=100,
    model=ModelRecord(name="tiny", content_hash="a" * 64, method="prompteol", max_length=256,
                      hidden_size=32, dtype="float32", source="/models/tiny"),
    bags=BagRecord(bag_size=8, weighting="shifted", merge_variants=False, pc1_request=None,
                   pc1_strength=0.5, calibration=None),
    layout=PostingsLayout(segment_docs=65536, impacts="uint8", scale=0.25),
    documents_digest="d" * 64, source="corpus.jsonl", postings=20, empty_documents=1,
    empty_document_ids=("d4",), created="2026-01-01T00:00:00+00:00")

CALIBRATION = {"strength": 1.5, "criterion": "hit rate", "sample": 3, "mean_norm": 2.0,
               "relative_grid": [0.0, 0.5], "curve": [{"strength": 0.0, "hit_rate": 0.25},
                                                      {"strength": 1.5, "hit_rate": 0.5}]}


def changed(manifest, field, value):
    """`manifest` with one field replaced; `field` is 'name' or 'section.name'."""
    if "." not in field:
        return dataclasses.replace(manifest, **{field: value})
    section, name = field.split(".")
    record = dataclasses.replace(getattr(manifest, section), **{name: value})
    return dataclasses.replace(manifest, **{section: record})


@pytest.mark.parametrize("pc1_request", [None, "auto", -1.5])
def test_to_json_from_json_round_trip(pc1_request, tmp_path):
    """to_json, through JSON text, back with from_json: every field equal, compared ones and
    the others (created, source, λ, scale, calibration) alike, and the same JSON again."""
    manifest = changed(changed(BASE, "bags.pc1_request", pc1_request),
                       "bags.calibration", CALIBRATION)
    data = json.loads(json.dumps(manifest.to_json()))
    back = IndexManifest.from_json(data, tmp_path)
    assert back == manifest
    assert dataclasses.asdict(back) == dataclasses.asdict(manifest)
    assert back.to_json() == data
    # the format-2 key names on disk
    assert data["projection"]["k"] == 8 and "bag_size" not in data["projection"]
    assert data["postings_format"] == {"segment_docs": 65536, "impacts": "uint8", "scale": 0.25,
                                       "codec": "raw"}


def test_a_built_manifest_round_trips(old_index):
    """The manifest a build wrote parses to records that write the same JSON back."""
    data = read_json(old_index)
    manifest = SparseIndex.load(old_index).manifest
    assert manifest.to_json() == data
    assert (manifest.bags.bag_size, manifest.bags.pc1_request) == (6, 0.0)
    assert manifest.documents_digest == documents_digest(DOCS)


SHAPING = [
    ("doc_count", 4, "doc_count: 3 -> 4"),
    ("vocab_size", 101, "vocab_size: 100 -> 101"),
    ("model.name", "other", "model.name: 'tiny' -> 'other'"),
    ("model.content_hash", "b" * 64, f"model.content_hash: {'a' * 12} -> {'b' * 12}"),
    ("model.method", "sgpt", "model.method: 'prompteol' -> 'sgpt'"),
    ("model.max_length", 128, "model.max_length: 256 -> 128"),
    ("model.hidden_size", 64, "model.hidden_size: 32 -> 64"),
    ("model.dtype", "bfloat16", "model.dtype: 'float32' -> 'bfloat16'"),
    ("bags.bag_size", 4, "bags.bag_size: 8 -> 4"),
    ("bags.weighting", "softmax", "bags.weighting: 'shifted' -> 'softmax'"),
    ("bags.merge_variants", True, "bags.merge_variants: False -> True"),
    ("bags.pc1_request", "auto", "bags.pc1_request: None -> 'auto'"),
    ("bags.pc1_request", 0.0, "bags.pc1_request: None -> 0.0"),
    ("layout.segment_docs", 1024, "layout.segment_docs: 65536 -> 1024"),
    ("layout.impacts", "float32", "layout.impacts: 'uint8' -> 'float32'"),
    ("layout.codec", "packed", "layout.codec: 'raw' -> 'packed'"),
    ("documents_digest", "e" * 64, f"documents_digest: {'d' * 12} -> {'e' * 12}"),
]


@pytest.mark.parametrize(("field", "value", "line"), SHAPING,
                         ids=[f"{field}={value!r}"[:40] for field, value, _ in SHAPING])
def test_differences_name_each_shaping_field(field, value, line):
    """Every input that shapes an index makes the manifests differ, in one 'field: old -> new'
    line (a sha256 shown by its head)."""
    other = changed(BASE, field, value)
    assert other != BASE
    assert BASE.differences(other) == [line]


def test_differences_list_exactly_the_changed_fields():
    """Several changes at once: one line each, in field order, nothing else."""
    other = changed(changed(changed(BASE, "model.dtype", "bfloat16"), "bags.bag_size", 4),
                    "documents_digest", "e" * 64)
    other = changed(changed(other, "created", "2027-01-01T00:00:00+00:00"), "layout.scale", 1.0)
    assert BASE.differences(other) == ["model.dtype: 'float32' -> 'bfloat16'",
                                       "bags.bag_size: 8 -> 4",
                                       f"documents_digest: {'d' * 12} -> {'e' * 12}"]
    assert other.differences(BASE)[0] == "model.dtype: 'bfloat16' -> 'float32'"


NOT_SHAPING = [
    ("created", "2027-01-01T00:00:00+00:00"), ("source", "elsewhere.jsonl"), ("postings", 99),
    ("empty_documents", 0), ("empty_document_ids", ()), ("format_version", 3),
    ("model.source", "/other/copy"), ("bags.pc1_strength", 7.0),
    ("bags.pc1_strength", float("nan")), ("bags.calibration", CALIBRATION),
    ("layout.scale", 1.0), ("layout.scale", float("nan")),
]


@pytest.mark.parametrize(("field", "value"), NOT_SHAPING,
                         ids=[f"{field}={value!r}"[:40] for field, value in NOT_SHAPING])
def test_differences_ignore_what_only_describes_a_result(field, value):
    """Timestamps, paths, counts, the resolved λ, its calibration and the quantization scale
    are results of the inputs (or where they came from), not inputs: no difference."""
    other = changed(BASE, field, value)
    assert BASE.differences(other) == []
    assert other == BASE


def test_manifest_written_before_the_records_loads_but_is_not_reused(old_index, encoder,
                                                                    built):
    """A format-2 manifest from before pc1_request and documents_digest were recorded (bag
    size under `k`, as on disk today) still opens and searches; compared with a fresh plan of
    the very same build it differs (the λ asked for and the documents are unknown), so the
    index is rebuilt rather than reused on a guess."""
    _, expected = built
    assert reusable_index(old_index, DOCS, encoder, pc1_strength=0.0,
                          impacts="float32")[1] == []  # today's manifest: reused
    flatten(old_index)
    manifest = read_json(old_index)
    del manifest["documents_digest"]
    del manifest["projection"]["pc1_request"]
    for key in ("literal", "literal_fit"):  # recorded since literal weights: absent before
        del manifest["projection"][key]
    write_json(old_index, manifest)
    assert set(manifest) == {"format", "format_version", "created", "source", "doc_count",
                             "postings", "empty_documents", "empty_document_ids", "vocab_size",
                             "model", "projection", "postings_format"}
    assert set(manifest["projection"]) == {"k", "weighting", "pc1_strength", "merge_variants",
                                           "calibration"}
    index = SparseIndex.load(old_index)
    assert index.manifest.bags.bag_size == 6
    assert index.manifest.bags.pc1_request == UNRECORDED
    assert index.manifest.documents_digest is None
    assert results(index, encoder) == expected
    existing, differences = reusable_index(old_index, DOCS, encoder, pc1_strength=0.0,
                                           impacts="float32")
    assert existing is not None
    assert differences == [f"bags.pc1_request: {UNRECORDED!r} -> 0.0",
                           f"documents_digest: None -> {documents_digest(DOCS)[:12]}"]


def test_manifest_values_of_the_wrong_type_are_a_format_error(old_index):
    """A manifest whose counts are not numbers, or whose projection is not an object: one
    IndexFormatError naming the file, never a bare ValueError or KeyError."""
    edit_manifest(old_index, doc_count="12x")
    with pytest.raises(IndexFormatError, match="wrong type"):
        SparseIndex.load(old_index)
    edit_manifest(old_index, doc_count=len(DOCS), projection=[1, 2])
    with pytest.raises(IndexFormatError, match="'projection' is not an object"):
        SparseIndex.load(old_index)


def test_reusable_index_says_why_an_index_cannot_be_reused(old_index, encoder):
    """No index: (None, []); an index of another format version: (None, [the reason]), so the
    build says why it rebuilds; a bad impact type is refused before anything is read."""
    assert reusable_index(old_index.parent / "nowhere", DOCS, encoder) == (None, [])
    edit_manifest(old_index, format_version=1)
    existing, why = reusable_index(old_index, DOCS, encoder)
    assert existing is None and len(why) == 1 and "format version 1" in why[0]
    with pytest.raises(TokretrieveError, match="unknown impact type"):
        reusable_index(old_index, DOCS, encoder, impacts="int4")
