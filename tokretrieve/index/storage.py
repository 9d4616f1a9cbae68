"""Index folders on disk: plain `.npy` arrays, durable writes, checksums, the writer's lock.

Nothing is pickled, so numpy alone can inspect an index. These are the file-level tools the
generation protocol (tokretrieve.index.generations) is built from: every file is fsynced
before the manifest that names it is published, a manifest is replaced by one rename (a reader
sees the old one or the new one, never half of either), and one process at a time may write,
which a lock on `writer.lock` enforces. The lock is an OS lock (flock): the kernel drops it
when its holder dies, so a crashed writer never leaves an index locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tokretrieve.errors import IndexBusyError, IndexFormatError

MANIFEST = "manifest.json"
LOCK = "writer.lock"


def save_array(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def load_array(file: Path, mmap: bool = True) -> np.ndarray:
    """One array of an index, memory-mapped by default; a truncated or non-array file is an
    IndexFormatError naming it. A missing one, gone before the check or between the check and
    the open, is a FileNotFoundError left to the caller, who may be racing a writer's clean-up
    and retry from a newer manifest."""
    if not file.exists():
        raise FileNotFoundError(errno.ENOENT, "missing", str(file))
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise  # removed since the check above: the same race
    except (ValueError, OSError, EOFError) as error:
        raise IndexFormatError(f"{file} is damaged ({error}); run `tokretrieve verify` and "
                               "rebuild the index") from None


def file_digest(file: Path) -> str:
    """sha256 of a file, read in 4 MiB pieces (bounded memory whatever its size)."""
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while piece := handle.read(4 << 20):
            digest.update(piece)
    return digest.hexdigest()


def tree_files(root: Path, entries: list[str]) -> set[str]:
    """Every file under `root / entry` for each entry (a file or a folder), as paths relative
    to `root` with '/' separators."""
    files = set()
    for entry in entries:
        target = root / entry
        found = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        files |= {file.relative_to(root).as_posix() for file in found}
    return files


def tree_digests(root: Path, entry: str) -> dict[str, str]:
    """sha256 of every file under `root / entry` (a file or a folder), keyed by its path
    relative to `root` with '/' separators."""
    return {name: file_digest(root / name) for name in sorted(tree_files(root, [entry]))}


def read_json(file: Path) -> object:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexFormatError(f"{file} is not valid JSON ({error}); rebuild the index") from None


def write_json_durably(file: Path, data: dict) -> None:
    """Write JSON under a temporary name, fsync it, rename it over `file`, fsync the folder:
    after a crash `file` is the old content or the new, whole."""
    staging = file.with_name(f".{file.name}.{os.getpid()}.partial")
    try:
        with staging.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, file)
    finally:
        staging.unlink(missing_ok=True)
    fsync_dir(file.parent)


def fsync_tree(entry: Path) -> None:
    """fsync a file, or every file and folder under a folder (data before the names)."""
    files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
    for file in files:
        with file.open("rb") as handle:
            os.fsync(handle.fileno())
    if entry.is_dir():
        for folder in [entry, *(p for p in entry.rglob("*") if p.is_dir())]:
            fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """Hold the index's writer lock, or refuse at once naming the process that holds it."""
    with (folder / LOCK).open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise IndexBusyError(f"{folder} is being written by {holder}; wait for it to "
                                 "finish (one writer at a time)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def folder_bytes(folder: Path) -> int:
    """Bytes on disk of every file in a folder."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
