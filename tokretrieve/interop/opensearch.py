"""OpenSearch / Elasticsearch: bulk files, a `rank_features` mapping and ready search bodies.

Written to the engines' documented rules, not run against a server (none can run here):

- `mapping.json`: the body of `PUT /<index>`: `doc_id` a `keyword`, `bag` a `rank_features`
  field (Lucene's FeatureField: one term per feature name, the value in its frequency).
- `bulk/part-NNNNN.ndjson`: `_bulk` request bodies, an action line
  (`{"index": {"_index": ..., "_id": doc id}}`) then the document (`{"doc_id": ..., "bag":
  {key: level}}`), each file under `BULK_BYTES` (the engines' default request limit is 100 MB;
  a few MB per request index fastest). Values are the stored integer impact levels 1..255:
  strictly positive, and exact in the 9 significant bits a feature keeps.
- `query-template.json`: how a query bag becomes a search body: a `bool` `should` of one
  `rank_feature` query per token, `field` `bag.<key>`, the `linear` function (score = stored
  value), the integer query level as `boost`. The boost carries the weight because a linear
  function's own weight must lie in (0, 64]; the boost has no such bound. A clause scores
  boost x level, the `should` sums them: the integer dot product, tokretrieve's score divided
  by the index's and the query's scales (powers of two), exactly while below 2^24.
- `queries.ndjson` (with `queries`): an `_msearch` body, a header line then that template
  filled in, for each query in the order of `queries.tsv` (qid, tab, text). A query without
  tokens gets `match_none` (an empty `bool` would match every document).
- `export.json`: the scale, the keys that replace unsafe token texts
  (tokretrieve.interop.keys), the query scales.

Feature names are the token keys of tokretrieve.interop.keys, which hold no dot (the engines
refuse dots in feature names, and a query's `field` is split at its last dot), no whitespace,
and are never empty. Document ids become `_id`s, which the engines limit to 512 UTF-8 bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.interop.bags import document_bags, integer_impacts
from tokretrieve.interop.jsonl import index_keys, topic_line, vector_text
from tokretrieve.interop.keys import KeyStyle
from tokretrieve.interop.output import export_facts, staged_folder, write_metadata
from tokretrieve.interop.queries import ExportedQueries

if TYPE_CHECKING:  # an encoder is handed in; importing its module would load torch
    from tokretrieve.encoding.encoder import Encoder

ID_FIELD, BAG_FIELD = "doc_id", "bag"
# A bulk file is closed once it holds this many bytes (one request each).
BULK_BYTES = 8 * 2**20
# OpenSearch/Elasticsearch refuse longer `_id`s.
MAX_ID_BYTES = 512
# Hits each search body asks for (`size`); change it in the bodies for more.
QUERY_SIZE = 1000
# The engines' default `indices.query.bool.max_clause_count` (Lucene's): a query with more
# tokens needs it raised; export.json records the largest query.
DEFAULT_MAX_CLAUSES = 1024
# Index names: lowercase, none of these characters, not starting with - _ +, not . or ..
_BAD_INDEX_NAME = re.compile(r'[A-Z\\/*?"<>| ,#:]|^[-_+]|^\.\.?$')

MAPPING = {"mappings": {"properties": {ID_FIELD: {"type": "keyword"},
                                       BAG_FIELD: {"type": "rank_features"}}}}
CLAUSE = {"rank_feature": {"field": f"{BAG_FIELD}.<token key>", "linear": {},
                           "boost": "<integer query level>"}}
QUERY_TEMPLATE = {
    "description": "A tokretrieve query bag as an OpenSearch/Elasticsearch search body: one "
                   "`clause` per query token in `body.query.bool.should`, the token's key "
                   "after 'bag.' and its integer query level as boost. Score = sum over the "
                   "query's tokens of boost x stored level = tokretrieve's score / (index "
                   "scale x query scale). A query without tokens is `empty`.",
    "body": {"size": QUERY_SIZE, "_source": False, "track_total_hits": False,
             "query": {"bool": {"should": ["<clause>", "..."]}}},
    "clause": CLAUSE,
    "empty": {"size": QUERY_SIZE, "_source": False, "track_total_hits": False,
              "query": {"match_none": {}}},
}


def export_opensearch(index: SparseIndex, output: str | Path, *, keys: KeyStyle = "tokens",
                      queries: Sequence[tuple[str, str]] | None = None,
                      query_mode: str = "model", encoder: Encoder | None = None,
                      index_name: str = "tokretrieve", progress: bool = True) -> dict:
    """Write the index's live documents as OpenSearch/Elasticsearch `_bulk` files for the
    index `index_name`, its mapping and query template (and `queries`, (qid, text) pairs
    encoded by `query_mode`, as `_msearch` bodies) into the folder `output`; returns the
    metadata written to `output/export.json`."""
    scale = integer_impacts(index)
    _check_index_name(index_name)
    _check_ids(index)
    token_keys = index_keys(index, keys)
    exported = (ExportedQueries.encode(index, queries, query_mode, encoder)
                if queries is not None else None)  # before the long write: a bad mode fails now
    quoted = [json.dumps(key, ensure_ascii=False) for key in token_keys.keys]
    with staged_folder(output) as folder:
        _write_json(folder / "mapping.json", MAPPING)
        _write_json(folder / "query-template.json", QUERY_TEMPLATE)
        documents, parts = _write_bulk(index, folder / "bulk", quoted, index_name, progress)
        query_fields = {}
        if exported is not None:
            largest = _write_queries(folder, exported, token_keys.keys, index_name)
            query_fields = {"queries": {
                "file": "queries.ndjson", "topics": "queries.tsv", **exported.facts(),
                "size": QUERY_SIZE, "largest": largest,
                "clause_limit": ("fits the default indices.query.bool.max_clause_count "
                                 f"({DEFAULT_MAX_CLAUSES})" if largest <= DEFAULT_MAX_CLAUSES
                                 else f"raise indices.query.bool.max_clause_count to "
                                      f"{largest} or more")}}
        return write_metadata(folder, export_facts(
            index, "opensearch", documents, scale, keys=token_keys.style,
            mapped_keys=token_keys.mapped, index_name=index_name, mapping="mapping.json",
            query_template="query-template.json", bulk_files=parts,
            weights="rank_features values are integer impact levels: tokretrieve's weight = "
                    "level x scale",
            tested="written to the OpenSearch/Elasticsearch documentation's rules; not run "
                   "against a live server",
            **query_fields))


def _check_index_name(name: str) -> None:
    if not name or _BAD_INDEX_NAME.search(name) or len(name.encode("utf-8")) > 255:
        raise TokretrieveError(f"'{name}' is not an OpenSearch/Elasticsearch index name: "
                               'lowercase, none of \\ / * ? " < > | , # : or spaces, not '
                               "starting with - _ +, at most 255 bytes")


def _check_ids(index: SparseIndex) -> None:
    mask = index.deleted_mask
    for position, doc_id in enumerate(index.doc_ids):
        if not mask[position] and len(str(doc_id).encode("utf-8")) > MAX_ID_BYTES:
            raise TokretrieveError(f"document id {str(doc_id)[:40]!r}... is longer than the "
                                   f"{MAX_ID_BYTES} bytes OpenSearch/Elasticsearch allow an _id")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_bulk(index: SparseIndex, folder: Path, quoted: list[str], index_name: str,
                progress: bool) -> tuple[int, int]:
    """Bulk files of at most BULK_BYTES each (a document never splits); returns (documents,
    files)."""
    folder.mkdir()
    written = parts = size = 0
    handle = None
    target = json.dumps(index_name, ensure_ascii=False)
    try:
        with tqdm(total=len(index), unit="doc", desc="exporting", disable=not progress) as bar:
            for block in document_bags(index):
                levels = block.levels
                for row, doc_id in enumerate(block.doc_ids):
                    lo, hi = levels.indptr[row], levels.indptr[row + 1]
                    quoted_id = json.dumps(doc_id, ensure_ascii=False)
                    bag = vector_text(quoted, levels.indices[lo:hi], levels.data[lo:hi])
                    pair = (f'{{"index": {{"_index": {target}, "_id": {quoted_id}}}}}\n'
                            f'{{"{ID_FIELD}": {quoted_id}, "{BAG_FIELD}": {{{bag}}}}}\n'
                            ).encode()
                    if handle is None or (size and size + len(pair) > BULK_BYTES):
                        if handle is not None:
                            handle.close()
                        handle = (folder / f"part-{parts:05d}.ndjson").open("wb")
                        parts, size = parts + 1, 0
                    handle.write(pair)
                    size += len(pair)
                    written += 1
                bar.update(len(block.doc_ids))
    finally:
        if handle is not None:
            handle.close()
    return written, parts


def _write_queries(folder: Path, exported: ExportedQueries, keys: Sequence[str],
                   index_name: str) -> int:
    """`queries.ndjson` (_msearch: header, body per query) and `queries.tsv`; returns the
    largest query's token count (its number of bool clauses)."""
    header = json.dumps({"index": index_name}, ensure_ascii=False)
    largest = 0
    with (folder / "queries.ndjson").open("w", encoding="utf-8") as bodies, \
            (folder / "queries.tsv").open("w", encoding="utf-8") as topics:
        for q, qid in enumerate(exported.qids):
            tokens, levels = exported.row(q)
            largest = max(largest, len(tokens))
            body = json.dumps(search_body(tokens, levels, keys), ensure_ascii=False)
            bodies.write(f"{header}\n{body}\n")
            topics.write(topic_line(qid, exported.texts[q]))
    return largest


def search_body(tokens: Sequence[int], levels: Sequence[int], keys: Sequence[str]) -> dict:
    """The search body of one integer query bag (token ids, levels), as query-template.json
    describes it."""
    if len(tokens) == 0:
        return dict(QUERY_TEMPLATE["empty"])
    clauses = [{"rank_feature": {"field": f"{BAG_FIELD}.{keys[t]}", "linear": {},
                                 "boost": int(w)}}
               for t, w in zip(tokens, levels, strict=True)]
    return {**QUERY_TEMPLATE["body"], "query": {"bool": {"should": clauses}}}
