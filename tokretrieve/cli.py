"""The `tokretrieve` command: index, search, explain, info, demo.

Flag names follow pyserini's (`--index`, `--topics`, `--output`, `--hits`) so IR users find them
where they expect. Bad input ends the command with one `error:` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from tokretrieve.alignment import calibrate_pc1_strength
from tokretrieve.corpus import read_documents, read_queries
from tokretrieve.dense import DenseIndex
from tokretrieve.encoder import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, DTYPES, Encoder
from tokretrieve.errors import TokretrieveError
from tokretrieve.models import ALIASES, DEFAULT_MODEL
from tokretrieve.postings import IMPACT_TYPES
from tokretrieve.projection import WEIGHTINGS, check_top_k
from tokretrieve.search import Hit
from tokretrieve.sparse_index import DEFAULT_K, QUERY_MODES, SparseIndex
from tokretrieve.storage import FORMAT_VERSION, folder_bytes
from tokretrieve.trec import write_run

# Where ../shared/ASSETS.md puts the Cranfield collection, relative to the repository root.
DEMO_CORPUS = Path("../shared/data/cranfield")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except TokretrieveError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: nothing was written over an existing index", file=sys.stderr)
            return 130


def _show_warning(message, *_details) -> None:
    """Warnings (empty documents, empty queries) as one plain line, without source lines."""
    print(f"warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokretrieve", description="Token-aligned sparse retrieval from LLM embedders.")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="encode a collection and write an index")
    index.add_argument("corpus", help="BEIR folder, JSONL/TSV file of (id, text), or irds:<id>")
    index.add_argument("--output", help="index folder (default: index/<corpus name>)")
    _add_build_options(index)
    index.set_defaults(run=_run_index)

    search = commands.add_parser("search", help="search an index")
    search.add_argument("query", nargs="*", help="query text(s)")
    search.add_argument("--index", required=True, help="index folder")
    search.add_argument("--topics", help="queries: BEIR folder, JSONL/TSV file, or irds:<id>")
    search.add_argument("--mode", choices=[*QUERY_MODES, "dense"], default="model",
                        help="model: encode queries with the LLM; tokens: tokenize only (no "
                             "model loaded); dense: the same model's FAISS baseline")
    search.add_argument("--hits", type=int, default=10, help="results per query (default 10)")
    search.add_argument("--output", help="write a TREC run file here")
    search.set_defaults(run=_run_search)

    explain = commands.add_parser("explain", help="show a text's key tokens")
    explain.add_argument("text")
    source = explain.add_mutually_exclusive_group()
    source.add_argument("--index", help="use this index's model, k, weighting and PC1 adjustment")
    source.add_argument("--model", default=DEFAULT_MODEL, help="model (no PC1 adjustment)")
    explain.add_argument("--k", type=int, default=10, help="tokens to show (default 10)")
    explain.add_argument("--query", action="store_true", help="encode the text as a query")
    explain.set_defaults(run=_run_explain)

    calibrate = commands.add_parser(
        "calibrate", help="choose the PC1 strength for a corpus (no relevance data needed)")
    calibrate.add_argument("corpus", help="BEIR folder, JSONL/TSV file, or irds:<id>")
    calibrate.add_argument("--model", default=DEFAULT_MODEL)
    calibrate.add_argument("--method", help="embedding method (default: the model's)")
    calibrate.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    calibrate.add_argument("--sample", type=int, default=300, help="texts sampled (default 300)")
    calibrate.set_defaults(run=_run_calibrate)

    analyze = commands.add_parser(
        "analyze", help="report key-token alignment, the PC1 spectrum and the calibrated λ")
    analyze.add_argument("--corpus", required=True, help="BEIR folder, JSONL/TSV, or irds:<id>")
    analyze.add_argument("--model", default=DEFAULT_MODEL)
    analyze.add_argument("--method", help="embedding method (default: the model's)")
    analyze.add_argument("--backbone", help="the generative LLM the embedder was trained from")
    analyze.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    analyze.add_argument("--sample", type=int, default=300, help="texts sampled (default 300)")
    analyze.add_argument("--output", required=True, help="folder for report.md and its plots")
    analyze.set_defaults(run=_run_analyze)

    info = commands.add_parser("info", help="describe an index")
    info.add_argument("--index", required=True)
    info.set_defaults(run=_run_info)

    demo = commands.add_parser("demo", help="index Cranfield (or CORPUS) and run a few queries")
    demo.add_argument("--corpus", help=f"BEIR folder to index (default: {DEMO_CORPUS})")
    demo.add_argument("--output", help="index folder (default: index/<corpus name>)")
    demo.add_argument("--queries", type=int, default=3, help="queries to run (default 3)")
    _add_build_options(demo)
    demo.set_defaults(run=_run_demo)
    return parser


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"alias ({', '.join(ALIASES)}), local folder, .gguf file or hub id "
                             f"(default {DEFAULT_MODEL})")
    parser.add_argument("--method", help="prompteol, sgpt, mean or last (default: the model's)")
    parser.add_argument("--k", type=int, default=DEFAULT_K,
                        help=f"key tokens kept per document (default {DEFAULT_K})")
    parser.add_argument("--pc1-strength", type=_strength, default=None,
                        help="move embeddings by this much along PC1 before projecting; 0 = off, "
                             "'auto' = calibrate on the corpus (default: the model's measured "
                             "multiple of the mean embedding norm, else auto)")
    parser.add_argument("--weighting", choices=WEIGHTINGS, default=None,
                        help="how token weights derive from logits (default: the model's)")
    parser.add_argument("--merge-variants", action="store_true",
                        help="fold case and word-boundary variants of a token into one")
    parser.add_argument("--impacts", choices=list(IMPACT_TYPES), default="uint8",
                        help="stored weight precision: uint8 levels (default, 1 byte per weight "
                             "instead of 4) or exact float32")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                        help=f"tokens per input, longer texts truncated (default "
                             f"{DEFAULT_MAX_LENGTH})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32",
                        help="model weights' precision (bfloat16 where the hardware has it)")
    parser.add_argument("--encoding-errors", choices=["strict", "replace"], default="strict",
                        help="non-UTF-8 bytes: stop with an error (strict) or replace them")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild even if an index with the same settings exists")


def _strength(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


def _build(args: argparse.Namespace, corpus: str, output: Path) -> SparseIndex:
    """Build the index, or reuse the one at `output` when it was built with the same settings."""
    check_top_k(args.k)  # fail before minutes of model loading, not after
    strength = args.pc1_strength
    if not args.rebuild and (output / "manifest.json").is_file():
        try:
            existing = SparseIndex.load(output)
        except TokretrieveError:
            existing = None
        if existing is not None and _same_settings(existing.manifest, args, corpus, strength):
            print(f"reusing {output} ({len(existing)} documents; --rebuild to build anew)")
            return existing
    started = time.perf_counter()
    docs = read_documents(corpus, encoding_errors=args.encoding_errors)
    print(f"read {len(docs)} documents from {corpus}")
    encoder = Encoder.load(args.model, method=args.method, max_length=args.max_length,
                           batch_size=args.batch_size, dtype=args.dtype)
    index = SparseIndex.build(docs, encoder, output, k=args.k, weighting=args.weighting,
                              pc1_strength=strength, merge_variants=args.merge_variants,
                              source=corpus, impacts=args.impacts)
    elapsed = time.perf_counter() - started
    manifest = index.manifest
    print(f"indexed {manifest['doc_count']} documents ({manifest['postings']} postings, "
          f"{manifest['empty_documents']} empty) into {output} in {elapsed:.1f} s "
          f"({manifest['doc_count'] / elapsed:.1f} docs/s)")
    return index


def _same_settings(manifest: dict, args: argparse.Namespace, corpus: str,
                   strength: float | str | None) -> bool:
    model, projection = manifest["model"], manifest["projection"]
    return (manifest["format_version"] == FORMAT_VERSION and manifest.get("source") == corpus
            and manifest["postings_format"]["impacts"] == args.impacts
            and model["name"] == args.model
            and (args.method is None or model["method"] == args.method)
            and model["max_length"] == args.max_length and projection["k"] == args.k
            and args.weighting in (None, projection["weighting"])
            and (projection["calibration"] is not None if strength == "auto"
                 else strength in (None, projection["pc1_strength"]))
            and projection["merge_variants"] == args.merge_variants)


def _default_output(corpus: str) -> Path:
    """index/<name>: a folder's or file's own name, or an ir_datasets id with '/' as '-'."""
    if corpus.startswith("irds:"):
        name = corpus.removeprefix("irds:").replace("/", "-")
    else:
        path = Path(corpus).resolve()
        name = path.name if path.is_dir() else path.stem
    if not name.strip(". "):
        raise TokretrieveError(f"cannot name an index after '{corpus}': pass --output")
    return Path("index") / name


def _run_index(args: argparse.Namespace) -> int:
    _build(args, args.corpus, Path(args.output) if args.output else _default_output(args.corpus))
    return 0


def _run_search(args: argparse.Namespace) -> int:
    queries = [(str(i), q) for i, q in enumerate(args.query, start=1)]
    if args.topics:
        queries += read_queries(args.topics)
    if not queries:
        raise TokretrieveError("no queries: give query text or --topics")
    index = SparseIndex.load(args.index)
    texts = [text for _, text in queries]
    if args.mode == "dense":
        results = DenseIndex.from_sparse(index).batch_search(texts, args.hits)
    else:
        # A run file has no room for matched tokens: skip listing them (several times faster).
        results = index.batch_search(texts, args.hits, mode=args.mode,
                                     matched=not args.output)
    if args.output:
        write_run(args.output, [qid for qid, _ in queries], results,
                  tag=f"tokretrieve-{args.mode}")
        print(f"wrote {sum(map(len, results))} hits for {len(queries)} queries to {args.output}")
    else:
        for (qid, text), hits in zip(queries, results, strict=True):
            _print_hits(qid, text, hits)
    return 0


def _print_hits(qid: str, text: str, hits: list[Hit]) -> None:
    print(f"\nquery {qid}: {text}")
    if not hits:
        print("  (no document shares a token with this query)")
    for rank, hit in enumerate(hits, start=1):
        matched = ", ".join(f"{token} {weight:.3g}" for token, weight in hit.matched[:6])
        print(f"  {rank:>3}  {hit.doc_id:<12} {hit.score:10.4g}  {matched}")


def _run_explain(args: argparse.Namespace) -> int:
    if args.index:
        tokens = SparseIndex.load(args.index).explain(args.text, k=args.k, is_query=args.query)
    else:
        tokens = Encoder.load(args.model).key_tokens(args.text, k=args.k, is_query=args.query)
    for token, weight in tokens:
        print(f"{weight:10.4g}  {token}")
    return 0


def _run_calibrate(args: argparse.Namespace) -> int:
    texts = [text for _, text in read_documents(args.corpus)]
    encoder = Encoder.load(args.model, method=args.method, max_length=args.max_length)
    calibration = calibrate_pc1_strength(encoder, texts, sample=args.sample, progress=True)
    print(f"{'λ':>10}  {calibration.criterion}")
    for strength, hit_rate in calibration.curve:
        chosen = "  <- chosen" if strength == calibration.strength else ""
        print(f"{strength:10.4f}  {hit_rate:.4f}{chosen}")
    print(f"use: tokretrieve index {args.corpus} --model {args.model} "
          f"--pc1-strength {calibration.strength:.4g}   (or --pc1-strength auto)")
    return 0


def _run_analyze(args: argparse.Namespace) -> int:
    from tokretrieve.analysis import write_analysis_report  # matplotlib: only when asked

    texts = [text for _, text in read_documents(args.corpus)]
    encoder = Encoder.load(args.model, method=args.method, max_length=args.max_length)
    backbone = (Encoder.load(args.backbone, method=encoder.method.name,
                             max_length=args.max_length) if args.backbone else None)
    report = write_analysis_report(encoder, texts, args.output, backbone, sample=args.sample)
    print(f"wrote {report}")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    index = SparseIndex.load(args.index)
    manifest = index.manifest
    model, projection = manifest["model"], manifest["projection"]
    layout = manifest["postings_format"]
    rows = [
        ("format", f"{manifest['format']} v{manifest['format_version']}"),
        ("created", manifest["created"]),
        ("source", manifest["source"] or "(python)"),
        ("documents", f"{manifest['doc_count']} ({manifest['empty_documents']} empty)"),
        ("postings", f"{manifest['postings']} "
                     f"({manifest['postings'] / max(manifest['doc_count'], 1):.1f} per document)"),
        ("model", f"{model['name']} ({model['method']}, max_length {model['max_length']})"),
        ("model sha256", model["content_hash"]),
        ("projection", f"k={projection['k']}, weighting={projection['weighting']}, "
                       f"pc1_strength={projection['pc1_strength']}, "
                       f"merge_variants={projection['merge_variants']}"),
        ("postings layout", f"{layout['impacts']} impacts (scale {layout['scale']:.6g}), "
                            f"segments of {layout['segment_docs']} documents"),
        ("bytes on disk", f"{folder_bytes(index.path):,}"),
    ]
    calibration = projection["calibration"]
    if calibration:
        rows.insert(-1, ("pc1 calibrated", f"λ={calibration['strength']:.4g} by "
                                           f"{calibration['criterion']} on "
                                           f"{calibration['sample']} texts"))
    for key, value in rows:
        print(f"{key:>14}: {value}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    corpus = Path(args.corpus) if args.corpus else DEMO_CORPUS
    if not (corpus / "corpus.jsonl").is_file():
        raise TokretrieveError(
            f"the demo collection is not at {corpus}: name a BEIR folder to index instead, "
            "e.g. `make demo CORPUS=path/to/beir/folder`")
    output = Path(args.output) if args.output else _default_output(str(corpus))
    index = _build(args, str(corpus), output)
    queries = []
    if (corpus / "queries.jsonl").is_file():
        queries = read_queries(corpus)[:args.queries]
    for qid, text in queries:
        print(f"\n=== query {qid}: {text}")
        print("key tokens:", ", ".join(t for t, _ in index.explain(text, k=8, is_query=True)))
        for mode in QUERY_MODES:
            print(f"--- mode {mode}")
            for rank, hit in enumerate(index.search(text, k=3, mode=mode), start=1):
                matched = ", ".join(f"{t} {w:.3g}" for t, w in hit.matched[:6])
                print(f"  {rank}. doc {hit.doc_id:<6} score {hit.score:.4g}  matched: {matched}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
