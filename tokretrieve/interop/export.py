"""One entry point for every export route: `export_index(index, format, ...)`.

The command line's `tokretrieve export` is this function; each format's writer lives in its own
module (jsonl: Anserini and Seismic files; milvus: a collection; opensearch: bulk files), and
the engines that need an optional package import it only when chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.interop.keys import KeyStyle

if TYPE_CHECKING:  # an encoder is handed in; importing its module would load torch
    from tokretrieve.encoding.encoder import Encoder

FILE_FORMATS = ("jsonvector", "seismic", "opensearch")
EXPORT_FORMATS = (*FILE_FORMATS, "milvus")


def export_index(index: str | Path | SparseIndex, format: str, output: str | Path | None = None,
                 *, uri: str | None = None, collection: str = "tokretrieve",
                 keys: KeyStyle = "tokens", queries: Sequence[tuple[str, str]] | None = None,
                 query_mode: str = "model", encoder: Encoder | None = None,
                 replace: bool = False, progress: bool = True) -> dict:
    """Export an index's live bags as `format`: a folder at `output` (jsonvector, seismic,
    opensearch; with `queries`, (qid, text) pairs encoded by `query_mode`, beside them) or a
    Milvus collection at `uri`. Returns what was written (the export's metadata)."""
    if format not in EXPORT_FORMATS:
        raise TokretrieveError(f"unknown export format '{format}': choose one of "
                               f"{', '.join(EXPORT_FORMATS)}")
    if format in FILE_FORMATS and output is None:
        raise TokretrieveError(f"the {format} export writes a folder: give --output")
    if format == "milvus" and uri is None:
        raise TokretrieveError("the milvus export loads a collection: give --uri (a local "
                               "file such as bags.db for Milvus Lite, or a server's "
                               "http://host:19530)")
    index = index if isinstance(index, SparseIndex) else SparseIndex.load(index)
    if format == "milvus":
        if queries is not None:
            raise TokretrieveError("a milvus export holds documents only; search it with "
                                   "tokretrieve.interop.milvus.search_milvus")
        from tokretrieve.interop.milvus import export_milvus

        return export_milvus(index, uri, collection, replace=replace, progress=progress)
    if format == "opensearch":
        from tokretrieve.interop.opensearch import export_opensearch

        return export_opensearch(index, output, keys=keys, queries=queries,
                                 query_mode=query_mode, encoder=encoder, progress=progress)
    from tokretrieve.interop.jsonl import export_jsonl

    return export_jsonl(index, output, format, keys=keys, queries=queries,
                        query_mode=query_mode, encoder=encoder, progress=progress)
