"""The index manifest as dataclasses: written and read here only, compared as a whole.

`manifest.json` records everything that shaped an index: the model (by the sha256 of its weights)
and how it embedded, how embeddings became bags, how the bags are laid out, and which documents
went in. Each section is a frozen dataclass whose fields are the JSON keys, so the rest of
tokretrieve reads `manifest.bags.bag_size`, never `manifest["projection"]["k"]`, and two builds
are "the same index" exactly when their manifests compare equal: fields that only describe a
result (the resolved λ, the quantization scale, timestamps, paths) are left out of the
comparison with `compare=False`, so a reused index is one whose every *input* matches.

The index subpackage reads these records but never acts on the model ones: an index opens and
searches with numpy alone; only the build step and the searchers load a model.

Format 3 adds `Contents`: which generation the manifest commits, the folders of that
generation's segments and shared files, its deleted positions and every file's sha256
(tokretrieve.index.generations). A format-2 manifest reads as one segment whose files lie at the
folder's root, with no deletions and no checksums.

Format 4 adds `postings_format.codec`: a segment's lists as raw arrays (postings_docs and
postings_impacts.npy, as in formats 2 and 3) or bit-packed words (postings_word_ptr and
postings_words.npy, tokretrieve.index.packing). A format-3 manifest reads as the raw codec.

Format 5 lets a packed list be dense (a byte per document, tokretrieve.index.packing); the
manifest is format 4's, and format-4 lists, all in chunks, read as they did.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokretrieve.errors import IndexFormatError
from tokretrieve.index.postings import CODECS, IMPACT_TYPES, MAX_SEGMENT_DOCS
from tokretrieve.index.storage import MANIFEST, read_json

FORMAT = "tokretrieve.sparse"
FORMAT_VERSION = 5
READABLE_VERSIONS = (2, 3, 4, 5)
# The method (and weighting) an index records when its bags were made by another model and
# imported (tokretrieve.interop.imported): it has no model to load.
IMPORTED_METHOD = "imported"
# A pc1_request that older format-2 manifests did not record: never equal to a real request, so
# such an index is rebuilt rather than reused on a guess.
UNRECORDED = "unrecorded"


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    """The model that embedded the documents, and how (queries in `model` mode must match)."""

    name: str
    content_hash: str
    method: str
    max_length: int
    hidden_size: int
    dtype: str = "float32"
    source: str = field(default="", compare=False)  # where it was loaded from: not what it is
    # The whole model recipe (tokretrieve.encoding.recipes: pooling, prompts, EOS, padding,
    # attention, head), so queries are embedded exactly as the documents were; None in
    # indexes written before recipes, whose `method` names one.
    recipe: dict | None = None


@dataclass(frozen=True, kw_only=True)
class BagRecord:
    """How embeddings became bags: bag size, weighting, PC1 adjustment, variant merging.

    `pc1_request` is what the build was asked for (a number, "auto", or None for the model's
    default multiple of the mean norm); `pc1_strength` is the λ that request resolved to on this
    corpus, a result of the inputs rather than one of them.

    `literal` holds the literal weights' settings (tokretrieve.encoding.literal: alpha, k1, b,
    stopwords), None for aligned bags only (and for every index written before them);
    `literal_fit` the scalars of their corpus statistics (mean length, aligned factor), fitted
    by the build and frozen (the per-token idf is `literal_idf.npy` in the base folder).
    """

    bag_size: int
    weighting: str
    merge_variants: bool
    pc1_request: float | str | None
    pc1_strength: float = field(compare=False)
    calibration: dict | None = field(default=None, compare=False)
    literal: dict | None = None
    literal_fit: dict | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True)
class PostingsLayout:
    """How postings are stored (tokretrieve.index.postings): segment size, impact type, scale,
    and codec ("raw" arrays or "packed" words; format 4, absent before: raw)."""

    segment_docs: int
    impacts: str
    scale: float = field(compare=False)
    codec: str = "raw"


@dataclass(frozen=True, kw_only=True)
class SegmentRecord:
    """One segment: a folder of documents written by one build, add or compaction.

    `drift` (segments added to a built index only) says how far the added documents stray
    from the PC1 direction and λ they were adjusted with (tokretrieve.build.add_documents).
    """

    name: str
    documents: int
    postings: int
    generation: int
    drift: dict | None = None


@dataclass(frozen=True, kw_only=True)
class Contents:
    """What one generation is made of: its number, the folder of the files every segment
    shares (`base`: PC1 direction, variant map, tokenizer), its segments in position order,
    the file of its deleted positions (None: none deleted) and the sha256 of every file."""

    generation: int
    base: str
    segments: tuple[SegmentRecord, ...]
    deleted: str | None = None
    deleted_count: int = 0
    files: dict[str, str] = field(default_factory=dict)

    @property
    def positions(self) -> int:
        """Documents stored, deleted ones included (document positions run over these)."""
        return sum(segment.documents for segment in self.segments)


# The fixed names of the files of a format-1 or -2 index, all at its root.
LEGACY_ENTRIES = ("doc_ids.npy", "postings_indptr.npy", "postings_docs.npy",
                  "postings_impacts.npy", "postings_weights.npy", "embeddings.npy",
                  "pc1_direction.npy", "token_map.npy", "tokenizer")


@dataclass(frozen=True, kw_only=True)
class IndexManifest:
    """The whole manifest. JSON sections: `model`, `projection` (the BagRecord, under its
    format-2 name), `postings_format`, and the generation's contents at the top level.
    `doc_count` counts live documents (deleted ones excluded)."""

    doc_count: int
    vocab_size: int
    model: ModelRecord
    bags: BagRecord
    layout: PostingsLayout
    # sha256 over the (id, text) pairs in order: the documents, not the path they came from.
    documents_digest: str | None
    source: str = field(default="", compare=False)
    postings: int = field(default=0, compare=False)
    empty_documents: int = field(default=0, compare=False)
    empty_document_ids: tuple[str, ...] = field(default=(), compare=False)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(
        timespec="seconds"), compare=False)
    format_version: int = field(default=FORMAT_VERSION, compare=False)
    contents: Contents | None = field(default=None, compare=False)  # None: not on disk yet

    def to_json(self) -> dict[str, Any]:
        """The manifest.json object (format-2 key names, plus the format-3 contents)."""
        bags = dataclasses.asdict(self.bags)
        contents = dataclasses.asdict(self.contents) if self.contents else {}
        if contents:
            contents["segments"] = list(contents["segments"])
        return {**contents,
            "format": FORMAT, "format_version": self.format_version, "created": self.created,
            "source": self.source, "documents_digest": self.documents_digest,
            "doc_count": self.doc_count, "postings": self.postings,
            "empty_documents": self.empty_documents,
            "empty_document_ids": list(self.empty_document_ids), "vocab_size": self.vocab_size,
            "model": dataclasses.asdict(self.model),
            "projection": {"k": bags.pop("bag_size"), **bags},
            "postings_format": dataclasses.asdict(self.layout),
        }

    @classmethod
    def read(cls, folder: str | Path) -> IndexManifest:
        """The manifest of the index in `folder`: a tokretrieve sparse index in a format
        version this code reads, or an IndexFormatError saying what it is instead."""
        folder = Path(folder)
        file = folder / MANIFEST
        if not file.is_file():
            raise IndexFormatError(f"{folder} is not a tokretrieve index (no {MANIFEST}); "
                                   "build one with `tokretrieve index`")
        data = read_json(file)
        if not isinstance(data, dict):
            raise IndexFormatError(f"{file} is not a JSON object: the index is damaged, "
                                   "rebuild it")
        if data.get("format") != FORMAT:
            raise IndexFormatError(f"{folder} holds a '{data.get('format')}' index, not "
                                   f"'{FORMAT}'")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            readable = ", ".join(str(v) for v in READABLE_VERSIONS)
            raise IndexFormatError(
                f"{folder} was written in format version {version}; this tokretrieve reads "
                f"versions {readable}: rebuild the index with this version")
        if version != 2:
            _require(data, ("generation", "base", "segments", "files"), "", file)
        manifest = cls.from_json(data, folder)
        _check_values(manifest, file)
        return manifest

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: str | Path) -> IndexManifest:
        """Parse a manifest.json object, naming every missing key (never a bare KeyError)."""
        where = Path(folder) / MANIFEST
        _require(data, ("format_version", "doc_count", "vocab_size", "model", "projection",
                        "postings_format"), "", where)
        try:
            return cls._parse(data, where)
        except (TypeError, ValueError) as error:  # a value of the wrong kind: "12x" documents
            raise IndexFormatError(f"{where} holds a value of the wrong type ({error}): the "
                                   "index is damaged; rebuild it") from None

    @classmethod
    def _parse(cls, data: dict[str, Any], where: Path) -> IndexManifest:
        model = _section(data, "model", ModelRecord, where)
        if not isinstance(data["projection"], dict):
            raise IndexFormatError(f"{where}: 'projection' is not an object; rebuild the index")
        projection = dict(data["projection"])
        projection.setdefault("pc1_request", UNRECORDED)
        if "k" in projection:
            projection["bag_size"] = projection.pop("k")
        bags = _section({"projection": projection}, "projection", BagRecord, where,
                        renamed={"bag_size": "k"})
        layout = _section(data, "postings_format", PostingsLayout, where)
        return cls(doc_count=int(data["doc_count"]), vocab_size=int(data["vocab_size"]),
                   contents=_contents(data, where),
                   model=model, bags=bags, layout=layout,
                   documents_digest=data.get("documents_digest"),
                   source=str(data.get("source", "")), postings=int(data.get("postings", 0)),
                   empty_documents=int(data.get("empty_documents", 0)),
                   empty_document_ids=tuple(data.get("empty_document_ids", ())),
                   created=str(data.get("created", "")),
                   format_version=int(data["format_version"]))

    def differences(self, other: IndexManifest) -> list[str]:
        """What differs between two manifests among the fields that shape an index, as
        'section.field: mine -> theirs' lines (empty when the two would build the same index)."""
        return _differences(self, other, "")


def _contents(data: dict[str, Any], where: Path) -> Contents | None:
    """The generation's contents (None for a manifest of an index not on disk); a format-2
    manifest is one segment at the folder's root. Every name must stay inside the index
    folder: one plain entry, no separators, no '..'."""
    if data["format_version"] != 2 and "segments" not in data:
        return None
    if data["format_version"] == 2:
        segment = SegmentRecord(name="", documents=int(data["doc_count"]),
                                postings=int(data.get("postings", 0)), generation=0)
        return Contents(generation=0, base="", segments=(segment,))
    if not isinstance(data["segments"], list) or not data["segments"]:
        raise IndexFormatError(f"{where}: 'segments' is not a non-empty list; the index is "
                               "damaged")
    segments = tuple(_section({"segment": s}, "segment", SegmentRecord, where)
                     for s in data["segments"])
    contents = Contents(generation=int(data["generation"]), base=str(data["base"]),
                        segments=segments, deleted=data.get("deleted"),
                        deleted_count=int(data.get("deleted_count", 0)),
                        files=dict(data["files"]))
    names = [contents.base, *(s.name for s in segments), contents.deleted or "x",
             *(part for file in contents.files for part in file.split("/"))]
    if any(not isinstance(n, str) or n in ("", ".", "..") or "/" in n or "\\" in n
           for n in names):
        raise IndexFormatError(f"{where} names a file outside its folder; the index is "
                               "damaged or not a tokretrieve index")
    return contents


def _check_values(manifest: IndexManifest, where: Path) -> None:
    """Refuse counts and a layout no index can have (they would reach numpy as they are and
    fail there, or worse, not fail): positive integer counts, a known impact type, a segment
    size the format can hold, a finite positive power-of-two scale."""
    def whole(value: object, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    layout, contents = manifest.layout, manifest.contents
    checks = [
        ("vocab_size", manifest.vocab_size, whole(manifest.vocab_size, 1)),
        ("model.hidden_size", manifest.model.hidden_size, whole(manifest.model.hidden_size, 1)),
        ("postings_format.segment_docs", layout.segment_docs,
         whole(layout.segment_docs, 1) and layout.segment_docs <= MAX_SEGMENT_DOCS),
        ("postings_format.impacts", layout.impacts, layout.impacts in IMPACT_TYPES),
        ("postings_format.codec", layout.codec, isinstance(layout.codec, str)
         and layout.codec in CODECS
         and (layout.codec == "raw" or layout.impacts == "uint8")),
        ("postings_format.scale", layout.scale,
         isinstance(layout.scale, int | float) and not isinstance(layout.scale, bool)
         and math.isfinite(layout.scale) and layout.scale > 0),
        ("generation", contents.generation, whole(contents.generation, 0)),
        ("deleted_count", contents.deleted_count, whole(contents.deleted_count, 0)),
        ("files", contents.files, all(isinstance(k, str) and isinstance(v, str)
                                      for k, v in contents.files.items())),
    ]
    for segment in contents.segments:
        checks += [(f"segment {segment.name!r} documents", segment.documents,
                    whole(segment.documents, 1 if segment.name else 0)),
                   (f"segment {segment.name!r} postings", segment.postings,
                    whole(segment.postings, 0))]
    for name, value, good in checks:
        if not good:
            raise IndexFormatError(f"{where} holds {name} = {value!r}, which no index can "
                                   "have: the index is damaged; rebuild it")


def _require(data: dict, keys: tuple[str, ...], prefix: str, where: Path) -> None:
    missing = [f"{prefix}{key}" for key in keys if key not in data]
    if missing:
        raise IndexFormatError(f"{where} lacks {', '.join(missing)}: the index is damaged or "
                               "from an unreleased build; rebuild it")


def _section(data: dict, name: str, record: type, where: Path,
             renamed: dict[str, str] | None = None) -> Any:
    """One section as its dataclass: required fields must be present, unknown keys ignored
    (a newer minor writer may add some)."""
    section = data[name]
    if not isinstance(section, dict):
        raise IndexFormatError(f"{where}: '{name}' is not an object; rebuild the index")
    fields = dataclasses.fields(record)
    required = tuple(f.name for f in fields if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    missing = [f"{name}.{(renamed or {}).get(key, key)}" for key in required
               if key not in section]
    if missing:
        raise IndexFormatError(f"{where} lacks {', '.join(missing)}: the index is damaged or "
                               "from an unreleased build; rebuild it")
    return record(**{f.name: section[f.name] for f in fields if f.name in section})


def _differences(mine: Any, theirs: Any, prefix: str) -> list[str]:
    out = []
    for item in dataclasses.fields(mine):
        if not item.compare:
            continue
        a, b = getattr(mine, item.name), getattr(theirs, item.name)
        if dataclasses.is_dataclass(a):
            out += _differences(a, b, f"{prefix}{item.name}.")
        elif a != b:
            out.append(f"{prefix}{item.name}: {_shown(a)} -> {_shown(b)}")
    return out


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:  # a sha256: its head is enough to tell
        return value[:12]
    return repr(value)
