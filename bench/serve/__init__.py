"""The server load benchmark (`python -m bench.serve`): the HTTP API under concurrent clients
while a writer changes the index.

`tokretrieve serve` answers searches from one committed generation per request, commits
changes under the library's writer lock, and micro-batches concurrent model queries into one
model call. This benchmark starts that server on 127.0.0.1 over one collection's index
(Cranfield, built from the quality benchmark's cached embeddings) and measures, per setting of
query mode and client count:

1. throughput (queries/s) and p50 / p99 latency of closed-loop clients, with the CPU both
   processes used;
2. what micro-batching buys: model-mode figures with the batch window at 0 and at its default
   (5 ms), with the mean batch size the server ran;
3. consistency under writes: a writer adds and deletes documents at a fixed rate; no answer may
   be an error, every answer must be its generation's, and the final state must hold every
   acknowledged change.

What is measured and why: bench/serve/load.py.
"""
