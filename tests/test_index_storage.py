"""tokretrieve.index.storage and .generations: round trip, memory mapping, rebuilds committed as
one generation, kill -9 at every stage of a build, and the refusal to write into a folder that
is not an index.

Manifest parsing, format-version refusals and the model record are in test_index_manifest.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from kill_points import SCRIPT_HEADER
from refimpl import random_texts

from tokretrieve import (
    Encoder,
    IndexBusyError,
    IndexFormatError,
    SparseIndex,
    SparseSearcher,
    build_index,
)
from tokretrieve.index.generations import CHECKPOINT

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


def entries(path):
    return sorted(p.name for p in path.iterdir())


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
    """Postings, ids and embeddings are numpy memmaps of the .npy files, not copies; every
    file is a plain array and has its sha256 in the manifest."""
    path, _ = old_index
    index = SparseIndex.load(path)
    for array in (*index.postings.arrays().values(), index.doc_ids, index.embeddings):
        assert isinstance(array, np.memmap)
        assert not array.flags.writeable
    assert not isinstance(SparseIndex.load(path, mmap=False).postings.indptr, np.memmap)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 5 and manifest["format"] == "tokretrieve.sparse"
    assert manifest["postings_format"]["codec"] == "packed"  # the default for uint8 impacts
    arrays = [f"seg-000001/{name}.npy" for name in ("doc_ids", "postings_indptr",
                                                    "postings_word_ptr", "postings_words",
                                                    "embeddings")]
    for name in [*arrays, "base-000001/pc1_direction.npy"]:
        np.load(path / name, allow_pickle=False)  # plain arrays, no pickles
        assert manifest["files"][name] == hashlib.sha256((path / name).read_bytes()).hexdigest()
    assert any(name.startswith("base-000001/tokenizer/") for name in manifest["files"])


def test_rebuild_replaces_the_index(encoder, old_index):
    """A rebuild at the same path is one new generation; the previous one's entries stay
    until the commit after (a reader that just read its manifest still finds them)."""
    path, expected = old_index
    new = build_index(NEW_DOCS, encoder, path, **BUILD)
    assert results(new, encoder) != expected
    assert doc_ids(path) == [d for d, _ in NEW_DOCS]
    assert entries(path) == ["base-000001", "base-000002", "manifest.json", "seg-000001",
                             "seg-000002", "writer.lock"]
    build_index(OLD_DOCS, encoder, path, **BUILD)
    assert entries(path) == ["base-000002", "base-000003", "manifest.json", "seg-000002",
                             "seg-000003", "writer.lock"]
    assert results(SparseIndex.load(path), encoder) == expected
    assert not (path / CHECKPOINT).exists()  # encoding chunks go once the index is written


def test_exception_while_encoding_keeps_previous_index(encoder, old_index, monkeypatch):
    """Encoder.embed raising during a rebuild: the old index stays, loadable, unchanged."""
    path, expected = old_index
    before = entries(path)

    def boom(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(Encoder, "embed", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        build_index(NEW_DOCS, encoder, path, **BUILD)
    monkeypatch.undo()
    assert results(SparseIndex.load(path), encoder) == expected
    assert [e for e in entries(path) if e != CHECKPOINT] == before


def test_exception_while_committing_keeps_previous_index(encoder, old_index, monkeypatch):
    """An exception after the new generation's files are written (publishing the manifest
    fails: disk full): the old index stays and the new entries are removed."""
    path, expected = old_index
    before = entries(path)
    import tokretrieve.index.generations as generations

    seen = []

    def failing_publish(file, data):
        seen.append(entries(path))
        raise OSError("disk full")

    monkeypatch.setattr(generations, "write_json_durably", failing_publish)
    with pytest.raises(OSError, match="disk full"):
        build_index(NEW_DOCS, encoder, path, **BUILD)
    monkeypatch.undo()
    assert "seg-000002" in seen[0]  # it did fail midway through the commit
    assert results(SparseIndex.load(path), encoder) == expected
    assert [e for e in entries(path) if e != CHECKPOINT] == before  # chunks kept to resume


KILL_SCRIPT = SCRIPT_HEADER + textwrap.dedent("""
    import json
    from kill_points import hang_at
    from tokretrieve import Encoder, build_index

    model_dir, index_path, marker, stage, docs_json = sys.argv[1:6]
    docs = [tuple(d) for d in json.loads(docs_json)]
    encoder = Encoder.load(model_dir, method="prompteol", device="cpu", bag_size=6,
                           weighting="shifted")

    hang_at(stage, marker)
    build_index(docs, encoder, index_path, progress=False)
""")


@pytest.mark.parametrize("stage", ["encoding", "writing", "publishing", "published"])
def test_sigkill_during_rebuild_leaves_one_whole_generation(encoder, old_index,
                                                            tiny_llama_dir, tmp_path, stage):
    """A build process killed with SIGKILL while encoding, after writing its files, with its
    manifest written but not renamed, or after the commit: the index loads whole, the old
    one (with exactly its results) before the commit and the new one after; the next build
    works and removes what the killed one left."""
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
    committed = stage == "published"
    SparseIndex.load(path, verify=True)  # whole: every checksum holds
    if committed:
        assert doc_ids(path) == [d for d, _ in NEW_DOCS]
    else:
        assert results(SparseIndex.load(path), encoder) == expected
    build_index(OLD_DOCS, encoder, path, **BUILD)
    assert doc_ids(path) == [d for d, _ in OLD_DOCS]
    assert not [e for e in entries(path) if e.endswith(".partial")]
    generation = json.loads((path / "manifest.json").read_text())["generation"]
    assert generation == (3 if committed else 2)
    assert entries(path) == sorted([f"base-{generation - 1:06d}", f"base-{generation:06d}",
                                    "manifest.json", f"seg-{generation - 1:06d}",
                                    f"seg-{generation:06d}", "writer.lock"])


def test_build_refuses_to_write_into_a_folder_that_is_not_an_index(encoder, tmp_path):
    """A non-empty folder without a tokretrieve manifest (someone's data, a web app with its
    own manifest.json) is never written into; an empty folder may be used."""
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("do not delete")
    with pytest.raises(IndexFormatError, match=r"refusing to write an index into .*thesis"):
        build_index(OLD_DOCS, encoder, precious, **BUILD)
    assert entries(precious) == ["chapter1.tex"]
    webapp = tmp_path / "webapp"
    (webapp / "src").mkdir(parents=True)
    (webapp / "src" / "app.js").write_text("app")
    (webapp / "manifest.json").write_text('{"name": "my app", "version": "1.0"}')
    with pytest.raises(IndexFormatError, match="not a tokretrieve manifest"):
        build_index(OLD_DOCS, encoder, webapp, **BUILD)
    assert (webapp / "src" / "app.js").read_text() == "app"
    assert entries(webapp) == ["manifest.json", "src"]
    empty = tmp_path / "empty"
    empty.mkdir()
    build_index(OLD_DOCS, encoder, empty, **BUILD)
    assert (empty / "manifest.json").is_file()


def test_files_a_user_put_in_an_index_folder_survive_rebuilds(encoder, old_index):
    """Only tokretrieve's own entries are ever removed from an index folder."""
    path, _ = old_index
    (path / "NOTES.md").write_text("my notes")
    (path / "extra").mkdir()
    for docs in (NEW_DOCS, OLD_DOCS, NEW_DOCS):
        build_index(docs, encoder, path, **BUILD)
    assert (path / "NOTES.md").read_text() == "my notes" and (path / "extra").is_dir()


def test_build_refuses_a_non_index_folder_before_encoding(encoder, tmp_path, monkeypatch):
    """The refusal costs nothing: no document is encoded and nothing is written."""
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
    assert entries(precious) == ["chapter1.tex"]
    assert calls == []


def test_a_second_build_of_the_same_path_is_refused_while_the_first_runs(
        encoder, old_index, tiny_llama_dir, tmp_path):
    """Two builds to one path: the second is refused at once (before encoding), naming the
    process that holds the lock; once that process is killed, building works again."""
    path, expected = old_index
    marker = tmp_path / "reached"
    script = tmp_path / "hold.py"
    script.write_text(KILL_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), str(tiny_llama_dir), str(path), str(marker), "encoding",
         json.dumps(NEW_DOCS)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(IndexBusyError, match=f"being written by process {process.pid}"):
            build_index(OLD_DOCS, encoder, path, **BUILD)
        assert results(SparseIndex.load(path), encoder) == expected  # readers never wait
    finally:
        process.kill()
        process.wait()
    build_index(NEW_DOCS, encoder, path, **BUILD)
    assert doc_ids(path) == [d for d, _ in NEW_DOCS]


def test_a_symlinked_index_folder_stays_a_symlink(encoder, tmp_path):
    """Building through a symlink writes into its target and keeps the link."""
    target = tmp_path / "disk2" / "idx"
    target.mkdir(parents=True)
    link = tmp_path / "idx"
    link.symlink_to(target, target_is_directory=True)
    for docs in (OLD_DOCS, NEW_DOCS):
        build_index(docs, encoder, link, **BUILD)
    assert link.is_symlink() and (target / "manifest.json").is_file()
    assert doc_ids(link) == [d for d, _ in NEW_DOCS]


def test_index_folders_follow_the_umask(encoder, tmp_path):
    """A new index folder and its entries get the modes the user's umask gives (not 0700)."""
    old = os.umask(0o022)
    try:
        build_index(OLD_DOCS, encoder, tmp_path / "idx", **BUILD)
    finally:
        os.umask(old)
    for entry in (tmp_path / "idx", tmp_path / "idx" / "seg-000001"):
        assert entry.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "idx" / "manifest.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("where", [".", "/"])
def test_an_output_that_is_a_working_folder_is_refused(encoder, tmp_path, monkeypatch, where):
    """`--output .` in a folder of one's files, or `/`: refused, nothing written."""
    (tmp_path / "mine.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(IndexFormatError, match="refusing to write an index into"):
        build_index(OLD_DOCS, encoder, where, **BUILD)
    assert entries(tmp_path) == ["mine.txt"]
