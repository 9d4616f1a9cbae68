"""Live changes and concurrent processes: kill -9 at every stage of add, delete and compact,
one writer at a time (and a killed one frees the lock), and readers racing a writer.

Every process here is a real one: the writer of a crash test is SIGKILLed where a hook in its
script holds it (the way tests/test_index_storage.py kills builds), and the readers of the race
open and search the index while another process commits. What they must see is known
independently: the live documents of each generation follow from the changes made, and the
answers of a generation are those its committing writer got from it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
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
    IndexManifest,
    SparseIndex,
    add_documents,
    build_index,
    compact_index,
    delete_documents,
    verify_index,
)
from tokretrieve.index import storage

FIRST = [(f"a{i}", t) for i, t in enumerate(random_texts(10, seed=91, low=3, high=10))]
SECOND = [(f"b{i}", t) for i, t in enumerate(random_texts(5, seed=92, low=3, high=10))]
EXTRA = [(f"c{i}", t) for i, t in enumerate(random_texts(6, seed=93, low=3, high=10))]
GONE = ["a2", "b1"]  # deleted by the third commit of the index every test starts from
START = [d for d, _ in FIRST + SECOND if d not in GONE]  # its live documents, in position order
# What each live change of the crash tests does, and the live documents after it.
CHANGE = {"add": [list(d) for d in EXTRA[:3]], "delete": ["a0", "a5", "b3"], "compact": None}
AFTER = {"add": [*START, "c0", "c1", "c2"],
         "delete": [d for d in START if d not in CHANGE["delete"]],
         "compact": START}
# The entries a change of generation 4 writes before it commits.
NEW_ENTRIES = {"add": {"seg-000004", "deleted-000004.npy"}, "delete": {"deleted-000004.npy"},
               "compact": {"seg-000004"}}
NEXT = "a1"  # deleted by the commit after a crash: live in every state

# What a reader observes of an index, defined once for this module and the child scripts.
OBSERVE = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    import scipy.sparse as sp
    from tokretrieve.index.sparse import SparseIndex

    def queries(vocab):
        rng = np.random.default_rng(71)
        rows = np.repeat(np.arange(6), 40)
        cols = np.concatenate([rng.choice(vocab, 40, replace=False) for _ in range(6)])
        weights = rng.uniform(0.5, 2.0, len(cols)).astype(np.float32)
        return sp.csr_matrix((weights, (rows, cols)), shape=(6, vocab))

    def answers(index):
        scores, positions = index.search(queries(index.vocab_size), k=8)
        ids = np.asarray(index.doc_ids)
        return [[[str(ids[p]), float(s)] for s, p in zip(row_s, row_p) if p >= 0]
                for row_s, row_p in zip(scores, positions)]

    def observe(index):
        ids = np.asarray(index.doc_ids)
        live = [str(d) for d, gone in zip(ids, index.deleted_mask) if not gone]
        return [index.manifest.contents.generation, live, answers(index)]
""")
_shared: dict = {}
exec(OBSERVE, _shared)
observe, answers = _shared["observe"], _shared["answers"]


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(bag_size=6, weighting="shifted")


@pytest.fixture(scope="module")
def pristine(encoder, tmp_path_factory):
    """Generation 3 (never changed; tests change copies): FIRST built with segment_docs=4,
    SECOND added (seg-000002), GONE deleted (deleted-000003.npy)."""
    path = tmp_path_factory.mktemp("pristine") / "idx"
    build_index(FIRST, encoder, path, segment_docs=4, progress=False)
    add_documents(path, SECOND, encoder, progress=False)
    delete_documents(path, GONE)
    return path


def entries(path):
    return sorted(p.name for p in path.iterdir())


def named(path):
    """The entries the committed manifest names."""
    contents = IndexManifest.read(path).contents
    return {contents.base, *(s.name for s in contents.segments)} | (
        {contents.deleted} if contents.deleted else set())


@pytest.fixture(scope="module")
def committed(pristine, tmp_path_factory):
    """What the index answers before any change, and after each change done without a crash
    (on copies; add loads the index's model by its manifest, as the killed child does)."""
    states = {"before": (observe(SparseIndex.load(pristine)), named(pristine))}
    for op in CHANGE:
        path = tmp_path_factory.mktemp(op) / "idx"
        shutil.copytree(pristine, path)
        if op == "add":
            add_documents(path, [tuple(d) for d in CHANGE[op]], progress=False)
        elif op == "delete":
            delete_documents(path, CHANGE[op])
        else:
            compact_index(path)
        states[op] = (observe(SparseIndex.load(path)), named(path))
    assert states["before"][0][:2] == [3, START]
    for op, live in AFTER.items():
        assert states[op][0][:2] == [4, live]
    assert states["compact"][0][2] == states["before"][0][2]  # a compaction answers the same
    return states


KILL_SCRIPT = SCRIPT_HEADER + textwrap.dedent("""
    import json
    from kill_points import hang_at

    index_path, marker, op, stage, argument = sys.argv[1:6]
    argument = json.loads(argument)

    hang_at(stage, marker)
    if op == "add":  # loads the index's model by its manifest: torch only where needed
        from tokretrieve import add_documents
        add_documents(index_path, [tuple(d) for d in argument], progress=False)
    elif op == "delete":
        from tokretrieve import delete_documents
        delete_documents(index_path, argument)
    else:
        from tokretrieve import compact_index
        compact_index(index_path)
    sys.exit("the change finished without reaching the hook")
""")


@contextlib.contextmanager
def started(tmp_path, name, script, *args):
    """A Python child process running `script`; killed and reaped on the way out whatever
    happens. Its stderr goes to a file (read back on failure)."""
    source = tmp_path / f"{name}.py"
    source.write_text(script)
    log = (tmp_path / f"{name}.err").open("w")
    process = subprocess.Popen([sys.executable, str(source), *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=log)
    process.log = tmp_path / f"{name}.err"
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()


def wait_for(marker, process, timeout=90):
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, process.log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the child never reached its hook"
        time.sleep(0.02)


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


CASES = [("add", "encoding"), *((op, stage) for op in CHANGE
                                for stage in ("writing", "publishing", "published"))]


@pytest.mark.parametrize(("op", "stage"), CASES, ids=[f"{o}-{s}" for o, s in CASES])
def test_sigkill_during_a_live_change_leaves_the_last_committed_generation(
        pristine, committed, tmp_path, op, stage):
    """An add, delete or compaction SIGKILLed while encoding, with its entries written, with
    its manifest written under the temporary name, or just after the rename: the index verifies
    and answers exactly as the last committed generation does (the one before the change, or
    after it once renamed); the next commit succeeds and leaves only its own entries and its
    predecessor's (no orphaned segment, deleted file or partial manifest)."""
    path = tmp_path / "idx"
    shutil.copytree(pristine, path)
    before = entries(path)
    marker = tmp_path / "reached"
    with started(tmp_path, "change", KILL_SCRIPT, path, marker, op, stage,
                 json.dumps(CHANGE[op])) as child:
        wait_for(marker, child)
        kill(child)
    left = set(entries(path)) - set(before)
    if stage == "encoding":
        assert left == set()
    elif stage == "writing":
        assert left == NEW_ENTRIES[op]
    elif stage == "publishing":
        partial = f".manifest.json.{child.pid}.partial"
        assert left == NEW_ENTRIES[op] | {partial}
        assert json.loads((path / partial).read_text())["generation"] == 4
    else:
        assert left == NEW_ENTRIES[op]
    expected, expected_entries = committed[op if stage == "published" else "before"]
    index = SparseIndex.load(path, verify=True)  # every checksum holds
    assert observe(index) == expected
    assert named(path) == expected_entries
    delete_documents(path, [NEXT])
    after_next = SparseIndex.load(path, verify=True)
    assert observe(after_next)[:2] == [expected[0] + 1, [d for d in expected[1] if d != NEXT]]
    assert entries(path) == sorted(named(path) | expected_entries
                                   | {"manifest.json", "writer.lock"})
    assert verify_index(path) == []


def test_one_writer_at_a_time_and_a_killed_writer_frees_the_lock(pristine, committed, encoder,
                                                                 tmp_path, monkeypatch):
    """While a process is inside an add (held in its encoding), every change from another
    process is refused at once, naming the holder's pid, before encoding anything; readers are
    not held up. Once the holder is SIGKILLed its lock is free (the kernel dropped it; the
    stale pid left in writer.lock blocks nothing) and the next writer commits."""
    path = tmp_path / "idx"
    shutil.copytree(pristine, path)
    marker = tmp_path / "reached"
    embedded = []
    real_embed = Encoder.embed

    def counting_embed(self, texts, *args, **kwargs):
        embedded.append(len(texts))
        return real_embed(self, texts, *args, **kwargs)

    with started(tmp_path, "holder", KILL_SCRIPT, path, marker, "add", "encoding",
                 json.dumps(CHANGE["add"])) as holder:
        wait_for(marker, holder)
        assert (path / "writer.lock").read_text() == f"process {holder.pid}\n"
        monkeypatch.setattr(Encoder, "embed", counting_embed)
        refusal = re.escape(f"{path} is being written by process {holder.pid};")
        for change in (lambda: delete_documents(path, [NEXT]),
                       lambda: compact_index(path),
                       lambda: add_documents(path, EXTRA[3:], encoder, progress=False),
                       lambda: build_index(FIRST, encoder, path, progress=False)):
            began = time.monotonic()
            with pytest.raises(IndexBusyError, match=refusal):
                change()
            assert time.monotonic() - began < 5  # at once, not after the holder's 120 s
        assert embedded == []
        assert observe(SparseIndex.load(path, verify=True)) == committed["before"][0]
        kill(holder)
    assert (path / "writer.lock").read_text() == f"process {holder.pid}\n"  # a dead pid
    delete_documents(path, [NEXT])
    assert observe(SparseIndex.load(path))[:2] == [4, [d for d in START if d != NEXT]]
    assert (path / "writer.lock").read_text() == ""  # released by the one that committed


# The race: a writer process commits SCHEDULE while reader processes open and search.
SCHEDULE = [("add", [list(d) for d in EXTRA[:2]]), ("delete", ["a0", "c0"]), ("compact", None),
            ("add", [list(EXTRA[2])]), ("delete", ["a1", "b3"]), ("compact", None),
            ("add", [list(d) for d in EXTRA[3:5]]), ("delete", ["c1", "a9"]),
            ("compact", None), ("add", [list(EXTRA[5])]), ("delete", ["c3"]),
            ("compact", None)]
READERS = 3

WRITER_SCRIPT = OBSERVE + textwrap.dedent("""
    from tokretrieve import Encoder, add_documents, compact_index, delete_documents

    index_path, ready, readers, go, log_file, done, schedule = sys.argv[1:8]
    record = SparseIndex.load(index_path).manifest.model
    encoder = Encoder.load(record.name, method=record.method, max_length=record.max_length,
                           dtype=record.dtype)
    deadline = time.monotonic() + 60
    while len(list(Path(ready).glob("*"))) < int(readers):  # every reader holds generation 3
        assert time.monotonic() < deadline, "the readers never started"
        time.sleep(0.01)
    log = [observe(SparseIndex.load(index_path))]
    Path(go).write_text("")
    for op, argument in json.loads(schedule):
        if op == "add":
            index = add_documents(index_path, [tuple(d) for d in argument], encoder,
                                  progress=False)
        elif op == "delete":
            index = delete_documents(index_path, argument)
        else:
            index = compact_index(index_path)
        log.append(observe(index))  # what this generation answers, seen by its writer
        time.sleep(0.01)
    Path(log_file).write_text(json.dumps(log))
    Path(done).write_text("")
""")

READER_SCRIPT = OBSERVE + textwrap.dedent("""
    import traceback
    import tokretrieve.index.sparse as sparse

    index_path, ready, go, done, out = sys.argv[1:6]
    real_load_array = sparse.load_array

    def slow_load_array(file, mmap=True):  # a slow disk: writers commit between two arrays
        time.sleep(0.004)
        return real_load_array(file, mmap)

    sparse.load_array = slow_load_array
    seen, again, errors = [], [], []
    first = previous = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        finished = Path(done).exists()
        try:
            index = SparseIndex.load(index_path, verify=False)
            seen.append(observe(index))
            if previous is not None:  # the index opened before, searched after a commit
                again.append([previous[1], answers(previous[0]), seen[-1][0]])
            previous = (index, seen[-1][0])
            if first is None:
                first = previous
        except Exception:
            errors.append(traceback.format_exc())
        if not Path(ready).exists():  # holding generation 3: wait for the writer to start
            Path(ready).write_text("")
            while not Path(go).exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        if finished:
            break
    final = [first[1], answers(first[0])] if first else None
    Path(out).write_text(json.dumps({"seen": seen, "again": again, "errors": errors,
                                     "final": final}))
""")


def expected_live(start, schedule):
    """The live documents of each generation, from the changes alone."""
    live, by_generation = list(start), {3: list(start)}
    for generation, (op, argument) in enumerate(schedule, start=4):
        if op == "add":
            live = [*live, *(d for d, _ in argument)]
        elif op == "delete":
            live = [d for d in live if d not in argument]
        by_generation[generation] = list(live)
    return by_generation


def test_readers_racing_a_writer_see_whole_generations(pristine, tmp_path):
    """A writer process commits adds, deletes and compactions while reader processes (their
    array reads slowed, so that commits land mid-load) open and search in a loop. No reader
    ever fails; every load is one committed generation, its live documents those the changes
    give and its answers those its writer got; generations never go backwards for a reader;
    an index opened at generation N answers as N after the writer moved on, even once N's
    files are gone; and a reopen after the last commit sees that commit."""
    path = tmp_path / "idx"
    shutil.copytree(pristine, path)
    ready = tmp_path / "ready"
    ready.mkdir()
    go, done, log = tmp_path / "go", tmp_path / "done", tmp_path / "log.json"
    outs = [tmp_path / f"reader{i}.json" for i in range(READERS)]
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(started(tmp_path, f"reader{i}", READER_SCRIPT, path,
                                               ready / str(i), go, done, outs[i]))
                   for i in range(READERS)]
        writer = stack.enter_context(started(tmp_path, "writer", WRITER_SCRIPT, path, ready,
                                             READERS, go, log, done, json.dumps(SCHEDULE)))
        for process in (writer, *readers):
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"a child hung: {process.log.read_text()[-3000:]}")
            assert process.returncode == 0, process.log.read_text()[-3000:]
    expected = expected_live(START, SCHEDULE)
    last = max(expected)
    written = {generation: (live, found) for generation, live, found in json.loads(
        log.read_text())}
    assert {g: live for g, (live, _) in written.items()} == expected
    assert not (path / "seg-000001").exists()  # generation 3's segments are gone from disk
    for out in outs:
        report = json.loads(out.read_text())
        assert report["errors"] == []
        generations = [generation for generation, _, _ in report["seen"]]
        assert generations[0] == 3 and generations[-1] == last
        assert generations == sorted(generations)
        for generation, live, found in report["seen"]:
            assert (live, found) == written[generation], generation
        for generation, found, _ in report["again"]:
            assert found == written[generation][1], generation
        held, found = report["final"]
        assert held == 3 and found == written[3][1]


# ------------------------------------------------- a load losing the race, made deterministic
def commits_after_the_next_manifest_read(monkeypatch, changes):
    """The next IndexManifest.read returns the committed manifest, then `changes` commit (in
    this process, as another writer would) before the reader opens a single file of it."""
    real = IndexManifest.read.__func__
    armed = [True]

    def read(cls, folder):
        manifest = real(cls, folder)
        if armed[0]:
            armed[0] = False
            for change in changes:
                change()
        return manifest

    monkeypatch.setattr(IndexManifest, "read", classmethod(read))


@pytest.mark.parametrize("verify", [False, None, True])
def test_a_load_that_loses_the_race_to_two_commits_opens_the_newer_one(pristine, tmp_path,
                                                                       monkeypatch, verify):
    """Manifest 3 read, then a compaction (4) and a delete (5) commit: the delete's writer
    removes generation 3's segments. The load finds them gone and opens generation 5, whether
    it hashes the files first or not."""
    path = tmp_path / "idx"
    shutil.copytree(pristine, path)
    commits_after_the_next_manifest_read(monkeypatch, [lambda: compact_index(path),
                                                       lambda: delete_documents(path, [NEXT])])
    index = SparseIndex.load(path, verify=verify)
    assert not (path / "seg-000001").exists()
    assert observe(index)[:2] == [5, [d for d in START if d != NEXT]]


def test_a_file_removed_between_its_check_and_its_read_is_a_race_not_damage(
        pristine, tmp_path, monkeypatch):
    """A writer's clean-up may remove a file after the load saw it and before numpy opens it:
    that is a race the load retries from the newer manifest, not a damaged index."""
    path = tmp_path / "idx"
    shutil.copytree(pristine, path)
    real_load = np.load
    armed = [True]

    def load(file, *args, **kwargs):
        if armed[0] and "seg-000001" in str(file):
            armed[0] = False
            compact_index(path)
            delete_documents(path, [NEXT])  # removes seg-000001, which the load had checked
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(storage.np, "load", load)
    index = SparseIndex.load(path, verify=False)
    assert not armed[0]
    assert observe(index)[:2] == [5, [d for d in START if d != NEXT]]
