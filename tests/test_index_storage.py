"""tokretrieve.index.storage: round trip, memory mapping, atomic rebuilds, crash repair, and the
refusal to write over a folder that is not an index.

Manifest parsing, format-version refusals and the model record are in test_index_manifest.py.
"""

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

from tokretrieve import Encoder, IndexFormatError, SparseIndex, SparseSearcher, build_index
from tokretrieve.encoding.checkpoint import checkpoint_path
from tokretrieve.index.storage import previous_path, restore_interrupted_swap

OLD_DOCS = [(f"old{i}", t) for i, t in enumerate(random_texts(12, seed=51, low=3, high=10))]
NEW_DOCS = [(f"new{i}", t) for i, t in enumerate(random_texts(12, seed=52, low=3, high=10))]
QUERIES = random_texts(4, seed=53, low=2, high=5)
BAGS = {"bag_size": 6, "weighting": "shifted"}  # the encoder's bag recipe in every build here
BUILD = {"progress": False}
MODES = ("model", "tokens")


def hits(searcher, query):
    return [(h.doc_id, round(h.score, 5), [t for t, _ in h.matched])
            for h in searcher.search(query, k=5)]


def results(index, encoder=None):
    """Everything a user sees from an index (a folder or a SparseIndex): both query modes,
    several queries. Model mode uses `encoder`, or without one the model the manifest names."""
    searchers = {mode: SparseSearcher.from_index(index, mode=mode,
                                                 encoder=encoder if mode == "model" else None)
                 for mode in MODES}
    return [hits(searchers[mode], q) for q in QUERIES for mode in MODES]


def doc_ids(path):
    return list(np.asarray(SparseIndex.load(path).doc_ids))


def leftovers(path):
    """Hidden staging / backup folders next to an index (the resumable-encoding checkpoint
    `.NAME.encoding` is kept on purpose after a failure, so it is not one of them)."""
    return sorted(p.name for p in path.parent.iterdir()
                  if p.name.startswith(f".{path.name}.") and p.name != checkpoint_path(path).name)


@pytest.fixture
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(**BAGS)


@pytest.fixture
def old_index(encoder, tmp_path):
    """An index of OLD_DOCS at tmp_path/idx, with the results it gives."""
    path = tmp_path / "idx"
    index = build_index(OLD_DOCS, encoder, path, **BUILD)
    return path, results(index, encoder)


def test_round_trip_gives_identical_results(encoder, old_index, monkeypatch):
    """A loaded index answers exactly like the object build returned, with or without an
    encoder passed in (the model is then reloaded from the manifest, the tokenizer from the
    index folder); opening it and searching with tokenized queries loads no model."""
    path, expected = old_index
    assert results(SparseIndex.load(path), encoder) == expected
    import tokretrieve.encoding.models as models

    def no_model(*args, **kwargs):
        pytest.fail("a model was loaded")

    monkeypatch.setattr(models, "_load_transformers", no_model)
    lazy = SparseIndex.load(path)
    tokens = SparseSearcher.from_index(lazy, mode="tokens")  # tokens mode loads no model
    tokens_only = [hits(tokens, q) for q in QUERIES]
    assert tokens_only == expected[1::2]
    monkeypatch.undo()
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
    new = build_index(NEW_DOCS, encoder, path, **BUILD)
    assert results(new, encoder) != expected
    assert doc_ids(path) == [d for d, _ in NEW_DOCS]
    assert leftovers(path) == []
    assert not checkpoint_path(path).exists()  # encoding chunks go once the index is written


def test_exception_while_encoding_keeps_previous_index(encoder, old_index, monkeypatch):
    """Encoder.embed raising during a rebuild: the old index stays, loadable, unchanged."""
    path, expected = old_index

    def boom(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(Encoder, "embed", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        build_index(NEW_DOCS, encoder, path, **BUILD)
    monkeypatch.undo()
    assert results(SparseIndex.load(path), encoder) == expected
    assert leftovers(path) == []


def test_exception_while_writing_keeps_previous_index(encoder, old_index, monkeypatch):
    """An exception after the staging folder got files (writing the manifest): the old index
    stays and the staging folder is removed."""
    path, expected = old_index
    import tokretrieve.index.sparse as sparse

    seen = []

    def failing_manifest(folder, manifest):
        seen.append(sorted(p.name for p in folder.iterdir()))
        raise OSError("disk full")

    monkeypatch.setattr(sparse, "write_manifest", failing_manifest)
    with pytest.raises(OSError, match="disk full"):
        build_index(NEW_DOCS, encoder, path, **BUILD)
    monkeypatch.undo()
    assert "postings_docs.npy" in seen[0]  # it did fail midway through the writes
    assert results(SparseIndex.load(path), encoder) == expected
    assert leftovers(path) == []


def test_failure_between_the_two_renames_is_repaired_on_load(encoder, old_index, monkeypatch):
    """If the swap stops after moving the old index aside (second rename fails), the next load
    puts the old index back."""
    path, expected = old_index
    import tokretrieve.index.storage as storage

    real_replace = os.replace

    def second_rename_fails(src, dst):
        if str(src).startswith(str(path.parent / f".{path.name}.building-")):
            raise OSError("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="power cut"):
        build_index(NEW_DOCS, encoder, path, **BUILD)
    monkeypatch.undo()
    assert not path.exists() and previous_path(path).is_dir()
    assert results(SparseIndex.load(path), encoder) == expected
    assert path.is_dir() and leftovers(path) == []


def test_restore_interrupted_swap_puts_back_the_previous_folder(encoder, old_index):
    """Only `.NAME.previous` left (crash between the renames): restore_interrupted_swap moves
    it back; with the index present it touches nothing."""
    path, expected = old_index
    os.replace(path, previous_path(path))
    restore_interrupted_swap(path)
    assert path.is_dir() and not previous_path(path).exists()
    assert results(SparseIndex.load(path), encoder) == expected
    restore_interrupted_swap(path)  # nothing to do
    assert path.is_dir() and not previous_path(path).exists()


def test_a_rebuild_after_an_interrupted_swap_starts_from_the_restored_index(encoder, old_index):
    """A build finding only `.NAME.previous` restores it first, then replaces it normally."""
    path, _ = old_index
    os.replace(path, previous_path(path))
    build_index(NEW_DOCS, encoder, path, **BUILD)
    assert doc_ids(path) == [d for d, _ in NEW_DOCS]
    assert leftovers(path) == []


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from tokretrieve import Encoder, build_index
    import tokretrieve.index.storage as storage

    model_dir, index_path, marker, stage, docs_json = sys.argv[1:6]
    import json
    docs = [tuple(d) for d in json.loads(docs_json)]
    encoder = Encoder.load(model_dir, method="prompteol", device="cpu", bag_size=6,
                           weighting="shifted")

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
    build_index(docs, encoder, index_path, progress=False)
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
    assert results(SparseIndex.load(path), encoder) == expected
    assert not previous_path(path).exists()
    # the next build works, replaces the old index normally, and removes the killed build's
    # staging folder (its process is gone)
    build_index(NEW_DOCS, encoder, path, **BUILD)
    assert doc_ids(path) == [d for d, _ in NEW_DOCS]
    assert not list(path.parent.glob(f".{path.name}.building-*"))


def test_build_refuses_to_overwrite_a_folder_that_is_not_an_index(encoder, tmp_path):
    """A non-empty folder without manifest.json (someone's data) is never replaced; an empty
    folder may be used."""
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("do not delete")
    with pytest.raises(IndexFormatError, match=r"refusing to write an index over .*thesis"):
        build_index(OLD_DOCS, encoder, precious, **BUILD)
    assert (precious / "chapter1.tex").read_text() == "do not delete"
    assert leftovers(precious) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    build_index(OLD_DOCS, encoder, empty, **BUILD)
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
        build_index(OLD_DOCS, encoder, precious, **BUILD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    assert calls == []
