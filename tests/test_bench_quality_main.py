"""The quality benchmark's command line: absent collections, option mapping, `python -m bench`."""

from __future__ import annotations

import pytest

from bench.quality.__main__ import main as quality_main
from bench.quality.__main__ import options_from, parse_args
from bench.quality.systems import SparseConfig


def test_absent_default_dataset_is_skipped_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("bench.quality.__main__.DEFAULT_DATASET", str(tmp_path / "missing"))
    assert quality_main(["--output", str(tmp_path / "out")]) == 0
    assert "skipping" in capsys.readouterr().err
    assert quality_main(["--dataset", str(tmp_path / "missing"), "--output",
                         str(tmp_path)]) == 1


def test_options_carry_the_bag_size_and_the_command(tmp_path):
    args = parse_args(["--bag-size", "64", "--weighting", "shifted", "--quick", "--output",
                       str(tmp_path)])
    options = options_from(args, "python -m bench.quality --bag-size 64")
    assert options.base == SparseConfig(bag_size=64, weighting="shifted")
    assert options.limit_docs == 300 and options.timing_queries == 10
    assert options.cache_dir == tmp_path / "cache"
    assert options.command == "python -m bench.quality --bag-size 64"
    assert options_from(parse_args([]), "").base == SparseConfig()  # the package's defaults


def test_python_m_bench_is_the_quality_benchmark():
    import bench.__main__

    assert bench.__main__.main is quality_main


def test_a_bad_model_is_one_message_before_any_collection(tmp_path, monkeypatch):
    def no_run(*args, **kwargs):
        raise AssertionError("started a collection before refusing the model")

    monkeypatch.setattr("bench.quality.__main__.run_dataset", no_run)
    with pytest.raises(SystemExit, match=r"^error: --model: model folder not found: .*absent"):
        quality_main(["--model", "minilm", "--model", str(tmp_path / "absent"),
                      "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
