"""What a result was measured on, and with which code.

Without the machine, the thread settings and the library versions, a timing cannot be compared
with another run's; without the commit, not even a score can be traced to the code that made it.
Every benchmark puts this record into its results.json (bench.toolkit.results.new_record).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.toolkit import REPO_ROOT
from bench.toolkit.clock import load_average
from bench.toolkit.threads import thread_settings

if TYPE_CHECKING:
    from tokretrieve import Encoder, SparseIndex

PACKAGES = ("tokretrieve", "torch", "transformers", "numpy", "scipy", "numba", "faiss-cpu",
            "bm25s", "ir_measures")
# Environment variables that change how the engines start their threads (read once, at start).
THREAD_ENV = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "NUMBA_THREADING_LAYER")
MAX_CHANGED_SHOWN = 50


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, falling back to platform's guess."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Total physical memory (MemTotal), None where /proc/meminfo is unavailable."""
    with contextlib.suppress(OSError, ValueError, IndexError), \
            open("/proc/meminfo", encoding="ascii") as handle:
        return round(int(handle.readline().split()[1]) / 2**20, 1)
    return None


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """The commit checked out in `repo` and whether tracked files differ from it.

    `dirty` counts tracked files only (`changed` lists them): untracked files are what a run
    itself writes (its results folder, caches), so counting them would mark every run dirty.
    All three fields are None outside a git checkout or without git.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "changed": None}
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:MAX_CHANGED_SHOWN]}


def machine() -> dict[str, Any]:
    """CPU, cores, memory, thread settings, package versions, date, load average and commit."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib(),
        "threads": thread_settings(),
        "env": {name: os.environ.get(name) for name in THREAD_ENV},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "load_avg": load_average(),
        "git": git_state(),
    }


def model_record(model: str, encoder: Encoder) -> dict[str, Any]:
    """The model as given, what it resolved to, and the hash of its weights: a score or a
    docs/s figure belongs to these exact weights, not to a name that may resolve elsewhere."""
    loaded = encoder.model
    return {
        "model": model,
        "source": loaded.source,
        "content_hash": loaded.content_hash,
        "method": encoder.method.name,
        "max_length": encoder.max_length,
        "batch_size": encoder.batch_size,
        "hidden_size": loaded.hidden_size,
        "vocab_size": loaded.vocab_size,
        "device": str(loaded.device),
        "dtype": encoder.dtype,
    }


def array_bytes(folder: Path) -> dict[str, int]:
    """Bytes of an index folder's .npy arrays by file name, summed over its segment folders
    (postings_docs.npy of every segment under one name)."""
    sizes: dict[str, int] = {}
    for file in Path(folder).rglob("*.npy"):
        sizes[file.name] = sizes.get(file.name, 0) + file.stat().st_size
    return sizes


def index_record(index: SparseIndex) -> dict[str, Any]:
    """Where an index-based measurement's bags came from: the folder, the manifest's model
    record (name, weights hash, recipe, dtype) and its bag recipe."""
    manifest = index.manifest.to_json()
    return {"index": str(index.path), "index_model": manifest["model"],
            "index_bags": manifest["projection"]}
