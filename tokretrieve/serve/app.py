"""The HTTP API: search, explain, documents, and the results page, over one index folder.

Every answer names the generation it came from; errors are JSON `{"error": message}` with the
CLI's messages and these status codes: 400 bad input, 403 a change to a read-only server, 404 an
unknown document id, 409 another process is writing the index, 413 a request over the limits.
Changes (`POST /documents`, `DELETE /documents/{id}`) are the library's commits, under its
writer lock: a server never writes around it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from tokretrieve.encoding.tokenizer import bag_tokens
from tokretrieve.errors import IndexBusyError, TokretrieveError, check_count
from tokretrieve.index.live import delete_documents
from tokretrieve.search.searcher import Hit
from tokretrieve.serve.batching import MicroBatcher
from tokretrieve.serve.state import Mode, ServedIndex, Snapshot

PAGE = Path(__file__).with_name("static") / "index.html"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (larger ones are refused with 413, before any work)."""

    max_body_bytes: int = 1 << 20
    max_query_chars: int = 2000
    max_k: int = 1000
    max_batch: int = 100
    max_documents: int = 1000
    batch_window_s: float = 0.005


class UnknownDocument(TokretrieveError):
    """A document id the index does not hold (404)."""


class TooLarge(TokretrieveError):
    """A request over the server's limits (413)."""


class ReadOnly(TokretrieveError):
    """A change asked of a server started read-only (403)."""


class SearchRequest(BaseModel):
    query: str | None = Field(None, description="one query (or give `queries`)")
    queries: list[str] | None = Field(None, description="a batch of queries")
    k: int = Field(10, description="hits per query")
    mode: Literal["model", "tokens", "union", "dense", "bm25", "hybrid"] = "model"
    parts: list[Literal["model", "tokens", "union", "dense", "bm25"]] = Field(
        ["model", "dense"], description="hybrid: the searchers fused")
    fusion: Literal["rrf", "linear"] = Field("rrf", description="hybrid: reciprocal-rank "
                                                               "fusion or a normalised sum")
    weights: list[float] | None = Field(None, description="hybrid: one weight per part")
    explain: bool = Field(True, description="list each hit's matched tokens (and, in tokens "
                                            "mode, each query's own tokens: query_tokens)")


class ExplainRequest(BaseModel):
    text: str
    k: int = Field(10, description="key tokens to return")
    query: bool = Field(False, description="encode the text as a query")


class Document(BaseModel):
    id: str
    text: str


class AddRequest(BaseModel):
    documents: list[Document]
    update: bool = Field(False, description="replace documents whose id the index holds")


def create_app(path: str | Path, *, load_model: bool = True, read_only: bool = False,
               texts: dict[str, str] | None = None, limits: Limits = Limits()) -> FastAPI:
    """The application serving the index at `path`.

    `load_model=False` serves tokenized queries only (no model in memory: model and dense
    modes, explain and adding documents are refused); `read_only` refuses changes; `texts`
    ({id: text}, e.g. the corpus the index was built from) lets hits show their text, which
    the index itself does not store; documents added through the API add theirs.
    """
    texts = dict(texts or {})
    served = ServedIndex(path, load_model=load_model, texts=texts)
    app = FastAPI(title="tokretrieve", version="1",
                  description="Token-aligned sparse retrieval: search an index, see why each "
                              "document matched, add and delete documents.")

    def batched_search(key: tuple[Snapshot, Mode, bool],
                       requests: list[tuple[str, int, bool]]) -> list[list[Hit]]:
        """One batch_search for queries of one generation, mode and explain setting (see
        MicroBatcher)."""
        snapshot, mode, explain = key
        k = max(r[1] for r in requests)
        qids = [str(i) for i in range(len(requests))]
        found = snapshot.searcher(mode).batch_search([r[0] for r in requests], qids, k,
                                                     explain=explain)
        return [found[qid][:r[1]] for qid, r in zip(qids, requests, strict=True)]

    batcher = MicroBatcher(batched_search, window=limits.batch_window_s,
                           max_batch=limits.max_batch)
    app.state.batcher = batcher
    app.state.served = served

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
            return _error(413, f"request body of {length} bytes is over the limit of "
                               f"{limits.max_body_bytes}")
        return await call_next(request)

    @app.exception_handler(TokretrieveError)
    async def on_error(request: Request, error: TokretrieveError) -> JSONResponse:
        status = {UnknownDocument: 404, TooLarge: 413, ReadOnly: 403,
                  IndexBusyError: 409}.get(type(error), 400)
        return _error(status, str(error))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                             for e in error.errors())
        return _error(400, f"invalid request: {problems}")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "generation": served.current().generation}

    @app.get("/info")
    def info() -> dict[str, Any]:
        snapshot = served.current()
        manifest = snapshot.index.manifest
        return {"generation": snapshot.generation, "documents": len(snapshot.index),
                "segments": len(snapshot.index.segments),
                "deleted_positions": len(snapshot.index.deleted),
                "model": manifest.model.name, "method": manifest.model.method,
                "bag_size": manifest.bags.bag_size, "weighting": manifest.bags.weighting,
                "pc1_strength": manifest.bags.pc1_strength,
                "modes": _modes(served),
                "writable": not read_only and served.encoder is not None,
                "limits": limits.__dict__}

    @app.post("/search")
    async def search(request: SearchRequest) -> dict[str, Any]:
        queries = _queries(request, limits)
        snapshot = served.current()
        query_tokens = None
        if request.mode == "tokens":  # no model call: nothing to batch
            found = await asyncio.to_thread(batched_search,
                                            (snapshot, "tokens", request.explain),
                                            [(q, request.k, request.explain) for q in queries])
            if request.explain:
                query_tokens = await asyncio.to_thread(_query_tokens, snapshot, queries)
        else:
            mode: Mode = request.mode
            if mode == "hybrid":
                mode = ("hybrid", tuple(request.parts), request.fusion,
                        tuple(request.weights) if request.weights is not None else None)
            snapshot.searcher(mode)  # refuses a mode this server cannot serve, now
            found = await asyncio.gather(*(batcher.submit((snapshot, mode, request.explain),
                                                          (q, request.k, request.explain))
                                           for q in queries))
        results = [{"query": q, "hits": [_hit(h, texts) for h in hits]}
                   for q, hits in zip(queries, found, strict=True)]
        if query_tokens is not None:  # tokens mode: what was searched, for the page
            for result, tokens in zip(results, query_tokens, strict=True):
                result["query_tokens"] = tokens
        return {"generation": snapshot.generation, "mode": request.mode, "results": results}

    @app.post("/explain")
    def explain(request: ExplainRequest) -> dict[str, Any]:
        _check_count(request.k, "k", limits.max_k)
        _check_text(request.text, "text", limits)
        snapshot = served.current()
        encoder = _fitted_encoder(snapshot)
        tokens = encoder.key_tokens(request.text, top_k=request.k, is_query=request.query)
        return {"generation": snapshot.generation,
                "tokens": [{"token": t, "weight": w} for t, w in tokens]}

    @app.get("/documents/{doc_id}")
    def document(doc_id: str) -> dict[str, Any]:
        snapshot = served.current()
        searcher = snapshot.searcher("tokens")
        try:
            bag = searcher.document(doc_id)
        except TokretrieveError:
            raise UnknownDocument(f"document id {doc_id!r} is not in the index") from None
        return {"generation": snapshot.generation, "id": doc_id, "text": texts.get(doc_id),
                "bag": [{"token": t, "weight": w} for t, w in bag]}

    @app.post("/documents")
    def add(request: AddRequest) -> dict[str, Any]:
        _check_writable()
        if not request.documents:
            raise TokretrieveError("no documents to add")
        if len(request.documents) > limits.max_documents:
            raise TooLarge(f"{len(request.documents)} documents in one request: the limit is "
                           f"{limits.max_documents}")
        from tokretrieve.build import add_documents  # the model's code: only where one runs

        docs = [(d.id, d.text) for d in request.documents]
        # The texts go in first: a search may open the new generation (and build its BM25)
        # the moment the commit lands. Should the commit fail, the old texts come back.
        before = {doc_id: texts.get(doc_id) for doc_id, _ in docs}
        texts.update(docs)
        try:
            index = add_documents(served.path, docs, served.encoder, update=request.update,
                                  progress=False)
        except BaseException:
            for doc_id, text in before.items():
                if text is None:
                    texts.pop(doc_id, None)
                else:
                    texts[doc_id] = text
            raise
        snapshot = served.reopen(index)
        return {"generation": snapshot.generation, "added": len(docs),
                "documents": len(snapshot.index)}

    @app.delete("/documents/{doc_id}")
    def delete(doc_id: str) -> dict[str, Any]:
        _check_writable()
        try:
            served.current().index.position(doc_id)
        except TokretrieveError:
            raise UnknownDocument(f"document id {doc_id!r} is not in the index") from None
        try:
            index = delete_documents(served.path, [doc_id])
        except IndexBusyError:
            raise
        except TokretrieveError as error:  # deleted meanwhile by another writer
            raise UnknownDocument(str(error)) from None
        snapshot = served.reopen(index)  # its text stays: older generations may still ask
        return {"generation": snapshot.generation, "deleted": doc_id,
                "documents": len(snapshot.index)}

    def _check_writable() -> None:
        if read_only:
            raise ReadOnly("this server was started read-only (--read-only): changes are "
                           "refused")
        if served.encoder is None:
            raise ReadOnly("this server runs without the index's model (--no-model), which "
                           "adding documents needs")

    def _fitted_encoder(snapshot: Snapshot):
        searcher = snapshot.searcher("model")
        return searcher.query_encoder.encoder  # the index's model with its bag recipe

    return app


def _modes(served: ServedIndex) -> list[str]:
    """The modes this server answers: the model's only with the model, BM25's only with the
    texts, a hybrid only with two parts to fuse."""
    modes = ["model", "tokens", "union", "dense"] if served.encoder else ["tokens"]
    if served.texts:
        modes.append("bm25")
    return [*modes, "hybrid"] if len(modes) > 1 else modes


def _queries(request: SearchRequest, limits: Limits) -> list[str]:
    """The request's queries, checked against the limits before any work."""
    if (request.query is None) == (request.queries is None):
        raise TokretrieveError("give either 'query' (one text) or 'queries' (a list)")
    queries = [request.query] if request.query is not None else list(request.queries or [])
    if not queries:
        raise TokretrieveError("'queries' is empty")
    if len(queries) > limits.max_batch:
        raise TooLarge(f"{len(queries)} queries in one request: the limit is "
                       f"{limits.max_batch}")
    _check_count(request.k, "k", limits.max_k)
    for query in queries:
        _check_text(query, "query", limits)
    return queries


def _check_text(text: str, what: str, limits: Limits) -> None:
    if not text.strip():
        raise TokretrieveError(f"{what} {text!r} is empty")
    if len(text) > limits.max_query_chars:
        raise TooLarge(f"a {what} of {len(text)} characters: the limit is "
                       f"{limits.max_query_chars}")


def _check_count(value: int, name: str, limit: int) -> None:
    check_count(value, name)
    if value > limit:
        raise TooLarge(f"{name} = {value} is over the limit of {limit}")


def _query_tokens(snapshot: Snapshot, queries: list[str]) -> list[list[dict[str, Any]]]:
    """Each tokens-mode query as it was scored: its own tokens, weighing count x idf (count
    alone on bags with literal weights; 0 for a token no document holds), heaviest first. A
    tokenized query has no model to ask for its key tokens (/explain), yet a reader wants to
    see what was searched; tokenizing again costs next to nothing beside the search."""
    searcher = snapshot.searcher("tokens")
    encoded = searcher.query_encoder.encode(queries).tocsr()
    out = []
    for q in range(len(queries)):
        start, end = encoded.indptr[q], encoded.indptr[q + 1]
        out.append([{"token": t, "weight": w} for t, w in
                    bag_tokens(searcher.tokenizer, encoded.indices[start:end],
                               encoded.data[start:end])])
    return out


def _hit(hit: Hit, texts: dict[str, str]) -> dict[str, Any]:
    return {"id": hit.doc_id, "score": hit.score, "text": texts.get(hit.doc_id),
            "matched": [{"token": t, "contribution": c} for t, c in hit.matched]}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def read_texts(corpus: str, encoding_errors: str = "strict") -> dict[str, str]:
    """{id: text} of a corpus, for showing hits (tokretrieve.corpus reads it)."""
    from tokretrieve.corpus import read_documents

    return dict(read_documents(corpus, encoding_errors=encoding_errors))


