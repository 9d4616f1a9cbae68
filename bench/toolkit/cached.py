"""A collection and its cached embeddings: where bench.live and bench.serve start.

Both benchmarks measure what the package does with an index (commits, searches, a server), not
encoding, so both take a collection's document and query embeddings from the quality
benchmark's cache (bench/quality/cache.py; encoded there when missing) and build their indexes
from those. This module holds that starting point once, so the two take the same options with
the same defaults and help, open and encode the collection the same way, record it in the same
fields, and build the same index from the same embeddings:

- `add_collection_arguments`: --corpus, --model, --max-length, --cache-dir, --refresh-cache,
  --limit-docs, --output and --scratch;
- `open_collection` and `load_embeddings`: the collection those options name (or the reason it
  is unavailable) and its embeddings, two steps so a benchmark can check its sizes against the
  collection before any model loads;
- `scratch_folder` and `record_fields`: where indexes are written, and the record's collection,
  model and embeddings fields;
- `build_from_embeddings`: the package's build of an index from stored embeddings, and
  `copy_index`: a fresh copy of one, so that every measurement starts from the same index.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality.cache import EncodedCollection, encode_collection
from bench.quality.datasets import Collection, load_collection, resolve_spec, unavailable_reason
from bench.toolkit import CRANFIELD, RESULTS_DIR
from bench.toolkit.cli import positive_int
from bench.toolkit.machine import model_record
from tokretrieve import Encoder, SparseIndex
from tokretrieve.build import index_from_embeddings
from tokretrieve.errors import TokretrieveError

DEFAULT_CACHE = RESULTS_DIR / "quality" / "cache"


def add_collection_arguments(parser: argparse.ArgumentParser, benchmark: str) -> None:
    """The options naming the collection, its embeddings and where a run writes; results go
    to bench/results/<benchmark>/ by default."""
    parser.add_argument("--corpus", default=str(CRANFIELD),
                        help="BEIR folder (corpus, queries, qrels; default "
                             "../shared/data/cranfield)")
    parser.add_argument("--model", default="minilm",
                        help="alias, model folder or hub id (default minilm)")
    parser.add_argument("--max-length", type=positive_int, default=256,
                        help="tokens per text of the cached embeddings (default 256)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="embedding cache, shared with bench.quality (default "
                             "bench/results/quality/cache; encoded there when missing)")
    parser.add_argument("--refresh-cache", action="store_true")
    parser.add_argument("--limit-docs", type=positive_int, default=None,
                        help="first N documents only (smoke runs; its own cache file)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / benchmark,
                        help=f"results go to <output>/<timestamp>/ (default "
                             f"bench/results/{benchmark})")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="where the indexes are written (default: system temp)")


def open_collection(args: argparse.Namespace) -> tuple[str, Collection] | None:
    """The collection of --corpus (its first --limit-docs documents) and its resolved spec;
    None, with the reason on stderr, when it is not there."""
    spec = resolve_spec(args.corpus)
    reason = unavailable_reason(spec)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return None
    return spec, load_collection(spec, args.limit_docs)


def load_embeddings(args: argparse.Namespace,
                    collection: Collection) -> tuple[Encoder, EncodedCollection]:
    """The --model encoder and the collection's embeddings from the cache (encoded into it
    when missing, or again with --refresh-cache); a model that does not load is one error
    line (SystemExit), not a traceback."""
    try:
        encoder = Encoder.load(args.model, max_length=args.max_length)
    except TokretrieveError as error:
        raise SystemExit(f"error: --model: {error}") from None
    encoded = encode_collection(encoder, collection, args.model, args.cache_dir,
                                refresh=args.refresh_cache)
    return encoder, encoded


def scratch_folder(args: argparse.Namespace) -> Path:
    """The folder (made if missing) under which a run writes its indexes: --scratch, else the
    system's temporary folder."""
    root = args.scratch or Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    return root


def record_fields(args: argparse.Namespace, spec: str, collection: Collection, encoder: Encoder,
                  encoded: EncodedCollection) -> dict[str, Any]:
    """The record's `collection`, `model` and `embeddings` fields (for `new_record`)."""
    return {"collection": {"name": collection.name, "spec": spec,
                           "documents": len(collection.docs),
                           "queries": len(collection.queries), "limit_docs": args.limit_docs},
            "model": model_record(args.model, encoder),
            "embeddings": {"path": str(encoded.path), "from_cache": encoded.from_cache,
                           "encoded_at": encoded.encoded_at}}


def build_from_embeddings(path: Path, doc_ids: Sequence[str], embeddings: np.ndarray,
                          encoder: Encoder, texts: Sequence[str] | None = None) -> SparseIndex:
    """The package's build from stored embeddings, written to `path` (PC1 and λ fitted on
    these documents). With the documents' `texts` the bags are the package's defaults (the
    offline models' literal weights need the texts); without them, aligned bags alone
    (`literal=False`): what bench.live builds, whose adds bring bags made from embeddings."""
    if texts is None:
        encoder = encoder.with_bags(literal=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # documents with empty bags (Cranfield has two)
        return index_from_embeddings([str(d) for d in doc_ids], np.asarray(embeddings),
                                     encoder, path=path, texts=texts)


def copy_index(source: Path, target: Path) -> Path:
    """A fresh copy of an index folder (outside any clock), replacing `target`."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target
