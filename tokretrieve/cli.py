"""The `tokretrieve` command: index, add, delete, compact, verify, search, explain, info,
serve, export, import, calibrate, analyze, demo.

Flag names follow pyserini's (`--index`, `--topics`, `--output`, `--hits`) so IR users find them
where they expect; each count has its own name: `--bag-size` (tokens kept per document),
`--hits` (results per query), `--tokens` (tokens shown). Bad input ends the command with one
`error:` line and exit status 2, and so does a file system that refuses a write (disk full,
read-only, permission denied): the line names the path and the cause.

What loads a model (torch, transformers) is imported by the commands that run one, so that the
others (tokenized search, info, verify, delete, compact, export) start in a fraction of the time.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tokretrieve.corpus import IRDS_PREFIX, check_unicode, read_documents, read_queries
from tokretrieve.encoding.checkpoint import CHUNK_SIZE
from tokretrieve.encoding.choices import (
    ALIASES,
    DEFAULT_BAG_SIZE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MODEL,
    DTYPE_CHOICES,
    WEIGHTINGS,
)
from tokretrieve.encoding.literal import LiteralWeights
from tokretrieve.encoding.recipes import (
    ATTENTIONS,
    METHODS,
    PADDING_SIDES,
    POOLINGS,
    describe_families,
)
from tokretrieve.errors import CorpusError, TokretrieveError, check_count
from tokretrieve.index.live import compact_index, delete_documents
from tokretrieve.index.manifest import FORMAT
from tokretrieve.index.postings import CODECS, IMPACT_TYPES, resolve_codec
from tokretrieve.index.sparse import SparseIndex, verify_index
from tokretrieve.interop.export import EXPORT_FORMATS, export_index
from tokretrieve.interop.imported import index_from_vectors, query_vectors
from tokretrieve.interop.keys import KEY_STYLES
from tokretrieve.search.fusion import FUSIONS, HYBRID_PARTS, HybridSearcher
from tokretrieve.search.query_encoders import (
    DEFAULT_ALIGNED_TOKENS,
    PrecomputedQueryEncoder,
    index_encoder,
    index_tokenizer,
)
from tokretrieve.search.searcher import QUERY_MODES, DenseSearcher, Hit, SparseSearcher
from tokretrieve.trec import write_run

if TYPE_CHECKING:
    from tokretrieve.encoding.encoder import Encoder

# The demo's collection: Cranfield through ir_datasets (downloaded once where a network exists).
DEMO_CORPUS = "irds:cranfield"

# Failures only a write can meet, and what to do about those the file system reports.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_OS_ADVICE = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EROFS: "write elsewhere",
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
}


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
        except OSError as error:
            # what the command writes: its --output, else the index it changes (add, delete)
            written = getattr(args, "output", None) or getattr(args, "index", None)
            print(f"error: {_os_error(error, written)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: nothing was written over an existing index", file=sys.stderr)
            return 130


def _os_error(error: OSError, written: str | None) -> str:
    """One line for what the file system refused: the path (what the command writes where the
    error names none, as a failed write() does not), the cause, and what to do."""
    path = error.filename or written
    verb = "cannot write" if error.errno in _WRITE_ERRNOS else "cannot access"
    line = f"{verb} {path}" if path else verb
    line += f": {error.strerror or error}"
    advice = _OS_ADVICE.get(error.errno or 0)
    return f"{line}; {advice}" if advice else line


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
    index.add_argument("--cluster", metavar="ADDRESS",
                       help="encode on the Dask cluster whose scheduler is at ADDRESS (e.g. "
                            "tcp://host:8786; 'local': one started on 127.0.0.1), with --shards")
    index.add_argument("--shards", type=int, metavar="N",
                       help="tasks the corpus is split into on --cluster (runs of whole "
                            f"{CHUNK_SIZE}-document chunks)")
    index.set_defaults(run=_run_index)

    search = commands.add_parser("search", help="search an index")
    search.add_argument("query", nargs="*", help="query text(s)")
    search.add_argument("--index", required=True, help="index folder")
    search.add_argument("--topics", help="queries: BEIR folder, JSONL/TSV file, or irds:<id>")
    search.add_argument("--mode", choices=[*QUERY_MODES, "dense", "hybrid"], default="model",
                        help="model: encode queries with the LLM; tokens: tokenize only (no "
                             "model loaded); union: the paper's query, literal tokens and "
                             "--aligned-tokens aligned ones; dense: the same model's FAISS "
                             "baseline; hybrid: --parts fused by --fusion")
    search.add_argument("--query-vectors",
                        help="query bags made elsewhere: a JSONL file of {id, vector: {token: "
                             "weight}} (e.g. SPLADE's queries, an export's queries.jsonl), "
                             "searched as they are")
    search.add_argument("--aligned-tokens", type=int, default=DEFAULT_ALIGNED_TOKENS,
                        help="union: the query's top aligned tokens added to its literal "
                             f"ones (default {DEFAULT_ALIGNED_TOKENS})")
    search.add_argument("--parts", type=_parts, default=("model", "dense"),
                        help="hybrid: the searchers fused, among model, tokens, union, dense, "
                             "bm25 (default model,dense)")
    search.add_argument("--corpus", help="hybrid with bm25: the collection's texts (BEIR "
                                         "folder, JSONL/TSV or irds:<id>)")
    search.add_argument("--fusion", choices=list(FUSIONS), default="rrf",
                        help="hybrid: reciprocal-rank fusion (default) or a normalised linear "
                             "combination of scores")
    search.add_argument("--weights", type=_weights, default=None,
                        help="hybrid: one weight per part, comma-separated (default all 1)")
    search.add_argument("--hits", type=int, default=10, help="results per query (default 10)")
    search.add_argument("--threads", type=int, default=None,
                        help="scoring threads for a batch of queries (default: all cores)")
    search.add_argument("--output", type=_run_file, help="write a TREC run file here")
    _add_encoding_errors(search)
    search.set_defaults(run=_run_search)

    explain = commands.add_parser("explain", help="show a text's key tokens")
    explain.add_argument("text")
    source = explain.add_mutually_exclusive_group()
    source.add_argument("--index", help="use this index's model, bag size, weighting and PC1 "
                                         "adjustment")
    source.add_argument("--model", default=DEFAULT_MODEL, help="model (no PC1 adjustment)")
    explain.add_argument("--tokens", type=int, default=10, help="tokens to show (default 10)")
    explain.add_argument("--query", action="store_true", help="encode the text as a query")
    explain.set_defaults(run=_run_explain)

    calibrate = commands.add_parser(
        "calibrate", help="choose the PC1 strength for a corpus (no relevance data needed)")
    calibrate.add_argument("corpus", help="BEIR folder, JSONL/TSV file, or irds:<id>")
    calibrate.add_argument("--model", default=DEFAULT_MODEL)
    _add_recipe_options(calibrate)
    calibrate.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    calibrate.add_argument("--sample", type=int, default=300, help="texts sampled (default 300)")
    _add_encoding_errors(calibrate)
    calibrate.set_defaults(run=_run_calibrate)

    analyze = commands.add_parser(
        "analyze", help="report key-token alignment, the PC1 spectrum and the calibrated λ")
    analyze.add_argument("--corpus", required=True, help="BEIR folder, JSONL/TSV, or irds:<id>")
    analyze.add_argument("--model", action="append",
                         help=f"model to analyse (default {DEFAULT_MODEL}); repeat it for one "
                              "report over several models")
    _add_recipe_options(analyze)
    analyze.add_argument("--backbone", help="the generative LLM the embedder was trained from")
    analyze.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    analyze.add_argument("--sample", type=int, default=300, help="texts sampled (default 300)")
    analyze.add_argument("--output", required=True, help="folder for report.md and its plots")
    _add_encoding_errors(analyze)
    analyze.set_defaults(run=_run_analyze)

    recipes = commands.add_parser("recipes", help="list the model families and how each is run")
    recipes.set_defaults(run=_run_recipes)

    info = commands.add_parser("info", help="describe an index")
    info.add_argument("--index", required=True)
    info.set_defaults(run=_run_info)

    add = commands.add_parser("add", help="add documents to an index (one commit: a new "
                                          "segment)")
    add.add_argument("corpus", help="BEIR folder, JSONL/TSV file of (id, text), or irds:<id>")
    add.add_argument("--index", required=True, help="index folder")
    add.add_argument("--update", action="store_true",
                     help="replace documents whose id the index already holds (else refused)")
    _add_encoding_errors(add)
    add.set_defaults(run=_run_add)

    delete = commands.add_parser("delete", help="delete documents from an index by id")
    delete.add_argument("ids", nargs="*", help="document ids")
    delete.add_argument("--index", required=True, help="index folder")
    delete.add_argument("--ids-file", help="a file of document ids, one per line")
    delete.set_defaults(run=_run_delete)

    compact = commands.add_parser(
        "compact", help="merge an index's segments into one and drop its deleted documents")
    compact.add_argument("--index", required=True, help="index folder")
    compact.add_argument("--postings", choices=list(CODECS), default=None,
                         help="store the lists in this codec from now on (default: the "
                              "index's own; packed turns a raw index into one of about half "
                              "the bytes without encoding anything again)")
    compact.set_defaults(run=_run_compact)

    serve = commands.add_parser("serve", help="serve an index over HTTP: a JSON API and a "
                                              "results page")
    serve.add_argument("--index", required=True, help="index folder")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--corpus", help="the collection's texts, shown with the hits (the "
                                        "index stores none)")
    serve.add_argument("--no-model", action="store_true",
                       help="tokenized queries only: no model in memory (no model or dense "
                            "mode, no explain, no adding)")
    serve.add_argument("--read-only", action="store_true", help="refuse changes")
    _add_encoding_errors(serve)
    serve.set_defaults(run=_run_serve)

    verify = commands.add_parser("verify", help="check every file of an index: checksums, "
                                                "shapes, ranges")
    verify.add_argument("--index", required=True, help="index folder")
    verify.set_defaults(run=_run_verify)

    export = commands.add_parser("export", help="write an index's bags for another engine "
                                                "(Anserini/Pyserini, Seismic, Milvus, OpenSearch)")
    export.add_argument("--index", required=True, help="index folder")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                        help="jsonvector (Anserini JsonVectorCollection), seismic (JSONL), "
                             "opensearch (bulk NDJSON + rank_features mapping), milvus")
    export.add_argument("--output", help="export folder (file formats)")
    export.add_argument("--uri", help="milvus: a Milvus Lite file (bags.db) or a server URI")
    export.add_argument("--collection", default="tokretrieve",
                        help="milvus: collection name (default tokretrieve)")
    export.add_argument("--replace", action="store_true",
                        help="milvus: replace a collection of that name")
    export.add_argument("--keys", choices=KEY_STYLES, default="tokens",
                        help="token keys: the tokens' own text where safe (default) or t<id>")
    export.add_argument("--topics", help="queries to export beside the documents: BEIR "
                                         "folder, JSONL/TSV file, or irds:<id>")
    export.add_argument("--query-mode", choices=QUERY_MODES, default="model",
                        help="how the topics are encoded (default model)")
    _add_encoding_errors(export)
    export.set_defaults(run=_run_export)

    imported = commands.add_parser(
        "import", help="make an index from bags made elsewhere (JSONL vectors, e.g. SPLADE's)")
    imported.add_argument("vectors", help="a JSONL file of {id, vector: {token: weight}}, a "
                                          "folder of them, or a tokretrieve export folder")
    imported.add_argument("--output", required=True, help="index folder to write")
    imported.add_argument("--tokenizer",
                          help="the tokenizer whose tokens the keys are (a model alias, folder "
                               "or hub id); default: the keys themselves make the vocabulary")
    imported.add_argument("--impacts", choices=list(IMPACT_TYPES), default="uint8",
                          help="stored weight precision (default uint8)")
    imported.add_argument("--postings", choices=list(CODECS), default=None,
                          help="how the lists are stored: packed bits (the default with uint8 "
                               "impacts) or raw arrays (the only codec with float32 impacts)")
    imported.set_defaults(run=_run_import)

    demo = commands.add_parser("demo", help="index Cranfield (or CORPUS) and run a few queries")
    demo.add_argument("--corpus", default=DEMO_CORPUS,
                      help=f"BEIR folder, JSONL/TSV file or irds:<id> (default {DEMO_CORPUS})")
    demo.add_argument("--output", help="index folder (default: index/<corpus name>)")
    demo.add_argument("--queries", type=int, default=3, help="queries to run (default 3)")
    _add_build_options(demo)
    demo.set_defaults(run=_run_demo)
    return parser


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The model recipe (tokretrieve.encoding.recipes): a named one, and any field changed."""
    recipe = parser.add_argument_group("model recipe (default: the model family's; see "
                                       "`tokretrieve recipes`)")
    recipe.add_argument("--method", help=f"a named recipe: {', '.join(METHODS)}")
    recipe.add_argument("--pooling", choices=POOLINGS)
    recipe.add_argument("--query-prompt", help="template around queries, with one {text} "
                                               "(no {text}: a prefix)")
    recipe.add_argument("--document-prompt", help="template around documents, with one {text}")
    recipe.add_argument("--pool-prompt", choices=("on", "off"),
                        help="whether the prompt's tokens count in the pooling")
    recipe.add_argument("--append-eos", choices=("on", "off"),
                        help="append the EOS token after the text")
    recipe.add_argument("--padding-side", choices=PADDING_SIDES)
    recipe.add_argument("--attention", choices=ATTENTIONS)
    recipe.add_argument("--head", help="vocabulary projection: auto, own (LM/MLM head), tied "
                                       "(input embeddings) or a backbone checkpoint whose LM "
                                       "head decodes the embedder")


def _recipe_overrides(args: argparse.Namespace) -> dict:
    """The recipe fields the command line changes (None: left as the recipe has them)."""
    switch = {"on": True, "off": False, None: None}
    return {"pooling": args.pooling, "query_prompt": args.query_prompt,
            "document_prompt": args.document_prompt, "pool_prompt": switch[args.pool_prompt],
            "append_eos": switch[args.append_eos], "padding_side": args.padding_side,
            "attention": args.attention, "head": args.head}


def _load_encoder(args: argparse.Namespace, **options) -> Encoder:
    """The command's encoder: its --model run by its recipe options."""
    from tokretrieve.encoding.encoder import Encoder

    return Encoder.load(args.model, method=args.method, max_length=args.max_length,
                        overrides=_recipe_overrides(args), **options)


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"alias ({', '.join(ALIASES)}), local folder, .gguf file or hub id "
                             f"(default {DEFAULT_MODEL})")
    _add_recipe_options(parser)
    parser.add_argument("--bag-size", type=int, default=DEFAULT_BAG_SIZE,
                        help=f"key tokens kept per document (default {DEFAULT_BAG_SIZE})")
    parser.add_argument("--pc1-strength", type=_strength, default=None,
                        help="move embeddings by this much along PC1 before projecting; 0 = off, "
                             "'auto' = calibrate on the corpus (default: the model's measured "
                             "multiple of the mean embedding norm, else auto)")
    parser.add_argument("--weighting", choices=WEIGHTINGS, default=None,
                        help="how token weights derive from logits (default: the model's)")
    parser.add_argument("--merge-variants", action="store_true",
                        help="fold case and word-boundary variants of a token into one")
    parser.add_argument("--literal", choices=("default", "on", "off"), default="default",
                        help="add each document's own tokens, BM25-weighted, to its bag "
                             "(default: the model's measured choice; on for minilm and smollm2)")
    parser.add_argument("--literal-alpha", type=float, default=None,
                        help="the aligned tokens' share beside the literal ones (implies "
                             "--literal on; default: the model's, else 0.5)")
    parser.add_argument("--impacts", choices=list(IMPACT_TYPES), default="uint8",
                        help="stored weight precision: uint8 levels (default, 1 byte per weight "
                             "instead of 4) or exact float32")
    parser.add_argument("--postings", choices=list(CODECS), default=None,
                        help="how the lists are stored: packed bits (the default with uint8 "
                             "impacts: about half the bytes of raw, at about the same search "
                             "time; README, Speed) or raw arrays (3 bytes per posting; the "
                             "default, and the only codec, with float32 impacts)")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                        help=f"tokens per input, longer texts truncated (default "
                             f"{DEFAULT_MAX_LENGTH})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--dtype", choices=list(DTYPE_CHOICES), default="float32",
                        help="model weights' precision: float32 (default), bfloat16, or auto "
                             "(bfloat16 where the hardware computes it natively, else float32)")
    _add_encoding_errors(parser)
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild even if an index with the same settings exists")


def _add_encoding_errors(parser: argparse.ArgumentParser) -> None:
    """Every command that reads a corpus or topics file takes this: the readers' error for
    bytes that are not UTF-8 recommends it."""
    parser.add_argument("--encoding-errors", choices=["strict", "replace"], default="strict",
                        help="non-UTF-8 bytes: stop with an error (strict) or replace them")


def _parts(value: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in parts if p not in HYBRID_PARTS]
    if unknown or len(parts) < 2:
        raise argparse.ArgumentTypeError(f"expected two or more of {', '.join(HYBRID_PARTS)}, "
                                         f"comma-separated; got {value!r}")
    return parts


def _weights(value: str) -> list[float]:
    try:
        weights = [float(w) for w in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}"
                                         ) from None
    if any(not (math.isfinite(w) and w >= 0) for w in weights):
        raise argparse.ArgumentTypeError(f"weights must be finite and non-negative: {value!r}")
    return weights


def _strength(value: str) -> float | str:
    """'auto' or a finite number, refused at parsing: not after the documents are read and
    the model loaded."""
    if value == "auto":
        return value
    try:
        strength = float(value)
    except ValueError:
        strength = math.nan
    if not math.isfinite(strength):
        raise argparse.ArgumentTypeError(f"expected a finite number or 'auto', got {value!r}")
    return strength


def _run_file(value: str) -> str:
    """A run file path, refused while parsing (before the index is opened or a query encoded)
    when no file can be written there."""
    path = Path(value)
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a folder: give a file name, e.g. "
                                         f"{path / 'run.trec'}")
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{folder} {problem}: write the run into an "
                                         "existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {folder} (permission denied or "
                                         "a read-only file system): write the run elsewhere")
    return value


def _literal(args: argparse.Namespace) -> LiteralWeights | bool | None:
    """The --literal / --literal-alpha choice as Encoder.load's `literal` (checked before any
    model loads)."""
    if args.literal_alpha is not None:
        if args.literal == "off":
            raise TokretrieveError("--literal-alpha needs literal weights: drop --literal off")
        return LiteralWeights(alpha=args.literal_alpha)
    return {"default": None, "on": True, "off": False}[args.literal]


def _build(args: argparse.Namespace, corpus: str, output: Path, cluster: str | None = None,
           shards: int | None = None) -> tuple[SparseIndex, Encoder]:
    """Build the index, or reuse the one at `output` when everything that shaped it (model
    weights, method, max length, dtype, bag recipe, layout, documents) is the same; when
    something differs, say what before rebuilding. `cluster` and `shards` encode on Dask."""
    check_count(args.bag_size, "--bag-size")  # fail before minutes of model loading, not after
    resolve_codec(args.postings, args.impacts)
    _literal(args)
    if (cluster is None) != (shards is None):
        raise TokretrieveError("--cluster and --shards go together: e.g. --cluster "
                               "tcp://host:8786 --shards 8, or --cluster local --shards 2")
    if shards is not None:
        check_count(shards, "--shards")
    if cluster is not None:
        from tokretrieve.encoding.sharded import check_cluster

        check_cluster(cluster)
    started = time.perf_counter()
    docs = read_documents(corpus, encoding_errors=args.encoding_errors)
    print(f"read {len(docs)} documents from {corpus}")
    encoder = _load_encoder(args, batch_size=args.batch_size, dtype=args.dtype,
                            bag_size=args.bag_size, weighting=args.weighting,
                            literal=_literal(args))
    from tokretrieve.build import build_index, reusable_index

    options = {"pc1_strength": args.pc1_strength, "merge_variants": args.merge_variants,
               "impacts": args.impacts, "codec": args.postings}
    existing, differences = reusable_index(output, docs, encoder, **options)
    if existing is not None and not differences and not args.rebuild:
        print(f"reusing {output} ({len(existing)} documents; --rebuild to build anew)")
        return existing, encoder
    if differences:
        print(f"rebuilding {output} ({'; '.join(differences)})")
    index = build_index(docs, encoder, output, source=corpus, cluster=cluster, shards=shards,
                        **options)
    elapsed = time.perf_counter() - started
    manifest = index.manifest
    print(f"indexed {manifest.doc_count} documents ({manifest.postings} postings, "
          f"{manifest.empty_documents} empty) into {output} in {elapsed:.1f} s "
          f"({manifest.doc_count / elapsed:.1f} docs/s)")
    return index, encoder


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


def _index_output(args: argparse.Namespace) -> Path:
    """--output, or index/<corpus name>; kept in `args`, so that a failed write can name it."""
    if not args.output:
        args.output = str(_default_output(args.corpus))
    return Path(args.output)


def _run_index(args: argparse.Namespace) -> int:
    _build(args, args.corpus, _index_output(args), args.cluster, args.shards)
    return 0


def _run_search(args: argparse.Namespace) -> int:
    # undecodable bytes of a command line arrive as lone surrogates, which tokenizers fail on
    queries = [(str(i), check_unicode(text, f"query {i}"))
               for i, text in enumerate(args.query, start=1)]
    if args.topics:
        topics = read_queries(args.topics, encoding_errors=args.encoding_errors)
        clash = sorted({qid for qid, _ in queries} & {qid for qid, _ in topics}, key=int)
        if clash:
            raise TokretrieveError(
                f"query text given on the command line is numbered {', '.join(clash)}, ids "
                f"--topics {args.topics} already uses: search them in two commands, or add "
                "the queries to the topics file")
        queries += topics
    if args.query_vectors:
        if queries:
            raise TokretrieveError("--query-vectors are the queries: give no query text or "
                                   "--topics with them")
        index = SparseIndex.load(args.index)
        qids, bags = query_vectors(index, args.query_vectors)
        searcher = SparseSearcher(index, PrecomputedQueryEncoder(qids, bags),
                                  index_tokenizer(index))
        queries = [(qid, qid) for qid in qids]  # each query "text" is its id: its row
    if not queries:
        raise TokretrieveError("no queries: give query text, --topics or --query-vectors")
    check_count(args.hits, "--hits")
    if args.threads is not None:
        check_count(args.threads, "--threads")
    if args.mode == "hybrid" and args.weights and len(args.weights) != len(args.parts):
        raise TokretrieveError(f"--weights gives {len(args.weights)} weights for "
                               f"{len(args.parts)} --parts")
    if args.query_vectors:
        pass  # the searcher above
    elif args.mode == "hybrid":
        docs = None
        if "bm25" in args.parts:
            if not args.corpus:
                raise TokretrieveError("--parts with bm25 needs --corpus: the collection's "
                                       "texts (an index stores none)")
            docs = read_documents(args.corpus, encoding_errors=args.encoding_errors)
        searcher = HybridSearcher.from_index(args.index, args.parts, fusion=args.fusion,
                                             weights=args.weights,
                                             depth=max(args.hits, 100), docs=docs)
    elif args.mode == "dense":
        searcher = DenseSearcher.from_index(args.index)
    else:
        check_count(args.aligned_tokens, "--aligned-tokens")
        searcher = SparseSearcher.from_index(args.index, mode=args.mode,
                                             aligned_tokens=args.aligned_tokens)
    qids = [qid for qid, _ in queries]
    # A run file has no room for matched tokens: skip listing them (several times faster).
    results = searcher.batch_search([text for _, text in queries], qids, args.hits,
                                    threads=args.threads, explain=not args.output)
    if args.output:
        mode = "vectors" if args.query_vectors else args.mode
        write_run(args.output, results, tag=f"tokretrieve-{mode}")
        print(f"wrote {sum(map(len, results.values()))} hits for {len(queries)} queries to "
              f"{args.output}")
    else:
        for qid, text in queries:
            _print_hits(qid, text, results[qid])
    return 0


def _print_hits(qid: str, text: str, hits: list[Hit]) -> None:
    """A ranked table a person can read: scores as a share of the best hit's (raw scores of a
    softmax bag are around 1e-6; the exact ones go to run files and the Python API) and each
    matched token as its share of the hit's score."""
    print(f"\nquery {qid}: {text}")
    if not hits:
        print("  (no document shares a token with this query)")
        return
    print("  rank doc          score (% of the best)  matched tokens (% of the hit's score)")
    for rank, hit in enumerate(hits, start=1):
        print(f"  {rank:>4} {hit.doc_id:<12} {_relative(hit.score, hits[0].score):>7}  "
              f"{_matched(hit)}")


def _relative(score: float, best: float) -> str:
    """A score as a percentage of the best one, or as itself where that means nothing (a best
    score of 0 or below: cosines can be negative)."""
    return f"{100 * score / best:.1f}" if best > 0 else f"{score:.4g}"


def _matched(hit: Hit, shown: int = 6) -> str:
    if hit.score <= 0:
        return ", ".join(token for token, _ in hit.matched[:shown])
    return ", ".join(f"{token} {100 * part / hit.score:.0f}%"
                     for token, part in hit.matched[:shown])


def _key_tokens(encoder: Encoder, text: str, top_k: int, is_query: bool
                ) -> list[tuple[str, float]]:
    """The text's `top_k` key tokens with their share (%) of its whole bag's weight: raw
    weights (softmax probabilities over the vocabulary) print as 1e-8."""
    bag = (encoder.encode_query if is_query else encoder.encode_document)([text])
    total = float(bag.sum())
    return [(token, 100 * weight / total if total > 0 else 0.0)
            for token, weight in encoder.decode(bag, top_k)]


def _run_explain(args: argparse.Namespace) -> int:
    from tokretrieve.encoding.encoder import Encoder

    check_count(args.tokens, "--tokens")
    encoder = (index_encoder(SparseIndex.load(args.index)) if args.index
               else Encoder.load(args.model))
    print("share of the bag  token")
    for token, share in _key_tokens(encoder, args.text, args.tokens, args.query):
        print(f"{share:15.2f}%  {token}")
    return 0


def _run_calibrate(args: argparse.Namespace) -> int:
    texts = [text for _, text in read_documents(args.corpus, encoding_errors=args.encoding_errors)]
    encoder = _load_encoder(args)
    from tokretrieve.encoding.alignment import calibrate_pc1_strength

    calibration = calibrate_pc1_strength(encoder, texts, sample=args.sample, progress=True)
    print(f"{'λ':>10}  {calibration.criterion}")
    for strength, hit_rate in calibration.curve:
        chosen = "  <- chosen" if strength == calibration.strength else ""
        print(f"{strength:10.4f}  {hit_rate:.4f}{chosen}")
    print(f"use: tokretrieve index {args.corpus} --model {args.model} "
          f"--pc1-strength {calibration.strength:.4g}   (or --pc1-strength auto)")
    return 0


def _run_analyze(args: argparse.Namespace) -> int:
    # matplotlib: only when asked
    from tokretrieve.encoding.analysis import write_analysis_report, write_models_report
    from tokretrieve.encoding.encoder import Encoder

    models = args.model or [DEFAULT_MODEL]
    if len(models) > 1 and args.backbone:
        raise TokretrieveError("--backbone compares one embedder with its backbone: give one "
                               "--model with it")
    texts = [text for _, text in read_documents(args.corpus, encoding_errors=args.encoding_errors)]
    if len(models) > 1:
        report = write_models_report(
            models, lambda name: _load_encoder(argparse.Namespace(**{**vars(args),
                                                                     "model": name})),
            texts, args.output, sample=args.sample)
        print(f"wrote {report}")
        return 0
    args.model = models[0]
    encoder = _load_encoder(args)
    # The backbone embeds the same texts the same way (prompts, pooling), through its own head.
    backbone = (Encoder.load(args.backbone, method=dataclasses.replace(
        encoder.method, head="auto", attention=None), max_length=args.max_length)
        if args.backbone else None)
    report = write_analysis_report(encoder, texts, args.output, backbone, sample=args.sample)
    print(f"wrote {report}")
    return 0


def _run_recipes(args: argparse.Namespace) -> int:
    """The recipe table, first match wins (tokretrieve.encoding.recipes.FAMILIES)."""
    for family, fields, note in describe_families():
        print(f"{family}\n  {fields}\n  {note}" if note else f"{family}\n  {fields}")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    index = SparseIndex.load(args.index)
    manifest = index.manifest
    model, bags, layout = manifest.model, manifest.bags, manifest.layout
    rows = [
        ("format", f"{FORMAT} v{manifest.format_version}"),
        ("created", manifest.created),
        ("source", manifest.source or "(python)"),
        ("documents", f"{manifest.doc_count} ({manifest.empty_documents} empty)"),
        ("postings", f"{manifest.postings} "
                     f"({manifest.postings / max(manifest.doc_count, 1):.1f} per document)"),
        ("model", f"{model.name} ({model.method}, max_length {model.max_length}, "
                  f"{model.dtype})"),
        ("recipe", ", ".join(f"{key}={value!r}" for key, value in (model.recipe or {}).items()
                             if key != "name") or "(not recorded)"),
        ("model sha256", model.content_hash),
        ("bags", f"bag_size={bags.bag_size}, weighting={bags.weighting}, "
                 f"pc1_strength={bags.pc1_strength:.6g}, merge_variants={bags.merge_variants}"),
        ("postings layout", f"{layout.codec} lists of {layout.impacts} impacts (scale "
                            f"{layout.scale:.6g}), blocks of {layout.segment_docs} documents"),
        ("generation", f"{manifest.contents.generation}: {len(index.segments)} segment(s), "
                       f"{len(index.deleted)} deleted position(s)"),
        ("bytes on disk", f"{index.bytes_on_disk:,}"),
    ]
    for record in manifest.contents.segments:
        drift = record.drift
        detail = "" if drift is None else (
            f"; added: PC1 cosine {drift['pc1_cosine']:.3f}, norm ratio "
            f"{drift['norm_ratio']:.3f}, {drift['saturated_weights']} saturated weights")
        rows.append((f"{record.name or 'segment'}", f"{record.documents} documents, "
                                                     f"{record.postings} postings{detail}"))
    calibration = bags.calibration
    if calibration:
        rows.insert(-1, ("pc1 calibrated", f"λ={calibration['strength']:.4g} by "
                                           f"{calibration['criterion']} on "
                                           f"{calibration['sample']} texts"))
    for key, value in rows:
        print(f"{key:>15}: {value}")
    return 0


def _run_add(args: argparse.Namespace) -> int:
    from tokretrieve.build import add_documents

    docs = read_documents(args.corpus, encoding_errors=args.encoding_errors)
    started = time.perf_counter()
    index = add_documents(args.index, docs, update=args.update)
    segment = index.manifest.contents.segments[-1]
    drift = segment.drift or {}
    print(f"added {len(docs)} documents to {args.index} in {time.perf_counter() - started:.1f} "
          f"s: generation {index.manifest.contents.generation}, {len(index)} documents in "
          f"{len(index.segments)} segments; drift: PC1 cosine {drift.get('pc1_cosine', 0):.3f}, "
          f"norm ratio {drift.get('norm_ratio', 0):.3f}, "
          f"{drift.get('saturated_weights', 0)} weights past the top level")
    return 0


def _run_delete(args: argparse.Namespace) -> int:
    ids = list(args.ids)
    if args.ids_file:
        ids += _read_ids(Path(args.ids_file))
    if not ids:
        raise TokretrieveError("no ids to delete: give ids or --ids-file")
    index = delete_documents(args.index, ids)
    print(f"deleted {len(ids)} documents from {args.index}: generation "
          f"{index.manifest.contents.generation}, {len(index)} documents left "
          f"({len(index.deleted)} deleted positions until `tokretrieve compact`)")
    return 0


def _read_ids(file: Path) -> list[str]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TokretrieveError(f"--ids-file {file} does not exist") from None
    except UnicodeDecodeError:
        raise TokretrieveError(f"--ids-file {file} is not UTF-8 text") from None
    return [line.strip() for line in lines if line.strip()]


def _run_compact(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    index = compact_index(args.index, codec=args.postings)
    print(f"compacted {args.index} in {time.perf_counter() - started:.1f} s: generation "
          f"{index.manifest.contents.generation}, {len(index)} documents in one segment, "
          f"{index.manifest.layout.codec} lists")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from tokretrieve.serve.app import create_app, read_texts
    except ImportError as error:
        raise TokretrieveError(f"serving needs the 'serve' extra ({error.name} is missing): "
                               "pip install 'tokretrieve[serve]'") from None
    if not 0 < args.port < 65536:
        raise TokretrieveError(f"--port must be in 1..65535, got {args.port}")
    texts = read_texts(args.corpus, args.encoding_errors) if args.corpus else {}
    app = create_app(args.index, load_model=not args.no_model, read_only=args.read_only,
                     texts=texts)
    print(f"serving {args.index} at http://{args.host}:{args.port}/ (API schema: /docs)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    problems = verify_index(args.index)
    for problem in problems:
        print(f"damaged: {problem}", file=sys.stderr)
    if problems:
        print(f"{args.index}: {len(problems)} problem(s); rebuild the index", file=sys.stderr)
        return 1
    contents = SparseIndex.load(args.index, verify=False).manifest.contents
    print(f"{args.index}: generation {contents.generation} is whole ({len(contents.files)} "
          "files match their checksums)")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    queries = (read_queries(args.topics, encoding_errors=args.encoding_errors)
               if args.topics else None)
    started = time.perf_counter()
    written = export_index(args.index, args.format, args.output, uri=args.uri,
                           collection=args.collection, keys=args.keys, queries=queries,
                           query_mode=args.query_mode, replace=args.replace)
    where = args.output or f"{args.uri} (collection {args.collection})"
    extra = f" and {len(queries)} {args.query_mode} queries" if queries else ""
    print(f"exported {written['documents']} documents{extra} as {args.format} to {where} in "
          f"{time.perf_counter() - started:.1f} s (weights: integer levels x scale "
          f"{written['scale']:g})")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    index = index_from_vectors(args.vectors, args.output, tokenizer=args.tokenizer,
                               impacts=args.impacts, codec=args.postings)
    print(f"imported {len(index)} documents from {args.vectors} into {args.output} in "
          f"{time.perf_counter() - started:.1f} s: {index.manifest.postings} postings over "
          f"{index.vocab_size} tokens (scale {index.manifest.layout.scale:g})")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    corpus = args.corpus
    output = _index_output(args)
    has_queries = corpus.startswith(IRDS_PREFIX) or (Path(corpus) / "queries.jsonl").is_file()
    try:
        index, encoder = _build(args, corpus, output)
        queries = (read_queries(corpus, encoding_errors=args.encoding_errors)[:args.queries]
                   if has_queries else [])
    except CorpusError as error:
        raise TokretrieveError(
            f"the demo collection {corpus} cannot be read ({error}); name a BEIR folder to "
            "index instead, e.g. `make demo CORPUS=path/to/beir/folder`") from None
    fitted = index_encoder(index, encoder)
    searchers = {mode: SparseSearcher.from_index(index, mode=mode, encoder=encoder)
                 for mode in QUERY_MODES}
    for qid, text in queries:
        print(f"\n=== query {qid}: {text}")
        tokens = _key_tokens(fitted, text, 8, is_query=True)
        print("key tokens (share of the query's bag):",
              ", ".join(f"{token} {share:.1f}%" for token, share in tokens))
        for mode, searcher in searchers.items():
            print(f"--- mode {mode} (score: % of the best hit's; matched: % of the hit's)")
            hits = searcher.search(text, k=3)
            for rank, hit in enumerate(hits, start=1):
                print(f"  {rank}. doc {hit.doc_id:<6} score {_relative(hit.score, hits[0].score)}"
                      f"  matched: {_matched(hit)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
