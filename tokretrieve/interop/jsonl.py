"""JSONL vector collections: Anserini/Pyserini's `JsonVectorCollection` and Seismic's input.

One line per document, `{"id": ..., "contents": "", "vector": {key: weight}}` (Anserini;
Seismic's shape names the text field `content`). Weights are the index's integer impact levels
exactly as stored; the power-of-two scale that turns them into tokretrieve's weights is recorded
in `export.json`, with the token keys that stand for unsafe token texts
(tokretrieve.interop.keys). Queries go the same way (`queries.jsonl`, integer weights, their
per-query scales in `export.json`) beside a TREC-style `queries.tsv` (qid, tab, text).

Written streaming, one postings block at a time, so the export of a million documents holds one
block of bags in memory; documents go into `docs/part-NNNNN.jsonl` files of `part_docs` lines
(Anserini indexes the files of a folder in parallel). `read_vectors` reads either shape back
(tokretrieve.interop.imported builds an index from it).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tqdm.auto import tqdm

from tokretrieve.errors import CorpusError, TokretrieveError
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.interop.bags import document_bags, integer_impacts
from tokretrieve.interop.keys import KEY_STYLES, KeyStyle, TokenKeys
from tokretrieve.interop.output import export_facts, staged_folder, write_metadata
from tokretrieve.interop.queries import ExportedQueries
from tokretrieve.search.query_encoders import index_tokenizer

if TYPE_CHECKING:  # an encoder is handed in; importing its module would load torch
    from tokretrieve.encoding.encoder import Encoder

Target = Literal["jsonvector", "seismic"]
TEXT_FIELD = {"jsonvector": "contents", "seismic": "content"}
PART_DOCS = 100_000


def index_keys(index: SparseIndex, style: KeyStyle = "tokens") -> TokenKeys:
    """The keys of an index's vocabulary: its saved tokenizer's token texts (style "tokens")
    or `t<id>` (style "ids", also what an index without a tokenizer gets)."""
    if style not in KEY_STYLES:
        raise TokretrieveError(f"unknown key style '{style}': choose one of "
                               f"{', '.join(KEY_STYLES)}")
    if style == "tokens":
        try:
            tokenizer = index_tokenizer(index)
        except TokretrieveError:
            tokenizer = None
        if tokenizer is not None:
            return TokenKeys.for_tokenizer(tokenizer, index.vocab_size, style)
    return TokenKeys.for_tokenizer(None, index.vocab_size, "ids")


def export_jsonl(index: SparseIndex, output: str | Path, target: Target = "jsonvector", *,
                 keys: KeyStyle = "tokens", queries: Sequence[tuple[str, str]] | None = None,
                 query_mode: str = "model", encoder: Encoder | None = None,
                 part_docs: int = PART_DOCS, progress: bool = True) -> dict:
    """Write the index's live documents (and `queries`, (qid, text) pairs encoded by
    `query_mode`) as a JSONL vector collection in the folder `output`; returns the metadata
    written to `output/export.json`."""
    if target not in TEXT_FIELD:
        raise TokretrieveError(f"unknown JSONL target '{target}': choose one of "
                               f"{', '.join(TEXT_FIELD)}")
    scale = integer_impacts(index)
    token_keys = index_keys(index, keys)
    exported = (ExportedQueries.encode(index, queries, query_mode, encoder)
                if queries is not None else None)  # before the long write: a bad mode fails now
    quoted = [json.dumps(key, ensure_ascii=False) for key in token_keys.keys]
    field = TEXT_FIELD[target]
    with staged_folder(output) as folder:
        documents = _write_documents(index, folder / "docs", quoted, field, part_docs,
                                     progress)
        query_fields = {}
        if exported is not None:
            _write_queries(folder, exported, quoted, field)
            query_fields = {"queries": {"file": "queries.jsonl", "topics": "queries.tsv",
                                        **exported.facts()}}
        return write_metadata(folder, export_facts(
            index, target, documents, scale, keys=token_keys.style,
            mapped_keys=token_keys.mapped,
            weights="integer impact levels: tokretrieve's weight = level x scale",
            **query_fields))


def _write_documents(index: SparseIndex, folder: Path, quoted: list[str], field: str,
                     part_docs: int, progress: bool) -> int:
    folder.mkdir()
    written, handle = 0, None
    try:
        with tqdm(total=len(index), unit="doc", desc="exporting", disable=not progress) as bar:
            for block in document_bags(index):
                matrix = block.levels
                for row, doc_id in enumerate(block.doc_ids):
                    if written % part_docs == 0:
                        if handle is not None:
                            handle.close()
                        part = folder / f"part-{written // part_docs:05d}.jsonl"
                        handle = part.open("w", encoding="utf-8")
                    start, end = matrix.indptr[row], matrix.indptr[row + 1]
                    handle.write(_line(doc_id, field, quoted, matrix.indices[start:end],
                                       matrix.data[start:end]))
                    written += 1
                bar.update(len(block.doc_ids))
    finally:
        if handle is not None:
            handle.close()
    return written


def _write_queries(folder: Path, exported: ExportedQueries, quoted: list[str],
                   field: str) -> None:
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as vectors, \
            (folder / "queries.tsv").open("w", encoding="utf-8") as topics:
        for q, qid in enumerate(exported.qids):
            tokens, weights = exported.row(q)
            vectors.write(_line(qid, field, quoted, tokens, weights))
            topics.write(topic_line(qid, exported.texts[q]))


def topic_line(qid: str, text: str) -> str:
    """A `queries.tsv` line: the id, a tab, the text on one line with no tab (TSV-safe)."""
    return f"{qid}\t{' '.join(text.split())}\n"


def vector_text(quoted: Sequence[str], tokens, levels) -> str:
    """The inside of a JSON object of integer levels keyed by the tokens' quoted keys: written
    by hand, as json.dumps per document would cost more than the export's reading."""
    return ", ".join(f"{quoted[t]}: {int(w)}" for t, w in zip(tokens, levels, strict=True))


def _line(record_id: str, field: str, quoted: list[str], tokens, weights) -> str:
    return f'{{"id": {json.dumps(record_id, ensure_ascii=False)}, "{field}": "", ' \
           f'"vector": {{{vector_text(quoted, tokens, weights)}}}}}\n'


def vector_files(path: str | Path) -> list[Path]:
    """The JSONL files of a vector collection: a file, or every *.jsonl(.gz) in a folder
    (an export's `docs/` when given the export folder)."""
    path = Path(path)
    if path.is_dir():
        folder = path / "docs" if (path / "docs").is_dir() else path
        files = sorted(p for p in folder.iterdir()
                       if p.name.endswith((".jsonl", ".jsonl.gz")) and p.is_file())
        if not files:
            raise CorpusError(f"{folder} holds no .jsonl files of vectors")
        return files
    if not path.is_file():
        raise CorpusError(f"{path} does not exist")
    return [path]


def read_vectors(path: str | Path) -> Iterator[tuple[str, dict[str, float]]]:
    """(id, {key: weight}) of every line of a vector collection (either shape, gzip too),
    each line checked: an id, a vector object of finite non-negative numbers."""
    for file in vector_files(path):
        opener = gzip.open if file.name.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield _parse_line(line, file, number)


def _parse_line(line: str, file: Path, number: int) -> tuple[str, dict[str, float]]:
    where = f"{file}, line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{where} is not valid JSON ({error.msg})") from None
    if not isinstance(record, dict) or "vector" not in record or "id" not in record:
        raise CorpusError(f'{where} is not a vector record: expected {{"id": ..., "vector": '
                          "{token: weight, ...}}")
    vector = record["vector"]
    if not isinstance(vector, dict):
        raise CorpusError(f"{where}: 'vector' is not an object of token: weight")
    for key, weight in vector.items():
        if (isinstance(weight, bool) or not isinstance(weight, int | float)
                or not weight >= 0 or weight == float("inf")):
            raise CorpusError(f"{where}: token {key!r} has weight {weight!r}; weights are "
                              "finite numbers >= 0")
    return str(record["id"]), vector
