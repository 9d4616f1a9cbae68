"""Export folders: written whole or not at all, described by one `export.json`.

An export is written into a hidden staging folder beside its destination and renamed into place
when complete, so an interrupted export (a full disk, Ctrl-C) leaves the previous export, or
nothing, never half a collection an engine would index without complaint. A destination that
exists and is not an export is refused: nothing a user put there is replaced.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.index.storage import fsync_dir, fsync_tree, read_json, write_json_durably

EXPORT_FORMAT = "tokretrieve.export"
EXPORT_VERSION = 1
METADATA = "export.json"


@contextmanager
def staged_folder(output: str | Path) -> Iterator[Path]:
    """A fresh folder to write an export into; on success it replaces `output`."""
    output = Path(output)
    if output.exists() and not (output.is_dir() and (not any(output.iterdir())
                                                     or _is_export(output))):
        raise TokretrieveError(f"{output} exists and is not a tokretrieve export: choose "
                               "another --output (an export replaces only an earlier export)")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        replace_folder(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_folder(staging: Path, destination: Path) -> None:
    """Put the complete folder `staging` at `destination`, the folder there before (if any)
    moved aside first and removed after: a crash leaves the old folder or the new one."""
    previous = destination.with_name(f".{destination.name}.previous-{os.getpid()}")
    if destination.exists():
        os.replace(destination, previous)
    os.replace(staging, destination)
    fsync_dir(destination.parent)
    shutil.rmtree(previous, ignore_errors=True)


def export_facts(index: SparseIndex, target: str, documents: int, scale: float,
                 **fields: object) -> dict:
    """What every export records of itself (`export.json`, Milvus's collection property):
    the format, the target engine, the index and generation the bags came from, its model and
    vocabulary, how many documents went out, the scale of their levels, and the route's own
    `fields`."""
    contents = index.manifest.contents
    return {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "target": target,
            "index": str(index.path or ""), "generation": contents.generation if contents else 0,
            "model": index.manifest.model.name, "vocab_size": index.vocab_size,
            "documents": documents, "scale": scale, **fields}


def write_metadata(folder: Path, facts: dict) -> dict:
    """Write an export folder's `export.json` (`export_facts`); returns it."""
    write_json_durably(folder / METADATA, facts)
    return facts


def read_metadata(folder: str | Path) -> dict:
    """The `export.json` of an export folder, or a TokretrieveError saying what is there."""
    folder = Path(folder)
    if not _is_export(folder):
        raise TokretrieveError(f"{folder} is not a tokretrieve export (no {METADATA}); make "
                               "one with `tokretrieve export`")
    data = read_json(folder / METADATA)
    if data.get("format_version") != EXPORT_VERSION:
        raise TokretrieveError(f"{folder} is an export in format version "
                               f"{data.get('format_version')}; this tokretrieve reads "
                               f"{EXPORT_VERSION}: export the index again")
    return data


def _is_export(folder: Path) -> bool:
    file = folder / METADATA
    if not file.is_file():
        return False
    try:
        data = read_json(file)
    except TokretrieveError:
        return False
    return isinstance(data, dict) and data.get("format") == EXPORT_FORMAT
