"""The on-disk index: round trip, memory mapping, atomic rebuilds, crash repair, format checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from refimpl import random_texts

from tokretrieve import Encoder, IndexFormatError, SparseIndex
from tokretrieve.checkpoint import checkpoint_path
from tokretrieve.storage import previous_path, restore_interrupted_swap

OLD_DOCS = [(f"old{i}", t) for i, t in enumerate(random_texts(12, seed=51, low=3, high=10))]
NEW_DOCS = [(f"new{i}", t) for i, t in enumerate(random_texts(12, seed=52, low=3, high=10))]
QUERIES = random_texts(4, seed=53, low=2, high=5)
BUILD = {"k": 6, "weighting": "shifted", "progress": False}


def results(index):
    """Everything a user sees from an index: both query modes, several queries."""
    return [[(h.doc_id, round(h.score, 5), [t for t, _ in h.matched])
             for h in index.search(q, k=5, mode=mode)]
            for q in QUERIES for mode in ("model", "tokens")]


def leftovers(path):
    """Hidden staging / backup folders next to an index (the resumable-encoding checkpoint
    `.NAME.encoding` is kept on purpose after a failure, so it is not one of them)."""
    return sorted(p.name for p in path.parent.iterdir()
                  if p.name.startswith(f".{path.name}.") and p.name != checkpoint_path(path).name)


@pytest.fixture
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol")


@pytest.fixture
def old_index(encoder, tmp_path):
    """An index of OLD_DOCS at tmp_path/idx, with the results it gives."""
    path = tmp_path / "idx"
    index = SparseIndex.build(OLD_DOCS, encoder, path, **BUILD)
    return path, results(index)


def test_round_trip_gives_identical_results(encoder, old_index):
    """A loaded index answers exactly like the object build returned, with or without an
    encoder passed in (the model is then reloaded from the manifest, the tokenizer from the
    index folder)."""
    path, expected = old_index
    assert results(SparseIndex.load(path, encoder=encoder)) == expected
    lazy = SparseIndex.load(path)
    assert lazy._encoder is None
    tokens_only = [[(h.doc_id, round(h.score, 5), [t for t, _ in h.matched])
                    for h in lazy.search(q, k=5, mode="tokens")] for q in QUERIES]
    assert lazy._encoder is None  # tokens mode loads no model
    assert tokens_only == expected[1::2]
    assert results(lazy) == expected


def test_loaded_arrays_are_memory_mapped(old_index):
    """Postings, ids and embeddings are numpy memmaps of the .npy files, not copies."""
    path, _ = old_index
    index = SparseIndex.load(path)
    for array in (index.postings.indptr, index.postings.docs, index.postings.impacts,
                  index.doc_ids, index.embeddings):
        assert isinstance(array, np.memmap)
        assert not array.flags.writeable
    assert not isinstance(SparseIndex.load(path, mmap=False).postings.docs, np.memmap)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["format"] == "tokretrieve.sparse"
    for name in ("doc_ids", "postings_indptr", "postings_docs", "postings_impacts",
                 "embeddings", "pc1_direction"):
        np.load(path / f"{name}.npy", allow_pickle=False)  # plain arrays, no pickles


def test_rebuild_replaces_the_index(encoder, old_index):
    """A successful rebuild at the same path swaps the new index in and leaves nothing aside."""
    path, expected = old_index
    new = SparseIndex.build(NEW_DOCS, encoder, path, **BUILD)
    assert results(new) != expected
    assert list(np.asarray(SparseIndex.load(path).doc_ids)) == [d for d, _ in NEW_DOCS]
    assert leftovers(path) == []
    assert not checkpoint_path(path).exists()  # encoding chunks go once the index is written


def test_exception_while_encoding_keeps_previous_index(encoder, old_index, monkeypatch):
    """Encoder.embed raising during a rebuild: the old index stays, loadable, unchanged."""
    path, expected = old_index

    def boom(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(Encoder, "embed", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        SparseIndex.build(NEW_DOCS, encoder, path, **BUILD)
    monkeypatch.undo()
    assert results(SparseIndex.load(path, encoder=encoder)) == expected
    assert leftovers(path) == []


def test_exception_while_writing_keeps_previous_index(encoder, old_index, monkeypatch):
    """An exception after the staging folder got files (writing the manifest): the old index
    stays and the staging folder is removed."""
    path, expected = old_index
    import tokretrieve.sparse_index as sparse_index

    seen = []

    def failing_manifest(folder, manifest):
        seen.append(sorted(p.name for p in folder.iterdir()))
        raise OSError("disk full")

    monkeypatch.setattr(sparse_index, "write_manifest", failing_manifest)
    with pytest.raises(OSError, match="disk full"):
        SparseIndex.build(NEW_DOCS, encoder, path, **BUILD)
    monkeypatch.undo()
    assert "postings_docs.npy" in seen[0]  # it did fail midway through the writes
    assert results(SparseIndex.load(path, encoder=encoder)) == expected
    assert leftovers(path) == []


def test_failure_between_the_two_renames_is_repaired_on_load(encoder, old_index, monkeypatch):
    """If the swap stops after moving the old index aside (second rename fails), the next load
    puts the old index back."""
    path, expected = old_index
    import tokretrieve.storage as storage

    real_replace = os.replace

    def second_rename_fails(src, dst):
        if str(src).startswith(str(path.parent / f".{path.name}.building-")):
            raise OSError("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="power cut"):
        SparseIndex.build(NEW_DOCS, encoder, path, **BUILD)
    monkeypatch.undo()
    assert not path.exists() and previous_path(path).is_dir()
    assert results(SparseIndex.load(path, encoder=encoder)) == expected
    assert path.is_dir() and leftovers(path) == []


def test_restore_interrupted_swap_puts_back_the_previous_folder(encoder, old_index):
    """Only `.NAME.previous` left (crash between the renames): restore_interrupted_swap moves
    it back; with the index present it touches nothing."""
    path, expected = old_index
    os.replace(path, previous_path(path))
    restore_interrupted_swap(path)
    assert path.is_dir() and not previous_path(path).exists()
    assert results(SparseIndex.load(path, encoder=encoder)) == expected
    restore_interrupted_swap(path)  # nothing to do
    assert path.is_dir() and not previous_path(path).exists()


def test_a_rebuild_after_an_interrupted_swap_starts_from_the_restored_index(encoder, old_index):
    """A build finding only `.NAME.previous` restores it first, then replaces it normally."""
    path, _ = old_index
    os.replace(path, previous_path(path))
    SparseIndex.build(NEW_DOCS, encoder, path, **BUILD)
    assert list(np.asarray(SparseIndex.load(path).doc_ids)) == [d for d, _ in NEW_DOCS]
    assert leftovers(path) == []


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from tokretrieve import Encoder, SparseIndex
    import tokretrieve.storage as storage

    model_dir, index_path, marker, stage, docs_json = sys.argv[1:6]
    import json
    docs = [tuple(d) for d in json.loads(docs_json)]
    encoder = Encoder.load(model_dir, method="prompteol")

    def hang():
        Path(marker).write_text(stage)
        time.sleep(120)

    if stage == "encoding":
        real_embed = Encoder.embed
        def embed(self, texts, *args, **kwargs):
            real_embed(self, texts[:2], *args, **kwargs)  # genuinely inside the model
            hang()
        Encoder.embed = embed
    elif stage == "writing":
        def fsync_tree(folder):  # every file is in the staging folder; not swapped yet
            hang()
        storage._fsync_tree = fsync_tree
    elif stage == "swapping":
        real_replace = os.replace
        def replace(src, dst):
            if Path(src).name.startswith("." + Path(index_path).name + ".building-"):
                hang()  # the old index has been moved aside already
            return real_replace(src, dst)
        storage.os.replace = replace
    SparseIndex.build(docs, encoder, index_path, k=6, weighting="shifted", progress=False)
""")


@pytest.mark.parametrize("stage", ["encoding", "writing", "swapping"])
def test_sigkill_during_rebuild_keeps_previous_index(encoder, old_index, tiny_llama_dir,
                                                     tmp_path, stage):
    """A build process killed with SIGKILL while encoding, after writing its files, or between
    the swap's two renames leaves the previous index loadable with unchanged results."""
    path, expected = old_index
    marker = tmp_path / "reached"
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), str(tiny_llama_dir), str(path), str(marker), stage,
         json.dumps(NEW_DOCS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the build never reached the kill point"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    if stage == "swapping":
        assert not path.exists() and previous_path(path).is_dir()
    assert results(SparseIndex.load(path, encoder=encoder)) == expected
    assert not previous_path(path).exists()
    # the next build works, replaces the old index normally, and removes the killed build's
    # staging folder (its process is gone)
    SparseIndex.build(NEW_DOCS, encoder, path, **BUILD)
    assert list(np.asarray(SparseIndex.load(path).doc_ids)) == [d for d, _ in NEW_DOCS]
    assert not list(path.parent.glob(f".{path.name}.building-*"))


def test_build_refuses_to_overwrite_a_folder_that_is_not_an_index(encoder, tmp_path):
    """A non-empty folder without manifest.json (someone's data) is never replaced; an empty
    folder may be used."""
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("do not delete")
    with pytest.raises(IndexFormatError, match=r"refusing to write an index over .*thesis"):
        SparseIndex.build(OLD_DOCS, encoder, precious, **BUILD)
    assert (precious / "chapter1.tex").read_text() == "do not delete"
    assert leftovers(precious) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    SparseIndex.build(OLD_DOCS, encoder, empty, **BUILD)
    assert (empty / "manifest.json").is_file()


def test_build_refuses_a_non_index_folder_before_encoding(encoder, tmp_path, monkeypatch):
    """The refusal costs nothing: no document is encoded and nothing is written beside it."""
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("do not delete")
    calls = []
    real_embed = Encoder.embed

    def counting_embed(self, texts, *args, **kwargs):
        calls.append(len(texts))
        return real_embed(self, texts, *args, **kwargs)

    monkeypatch.setattr(Encoder, "embed", counting_embed)
    with pytest.raises(IndexFormatError, match="refusing"):
        SparseIndex.build(OLD_DOCS, encoder, precious, **BUILD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    assert calls == []


# ------------------------------------------------------------------------------ format checks
def edit_manifest(path, **changes):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_other_format_version_is_refused(old_index):
    """An index written in another format version is refused, naming both versions."""
    path, _ = old_index
    edit_manifest(path, format_version=3)
    with pytest.raises(IndexFormatError, match=r"format version 3.*reads version 1, 2"):
        SparseIndex.load(path)


def write_format_1(index, path):
    """Rewrite an index folder in format 1 as the README described it: one token-major list,
    int32 document positions, float32 weights, no postings_format record."""
    csc = index.postings.to_bags().tocsc()
    csc.sort_indices()
    for name in ("postings_indptr", "postings_docs", "postings_impacts"):
        (path / f"{name}.npy").unlink()
    np.save(path / "postings_indptr.npy", csc.indptr.astype(np.int64))
    np.save(path / "postings_docs.npy", csc.indices.astype(np.int32))
    np.save(path / "postings_weights.npy", csc.data.astype(np.float32))
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["postings_format"]
    manifest["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_format_1_index_still_answers_identically(encoder, tmp_path):
    """A format-1 folder loads (converted in memory, with a warning to rebuild) and answers
    exactly like the float32 format-2 index with the same weights."""
    path = tmp_path / "idx"
    index = SparseIndex.build(OLD_DOCS, encoder, path, impacts="float32", **BUILD)
    expected = results(index)
    write_format_1(index, path)
    with pytest.warns(UserWarning, match="format-1 index"):
        old = SparseIndex.load(path)
    assert old.manifest["format_version"] == 1
    assert results(old) == expected


def test_other_format_or_damaged_index_is_refused(old_index, tmp_path):
    """Not an index, another kind of index, broken JSON, a missing array: IndexFormatError."""
    path, _ = old_index
    with pytest.raises(IndexFormatError, match="not a tokretrieve index"):
        SparseIndex.load(tmp_path / "nowhere")
    (path / "postings_docs.npy").unlink()
    with pytest.raises(IndexFormatError, match=r"postings_docs.npy is missing"):
        SparseIndex.load(path)
    edit_manifest(path, format="tokretrieve.dense")
    with pytest.raises(IndexFormatError, match=r"'tokretrieve.dense' index"):
        SparseIndex.load(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        SparseIndex.load(path)


def test_index_refuses_another_model(old_index, other_llama_dir, tiny_encoder):
    """Loading with an encoder of another model (same tokenizer and shapes, other weights) or
    another embedding method is refused, naming the model that built the index."""
    path, _ = old_index
    other = Encoder.load(str(other_llama_dir), method="prompteol")
    with pytest.raises(IndexFormatError, match="was built with model"):
        SparseIndex.load(path, encoder=other)
    with pytest.raises(IndexFormatError, match=r"method 'prompteol'.*'sgpt'"):
        SparseIndex.load(path, encoder=tiny_encoder("llama", "sgpt"))


def test_index_with_changed_weights_refuses_lazy_model(old_index):
    """Without an encoder the index reloads its model by name; if the weights there changed
    since the build, model-mode search is refused (tokens mode still works)."""
    path, _ = old_index
    edit_manifest(path, model={**json.loads((path / "manifest.json").read_text())["model"],
                               "content_hash": "0" * 64})
    index = SparseIndex.load(path)
    assert index.search(QUERIES[0], mode="tokens") is not None
    with pytest.raises(IndexFormatError, match="was built with model"):
        index.search(QUERIES[0], mode="model")


@pytest.mark.parametrize(("section", "key"), [("projection", "merge_variants"),
                                              ("postings_format", "scale")])
def test_manifest_missing_a_section_key_is_a_format_error(old_index, section, key):
    """A manifest from an unreleased build, without a key inside a record: IndexFormatError
    naming it, never a bare KeyError."""
    path, _ = old_index
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest[section][key]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=f"lacks {section}.{key}"):
        SparseIndex.load(path)


@pytest.mark.parametrize("key", ["doc_count", "projection", "vocab_size", "postings_format"])
def test_manifest_missing_a_key_is_a_format_error(old_index, key):
    """A valid-JSON manifest missing a required key is a damaged index: IndexFormatError."""
    path, _ = old_index
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest[key]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError):
        SparseIndex.load(path)
