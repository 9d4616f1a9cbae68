"""On-disk index folders: atomic writes, the JSON manifest, memory-mapped arrays.

An index is a folder of plain `.npy` arrays plus `manifest.json`; nothing is pickled, so numpy
alone can inspect it. A build writes into a hidden sibling folder, fsyncs every file, and only then
swaps it in: a crash or an exception during the build leaves the previous index at that path
untouched. The swap is two renames (old aside, new in); should a crash fall between them, the next
load puts the previous index back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from tokretrieve.errors import IndexFormatError

MANIFEST = "manifest.json"


def previous_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; on normal exit it replaces `path`, on error it vanishes."""
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-{os.getpid()}-",
                                    dir=path.parent))
    try:
        yield staging
        _fsync_tree(staging)
        backup = previous_path(path)
        if path.exists():
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(path, backup)
        os.replace(staging, path)
        _fsync_dir(path.parent)
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_replaceable(path: Path) -> None:
    """Refuse a target that exists and is not an index: replacing it would delete the user's
    files. Also repairs a swap a crash interrupted, so the check sees the real state."""
    restore_interrupted_swap(path)
    if path.exists() and not (path / MANIFEST).is_file() and (
            not path.is_dir() or any(path.iterdir())):
        raise IndexFormatError(f"refusing to write an index over {path}: it exists and is not "
                               "a tokretrieve index; choose another path or remove it")


def _remove_abandoned_staging(path: Path) -> None:
    """Delete staging folders of builds of `path` whose process is gone (killed mid-build);
    those of a build still running are left alone."""
    for staging in path.parent.glob(f".{path.name}.building-*"):
        pid = staging.name.removeprefix(f".{path.name}.building-").split("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def restore_interrupted_swap(path: Path) -> None:
    """Put a previous index back if a crash fell between the two renames of a swap."""
    backup = previous_path(path)
    if backup.is_dir() and not path.exists():
        os.replace(backup, path)


def save_array(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def load_array(folder: Path, name: str, mmap: bool = True) -> np.ndarray:
    file = folder / f"{name}.npy"
    if not file.is_file():
        raise IndexFormatError(
            f"{folder}: {file.name} is missing; the index is damaged, rebuild it")
    return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")


def read_manifest(folder: str | Path, kind: str, versions: Sequence[int]) -> dict:
    """Read a manifest as JSON: the folder must hold an index of `kind` written in one of the
    format `versions` this code reads (tokretrieve.index.manifest parses its records)."""
    folder = Path(folder)
    restore_interrupted_swap(folder)
    file = folder / MANIFEST
    if not file.is_file():
        raise IndexFormatError(f"{folder} is not a tokretrieve index (no {MANIFEST}); "
                               "build one with `tokretrieve index`")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexFormatError(f"{file} is not valid JSON ({error}); rebuild the index") from None
    if not isinstance(manifest, dict) or manifest.get("format") != kind:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise IndexFormatError(f"{folder} holds a '{found}' index, not '{kind}'")
    version = manifest.get("format_version")
    if version not in versions:
        readable = ", ".join(str(v) for v in versions)
        raise IndexFormatError(
            f"{folder} was written in format version {version}; this tokretrieve reads version "
            f"{readable}: rebuild the index with this version")
    return manifest


def folder_bytes(folder: Path) -> int:
    """Bytes on disk of every file in an index folder."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(sub)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
