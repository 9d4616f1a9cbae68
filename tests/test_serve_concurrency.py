"""tokretrieve.serve under concurrent load, through a real uvicorn server on 127.0.0.1 (a
thread of the test process, stopped by the fixture): parallel search clients in both modes
while two writers add and delete documents on a known schedule.

What must hold: no answer but 200, except 409 when the two writers collide (the collided
change is sent again until acknowledged); no lost update (the acknowledged changes have
consecutive generations and the final /info, document look-ups and searches hold all of
them); and every search answer is the answer of exactly one committed generation, the one it
names: the writers' acknowledgements say which ids are live in each generation, every hit is
live there, a tokens query for a word finds exactly the live documents whose bags hold it
(a just-added document in every answer from its generation on, a deleted one in none after),
and no answer names a generation older than a change acknowledged before it was sent. Then
concurrent model queries are micro-batched, and a batched answer is the library's own.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
import uvicorn
from refimpl import WORDS

from tokretrieve import SparseSearcher, build_index
from tokretrieve.serve import Limits, create_app

SEED = 7
TERMS = [w for w in WORDS if w.isalpha()]  # each a single token of the tiny vocabulary
K = 1000  # every matching document: answers are complete, not a top-k cut


def text(rng: random.Random, words: int = 6) -> str:
    return " ".join(rng.choice(TERMS) for _ in range(words))


_rng = random.Random(SEED)
BASE = [(f"b{i}", text(_rng)) for i in range(16)]


@pytest.fixture
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(bag_size=8, weighting="shifted")


@pytest.fixture
def index_path(encoder, tmp_path):
    path = tmp_path / "idx"
    build_index(BASE, encoder, path, pc1_strength=0.0, progress=False)
    return path


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """uvicorn serving `app` on a free 127.0.0.1 port in a thread; its base URL. Stopped (and
    its thread joined) on leaving, whatever happened inside."""
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on a socket whose protocol says TCP
    # (without it, Nagle's algorithm and delayed ACKs hold each answer about 40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        assert not thread.is_alive(), "the server thread did not stop"


@pytest.fixture
def server(index_path):
    """(app, base URL) of a server over the tiny index, stopped at teardown."""
    app = create_app(index_path, texts=dict(BASE))
    with serving(app) as url:
        yield app, url


# ------------------------------------------------------------------------- clients and record
@dataclass
class Ack:
    """One acknowledged change: what it was and the generation its commit returned."""

    op: str
    doc_id: str
    generation: int
    documents: int
    acked: float


@dataclass
class Answer:
    mode: str
    query: str
    sent: float
    generation: int
    hits: list[tuple[str, str | None]]


@dataclass
class Run:
    """What every client saw; shared by the client threads (list.append is atomic)."""

    acks: list[Ack] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    collisions: int = 0
    bags: dict[str, set[str]] = field(default_factory=dict)  # id -> tokens of its stored bag
    texts: dict[str, str] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)  # words to query in tokens mode, newest last


def bag_of(client: httpx.Client, doc_id: str) -> set[str]:
    answer = client.get(f"/documents/{doc_id}")
    assert answer.status_code == 200, answer.text
    return {entry["token"] for entry in answer.json()["bag"] if entry["weight"] > 0}


def writer(url: str, ops: list[tuple[str, str]], run: Run) -> None:
    """Send each change until it is acknowledged (409: the other writer holds the lock)."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for op, doc_id in ops:
            for _ in range(500):
                if op == "add":
                    answer = client.post("/documents", json={"documents": [
                        {"id": doc_id, "text": run.texts[doc_id]}]})
                else:
                    answer = client.delete(f"/documents/{doc_id}")
                if answer.status_code != 409:
                    break
                run.collisions += 1
                time.sleep(0.002)
            if answer.status_code != 200:
                run.failures.append(f"{op} {doc_id}: {answer.status_code} {answer.text}")
                continue
            body = answer.json()
            run.acks.append(Ack(op, doc_id, body["generation"], body["documents"],
                                time.monotonic()))
            if op == "add":
                bag = bag_of(client, doc_id)
                run.bags[doc_id] = bag
                run.probes.extend(sorted(bag & set(TERMS)))


def searcher(url: str, mode: str, seed: int, stop: threading.Event, run: Run) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            if mode == "tokens":  # the newest added document's words half of the time
                probes = run.probes
                query = (probes[-1 - rng.randrange(min(4, len(probes)))] if rng.random() < 0.5
                         else rng.choice(probes))
            else:
                query = text(rng, 3)
            sent = time.monotonic()
            answer = client.post("/search", json={"query": query, "mode": mode, "k": K})
            if answer.status_code != 200:
                run.failures.append(f"search {mode} {query!r}: {answer.status_code} "
                                    f"{answer.text}")
                continue
            body = answer.json()
            assert body["mode"] == mode and len(body["results"]) == 1
            run.answers.append(Answer(mode, query, sent, body["generation"],
                                      [(h["id"], h["text"]) for h in
                                       body["results"][0]["hits"]]))


def recording(target, run: Run):
    """`target` whose exception, if any, is recorded as a failure (a thread's would be lost)."""
    def call(*args):
        try:
            target(*args)
        except Exception as error:  # an assert of the client itself, an HTTP error
            run.failures.append(f"{target.__name__}: {error!r}")
    return call


def live_by_generation(first: int, base: set[str], acks: list[Ack]) -> dict[int, set[str]]:
    """{generation: live ids} from the acknowledged changes, which must have the consecutive
    generations after `first` (a gap or a repeat is a change lost or a commit unaccounted)."""
    ordered = sorted(acks, key=lambda a: a.generation)
    assert [a.generation for a in ordered] == list(range(first + 1, first + 1 + len(acks)))
    live = {first: set(base)}
    current = set(base)
    for ack in ordered:
        assert (ack.doc_id not in current) if ack.op == "add" else (ack.doc_id in current)
        current = current | {ack.doc_id} if ack.op == "add" else current - {ack.doc_id}
        live[ack.generation] = current
        assert ack.documents == len(current), ack
    return live


# ---------------------------------------------------------------------------------- the tests
def test_searches_during_changes_each_answer_from_one_generation(server):
    _, url = server
    rng = random.Random(SEED + 1)
    run = Run(texts=dict(BASE))
    with httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/info").json()
        first = info["generation"]
        for doc_id, _ in BASE:
            run.bags[doc_id] = bag_of(client, doc_id)
        run.probes = sorted(set().union(*run.bags.values()) & set(TERMS))
        for mode in ("tokens", "model"):  # compiled and loaded before the clock starts
            warm = client.post("/search", json={"query": run.probes[0], "mode": mode})
            assert warm.status_code == 200, warm.text
    # Two writers on their own ids: adds, deletes of their own earlier adds and of base docs.
    schedules = []
    for tag, base_ids in (("a", ["b0", "b2", "b4"]), ("c", ["b1", "b3"])):
        ops: list[tuple[str, str]] = []
        for i in range(7):
            run.texts[f"{tag}{i}"] = text(rng)
            ops.append(("add", f"{tag}{i}"))
            if i >= 2 and i % 2 == 0:
                ops.append(("delete", f"{tag}{i - 2}"))
            if i % 3 == 1 and base_ids:
                ops.append(("delete", base_ids.pop()))
        schedules.append(ops)
    stop = threading.Event()
    searchers = [threading.Thread(target=recording(searcher, run),
                                  args=(url, mode, SEED + n, stop, run))
                 for n, mode in enumerate(["tokens"] * 4 + ["model"] * 2)]
    writers = [threading.Thread(target=recording(writer, run), args=(url, ops, run))
               for ops in schedules]
    for thread in searchers + writers:
        thread.start()
    try:
        for thread in writers:
            thread.join(timeout=60)
        last = max((a.generation for a in run.acks), default=first)
        deadline = time.monotonic() + 20  # answers of the last generation too, in both modes
        while time.monotonic() < deadline and not all(
                any(a.mode == mode and a.generation == last for a in run.answers)
                for mode in ("tokens", "model")):
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in searchers:
            thread.join(timeout=60)
    assert not run.failures, run.failures[:5]
    assert len(run.acks) == sum(map(len, schedules))
    live = live_by_generation(first, {d for d, _ in BASE}, run.acks)
    final = max(live)
    # no lost update: the server's last state holds every acknowledged change
    with httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/info").json()
        assert (info["generation"], info["documents"]) == (final, len(live[final]))
        for doc_id in run.texts:
            answer = client.get(f"/documents/{doc_id}")
            assert answer.status_code == (200 if doc_id in live[final] else 404), doc_id
    # every answer is its generation's
    acked = sorted((a.acked, a.generation) for a in run.acks)
    generations = set()
    for answer in run.answers:
        in_force = max([g for t, g in acked if t < answer.sent], default=first)
        assert answer.generation >= in_force, "an answer older than an acknowledged change"
        ids = [doc_id for doc_id, _ in answer.hits]
        assert set(ids) <= live[answer.generation], (answer, live[answer.generation])
        # A hit's text is its document's: the server stores an added text before the commit
        # lands and keeps a deleted one for the generations that still hold it.
        for doc_id, shown in answer.hits:
            assert shown == run.texts[doc_id], (doc_id, shown)
        if answer.mode == "tokens":
            expected = {d for d in live[answer.generation] if answer.query in run.bags[d]}
            assert set(ids) == expected, (answer.query, answer.generation)
        generations.add(answer.generation)
    by_mode = {mode: sum(a.mode == mode for a in run.answers) for mode in ("tokens", "model")}
    assert by_mode["tokens"] >= 20 and by_mode["model"] >= 5, by_mode
    assert len(generations) >= 5, sorted(generations)
    # a just-added document is found from its generation on: some answer shows each one
    found = {doc_id for a in run.answers if a.mode == "tokens" for doc_id, _ in a.hits}
    added = {a.doc_id for a in run.acks if a.op == "add" and run.bags[a.doc_id] & set(TERMS)}
    assert len(found & added) >= len(added) // 2, (found, added)


def test_concurrent_model_queries_are_batched_and_answer_like_the_library(index_path,
                                                                         encoder):
    app = create_app(index_path, texts=dict(BASE), limits=Limits(batch_window_s=0.05))
    rng = random.Random(SEED + 2)
    rounds, clients = 3, 8
    queries = [[text(rng, 3) for _ in range(clients)] for _ in range(rounds)]
    barrier = threading.Barrier(clients)
    answers: dict[str, dict[str, float]] = {}
    failures: list[str] = []

    def client_thread(url: str, n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for batch in queries:
                barrier.wait(timeout=60)  # all clients send at once
                answer = client.post("/search", json={"query": batch[n], "mode": "model",
                                                      "k": K})
                if answer.status_code != 200:
                    failures.append(answer.text)
                    continue
                answers[batch[n]] = {h["id"]: h["score"]
                                     for h in answer.json()["results"][0]["hits"]}

    with serving(app) as url:
        threads = [threading.Thread(target=client_thread, args=(url, n))
                   for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures[:3]
    batches = app.state.batcher.batches
    assert sum(batches) == rounds * clients and max(batches) > 1, batches
    library = SparseSearcher.from_index(index_path, mode="model", encoder=encoder)
    for query, got in answers.items():
        expected = {h.doc_id: h.score for h in library.search(query, k=K)}
        assert got.keys() == expected.keys(), query  # the same documents match
        ids = sorted(expected)
        np.testing.assert_allclose([got[d] for d in ids], [expected[d] for d in ids],
                                   rtol=1e-5, atol=1e-5)  # up to a batch's float noise
