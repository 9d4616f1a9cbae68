"""One measurement per route out of tokretrieve, on the same index and the same integer queries.

Every route is timed the same way (its build or load, its bytes, its query time) and checked
the same way: its top-k of the exported queries against tokretrieve's, by
tokretrieve.interop.agreement.compare (equal scores; rankings that differ only in tied
documents' order counted apart). tokretrieve's own figures on the same queries come first, so
the ratios compare like with like: the same bags, the same integer queries, the same k.

Query time is the wall time of one batch call over every query on one thread, divided by the
number of queries: what each engine's batch API costs per query, start-up excluded (the JVM, the
Milvus Lite server and their imports are started before the clock).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.toolkit.clock import timed
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.index.storage import folder_bytes
from tokretrieve.interop.agreement import Agreement, compare
from tokretrieve.interop.jsonl import export_jsonl, read_vectors
from tokretrieve.interop.queries import ExportedQueries

Results = dict[str, list[tuple[str, float]]]


def per_query_ms(seconds: float, queries: ExportedQueries) -> float:
    return 1000.0 * seconds / max(len(queries.qids), 1)


def checked(index: SparseIndex, queries: ExportedQueries, search: Callable[[], Results],
            k: int) -> dict[str, Any]:
    """Time one batch search (after one untimed warm-up call) and check it against
    tokretrieve's top-k."""
    search()
    results, seconds = timed(search)
    agreement: Agreement = compare(index, queries, results, k)
    return {"query_ms": per_query_ms(seconds, queries), "agreement": agreement.summary()}


def tokretrieve_route(index: SparseIndex, queries: ExportedQueries, k: int) -> dict[str, Any]:
    """tokretrieve itself on the exported (integer) queries: one batch call, one thread."""
    bags = queries.bags()
    index.search(bags, k, threads=1)
    _, seconds = timed(lambda: index.search(bags, k, threads=1))
    return {"query_ms": per_query_ms(seconds, queries), "bytes": index.bytes_on_disk}


def export_route(index: SparseIndex, queries: ExportedQueries, folder: Path,
                 target: str = "jsonvector") -> dict[str, Any]:
    """The JSONL export of the documents and the queries (the queries' own mode)."""
    pairs = list(zip(queries.qids, queries.texts, strict=True))
    started = time.perf_counter()
    meta = export_jsonl(index, folder, target, queries=pairs, query_mode=queries.mode,
                        progress=False)
    return {"seconds": time.perf_counter() - started, "bytes": folder_bytes(folder / "docs"),
            "documents": meta["documents"], "mapped_keys": len(meta["mapped_keys"])}


def lucene_route(index: SparseIndex, queries: ExportedQueries, export: Path, lucene_dir: Path,
                 k: int) -> dict[str, Any]:
    """Anserini's impact index of the export, searched by pyserini's LuceneImpactSearcher."""
    from tokretrieve.interop.lucene import build_lucene_index, search_lucene, start_jvm

    start_jvm()
    built, seconds = timed(lambda: build_lucene_index(export, lucene_dir))
    vectors = dict(read_vectors(export / "queries.jsonl"))
    search_lucene(lucene_dir, dict(list(vectors.items())[:1]), k)  # pyserini's imports
    result = checked(index, queries, lambda: search_lucene(lucene_dir, vectors, k), k)
    return {"build_s": seconds, "bytes": folder_bytes(lucene_dir),
            "documents": built.get("indexed"), **result}


def milvus_route(index: SparseIndex, queries: ExportedQueries, uri: str,
                 k: int) -> dict[str, Any]:
    """A Milvus Lite collection (SPARSE_FLOAT_VECTOR, SPARSE_INVERTED_INDEX, IP)."""
    from tokretrieve.interop.milvus import export_milvus, search_milvus

    collection = f"bench_{queries.mode}"
    loaded, seconds = timed(lambda: export_milvus(index, uri, collection, replace=True,
                                                  progress=False))
    result = checked(index, queries, lambda: search_milvus(uri, collection, queries, k), k)
    database = Path(uri)  # Milvus Lite keeps a file, or a folder, at the URI
    size = (database.stat().st_size if database.is_file() else
            folder_bytes(database) if database.is_dir() else None)
    return {"load_s": seconds, "documents": loaded.get("documents"), "bytes": size, **result}


def sharded_route(docs: list[tuple[str, str]], encoder, root: Path,
                  shards: int) -> dict[str, Any]:
    """The same documents built twice from their texts: in this process, then encoded in
    `shards` tasks on a local Dask cluster; the times, and whether the two indexes are equal
    array for array (they must be: the same chunks give the same embeddings)."""
    from tokretrieve.build import build_index

    single, single_s = timed(lambda: build_index(docs, encoder, root / "single",
                                                 progress=False))
    sharded, sharded_s = timed(lambda: build_index(docs, encoder, root / "sharded",
                                                   progress=False, cluster="local",
                                                   shards=shards))
    return {"single_s": single_s, "sharded_s": sharded_s, "shards": shards,
            "differences": index_differences(single, sharded)}


def index_differences(a: SparseIndex, b: SparseIndex) -> list[str]:
    """The arrays and manifest fields in which two indexes differ (empty: the same index)."""
    import numpy as np

    out = [f"manifest: {line}" for line in a.manifest.differences(b.manifest)]
    if a.manifest.bags.pc1_strength != b.manifest.bags.pc1_strength:
        out.append("pc1_strength")
    pairs = {"pc1_direction": (a.pc1_direction, b.pc1_direction),
             "doc_ids": (a.doc_ids, b.doc_ids), "embeddings": (a.embeddings, b.embeddings)}
    for name in ("indptr", "docs", "impacts"):
        pairs[f"postings.{name}"] = (getattr(a.postings, name), getattr(b.postings, name))
    out += [name for name, (x, y) in pairs.items()
            if not np.array_equal(np.asarray(x), np.asarray(y))]
    return out


def scale_route(index: SparseIndex, sizes: list[int], root: Path) -> list[dict[str, Any]]:
    """The jsonvector export of synthetic collections of each size (bags drawn to follow the
    real index's token distribution: bench/speed/synth.py), timed, with the highest anonymous
    memory sampled while exporting: bounded memory means it stays flat as the size grows."""
    import gc

    import numpy as np

    from bench.speed.synth import distribution_from_bags, generate_bags
    from bench.toolkit.clock import anonymous_rss_mb, peak_anonymous_rss_mb
    from tokretrieve.index.postings import postings_from_bags
    from tokretrieve.index.sparse import in_memory

    distribution = distribution_from_bags(index.postings.to_bags())
    out = []
    for size in sizes:
        folder = root / f"synthetic-{size}"
        bags = generate_bags(distribution, size, seed=size)
        postings = postings_from_bags(bags, "uint8", scale=float(index.manifest.layout.scale))
        ids = np.array([f"syn{i:08d}" for i in range(size)], dtype=str)
        synthetic = in_memory(index.manifest, postings, ids,
                              np.zeros((0, index.manifest.model.hidden_size), dtype=np.float32),
                              np.asarray(index.pc1_direction), None).write(folder / "index")
        del bags, postings, ids
        gc.collect()
        before = anonymous_rss_mb()
        started = time.perf_counter()
        meta, peak = peak_anonymous_rss_mb(lambda s=synthetic, f=folder: export_jsonl(
            s, f / "export", progress=False))
        seconds = time.perf_counter() - started
        out.append({"documents": meta["documents"], "postings": synthetic.manifest.postings,
                    "seconds": seconds, "docs_per_s": meta["documents"] / seconds,
                    "export_bytes": folder_bytes(folder / "export"),
                    "index_bytes": synthetic.bytes_on_disk, "anon_rss_before_mb": before,
                    "peak_anon_rss_mb": peak, "export_anon_rss_mb": peak - before})
        del synthetic
        shutil.rmtree(folder, ignore_errors=True)
    return out
