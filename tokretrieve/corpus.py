"""Reading collections: BEIR folders, JSONL/TSV files of (id, text), and ir_datasets ids.

Readers never skip or silently mangle a record: a malformed line stops the read with the file and
line named, duplicate ids are refused with the ids listed, so are ids with whitespace (a TREC run
file could not hold them) and lone surrogates (no Unicode character) in ids and texts, and empty
texts are kept (they become empty bags, reported by the index build). Bytes that are not UTF-8
are an error by default, with `encoding_errors="replace"` to index such files anyway. Gzipped
files (`corpus.jsonl.gz`, or any file that starts with gzip's magic number) are read as their
contents.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokretrieve.errors import CorpusError, TokretrieveError

IRDS_PREFIX = "irds:"
ID_FIELDS = ("_id", "id", "doc_id", "docid", "query_id", "qid")
TEXT_FIELDS = ("text", "contents", "body", "query")
_WHITESPACE = re.compile(r"\s")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_GZIP_MAGIC = b"\x1f\x8b"


def read_documents(spec: str | Path, encoding_errors: str = "strict") -> list[tuple[str, str]]:
    """All (id, text) pairs of a collection named by a folder, a file or `irds:<id>`."""
    spec_text = str(spec)
    if spec_text.startswith(IRDS_PREFIX):
        return _irds_documents(spec_text[len(IRDS_PREFIX):])
    path = Path(spec)
    if path.is_dir():
        corpus = _beir_file(path, "corpus.jsonl")
        if not corpus.is_file():
            raise CorpusError(f"{path} is a folder without corpus.jsonl (a BEIR folder has "
                              "corpus.jsonl, queries.jsonl and qrels/, each may be gzipped)")
        path = corpus
    return check_unique(_read_records(path, encoding_errors), str(path))


def read_queries(spec: str | Path, encoding_errors: str = "strict") -> list[tuple[str, str]]:
    """(query id, text) pairs from a BEIR folder's queries.jsonl, a file, or `irds:<id>`."""
    spec_text = str(spec)
    if spec_text.startswith(IRDS_PREFIX):
        dataset_id = spec_text[len(IRDS_PREFIX):]
        with _irds_fetching(dataset_id):
            records = [(check_id(q.query_id, f"{spec_text} query {position}: id"),
                        _irds_query_text(q))
                       for position, q in enumerate(_irds_load(dataset_id).queries_iter())]
        return check_unique(records, spec_text)
    path = Path(spec)
    if path.is_dir():
        path = _beir_file(path, "queries.jsonl")
    return check_unique(_read_records(path, encoding_errors), str(path))


def read_qrels(spec: str | Path, split: str = "test") -> dict[str, dict[str, int]]:
    """Relevance judgments {query id: {doc id: grade}} from a BEIR folder, a TSV or `irds:<id>`."""
    spec_text = str(spec)
    if spec_text.startswith(IRDS_PREFIX):
        qrels: dict[str, dict[str, int]] = {}
        dataset_id = spec_text[len(IRDS_PREFIX):]
        with _irds_fetching(dataset_id):
            for qrel in _irds_load(dataset_id).qrels_iter():
                qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
        return qrels
    path = Path(spec)
    if path.is_dir():
        path = _beir_file(path / "qrels", f"{split}.tsv")
    if not path.is_file():
        raise CorpusError(f"qrels file not found: {path}")
    qrels = {}
    for number, line in _lines(path, "strict"):
        row = line.split()  # BEIR's tabs and TREC's spaces alike
        if not row or (number == 1 and not row[-1].lstrip("-").isdigit()):
            continue  # blank line or BEIR's "query-id corpus-id score" header
        if len(row) == 4:  # TREC qrels: qid iteration docid grade
            row = [row[0], row[2], row[3]]
        if len(row) != 3 or not row[2].lstrip("-").isdigit():
            raise CorpusError(f"{path}:{number}: expected 'query-id doc-id grade' (BEIR TSV) or "
                              "'query-id iteration doc-id grade' (TREC)")
        qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def check_unique(records: Iterable[tuple[str, str]], source: str) -> list[tuple[str, str]]:
    """Materialise records, refusing duplicate ids (they would make results ambiguous)."""
    records = list(records)
    counts = Counter(doc_id for doc_id, _ in records)
    duplicates = [doc_id for doc_id, count in counts.items() if count > 1]
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:10])
        more = f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
        raise CorpusError(f"{source}: duplicate ids {shown}{more}: ids must be unique")
    return records


def check_id(value: str, what: str) -> str:
    """Refuse an id that would break a TREC line: run and qrels files are whitespace-separated
    columns, so an empty id, or one with a space, tab or newline, shifts the columns after it.
    `what` names the id for the message (e.g. 'corpus.jsonl:3: id')."""
    if not value:
        raise CorpusError(f"{what} is empty: TREC run files need an id in every column")
    if _WHITESPACE.search(value):
        raise CorpusError(f"{what} {value!r} contains whitespace: TREC run files separate "
                          "their columns by whitespace, so ids must have no spaces, tabs or "
                          "newlines; rename it")
    return check_unicode(value, f"{what} {value!r}")


def check_unicode(value: str, what: str) -> str:
    """Refuse a lone surrogate (a JSON '\\ud800' escape without its pair, a string built so in
    Python): half of a UTF-16 pair is no character, cannot be written as UTF-8, and tokenizers
    fail on it. `what` names the string for the message."""
    found = _SURROGATE.search(value)
    if found:
        raise CorpusError(f"{what} holds a lone surrogate ({found.group()!r} at character "
                          f"{found.start() + 1}), which is not a character: remove it")
    return value


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list, refusing a bare string (a common slip), non-strings and lone
    surrogates (the tokenizer would fail on them with a TypeError)."""
    if isinstance(texts, str):
        raise TokretrieveError("texts must be a sequence of strings, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TokretrieveError(f"text {i} is {type(text).__name__}, not a string")
        check_unicode(text, f"text {i}")
    return texts


def documents_digest(records: Iterable[tuple[str, str]]) -> str:
    """sha256 over the (id, text) pairs in order: what a collection is, whatever path it was
    read from (an index records it; a resumed encoding checks it)."""
    digest = hashlib.sha256()
    for doc_id, text in records:
        digest.update(doc_id.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _beir_file(folder: Path, name: str) -> Path:
    """A BEIR folder's file, or its gzipped copy where only that is there."""
    gzipped = folder / f"{name}.gz"
    return gzipped if gzipped.is_file() and not (folder / name).is_file() else folder / name


def _read_records(path: Path, encoding_errors: str) -> Iterator[tuple[str, str]]:
    if not path.is_file():
        raise CorpusError(f"file not found: {path}")
    if path.name.removesuffix(".gz").endswith(".tsv"):
        yield from _read_tsv(path, encoding_errors)
    else:
        yield from _read_jsonl(path, encoding_errors)


def _lines(path: Path, encoding_errors: str) -> Iterator[tuple[int, str]]:
    try:
        with _open_bytes(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    # utf-8-sig on line 1: a byte-order mark is not part of the first id.
                    yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8",
                                             errors=encoding_errors)
                except UnicodeDecodeError as error:
                    raise CorpusError(
                        f"{path}:{number}: bytes that are not UTF-8 at column "
                        f"{error.start + 1}; fix the file or pass --encoding-errors replace"
                    ) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:  # raised by gzip alone
        raise CorpusError(f"{path}: the gzip file is truncated or damaged ({error}); "
                          "download or compress it again") from None


def _open_bytes(path: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed when it starts with gzip's magic number: read as plain
    text, a gzipped file would be reported as bytes that are not UTF-8."""
    with path.open("rb") as probe:
        gzipped = probe.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
    return gzip.GzipFile(path, "rb") if gzipped else path.open("rb")


def _read_jsonl(path: Path, encoding_errors: str) -> Iterator[tuple[str, str]]:
    for number, line in _lines(path, encoding_errors):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorpusError(f"{path}:{number}: malformed JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise CorpusError(f"{path}:{number}: expected a JSON object, got "
                              f"{type(record).__name__}")
        doc_id = _record_id(record, path, number)
        yield doc_id, check_unicode(_record_text(record, path, number),
                                    f"{path}:{number}: the text of {doc_id!r}")


def _read_tsv(path: Path, encoding_errors: str) -> Iterator[tuple[str, str]]:
    for number, line in _lines(path, encoding_errors):
        line = line.rstrip("\r\n")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip():
            raise CorpusError(f"{path}:{number}: expected 'id<TAB>text'")
        yield check_id(fields[0].strip(), f"{path}:{number}: id"), "\t".join(fields[1:])


def _record_id(record: dict, path: Path, number: int) -> str:
    for key in ID_FIELDS:
        value = record.get(key)
        if value is not None and str(value).strip():
            return check_id(str(value).strip(), f"{path}:{number}: id")
    raise CorpusError(f"{path}:{number}: no id field (one of {', '.join(ID_FIELDS)})")


def _record_text(record: dict, path: Path, number: int) -> str:
    """BEIR's convention: the title, when there is one, joined before the text."""
    field = next((key for key in TEXT_FIELDS if key in record), None)
    if field is None:
        raise CorpusError(f"{path}:{number}: no text field (one of {', '.join(TEXT_FIELDS)})")
    text, title = record[field], record.get("title") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise CorpusError(f"{path}:{number}: '{field}' and 'title' must be strings")
    return f"{title} {text}".strip() if title.strip() else text


def _irds_load(dataset_id: str):
    import ir_datasets

    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise CorpusError(f"unknown ir_datasets id '{dataset_id}' "
                          "(see https://ir-datasets.com for the list)") from None


def _irds_documents(dataset_id: str) -> list[tuple[str, str]]:
    dataset = _irds_load(dataset_id)
    if not dataset.has_docs():
        raise CorpusError(f"ir_datasets '{dataset_id}' has no documents")
    records = []
    with _irds_fetching(dataset_id):
        for position, doc in enumerate(dataset.docs_iter()):
            title = getattr(doc, "title", "") or ""
            text = getattr(doc, "text", None) or doc.default_text()
            records.append((check_id(doc.doc_id, f"irds:{dataset_id} document {position}: id"),
                            f"{title} {text}".strip() if title else text))
    return check_unique(records, f"irds:{dataset_id}")


@contextlib.contextmanager
def _irds_fetching(dataset_id: str) -> Iterator[None]:
    """ir_datasets downloads a collection on first use; without a network (or with a source
    gone) that ends in RuntimeError/OSError deep inside it: say so in one line instead."""
    try:
        yield
    except (RuntimeError, OSError) as error:
        reason = str(error.args[0]) if error.args else type(error).__name__
        raise CorpusError(f"ir_datasets could not fetch '{dataset_id}' ({reason}): it downloads "
                          "a collection once, which needs a network; or read a local copy "
                          "(a BEIR folder, a JSONL or TSV file)") from None


def _irds_query_text(query) -> str:
    return getattr(query, "text", None) or query.default_text()
