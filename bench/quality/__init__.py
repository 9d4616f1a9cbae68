"""The retrieval-quality benchmark: sparse (two query modes), dense, BM25 and hybrids on one
footing.

Every system reads the same documents, the same judged queries and the same embeddings (encoded
once per model and cached), is scored by the package's own search path (the shipped kernel, the
searchers), and every run passes through the same identical-id rule and the same evaluator, so
the differences in the report come from the systems alone. `python -m bench.quality --help`.
"""
