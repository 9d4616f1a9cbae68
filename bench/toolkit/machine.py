"""What a result was measured on: without the machine, model and versions, timings and even
scores cannot be compared with another run."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata

import faiss
import torch

from tokretrieve import Encoder, __version__

PACKAGES = ("torch", "transformers", "faiss-cpu", "bm25s", "ir_measures", "numpy", "scipy")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, falling back to platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU, threads, library versions and the time of the run."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tokretrieve": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "packages": versions,
    }


def model_record(model: str, encoder: Encoder) -> dict:
    """The model as given, what it resolved to, and the hash of its weights."""
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
        "dtype": str(loaded.projection_weight.dtype).removeprefix("torch."),
    }
