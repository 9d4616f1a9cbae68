"""The results writer: results.json round trip (numpy and paths as plain JSON), report.md only
once a record is complete, and no record without its command, start and machine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.toolkit.results import command_line, new_record, provenance, run_folder, write_record


def render(record: dict) -> str:
    return f"# {record['command']}: {record['value']}\n"


def test_round_trip_with_numpy_values_and_paths(tmp_path):
    record = new_record("python -m bench.x --quick", value=np.float32(0.5),
                        counts=np.arange(3, dtype=np.int64), where=Path("/data/cranfield"),
                        nested={"n": np.int64(7), "flag": np.bool_(True)})
    out = tmp_path / "run"
    write_record(out, record, render, partial=True)
    assert not (out / "report.md").exists()  # a partial record gets no report yet
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["value"] == 0.5 and saved["counts"] == [0, 1, 2]
    assert saved["where"] == "/data/cranfield"
    assert saved["nested"] == {"n": 7, "flag": True}
    assert saved["command"] == "python -m bench.x --quick"
    assert saved["machine"]["git"] == record["machine"]["git"]
    write_record(out, record, render, partial=False)
    assert (out / "report.md").read_text(encoding="utf-8") == "# python -m bench.x --quick: 0.5\n"


def test_records_without_provenance_and_unknown_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="machine"):
        write_record(tmp_path, {"command": "x", "started": "2026-01-01T00:00:00"}, render, True)
    with pytest.raises(TypeError, match="object"):
        write_record(tmp_path, new_record("x", value=object()), render, True)


def test_run_folder_and_command_line():
    record = {"started": "2026-11-23T14:58:32"}
    assert run_folder(Path("out"), record) == Path("out/20261123-145832")
    assert command_line("python -m bench.speed", []) == "python -m bench.speed"
    assert (command_line("python -m bench.speed", ["--sizes", "cranfield", "a b"])
            == "python -m bench.speed --sizes cranfield 'a b'")


def test_provenance_names_the_command_commit_changes_and_start():
    record = {"command": "python -m bench.speed.floor", "started": "2026-12-06T22:14:35",
              "machine": {"git": {"commit": "b030085fea7e0123", "dirty": False}}}
    assert provenance(record) == ("`python -m bench.speed.floor` at commit b030085fea7e, "
                                  "2026-12-06T22:14:35")
    record["machine"]["git"]["dirty"] = True
    assert provenance(record) == ("`python -m bench.speed.floor` at commit b030085fea7e "
                                  "(uncommitted changes), 2026-12-06T22:14:35")
