"""Sharded encoding on a Dask distributed cluster: a corpus's chunks embedded by many workers.

A shard is a run of whole checkpoint chunks (tokretrieve.encoding.checkpoint), so a worker
embeds exactly the batches a single-process build embeds. With the same model files, dtype,
batch size, device and torch thread count (a worker takes the client's), the embeddings are the
same bits; the build step then fits PC1 and λ once on all of them, so the index is the one a
single-process build writes. The client saves each chunk in the build's checkpoint as its shard
comes back: an interrupted distributed build resumes like a local one, and either resumes the
other's checkpoint.

Workers load the model themselves by the name the index records (an alias, an absolute path on
the worker's file system, or a hub id), once per worker process, and report the weights' hash
with every shard: a worker whose files hold other weights is refused, never merged. A worker
that dies mid-shard has its shard rescheduled by the scheduler; results are keyed by chunk, so
nothing is lost or counted twice.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tokretrieve.encoding.checkpoint import (
    CHUNK_SIZE,
    open_checkpoint,
    save_chunk,
    saved_chunk,
    stacked,
)
from tokretrieve.encoding.encoder import Encoder
from tokretrieve.encoding.recipes import ModelRecipe
from tokretrieve.errors import TokretrieveError, check_count

# `cluster="local"` starts a LocalCluster on 127.0.0.1 for the build: a worker per shard, at
# most one per core.
LOCAL = "local"
# Seconds to wait for a scheduler to answer, and for its first worker to join.
TIMEOUT_VARIABLE = "TOKRETRIEVE_CLUSTER_TIMEOUT"
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class EncoderSpec:
    """What a worker needs to load the client's encoder, small enough to travel with a task."""

    model: str
    method: str  # the whole recipe's record as JSON: overrides travel too
    max_length: int
    batch_size: int
    dtype: str
    device: str
    # torch's intra-op threads: a reduction split over another number of threads rounds
    # differently, so a worker embeds with the client's count to give the same bits
    threads: int

    @classmethod
    def of(cls, encoder: Encoder) -> EncoderSpec:
        return cls(model=encoder.model.name, method=json.dumps(encoder.method.record()),
                   max_length=encoder.max_length, batch_size=encoder.batch_size,
                   dtype=encoder.dtype, device=encoder.model.device.type,
                   threads=torch.get_num_threads())

    def load(self) -> Encoder:
        return Encoder.load(self.model, method=ModelRecipe.from_record(json.loads(self.method)),
                            max_length=self.max_length,
                            batch_size=self.batch_size, device=self.device, dtype=self.dtype)


def encode_on_cluster(encoder: Encoder, doc_ids: Sequence[str], texts: Sequence[str],
                      folder: Path, cluster: str, shards: int, progress: bool = True,
                      chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """Embeddings of `texts`, the same as encode_resumable's, computed on the Dask cluster
    whose scheduler is at `cluster` (e.g. tcp://host:8786; "local" starts one on 127.0.0.1).

    The chunks not yet saved in `folder` are split into `shards` runs of whole chunks (fewer
    when there are fewer chunks), one task each; each chunk is saved as its shard returns.
    """
    shards = check_count(shards, "shards")
    distributed = _distributed()
    spans = open_checkpoint(encoder, doc_ids, texts, folder, chunk_size)
    chunks = {number: chunk for number in range(len(spans))
              if (chunk := saved_chunk(folder, number)) is not None}
    missing = [number for number in range(len(spans)) if number not in chunks]
    with tqdm(total=len(texts), unit="doc", desc="encoding", disable=not progress,
              smoothing=0.1) as bar:
        bar.update(sum(len(chunk) for chunk in chunks.values()))
        if missing:
            runs = [[int(n) for n in run]
                    for run in np.array_split(missing, min(shards, len(missing)))]
            spec, expected = EncoderSpec.of(encoder), encoder.model.content_hash
            with _client(distributed, cluster, len(runs)) as client:
                futures = [client.submit(_encode_shard, spec, expected,
                                         [(n, list(texts[spans[n]])) for n in run], pure=False)
                           for run in runs]
                for future in distributed.as_completed(futures, loop=client.loop):
                    worker, found, shard = _shard_result(distributed, future)
                    if found != expected:
                        raise TokretrieveError(
                            f"worker {worker} loaded other weights for model '{spec.model}' "
                            f"(hash {found[:16]}, here {expected[:16]}): give every worker "
                            "the same model files as this machine")
                    for number, chunk in shard.items():
                        save_chunk(folder, number, chunk)
                        chunks[number] = chunk
                        bar.update(len(chunk))
                bar.close()  # before the client (and a local cluster) closes: a true rate
    return stacked([chunks[number] for number in range(len(spans))], encoder.model.hidden_size)


def check_cluster(cluster: str) -> None:
    """Refuse now what a build would refuse only after reading the corpus and loading the model:
    Dask missing, a malformed or unreachable scheduler address, a scheduler without workers."""
    distributed = _distributed()
    if cluster != LOCAL:
        with _client(distributed, cluster, 1):
            pass


def _distributed():
    try:
        import distributed
    except ImportError:
        raise TokretrieveError("sharded encoding runs on Dask distributed, which is not "
                               "installed: pip install 'tokretrieve[distributed]'") from None
    return distributed


def cluster_timeout() -> float:
    """Seconds to wait for a scheduler: $TOKRETRIEVE_CLUSTER_TIMEOUT, else DEFAULT_TIMEOUT."""
    value = os.environ.get(TIMEOUT_VARIABLE, "")
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise TokretrieveError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds, "
                               f"got {value!r}")
    return seconds


@contextmanager
def _client(distributed, cluster: str, workers: int) -> Iterator:
    """A client of the cluster at `cluster` with at least one worker, or of a LocalCluster of
    `workers` single-threaded workers (at most one per core) on 127.0.0.1, closed (with that
    cluster) on leaving."""
    if cluster == LOCAL:
        # Every port on 127.0.0.1, the scheduler's HTTP server (metrics; the dashboard where
        # bokeh is installed) on a free one: 8787 may belong to another cluster.
        with distributed.LocalCluster(n_workers=min(workers, os.cpu_count() or 1),
                                      threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address="127.0.0.1:0") as local, \
                distributed.Client(local, set_as_default=False) as client:
            yield client
        return
    timeout = cluster_timeout()
    try:
        client = distributed.Client(cluster, timeout=timeout, set_as_default=False)
    except ValueError as error:  # a malformed address: no port, unknown scheme
        raise TokretrieveError(f"{cluster!r} is not a Dask scheduler address ({error}): give "
                               f"one like tcp://host:8786, or '{LOCAL}'") from None
    except OSError as error:
        raise TokretrieveError(
            f"cannot reach the Dask scheduler at {cluster} ({error}): check that `dask "
            f"scheduler` runs there and that its port is open from here ({TIMEOUT_VARIABLE} "
            "sets how many seconds to wait)") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise TokretrieveError(
                f"the Dask scheduler at {cluster} has no workers (none joined in {timeout:g} "
                f"s): start some with `dask worker {cluster}`") from None
        yield client


def _shard_result(distributed, future) -> tuple[str, str, dict[int, np.ndarray]]:
    """A shard's (worker, model hash, chunk embeddings), or one line on why it has none."""
    try:
        return future.result()
    except distributed.KilledWorker as error:
        raise TokretrieveError(
            f"every worker that ran a shard died ({error.allowed_failures + 1} tried, the last "
            f"{error.last_worker.address}): their logs say why (out of memory: lower "
            "--batch-size or give them more)") from None


# ----------------------------------------------------------------------------- on the workers
_loaded: dict[EncoderSpec, Encoder] = {}
_loading = threading.Lock()


def _worker_encoder(spec: EncoderSpec, expected_hash: str) -> Encoder:
    """The encoder this worker process loaded for `spec`, loaded once. A cached model whose
    hash is not the client's is loaded again: its files may have changed since."""
    with _loading:
        encoder = _loaded.get(spec)
        if encoder is None or encoder.model.content_hash != expected_hash:
            _loaded.clear()  # one model per worker process: they can be large
            encoder = _loaded[spec] = spec.load()
        return encoder


def _encode_shard(spec: EncoderSpec, expected_hash: str, chunks: list[tuple[int, list[str]]]
                  ) -> tuple[str, str, dict[int, np.ndarray]]:
    """One shard's task: (this worker, its model's hash, embeddings by chunk number); nothing
    is encoded with weights other than the client's."""
    from distributed import get_worker

    worker = get_worker().address
    try:
        encoder = _worker_encoder(spec, expected_hash)
    except TokretrieveError as error:
        raise type(error)(f"worker {worker}: {error}") from None
    found = encoder.model.content_hash
    if found != expected_hash:
        return worker, found, {}
    torch.set_num_threads(spec.threads)
    return worker, found, {number: encoder.embed(texts) for number, texts in chunks}
