"""Sharded encoding on Dask distributed (tokretrieve.encoding.sharded through build_index and
`tokretrieve index --cluster --shards`): the merged index is array for array the one a
single-process build writes, whatever the shards, a resumed checkpoint or a worker that dies
mid-shard; bad clusters and other model weights are refused with one line.

Every cluster here runs on 127.0.0.1 and is closed by the test or fixture that started it."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import sys
import time

import numpy as np
import pytest
from refimpl import random_texts

distributed = pytest.importorskip(
    "distributed", reason="sharded encoding needs Dask distributed: pip install "
                          "'tokretrieve[distributed]'")

import dask  # noqa: E402

from tokretrieve import SparseIndex, build_index  # noqa: E402
from tokretrieve.cli import main  # noqa: E402
from tokretrieve.encoding import checkpoint, sharded  # noqa: E402
from tokretrieve.errors import TokretrieveError  # noqa: E402
from tokretrieve.index.generations import CHECKPOINT  # noqa: E402

# 50 documents (one empty) in 8-document chunks: 7 chunks, the last of 2; segments of 16
# documents, so the merged postings cross segment boundaries too.
DOCS = [(f"d{i:02d}", text) for i, text in enumerate(
    [*random_texts(49, seed=71, low=3, high=40), ""])]
CHUNK = 8
CHUNKS = -(-len(DOCS) // CHUNK)
# λ "auto": calibrated once on the whole corpus, on the client, as a single-process build does.
OPTIONS = {"pc1_strength": "auto", "impacts": "uint8", "segment_docs": 16, "chunk_size": CHUNK,
           "progress": False}


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes (each with a nanny that restarts it) on 127.0.0.1,
    the scheduler's HTTP server on a free port there too."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0") as local:
        yield local


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as connected:
        yield connected


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(bag_size=8, weighting="log1p_relu")


@pytest.fixture(scope="module")
def single(encoder, tmp_path_factory):
    """The single-process build every sharded build must equal."""
    with pytest.warns(UserWarning, match="empty bags"):
        return build_index(DOCS, encoder, tmp_path_factory.mktemp("single") / "idx", **OPTIONS)


def sharded_build(encoder, path, address, shards, **extra):
    with pytest.warns(UserWarning, match="empty bags"):
        return build_index(DOCS, encoder, path, cluster=address, shards=shards,
                           **{**OPTIONS, **extra})


def assert_same_index(got: SparseIndex, expected: SparseIndex) -> None:
    """Array for array: postings (of each 16-document block), ids, embeddings, PC1, λ and the
    manifest."""
    assert got.postings.indptr.shape == expected.postings.indptr.shape == (
        -(-len(DOCS) // 16), expected.vocab_size + 1)
    assert got.postings.arrays().keys() == expected.postings.arrays().keys()
    for name, b in expected.postings.arrays().items():
        a = got.postings.arrays()[name]
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert got.postings.scale == expected.postings.scale
    assert np.array_equal(np.asarray(got.doc_ids), np.asarray(expected.doc_ids))
    assert np.array_equal(got.embeddings, expected.embeddings)  # bit for bit, no tolerance
    assert np.array_equal(np.asarray(got.pc1_direction), np.asarray(expected.pc1_direction))
    ours, theirs = got.manifest, expected.manifest
    assert ours == theirs  # model record, bag record (λ asked and resolved), layout, digest
    assert ours.bags.pc1_strength == theirs.bags.pc1_strength != 0
    assert ours.bags.calibration == theirs.bags.calibration
    assert (ours.postings, ours.empty_document_ids, ours.layout.scale) == (
        theirs.postings, theirs.empty_document_ids, theirs.layout.scale)
    assert not (got.path / CHECKPOINT).exists()


@pytest.mark.parametrize("shards", [1, 3, 20], ids=["one-shard", "uneven", "more-than-chunks"])
def test_sharded_build_equals_the_single_process_build(encoder, single, cluster, tmp_path,
                                                       shards):
    """1 shard (all 7 chunks in one task), 3 uneven ones (3 + 2 + 2 chunks) and 20 (one task
    per chunk: there are only 7) all merge into the single-process index."""
    index = sharded_build(encoder, tmp_path / "idx", cluster.scheduler_address, shards)
    assert_same_index(index, single)


class Interrupted(Exception):
    pass


def recorded_saves(module, monkeypatch, stop_after: int | None = None) -> list[int]:
    """The chunk numbers `module` saves from now on; Interrupted in place of a save past
    `stop_after` of them, as a crash or Ctrl-C would."""
    saved, original = [], module.save_chunk

    def save(folder, number, chunk):
        if stop_after is not None and len(saved) == stop_after:
            raise Interrupted
        saved.append(number)
        original(folder, number, chunk)

    monkeypatch.setattr(module, "save_chunk", save)
    return saved


def test_sharded_build_resumes_a_local_one(encoder, single, cluster, tmp_path, monkeypatch):
    """A local build interrupted after 2 chunks is finished by a sharded one, which encodes
    only the 5 chunks missing."""
    path = tmp_path / "idx"
    recorded_saves(checkpoint, monkeypatch, stop_after=2)
    with pytest.raises(Interrupted):
        build_index(DOCS, encoder, path, **OPTIONS)
    saved = recorded_saves(sharded, monkeypatch)
    assert_same_index(sharded_build(encoder, path, cluster.scheduler_address, 2), single)
    assert sorted(saved) == list(range(2, CHUNKS))


def test_local_build_resumes_a_sharded_one(encoder, single, cluster, tmp_path, monkeypatch):
    """A sharded build interrupted once its first shard came back is finished by a local
    one, which encodes only the chunks that shard did not hold."""
    path = tmp_path / "idx"
    first_shard = recorded_saves(sharded, monkeypatch)
    original = sharded._shard_result

    def interrupted_after_the_first(distributed, future):
        if first_shard:
            raise Interrupted
        return original(distributed, future)

    monkeypatch.setattr(sharded, "_shard_result", interrupted_after_the_first)
    with pytest.raises(Interrupted):
        build_index(DOCS, encoder, path, cluster=cluster.scheduler_address, shards=3, **OPTIONS)
    assert first_shard
    local = recorded_saves(checkpoint, monkeypatch)
    with pytest.warns(UserWarning, match="empty bags"):
        index = build_index(DOCS, encoder, path, **OPTIONS)
    assert_same_index(index, single)
    assert sorted(first_shard + local) == list(range(CHUNKS))


def test_chunks_of_another_size_are_not_reused(encoder, tmp_path, monkeypatch):
    """The chunk size is part of the checkpoint's key: chunk 1 of 16 documents is not chunk 1
    of 8, so a rerun with another size encodes everything again."""
    path = tmp_path / "idx"
    recorded_saves(checkpoint, monkeypatch, stop_after=2)
    with pytest.raises(Interrupted):
        build_index(DOCS, encoder, path, **OPTIONS)
    monkeypatch.undo()
    saved = recorded_saves(checkpoint, monkeypatch)
    with pytest.warns(UserWarning, match="empty bags"):
        build_index(DOCS, encoder, path, **{**OPTIONS, "chunk_size": 16})
    assert saved == [0, 1, 2, 3]


class KillOnStart(distributed.WorkerPlugin):
    """Kills the worker process that starts a task (os._exit: no clean-up, as a crash or the
    OOM killer would); with a marker file only the first one, which creates it atomically."""

    def __init__(self, marker: str | None = None):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        if self.marker is not None:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
        os._exit(1)


def test_worker_killed_mid_shard(encoder, single, cluster, client, tmp_path):
    """The shard of the killed worker is rescheduled, the nanny restarts the worker, and the
    merged index has every document once: the single-process index."""
    marker = tmp_path / "killed"
    before = set(client.scheduler_info()["workers"])
    client.register_plugin(KillOnStart(str(marker)), name="kill-once")
    try:
        index = sharded_build(encoder, tmp_path / "idx", cluster.scheduler_address, 3)
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists()  # a worker died while running a shard
    assert_same_index(index, single)
    client.wait_for_workers(2, timeout=60)  # the restarted worker is back for the next tests
    assert set(client.scheduler_info()["workers"]) != before


def test_a_shard_that_kills_every_worker_is_one_error(encoder, tmp_path):
    """Past the scheduler's allowed failures (none here) a shard is given up: one line that
    names the last worker, not a hang or Dask's KilledWorker."""
    with (dask.config.set({"distributed.scheduler.allowed-failures": 0}),
          distributed.LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0") as doomed,
          distributed.Client(doomed, set_as_default=False) as client):
        client.register_plugin(KillOnStart(), name="kill-always")
        with pytest.raises(TokretrieveError, match=r"every worker that ran a shard died \(1 "
                           r"tried, the last tcp://127\.0\.0\.1:\d+\)"):
            build_index(DOCS, encoder, tmp_path / "idx", cluster=doomed.scheduler_address,
                        shards=2, **OPTIONS)


def test_other_model_weights_are_refused(tiny_llama_dir, other_llama_dir, cluster, tmp_path):
    """Workers that load other weights under the model's name (files that differ between
    machines, or changed since) are refused with both hashes, before they encode anything."""
    from tokretrieve import Encoder

    folder = shutil.copytree(tiny_llama_dir, tmp_path / "model")
    encoder = Encoder.load(str(folder), method="prompteol", batch_size=4, device="cpu")
    for weights in other_llama_dir.glob("*.safetensors"):  # what the workers will find there
        shutil.copy(weights, folder / "incoming")
        os.replace(folder / "incoming", folder / weights.name)  # the loaded file maps the old
    path = tmp_path / "idx"
    other = Encoder.load(str(other_llama_dir), device="cpu").model.content_hash
    with pytest.raises(TokretrieveError, match=rf"worker tcp://127\.0\.0\.1:\d+ loaded other "
                       rf"weights .*hash {other[:16]}, here {encoder.model.content_hash[:16]}"):
        build_index(DOCS, encoder, path, cluster=cluster.scheduler_address, shards=2,
                    **OPTIONS)
    assert not list((path / CHECKPOINT).glob("chunk-*.npy"))


def test_a_worker_without_the_model_names_itself(tiny_llama_dir, cluster, tmp_path):
    """A model path that holds no model on the workers: the worker's own load error, naming
    the worker."""
    from tokretrieve import Encoder

    folder = shutil.copytree(tiny_llama_dir, tmp_path / "model")
    encoder = Encoder.load(str(folder), method="prompteol", batch_size=4, device="cpu")
    folder.rename(tmp_path / "moved")  # the client keeps its loaded copy
    with pytest.raises(TokretrieveError, match=r"^worker tcp://127\.0\.0\.1:\d+: model folder "
                       "not found"):
        build_index(DOCS, encoder, tmp_path / "idx", cluster=cluster.scheduler_address,
                    shards=2, **OPTIONS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_scheduler_is_one_line(beir_corpus, tiny_llama_dir, tmp_path, capsys,
                                           monkeypatch):
    """Refused within the wait asked for, before the corpus is read or the model loaded."""
    monkeypatch.setenv(sharded.TIMEOUT_VARIABLE, "1")
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.perf_counter()
    assert cli_build(beir_corpus, tiny_llama_dir, tmp_path / "idx", "--cluster", address,
                     "--shards", "2") == 2
    assert time.perf_counter() - started < 4
    out, err = capsys.readouterr()
    assert err.startswith(f"error: cannot reach the Dask scheduler at {address}")
    assert sharded.TIMEOUT_VARIABLE in err and err.count("\n") == 1
    assert "read" not in out and not (tmp_path / "idx").exists()


@pytest.mark.parametrize("flags, message", [
    (["--cluster", "127.0.0.1"], "--cluster and --shards go together"),
    (["--shards", "2"], "--cluster and --shards go together"),
    (["--cluster", "local", "--shards", "0"], "--shards must be a positive integer"),
    (["--cluster", "http://127.0.0.1:8786", "--shards", "2"], "is not a Dask scheduler address"),
])
def test_bad_cluster_flags(beir_corpus, tiny_llama_dir, tmp_path, capsys, flags, message):
    assert cli_build(beir_corpus, tiny_llama_dir, tmp_path / "idx", *flags) == 2
    assert message in capsys.readouterr().err


def test_bad_timeout_and_no_workers(encoder, tmp_path, monkeypatch):
    """A scheduler no worker joined is reported, not waited on forever; the wait must be a
    number of seconds."""
    monkeypatch.setenv(sharded.TIMEOUT_VARIABLE, "soon")
    with pytest.raises(TokretrieveError, match="TOKRETRIEVE_CLUSTER_TIMEOUT must be a positive"):
        build_index(DOCS, encoder, tmp_path / "a", cluster="tcp://127.0.0.1:1", shards=2,
                    **OPTIONS)
    monkeypatch.setenv(sharded.TIMEOUT_VARIABLE, "0.5")
    with (distributed.LocalCluster(n_workers=0, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0") as bare,
          pytest.raises(TokretrieveError, match="has no workers")):
        build_index(DOCS, encoder, tmp_path / "b", cluster=bare.scheduler_address, shards=2,
                    **OPTIONS)


def test_without_dask_says_what_to_install(encoder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    with pytest.raises(TokretrieveError, match=r"pip install 'tokretrieve\[distributed\]'"):
        build_index(DOCS, encoder, tmp_path / "idx", cluster="local", shards=2, **OPTIONS)


@pytest.fixture
def beir_corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    with (folder / "corpus.jsonl").open("w") as handle:
        for doc_id, text in DOCS[:-1]:
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    return folder


def cli_build(corpus, model_dir, output, *extra):
    return main(["index", str(corpus), "--model", str(model_dir), "--output", str(output),
                 "--bag-size", "8", "--weighting", "shifted", "--pc1-strength", "0",
                 "--batch-size", "4", *extra])


def test_cli_local_cluster(beir_corpus, tiny_llama_dir, tmp_path, capsys):
    """`--cluster local --shards 2` starts a LocalCluster on 127.0.0.1, stops its worker
    processes when done, and writes the index the plain command writes."""
    assert cli_build(beir_corpus, tiny_llama_dir, tmp_path / "plain") == 0
    processes = set(multiprocessing.active_children())  # the module cluster's workers
    assert cli_build(beir_corpus, tiny_llama_dir, tmp_path / "sharded", "--cluster", "local",
                     "--shards", "2") == 0
    assert set(multiprocessing.active_children()) <= processes
    assert "indexed 49 documents" in capsys.readouterr().out
    plain, merged = (SparseIndex.load(tmp_path / name) for name in ("plain", "sharded"))
    assert np.array_equal(merged.embeddings, plain.embeddings)
    assert merged.postings.arrays().keys() == plain.postings.arrays().keys()
    for name, array in plain.postings.arrays().items():
        assert np.array_equal(merged.postings.arrays()[name], array)
    assert merged.manifest == plain.manifest
