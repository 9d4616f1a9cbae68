"""Damaged index files: every one is an IndexFormatError naming the file, never a crash, a
traceback of another type or a quietly wrong answer.

Checksums (SparseIndex.load verifies them for small indexes, verify_index always) catch any
change to a committed file. The structural checks a load always makes are what stands between
the compiled kernel and a damaged large index (over 256 MiB nothing is hashed on open): for
damage the kernel could trip on, each case is also checked with `verify=False`, and again with
the manifest's checksum rewritten to match the damaged bytes (a writer bug rather than a bad
disk), where verify_index must find it by those checks too.

The index here has two segments of blocks of 4 documents (the last block of each is partial)
and deleted positions, so every kind of file of format 3 is present. A rebuild at the path of a
damaged index must go through without reading it.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from refimpl import random_texts

from tokretrieve import (
    IndexFormatError,
    SparseIndex,
    add_documents,
    build_index,
    delete_documents,
    verify_index,
)

FIRST = [(f"a{i}", t) for i, t in enumerate(random_texts(14, seed=81, low=3, high=10))]
SECOND = [(f"b{i}", t) for i, t in enumerate(random_texts(5, seed=82, low=3, high=10))]
NEW = [(f"n{i}", t) for i, t in enumerate(random_texts(7, seed=83, low=3, high=10))]
GONE = ["a3", "b2"]
POSITIONS = len(FIRST) + len(SECOND)  # deleted ones included
HIDDEN = 32  # the tiny Llama's width


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(bag_size=6, weighting="shifted")


@pytest.fixture(scope="module")
def whole(encoder, tmp_path_factory):
    """Generation 3: FIRST built with segment_docs=4 (blocks of 4, 4, 4, 2), SECOND added as
    seg-000002 (blocks of 4, 1), GONE deleted (deleted-000003.npy)."""
    path = tmp_path_factory.mktemp("damage") / "whole"
    build_index(FIRST, encoder, path, segment_docs=4, codec="raw", progress=False)
    add_documents(path, SECOND, encoder, progress=False)
    delete_documents(path, GONE)
    assert verify_index(path) == []
    return path


@pytest.fixture
def index(whole, tmp_path):
    """A copy of the whole index, to damage."""
    path = tmp_path / "idx"
    shutil.copytree(whole, path)
    return path


def read_manifest(path):
    return json.loads((path / "manifest.json").read_text())


def write_manifest(path, data):
    (path / "manifest.json").write_text(json.dumps(data))


def resave(file, change):
    """Rewrite a .npy file as a valid array file holding `change(array)`."""
    array = np.load(file, allow_pickle=False)
    np.save(file, change(array.copy()), allow_pickle=False)


def data_offset(file):
    """Where the array's bytes start in a .npy file (after magic and header)."""
    with file.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(handle)
        else:
            np.lib.format.read_array_header_2_0(handle)
        return handle.tell()


def set_last_offset(block):
    """postings_docs with the last posting of `block` moved to offset `value`."""
    def damage(file, value):
        indptr = np.load(file.parent / "postings_indptr.npy")
        end = int(indptr[block, -1])
        assert end > int(indptr[block, 0])  # the block has postings to damage

        def change(docs):
            docs[end - 1] = value
            return docs
        resave(file, change)
    return damage


def random_bytes(file, _):
    """Overwrite the array's bytes (not its header) with different random bytes: still a
    valid uint8 array of the right shape, so only its checksum can tell."""
    raw = bytearray(file.read_bytes())
    start = data_offset(file)
    noise = np.random.default_rng(5).integers(0, 256, len(raw) - start, dtype=np.uint8)
    noise[0] = raw[start] ^ 0xFF  # surely different
    raw[start:] = noise.tobytes()
    file.write_bytes(bytes(raw))


def nan_at(index):
    def damage(file, _):
        def change(array):
            array[index] = np.nan
            return array
        resave(file, change)
    return damage


def truncate(keep):
    def damage(file, _):
        raw = file.read_bytes()
        file.write_bytes(raw[:keep if keep >= 0 else len(raw) // 2])
    return damage


def replace_with(make):
    def damage(file, _):
        resave(file, make)
    return damage


def set_deleted(at, value):
    def damage(file, _):
        def change(deleted):
            deleted[at] = value
            return deleted
        resave(file, change)
    return damage


# (case, file, damage(file, value), value, structural): `structural` when a load without
# checksums must refuse it too (the kernel or the positions would go wrong otherwise).
DAMAGE = [
    # the last block of seg-000001 has 2 documents: offset 3 is a document that isn't there
    ("docs past a partial block", "seg-000001/postings_docs.npy", set_last_offset(3), 3, True),
    # a full block of 4 documents: offset 60000 would be written far past the accumulator
    ("docs past the accumulator", "seg-000001/postings_docs.npy", set_last_offset(0), 60000,
     True),
    ("docs past a one-document block", "seg-000002/postings_docs.npy", set_last_offset(1), 1,
     True),
    ("random impact bytes", "seg-000001/postings_impacts.npy", random_bytes, None, False),
    ("NaN in PC1", "base-000001/pc1_direction.npy", nan_at(3), None, True),
    ("NaN in an embedding", "seg-000002/embeddings.npy", nan_at((2, 7)), None, False),
    ("integer doc ids", "seg-000001/doc_ids.npy",
     replace_with(lambda ids: np.arange(len(ids))), None, True),
    ("embeddings of another width", "seg-000002/embeddings.npy",
     replace_with(lambda e: np.zeros((len(e), HIDDEN + 1), dtype=np.float32)), None, True),
    ("truncated array", "seg-000001/postings_indptr.npy", truncate(-1), None, True),
    ("truncated header", "seg-000002/doc_ids.npy", truncate(10), None, True),
    ("empty file", "seg-000002/postings_impacts.npy", truncate(0), None, True),
    ("PC1 of the wrong length", "base-000001/pc1_direction.npy",
     replace_with(lambda d: d[:-1]), None, True),
    ("deleted position past the end", "deleted-000003.npy", set_deleted(-1, POSITIONS), None,
     True),
    ("negative deleted position", "deleted-000003.npy", set_deleted(0, -1), None, True),
]


def assert_names(error_or_lines, file):
    text = error_or_lines if isinstance(error_or_lines, str) else "\n".join(error_or_lines)
    assert str(file) in text, text


@pytest.mark.parametrize(("case", "name", "damage", "value", "structural"), DAMAGE,
                         ids=[d[0] for d in DAMAGE])
def test_a_damaged_array_is_refused_naming_it(index, case, name, damage, value, structural):
    """Load (default checksums for a small index) and verify_index name the damaged file; where
    the kernel or the positions could go wrong, a load without checksums refuses it too, and so
    do load and verify_index when the manifest's checksum was rewritten to match the damage."""
    file = index / name
    before = file.read_bytes()
    damage(file, value)
    assert file.read_bytes() != before
    with pytest.raises(IndexFormatError) as refused:
        SparseIndex.load(index)
    assert_names(str(refused.value), file)
    problems = verify_index(index)
    assert len(problems) == 1  # one file damaged, one line
    assert_names(problems, file)
    if not structural:
        return
    with pytest.raises(IndexFormatError) as refused:
        SparseIndex.load(index, verify=False)
    assert_names(str(refused.value), file)
    manifest = read_manifest(index)
    manifest["files"][name] = hashlib.sha256(file.read_bytes()).hexdigest()
    write_manifest(index, manifest)
    for verify in (None, True):
        with pytest.raises(IndexFormatError) as refused:
            SparseIndex.load(index, verify=verify)
        assert_names(str(refused.value), file)
    problems = verify_index(index)
    assert len(problems) == 1
    assert_names(problems, file)


def test_the_undamaged_copy_verifies(index):
    """The copies the damage tests start from are whole (so what they see is the damage)."""
    loaded = SparseIndex.load(index, verify=True)
    assert len(loaded) == POSITIONS - len(GONE)
    assert len(loaded.segments) == 2 and list(loaded.deleted) == [3, 14 + 2]
    assert verify_index(index) == []


def outside(index, key):
    """Manifest edits whose names lead out of the index folder, to `x` beside it: a whole
    copy of a segment (or base, or deleted file) waits there, so following the name would
    load without any other error."""
    parent = index.parent
    shutil.copytree(index / "seg-000002", parent / "x")
    shutil.copy(index / "deleted-000003.npy", parent / "x.npy")
    manifest = read_manifest(index)
    if key == "segment ../x":
        manifest["segments"][1]["name"] = "../x"
    elif key == "segment absolute":
        manifest["segments"][1]["name"] = str(parent / "x")
    elif key == "base ../x":
        shutil.copytree(index / "base-000001", parent / "x", dirs_exist_ok=True)
        manifest["base"] = "../x"
    elif key == "deleted ../x.npy":
        manifest["deleted"] = "../x.npy"
    elif key == "checksum of ../x":
        digest = manifest["files"].pop("seg-000002/doc_ids.npy")
        manifest["files"]["../x/doc_ids.npy"] = digest
    elif key == "deleted absolute":
        manifest["deleted"] = str(parent / "x.npy")
    return manifest


MANIFEST_DAMAGE = ["segment ../x", "segment absolute", "base ../x", "deleted ../x.npy",
                   "deleted absolute", "checksum of ../x"]


@pytest.mark.parametrize("key", MANIFEST_DAMAGE)
def test_names_that_lead_outside_the_folder_are_refused(index, key):
    """Nothing a manifest records may lead outside its folder, whatever waits there."""
    write_manifest(index, outside(index, key))
    for verify in (None, False):
        with pytest.raises(IndexFormatError, match="outside its folder") as refused:
            SparseIndex.load(index, verify=verify)
        assert_names(str(refused.value), index / "manifest.json")


def test_a_manifest_that_is_a_json_list_is_a_format_error(index):
    """A manifest that parses but is no object: an IndexFormatError naming it, never a
    TypeError (nor a claim that the folder holds an index of another kind)."""
    (index / "manifest.json").write_text("[1, 2]")
    for verify in (None, False):
        with pytest.raises(IndexFormatError, match="not a JSON object") as refused:
            SparseIndex.load(index, verify=verify)
        assert_names(str(refused.value), index / "manifest.json")


@pytest.mark.parametrize("key", ["segment ../x", "list"])
def test_verify_index_lists_a_damaged_manifest(index, key):
    if key == "list":
        (index / "manifest.json").write_text("[1, 2]")
    else:
        write_manifest(index, outside(index, key))
    problems = verify_index(index)
    assert len(problems) == 1
    assert_names(problems, index / "manifest.json")


def test_rebuild_over_truncated_arrays_needs_nothing_of_the_damaged_generation(index, encoder):
    """build_index at the path of a damaged index (its arrays cut short, checksums and all)
    commits a new generation without reading the damaged one, and the result verifies."""
    for name in ("seg-000001/postings_indptr.npy", "seg-000002/embeddings.npy",
                 "base-000001/pc1_direction.npy", "deleted-000003.npy"):
        truncate(-1)(index / name, None)
    with pytest.raises(IndexFormatError):
        SparseIndex.load(index, verify=False)
    rebuilt = build_index(NEW, encoder, index, progress=False)
    assert [str(d) for d in rebuilt.doc_ids] == [d for d, _ in NEW]
    assert rebuilt.manifest.contents.generation == 4
    assert verify_index(index) == []
    reloaded = SparseIndex.load(index, verify=True)
    assert [str(d) for d in reloaded.doc_ids] == [d for d, _ in NEW]
    delete_documents(index, ["n0"])  # the commit after drops the damaged generation's entries
    assert sorted(p.name for p in index.iterdir()) == [
        "base-000004", "deleted-000005.npy", "manifest.json", "seg-000004", "writer.lock"]


def _drop_a_segment_name(manifest):
    del manifest["segments"][0]["name"]


def _segments_as_strings(manifest):
    manifest["segments"] = [s["name"] for s in manifest["segments"]]


def _generation_not_a_number(manifest):
    manifest["generation"] = "three"


def _checksums_not_an_object(manifest):
    manifest["files"] = "sha256"


@pytest.mark.parametrize("damage", [_drop_a_segment_name, _segments_as_strings,
                                    _generation_not_a_number, _checksums_not_an_object])
def test_rebuild_over_a_damaged_manifest_commits_a_whole_new_generation(index, encoder,
                                                                        damage):
    """A manifest still of tokretrieve's format whose contents are damaged: loads refuse it,
    and build_index at its path replaces it (as the refusal tells the user to) instead of
    failing on the damaged record with a KeyError, TypeError or ValueError. The generation
    number goes on past every entry in the folder, so no name of the damaged one is reused."""
    manifest = read_manifest(index)
    damage(manifest)
    write_manifest(index, manifest)
    with pytest.raises(IndexFormatError, match=r"manifest\.json"):
        SparseIndex.load(index)
    rebuilt = build_index(NEW, encoder, index, progress=False)
    assert [str(d) for d in rebuilt.doc_ids] == [d for d, _ in NEW]
    assert rebuilt.manifest.contents.generation == 4
    assert verify_index(index) == []


def _set_record(key, value):
    def edit(manifest):
        section, _, field = key.partition(".")
        record = manifest["segments"][0] if section == "segment" else manifest[section]
        record[field] = value
    return edit


MANIFEST_VALUES = [("segment.documents", "14"), ("segment.documents", 14.5),
                   ("postings_format.segment_docs", 0), ("postings_format.impacts", "int7"),
                   ("postings_format.scale", "x")]


@pytest.mark.parametrize(("key", "value"), MANIFEST_VALUES,
                         ids=[f"{k}={v!r}" for k, v in MANIFEST_VALUES])
def test_manifest_values_of_the_wrong_kind_are_a_format_error(index, key, value):
    manifest = read_manifest(index)
    _set_record(key, value)(manifest)
    write_manifest(index, manifest)
    for verify in (None, False):
        with pytest.raises(IndexFormatError) as refused:
            SparseIndex.load(index, verify=verify)
        assert_names(str(refused.value), index / "manifest.json")


def test_a_file_without_a_checksum_does_not_verify(index):
    manifest = read_manifest(index)
    del manifest["files"]["seg-000001/postings_impacts.npy"]
    write_manifest(index, manifest)
    random_bytes(index / "seg-000001/postings_impacts.npy", None)
    problems = verify_index(index)
    assert len(problems) == 1
    assert_names(problems, index / "seg-000001/postings_impacts.npy")
