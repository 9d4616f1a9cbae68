"""The speed benchmark: indexing and search speed of tokretrieve's kernel against BM25S and
FAISS (`python -m bench.speed`).

`runner` measures, `kernel` lays queries out for the package's kernel and counts what they
walk, `synth` draws synthetic corpora from the real bags, `peers` wraps BM25S and FAISS,
`report` renders the record, and `threads_probe` is the one-setup-per-process threading probe.
"""
