"""bench.toolkit.cached: the shared --model option of the live, serve and interop benchmarks
refuses a model that does not load with one error line, before any encoding."""

from __future__ import annotations

import argparse

import pytest

from bench.toolkit.cached import add_collection_arguments, load_embeddings


def test_a_model_that_does_not_load_is_one_error_line(tmp_path):
    parser = argparse.ArgumentParser()
    add_collection_arguments(parser, "live")
    args = parser.parse_args(["--model", str(tmp_path / "absent"),
                              "--cache-dir", str(tmp_path / "cache")])
    with pytest.raises(SystemExit, match=r"^error: --model: model folder not found: .*absent$"):
        load_embeddings(args, collection=None)  # refused before the collection is read
    assert not (tmp_path / "cache").exists()
