"""The live-index benchmark (`python -m bench.live`): what adding, deleting and compacting cost,
what segments and deleted documents cost searches, and when a rebuild serves better.

An index changes in place through tokretrieve.index.live: an add is one commit of a new
segment (bags adjusted with the PC1 direction and λ of the build), a delete one commit of a
larger deleted set, a compaction one commit of the live documents as one segment. This
benchmark measures those commits and their consequences on one collection (Cranfield):

1. add throughput: docs/s of one commit of 10, 100 or 1,000 documents whose bags and embeddings
   are already computed, into an index of the other documents, split into the commit's phases;
2. delete cost: seconds per commit of 1, 10 or 100 ids;
3. search latency (p50 / p99, one query per call on one thread, both query modes) as segments
   grow (one build + adds), as deletions grow, and after compacting;
4. compaction time of the many-segment, 30 %-deleted index;
5. quality and drift: nDCG@10 of one build of all documents against a build of the first p %
   followed by adding the rest, with the drift the add records and the check that compacting
   leaves the top-10 unchanged.

Document encoding is excluded everywhere: the embeddings come from the quality benchmark's
cache (bench/quality/cache.py, encoded there when missing) and the bags of added documents from
the index's own encoder before any clock starts. What is measured and why: bench/live/measure.py.
"""
