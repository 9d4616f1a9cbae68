"""The machine record, and the commit it captures, against git itself on a repository made here."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from bench.toolkit import REPO_ROOT
from bench.toolkit.machine import git_state, machine

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", "-c", "commit.gpgsign=false", "-C", str(repo), *args],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()


def test_commit_and_dirty_state_of_a_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "first")
    head = git(repo, "rev-parse", "HEAD")
    assert len(head) == 40
    assert git_state(repo) == {"commit": head, "dirty": False, "changed": []}
    (repo / "new.txt").write_text("a run's output\n")  # untracked files do not count
    assert git_state(repo)["dirty"] is False
    (repo / "a.txt").write_text("two\n")
    assert git_state(repo) == {"commit": head, "dirty": True, "changed": ["a.txt"]}
    git(repo, "commit", "-q", "-am", "second")
    assert git_state(repo) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": False,
                               "changed": []}


def test_outside_a_repository_nothing_is_claimed(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "changed": None}


def test_machine_record_names_this_checkout_and_this_machine():
    record = machine()
    assert record["git"]["commit"] == git(REPO_ROOT, "rev-parse", "HEAD")
    assert record["cpu_count"] == os.cpu_count()
    assert record["packages"]["numpy"] is not None
    assert set(record["threads"]) == {"torch", "faiss", "numba", "numba_pool"}
    assert record["env"]["OMP_WAIT_POLICY"] == os.environ.get("OMP_WAIT_POLICY")
    assert len(record["load_avg"]) == 3
