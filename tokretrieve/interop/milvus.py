"""Milvus: the bags in a collection a distributed vector database serves, searched exactly.

A collection holds one row per live document: `doc_id` (VARCHAR primary key, sized for the
longest id) and `bag`, a `SPARSE_FLOAT_VECTOR` whose keys are token ids and whose values are the
stored integer impact levels, under a `SPARSE_INVERTED_INDEX` with the inner-product metric. An
inner product of integer levels is tokretrieve's score divided by the index's scale and the
query's (both powers of two), so the ranking Milvus returns can be checked exactly against
tokretrieve's (tokretrieve.interop.agreement): float32 holds every integer below 2^24, so a
score is exact while it stays under that (over 250 query tokens at the top level on both sides
would be needed to pass it; agreement.compare would name such a query).

The same `pymilvus` client takes a Milvus cluster's URI (`http://host:19530`, with `token`) and a
local file (`bags.db`: Milvus Lite, which serves the file from threads of this process; the file
is released when the call returns unless this process already had it open). The export's facts
(index, generation, model, vocabulary, scale) are the collection's property `tokretrieve.export`,
so a searcher of the collection knows what its scores mean.

An export is written to a staging collection and renamed into place once flushed: an
interrupted export never leaves a collection that looks complete, and `replace=True` swaps the
old collection out only when the new one is whole.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tokretrieve.errors import TokretrieveError, check_count
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.interop.bags import document_bags, integer_impacts
from tokretrieve.interop.output import export_facts
from tokretrieve.interop.queries import ExportedQueries

INSTALL = "pip install 'tokretrieve[milvus]' (or `make install-milvus` in a checkout)"
PROPERTY = "tokretrieve.export"
ID_FIELD, BAG_FIELD = "doc_id", "bag"
# Milvus's limits: hits per query (topk) and queries per search call (nq).
MAX_TOPK = 16384
MAX_NQ = 16384
# Hits asked of one search call at most (queries per call x k): bounded replies.
HITS_PER_CALL = 100_000
# A VARCHAR holds at most this many bytes.
MAX_VARCHAR = 65535
# Collection names: a letter or underscore, then letters, digits, underscores; 255 at most, of
# which the staging collection's suffix takes its share.
STAGING = "_tokretrieve_partial"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SEARCH_PARAMS = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}  # exact


def export_milvus(index: SparseIndex, uri: str, collection: str = "tokretrieve", *,
                  token: str = "", batch_docs: int = 1000, replace: bool = False,
                  progress: bool = True) -> dict:
    """Load the index's live documents into the Milvus collection `collection` at `uri` (a
    server URI, or a local `.db` file for Milvus Lite), inserting `batch_docs` rows per call;
    an existing collection is refused unless `replace`. Returns the export's facts (those
    stored in the collection's `tokretrieve.export` property) with `uri`, `collection` and
    `seconds`."""
    scale = integer_impacts(index)
    batch_docs = check_count(batch_docs, "batch_docs")
    _check_collection_name(collection)
    id_bytes = _longest_id(index)
    if _is_local(uri):
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
    started = time.perf_counter()
    with _client(uri, token) as client:
        if client.has_collection(collection) and not replace:
            raise TokretrieveError(f"Milvus at {uri} already has a collection '{collection}': "
                                   "choose another collection name, or replace it "
                                   "(--replace, replace=True)")
        staging = collection + STAGING
        if client.has_collection(staging):  # left by an export that was killed
            client.drop_collection(staging)
        _create(client, staging, id_bytes)
        try:
            documents, empty = _insert(client, staging, index, batch_docs, progress)
            client.flush(staging)
        except BaseException:  # a failure or Ctrl-C: leave no partial collection behind
            with suppress(Exception):
                client.drop_collection(staging)
            raise
        facts = export_facts(index, "milvus", documents, scale, empty_documents=empty,
                             weights="bag values are integer impact levels keyed by token "
                                     "id: tokretrieve's weight = level x scale")
        client.alter_collection_properties(staging, properties={PROPERTY: json.dumps(facts)})
        if client.has_collection(collection):
            client.drop_collection(collection)
        client.rename_collection(staging, collection)
        client.load_collection(collection)
    return {**facts, "uri": uri, "collection": collection,
            "seconds": round(time.perf_counter() - started, 3)}


def search_milvus(uri: str, collection: str, queries: ExportedQueries, k: int, *,
                  token: str = "") -> dict[str, list[tuple[str, float]]]:
    """The top-k of each exported query in a collection `export_milvus` wrote: qid ->
    [(doc id, score), ...] best first, scores in integer units (sums of query level x
    document level), as tokretrieve.interop.agreement.compare takes them. A query without
    tokens has no hits."""
    k = check_count(k, "k")
    if k > MAX_TOPK:
        raise TokretrieveError(f"Milvus returns at most {MAX_TOPK} hits per query; k is {k}")
    if _is_local(uri) and not os.path.exists(uri):
        raise TokretrieveError(f"no Milvus Lite file at {uri}: export one with "
                               "`tokretrieve export --format milvus --uri FILE.db`")
    results: dict[str, list[tuple[str, float]]] = {qid: [] for qid in queries.qids}
    asked = [q for q in range(len(queries.qids)) if queries.levels.indptr[q + 1]
             > queries.levels.indptr[q]]
    per_call = max(1, min(MAX_NQ, HITS_PER_CALL // k))
    with _client(uri, token) as client:
        facts = _facts(client, uri, collection)
        if facts.get("vocab_size") != queries.levels.shape[1]:
            raise TokretrieveError(f"collection '{collection}' holds bags over a vocabulary "
                                   f"of {facts.get('vocab_size')} tokens, the queries "
                                   f"{queries.levels.shape[1]}: encode them with the "
                                   "exported index's model")
        client.load_collection(collection)
        for start in range(0, len(asked), per_call):
            batch = asked[start:start + per_call]
            data = [_sparse_row(*queries.row(q)) for q in batch]
            hits = client.search(collection, data=data, anns_field=BAG_FIELD, limit=k,
                                 search_params=SEARCH_PARAMS, output_fields=[ID_FIELD])
            for q, found in zip(batch, hits, strict=True):
                results[queries.qids[q]] = [(str(hit[ID_FIELD]), float(hit["distance"]))
                                            for hit in found]
    return results


def milvus_metadata(uri: str, collection: str, *, token: str = "") -> dict:
    """The facts `export_milvus` stored with a collection (its `tokretrieve.export`
    property): what the bags' values mean (`scale`), which index and model they came from."""
    with _client(uri, token) as client:
        return _facts(client, uri, collection)


def _check_collection_name(name: str) -> None:
    if not _NAME.fullmatch(name) or len(name) + len(STAGING) > 255:
        raise TokretrieveError(f"'{name}' is not a Milvus collection name: a letter or "
                               "underscore, then letters, digits and underscores, at most "
                               f"{255 - len(STAGING)} characters")


def _longest_id(index: SparseIndex) -> int:
    """Bytes of the longest live document id (Milvus sizes VARCHAR in UTF-8 bytes)."""
    ids = np.asarray(index.doc_ids)[~index.deleted_mask]
    longest = max((len(str(d).encode("utf-8")) for d in ids), default=1)
    if longest > MAX_VARCHAR:
        raise TokretrieveError(f"a document id of {longest} bytes is longer than Milvus's "
                               f"VARCHAR holds ({MAX_VARCHAR})")
    return max(longest, 1)


def _is_local(uri: str) -> bool:
    """Whether pymilvus opens `uri` as a Milvus Lite file (its rule: the name ends in .db)."""
    return uri.endswith(".db")


@contextmanager
def _client(uri: str, token: str) -> Iterator[Any]:
    """A connected MilvusClient, closed on exit (and the Milvus Lite server of a local file
    stopped, if this call started it); every Milvus failure becomes one TokretrieveError."""
    if importlib.util.find_spec("pymilvus") is None:
        raise TokretrieveError(f"the Milvus route needs pymilvus: {INSTALL}")
    if _is_local(uri) and importlib.util.find_spec("milvus_lite") is None:
        raise TokretrieveError(f"a local Milvus file ({uri}) needs milvus-lite: {INSTALL}")
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    started_lite = _is_local(uri) and not _lite_serves(uri)
    try:
        try:
            client = MilvusClient(uri=uri, token=token)
        except MilvusException as error:
            raise TokretrieveError(f"cannot reach Milvus at {uri}: {error.message} (a server "
                                   "URI is http(s)://host:port; a local file ends in .db)"
                                   ) from None
        try:
            yield client
        except MilvusException as error:
            raise TokretrieveError(f"Milvus at {uri} refused the request: {error.message}"
                                   ) from None
        finally:
            client.close()
    finally:
        if started_lite:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)


def _lite_serves(uri: str) -> bool:
    """Whether this process already runs a Milvus Lite server for the file (another client's:
    it must outlive this call). Milvus Lite 3.x keeps its servers by absolute path."""
    from milvus_lite.server_manager import server_manager_instance

    return os.path.abspath(uri) in getattr(server_manager_instance, "_servers", {})


def _create(client: Any, name: str, id_bytes: int) -> None:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False,
        description=f"tokretrieve bags (token id -> impact level); see property {PROPERTY}")
    schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=id_bytes)
    schema.add_field(BAG_FIELD, DataType.SPARSE_FLOAT_VECTOR)
    index_params = client.prepare_index_params()
    index_params.add_index(field_name=BAG_FIELD, index_type="SPARSE_INVERTED_INDEX",
                           metric_type="IP")
    # Strong consistency: a search right after the export sees every row.
    client.create_collection(name, schema=schema, index_params=index_params,
                             consistency_level="Strong")


def _insert(client: Any, name: str, index: SparseIndex, batch_docs: int,
            progress: bool) -> tuple[int, int]:
    """Insert every live document with a non-empty bag (Milvus refuses empty sparse vectors;
    such a document matches no query anyway); returns (inserted, skipped as empty)."""
    inserted = empty = 0
    with tqdm(total=len(index), unit="doc", desc="milvus", disable=not progress) as bar:
        for block in document_bags(index):
            levels = block.levels
            for start in range(0, len(block.doc_ids), batch_docs):
                rows = []
                for row in range(start, min(start + batch_docs, len(block.doc_ids))):
                    lo, hi = levels.indptr[row], levels.indptr[row + 1]
                    if hi > lo:
                        rows.append({ID_FIELD: block.doc_ids[row],
                                     BAG_FIELD: _sparse_row(levels.indices[lo:hi],
                                                            levels.data[lo:hi])})
                    else:
                        empty += 1
                if rows:
                    client.insert(name, rows)
                    inserted += len(rows)
                bar.update(min(batch_docs, len(block.doc_ids) - start))
    return inserted, empty


def _sparse_row(tokens: np.ndarray, levels: np.ndarray) -> dict[int, float]:
    return dict(zip(tokens.tolist(), levels.astype(np.float64).tolist(), strict=True))


def _facts(client: Any, uri: str, collection: str) -> dict:
    if not client.has_collection(collection):
        raise TokretrieveError(f"Milvus at {uri} has no collection '{collection}'")
    properties = client.describe_collection(collection).get("properties") or {}
    if PROPERTY not in properties:
        raise TokretrieveError(f"collection '{collection}' at {uri} was not written by "
                               "`tokretrieve export --format milvus` (no property "
                               f"{PROPERTY})")
    return json.loads(properties[PROPERTY])
