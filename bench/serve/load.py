"""The load benchmark's pieces (`python -m bench.serve` drives them): the server process, the
clients, the writer, and the checks of what they saw.

Why it is built this way:
- The server is a separate process (bench/serve/server.py: the package's `create_app` under
  uvicorn, as `tokretrieve serve` runs it, with the batch window as a setting and one extra
  read-only route giving the batcher's batch sizes), so clients and server do not share a GIL.
  Each setting gets a fresh server over a fresh copy of the same index: every setting starts
  from the same state, and the segments a writer adds do not pile up across settings.
- Clients are threads of this process, each with one keep-alive connection (http.client: a
  few tens of microseconds per request, where httpx spends about a millisecond), each sending
  its next query when the previous answer is in (closed loop), for a fixed time. Throughput is
  answers completed within that time over the time; latency is send to parsed answer. The
  CPU seconds of both processes are recorded: on a 2-core machine the clients compete with
  the server for the same cores.
- A writer adds and deletes documents at a fixed rate through the API. Its acknowledgements
  (generation returned by each commit) say which ids are live in every generation (`Ledger`);
  every answer is then checked against the generation it names: its hits must be live there,
  it must not name a generation older than a change acknowledged before it was sent, and after
  each commit the writer probes the changed document with a tokens query for its rarest stored
  token (k = 1000: every match), which must find it exactly when it is live in the answer's
  generation. At the end, /info and a look-up of every changed id must show every
  acknowledged change (no lost update).
"""

from __future__ import annotations

import bisect
import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.toolkit import REPO_ROOT
from bench.toolkit.cached import copy_index
from bench.toolkit.clock import percentile_summary

HOST = "127.0.0.1"
PROBE_K = 1000  # the server's default max_k: a probe's answer holds every matching document
EXAMPLES = 5    # problems described per kind (the counts are complete)


# ----------------------------------------------------------------------------- HTTP client
class Client:
    """One keep-alive HTTP/1.1 connection to the server; JSON in, (status, JSON) out."""

    def __init__(self, port: int, timeout: float = 60.0):
        self._connection = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"content-type": "application/json"} if data is not None else {}
        try:
            self._connection.request(method, path, body=data, headers=headers)
            response = self._connection.getresponse()
            payload = response.read()
        except (http.client.HTTPException, OSError):
            self._connection.close()  # the next call connects again
            raise
        return response.status, json.loads(payload) if payload else None

    def close(self) -> None:
        self._connection.close()


# --------------------------------------------------------------------------- server process
@dataclass
class ServerProcess:
    process: subprocess.Popen
    port: int
    started_s: float
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def server_process(index: Path, corpus: str | None, window: float, scratch: Path,
                   timeout_s: float = 300.0, extra_env: dict[str, str] | None = None
                   ) -> Iterator[ServerProcess]:
    """The bench server (bench/serve/server.py) over `index` in its own process, on a free
    127.0.0.1 port; stopped on leaving (SIGTERM, then SIGKILL after 15 s), whatever happened."""
    port_file = scratch / "port"
    log = scratch / "server.log"
    port_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.serve.server", "--index", str(index),
               "--window", repr(window), "--port-file", str(port_file)]
    if corpus:
        command += ["--corpus", str(corpus)]
    start = time.perf_counter()
    with log.open("wb") as log_handle:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log_handle,
                                   stderr=subprocess.STDOUT, env={**os.environ,
                                                                  **(extra_env or {})})
    try:
        port = _wait_until_serving(process, port_file, log, start + timeout_s)
        yield ServerProcess(process, port, time.perf_counter() - start, log)
    finally:
        stop_process(process)


def _wait_until_serving(process: subprocess.Popen, port_file: Path, log: Path,
                        deadline: float) -> int:
    port = None
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}: "
                               f"{_tail(log)}")
        if port is None and port_file.is_file():
            port = int(port_file.read_text(encoding="ascii"))
        if port is not None:
            client = Client(port, timeout=5)
            try:
                if client.call("GET", "/health")[0] == 200:
                    return port
            except (OSError, http.client.HTTPException):
                pass
            finally:
                client.close()
        time.sleep(0.05)
    raise RuntimeError(f"the server did not answer /health in time: {_tail(log)}")


def stop_process(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_s)


def _tail(log: Path, chars: int = 2000) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), all its threads."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------- the bookkeeping
@dataclass
class Answer:
    """One search answer as a client saw it."""

    sent: float
    seconds: float
    generation: int
    ids: list[str]
    texts: list[str | None]


@dataclass
class Probe:
    """A tokens query for one changed document's rarest token, sent after a commit."""

    doc_id: str
    token: str
    sent: float
    generation: int
    ids: frozenset[str]


@dataclass
class Ack:
    op: str  # "add" or "delete"
    doc_id: str
    generation: int
    documents: int
    acked: float


@dataclass
class Ledger:
    """Which ids are live in each generation, from the writer's acknowledged commits."""

    first: int
    base: frozenset[str]
    acks: list[Ack] = field(default_factory=list)

    def live_sets(self) -> tuple[dict[int, frozenset[str]], list[str]]:
        """({generation: live ids}, problems). Acknowledged commits must carry the consecutive
        generations after `first` (a gap is a commit nobody acknowledged, a repeat a change
        lost), each add a new id, each delete a live one, each its documents count."""
        problems = []
        ordered = sorted(self.acks, key=lambda a: a.generation)
        generations = [a.generation for a in ordered]
        expected = list(range(self.first + 1, self.first + 1 + len(ordered)))
        if generations != expected:
            problems.append(f"acknowledged generations {generations} are not {expected}")
        live = {self.first: self.base}
        current = set(self.base)
        for ack in ordered:
            if ack.op == "add":
                if ack.doc_id in current:
                    problems.append(f"add of {ack.doc_id} acknowledged while it was live")
                current.add(ack.doc_id)
            else:
                if ack.doc_id not in current:
                    problems.append(f"delete of {ack.doc_id} acknowledged while not live")
                current.discard(ack.doc_id)
            if ack.documents != len(current):
                problems.append(f"generation {ack.generation} holds {ack.documents} documents, "
                                f"the ledger {len(current)}")
            live[ack.generation] = frozenset(current)
        return live, problems

    def in_force(self) -> Callable[[float], int]:
        """sent time -> the newest generation acknowledged before it (the oldest an answer to
        a request sent then may name)."""
        acked = sorted((a.acked, a.generation) for a in self.acks)
        times = [t for t, _ in acked]
        newest = list(np.maximum.accumulate([g for _, g in acked])) if acked else []

        def oldest_allowed(sent: float) -> int:
            i = bisect.bisect_left(times, sent)
            return int(newest[i - 1]) if i else self.first
        return oldest_allowed


def check_answers(answers: Iterable[Answer], live: dict[int, frozenset[str]],
                  oldest_allowed: Callable[[float], int],
                  texts: dict[str, str]) -> dict[str, Any]:
    """Counts of answers that are not their generation's: a hit not live in the generation the
    answer names (or a generation no commit made), a generation older than one acknowledged
    before the request was sent; and hits whose text is missing or another document's."""
    out: dict[str, Any] = {"answers": 0, "hits": 0, "foreign_hits": 0, "unknown_generation": 0,
                           "stale": 0, "texts_missing": 0, "texts_wrong": 0, "examples": []}
    for answer in answers:
        out["answers"] += 1
        out["hits"] += len(answer.ids)
        allowed = live.get(answer.generation)
        if allowed is None:
            out["unknown_generation"] += 1
            _example(out, f"an answer names generation {answer.generation}, which no "
                          "acknowledged commit made")
        else:
            foreign = [d for d in answer.ids if d not in allowed]
            out["foreign_hits"] += len(foreign)
            if foreign:
                _example(out, f"hits {foreign} are not live in generation {answer.generation}")
        floor = oldest_allowed(answer.sent)
        if answer.generation < floor:
            out["stale"] += 1
            _example(out, f"an answer of generation {answer.generation} to a request sent "
                          f"after generation {floor} was acknowledged")
        for doc_id, text in zip(answer.ids, answer.texts, strict=True):
            if text is None:
                out["texts_missing"] += 1
            elif text != texts.get(doc_id):
                out["texts_wrong"] += 1
    return out


def check_probes(probes: Iterable[Probe], live: dict[int, frozenset[str]],
                 k: int = PROBE_K) -> dict[str, Any]:
    """Each probe's document must be among its hits exactly when it is live in the generation
    the answer names (`inconclusive`: k hits, so the answer may be cut)."""
    out: dict[str, Any] = {"probes": 0, "wrong": 0, "inconclusive": 0, "examples": []}
    for probe in probes:
        out["probes"] += 1
        allowed = live.get(probe.generation)
        if allowed is None:
            out["wrong"] += 1
            _example(out, f"a probe answer names generation {probe.generation}, which no "
                          "acknowledged commit made")
            continue
        if len(probe.ids) >= k:
            out["inconclusive"] += 1
            continue
        if (probe.doc_id in probe.ids) != (probe.doc_id in allowed):
            out["wrong"] += 1
            state = "live" if probe.doc_id in allowed else "not live"
            _example(out, f"{probe.doc_id} ({state} in generation {probe.generation}) "
                          f"{'missing from' if probe.doc_id in allowed else 'found in'} the "
                          f"answer for {probe.token!r}")
    return out


def _example(out: dict[str, Any], text: str) -> None:
    if len(out["examples"]) < EXAMPLES:
        out["examples"].append(text)


def final_state(client: Client, live: dict[int, frozenset[str]],
                changed: Iterable[str]) -> dict[str, Any]:
    """What the server holds at the end against the ledger's last generation: /info's
    generation and document count, and the status of a look-up of every changed id."""
    last = max(live)
    status, info = client.call("GET", "/info")
    wrong = []
    for doc_id in sorted(set(changed)):
        got, _ = client.call("GET", f"/documents/{doc_id}")
        if got != (200 if doc_id in live[last] else 404):
            wrong.append(f"{doc_id}: {got}")
    ok = (status == 200 and info["generation"] == last and info["documents"] == len(live[last])
          and not wrong)
    return {"generation": last, "documents": len(live[last]),
            "served_generation": info.get("generation") if status == 200 else None,
            "served_documents": info.get("documents") if status == 200 else None,
            "lookups": len(set(changed)), "lookups_wrong": wrong[:EXAMPLES],
            "lookups_wrong_count": len(wrong), "ok": ok}


# ---------------------------------------------------------------------------------- clients
@dataclass
class ClientRun:
    answers: list[Answer] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)


def search_client(port: int, mode: str, queries: Sequence[str], offset: int, k: int,
                  deadline: float, out: ClientRun) -> None:
    """Send queries[offset], queries[offset + 1], ... one at a time until `deadline`."""
    client = Client(port)
    try:
        i = offset
        while True:
            sent = time.perf_counter()
            if sent >= deadline:
                break
            query = queries[i % len(queries)]
            i += 1
            try:
                status, body = client.call("POST", "/search",
                                           {"query": query, "mode": mode, "k": k})
            except (OSError, http.client.HTTPException) as error:
                out.errors[f"connection: {type(error).__name__}"] += 1
                continue
            seconds = time.perf_counter() - sent
            if status != 200:
                out.errors[str(status)] += 1
                continue
            hits = body["results"][0]["hits"]
            out.answers.append(Answer(sent, seconds, body["generation"],
                                      [h["id"] for h in hits], [h["text"] for h in hits]))
    finally:
        client.close()


@dataclass
class WriterRun:
    ledger: Ledger
    probes: list[Probe] = field(default_factory=list)
    commit_s: dict[str, list[float]] = field(default_factory=lambda: {"add": [], "delete": []})
    errors: Counter = field(default_factory=Counter)
    late_s: float = 0.0  # how far behind its schedule the writer fell, at most
    texts: dict[str, str] = field(default_factory=dict)  # the added documents' texts


def schedule(n: int, base_ids: Sequence[str], texts: Sequence[str], prefix: str,
             seed: int = 0) -> list[tuple[str, str, str | None]]:
    """The writer's n changes as (op, id, text): adds of new ids (texts taken in turn) and
    deletes in between, every other one of the oldest document it added, the rest of a base
    document (a seeded draw, at most half of them)."""
    rng = np.random.default_rng(seed)
    base = [str(d) for d in rng.permutation(np.asarray(base_ids, dtype=object))]
    base = base[:len(base) // 2]
    ops: list[tuple[str, str, str | None]] = []
    added: list[str] = []
    for i in range(n):
        if i % 2 == 0 or not (added or base):
            doc_id = f"{prefix}{i // 2}"
            ops.append(("add", doc_id, texts[(i // 2) % len(texts)]))
            added.append(doc_id)
        elif (i % 4 == 1 and added) or not base:
            ops.append(("delete", added.pop(0), None))
        else:
            ops.append(("delete", base.pop(), None))
    return ops


class ProbeTokens:
    """The rarest token of a stored bag that a tokens query reproduces exactly (the query is
    tokenized again by the index's tokenizer), by the base index's document frequencies."""

    def __init__(self, tokenizer: Any, document_frequency: np.ndarray):
        self.tokenizer = tokenizer
        self.df = np.asarray(document_frequency)

    def pick(self, bag: Sequence[dict[str, Any]]) -> str | None:
        best, best_df = None, None
        for entry in bag:
            if entry["weight"] <= 0:
                continue
            token = entry["token"]
            ids = self.tokenizer(" " + token.strip(), add_special_tokens=False)["input_ids"]
            if len(ids) != 1 or not token.strip():
                continue
            df = int(self.df[ids[0]]) if ids[0] < len(self.df) else 0
            if best_df is None or df < best_df:
                best, best_df = token.strip(), df
        return best


def writer(port: int, ops: Sequence[tuple[str, str, str | None]], rate: float, start: float,
           deadline: float, tokens: ProbeTokens, out: WriterRun) -> None:
    """Make change i at start + i / rate (or at once when behind) until `deadline`; after each
    acknowledged one, probe the changed document."""
    client = Client(port)
    probe_token: dict[str, str | None] = {}
    try:
        for i, (op, doc_id, text) in enumerate(ops):
            due = start + i / rate
            now = time.perf_counter()
            if due >= deadline or now >= deadline:
                break
            if due > now:
                time.sleep(due - now)
            else:
                out.late_s = max(out.late_s, now - due)
            try:
                if op == "delete" and doc_id not in probe_token:  # a base document
                    status, body = client.call("GET", f"/documents/{doc_id}")
                    probe_token[doc_id] = tokens.pick(body["bag"]) if status == 200 else None
                sent = time.perf_counter()
                if op == "add":
                    status, body = client.call("POST", "/documents", {
                        "documents": [{"id": doc_id, "text": text}]})
                else:
                    status, body = client.call("DELETE", f"/documents/{doc_id}")
                seconds = time.perf_counter() - sent
                if status != 200:
                    out.errors[f"{op} {status}"] += 1
                    continue
                out.ledger.acks.append(Ack(op, doc_id, body["generation"], body["documents"],
                                           time.perf_counter()))
                out.commit_s[op].append(seconds)
                if op == "add":
                    out.texts[doc_id] = str(text)
                    status, body = client.call("GET", f"/documents/{doc_id}")
                    if status != 200:
                        out.errors[f"lookup {status}"] += 1
                        continue
                    probe_token[doc_id] = tokens.pick(body["bag"])
                token = probe_token.get(doc_id)
                if token is not None:
                    sent = time.perf_counter()
                    status, body = client.call("POST", "/search", {
                        "query": token, "mode": "tokens", "k": PROBE_K, "explain": False})
                    if status != 200:
                        out.errors[f"probe {status}"] += 1
                        continue
                    out.probes.append(Probe(doc_id, token, sent, body["generation"],
                                            frozenset(h["id"] for h in
                                                      body["results"][0]["hits"])))
            except (OSError, http.client.HTTPException) as error:
                out.errors[f"connection: {type(error).__name__}"] += 1
    finally:
        client.close()


def recorded(target: Callable[..., None], errors: Counter) -> Callable[..., None]:
    """`target`, with an exception it raises counted in `errors` (a thread's would be lost)."""
    def call(*args: Any) -> None:
        try:
            target(*args)
        except Exception as error:
            errors[f"{target.__name__} failed: {error!r}"[:200]] += 1
    return call


# ---------------------------------------------------------------------------------- figures
def latency_figures(answers: Sequence[Answer], start: float, deadline: float) -> dict[str, Any]:
    """Throughput (answers completed by the deadline, per second) and latency percentiles."""
    done = [a for a in answers if a.sent + a.seconds <= deadline]
    seconds = deadline - start
    return {"answers": len(answers), "completed_in_time": len(done),
            "qps": len(done) / seconds if seconds > 0 else float("nan"),
            **percentile_summary([a.seconds for a in answers])}


def batch_figures(batches: Sequence[int]) -> dict[str, Any]:
    """Model calls, queries in them, mean and largest batch, the share of queries that shared
    their call with another, and how many calls of each size."""
    sizes = [int(b) for b in batches]
    queries = sum(sizes)
    return {"batches": len(sizes), "queries": queries,
            "mean": queries / len(sizes) if sizes else float("nan"),
            "max": max(sizes, default=0),
            "shared": (sum(s for s in sizes if s > 1) / queries) if queries else float("nan"),
            "sizes": {str(s): n for s, n in sorted(Counter(sizes).items())}}


# ------------------------------------------------------------------------------ one setting
@dataclass(frozen=True)
class Setting:
    mode: str        # "tokens" or "model"
    window_s: float  # the server's batch window (tokens queries are never batched)
    clients: int

    @property
    def label(self) -> str:
        window = "" if self.mode == "tokens" else f", window {self.window_s * 1000:g} ms"
        return f"{self.mode}{window}, {self.clients} client{'s' * (self.clients != 1)}"


@dataclass
class Workload:
    """What every setting runs against: the index to copy, the corpus the server shows texts
    of, the queries the clients send, the texts the writer adds, and the clocks."""

    index: Path
    corpus: str | None
    base_ids: list[str]
    texts: dict[str, str]
    queries: list[str]
    add_texts: list[str]
    tokens: ProbeTokens
    seconds: float
    write_rate: float
    k: int = 10
    warm_up_queries: int = 20
    seed: int = 0
    server_timeout_s: float = 300.0


def run_setting(setting: Setting, work: Workload, scratch: Path) -> dict[str, Any]:
    """A fresh server over a fresh copy of the index; an untimed warm-up (queries of the mode
    and one add + delete); then `setting.clients` clients for `work.seconds` while the writer
    changes the index at `work.write_rate` commits per second; the checks; the server
    stopped."""
    folder = scratch / "setting"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    index = copy_index(work.index, folder / "index")
    with server_process(index, work.corpus, setting.window_s, folder,
                        timeout_s=work.server_timeout_s) as server:
        client = Client(server.port)
        try:
            warm_up(client, setting.mode, work)
            _, info = client.call("GET", "/info")
            first, documents = info["generation"], info["documents"]
            _, batches_before = client.call("GET", "/_bench/batches?since=0")
            ledger = Ledger(first, frozenset(work.base_ids))
            ops = schedule(int(work.seconds * work.write_rate) + 2, work.base_ids,
                           work.add_texts, prefix=f"serve-{setting.mode}-", seed=work.seed)
            runs = [ClientRun() for _ in range(setting.clients)]
            written = WriterRun(ledger)
            thread_errors: Counter = Counter()
            cpu_server, cpu_self = cpu_seconds(server.pid), cpu_seconds()
            start = time.perf_counter() + 0.05
            deadline = start + work.seconds
            threads = [threading.Thread(target=recorded(_delayed(search_client, start),
                                                        thread_errors),
                                        args=(server.port, setting.mode, work.queries,
                                              (n * len(work.queries)) // setting.clients,
                                              work.k, deadline, runs[n]))
                       for n in range(setting.clients)]
            if work.write_rate > 0:
                threads.append(threading.Thread(
                    target=recorded(writer, thread_errors),
                    args=(server.port, ops, work.write_rate, start, deadline, work.tokens,
                          written)))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=work.seconds + 300)
            hung = sum(thread.is_alive() for thread in threads)
            elapsed = time.perf_counter() - start
            cpu_server = cpu_seconds(server.pid) - cpu_server
            cpu_self = cpu_seconds() - cpu_self
            _, batches_after = client.call(
                "GET", f"/_bench/batches?since={batches_before['count']}")
            live, ledger_problems = ledger.live_sets()
            if documents != len(work.base_ids):
                ledger_problems.insert(0, f"the server starts with {documents} documents, "
                                          f"not {len(work.base_ids)}")
            answers = [a for run in runs for a in run.answers]
            texts = {**work.texts, **written.texts}
            changed = [a.doc_id for a in ledger.acks]
            final = final_state(client, live, changed)
        finally:
            client.close()
        errors = sum((run.errors for run in runs), Counter()) + thread_errors
        return {
            "mode": setting.mode, "window_s": setting.window_s, "clients": setting.clients,
            "seconds": work.seconds, "server_start_s": server.started_s,
            "server_threads": batches_before["threads"], "first_generation": first,
            "first_documents": documents,
            "load": latency_figures(answers, start, deadline),
            "errors": dict(errors), "error_count": sum(errors.values()), "hung_threads": hung,
            "batching": batch_figures(batches_after["batches"]) if setting.mode == "model"
            else None,
            "cpu": {"server_s": cpu_server, "clients_s": cpu_self, "elapsed_s": elapsed,
                    "cores": os.cpu_count()},
            "writer": {"rate": work.write_rate, "adds": len(written.commit_s["add"]),
                       "deletes": len(written.commit_s["delete"]),
                       "add_ms": percentile_summary(written.commit_s["add"]),
                       "delete_ms": percentile_summary(written.commit_s["delete"]),
                       "errors": dict(written.errors), "late_s": written.late_s},
            "consistency": {"ledger_problems": ledger_problems,
                            "generations": len(live),
                            "answers": check_answers(answers, live, ledger.in_force(), texts),
                            "probes": check_probes(written.probes, live),
                            "final": final},
        }


def warm_up(client: Client, mode: str, work: Workload) -> None:
    """Untimed: the mode's first queries (lazy searchers, JIT, the model's first call) and one
    add and delete (the add path's first encoding and commit)."""
    for query in work.queries[:work.warm_up_queries]:
        status, body = client.call("POST", "/search", {"query": query, "mode": mode,
                                                       "k": work.k})
        if status != 200:
            raise RuntimeError(f"warm-up search failed: {status} {body}")
    if work.write_rate > 0:
        status, body = client.call("POST", "/documents", {"documents": [
            {"id": "serve-warm-up", "text": work.add_texts[0]}]})
        if status != 200:
            raise RuntimeError(f"warm-up add failed: {status} {body}")
        status, body = client.call("DELETE", "/documents/serve-warm-up")
        if status != 200:
            raise RuntimeError(f"warm-up delete failed: {status} {body}")


def _delayed(target: Callable[..., None], start: float) -> Callable[..., None]:
    """`target` started at `start` (all clients begin together)."""
    def call(*args: Any) -> None:
        delay = start - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        target(*args)
    call.__name__ = target.__name__
    return call
