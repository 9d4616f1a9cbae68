"""The README's curl examples work when pasted: each runs, as written (the port aside), against a
real server on 127.0.0.1 over a MiniLM index of a Cranfield slice, and answers JSON without an
error."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time

import pytest
from conftest import REPO_ROOT

from tokretrieve import build_index
from tokretrieve.corpus import read_documents

pytestmark = pytest.mark.slow


def curl_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Serving over HTTP\n"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = "\n".join(b for b in blocks if "curl" in b).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip().startswith("curl")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(cranfield_dir, minilm, tmp_path):
    import uvicorn

    from tokretrieve.serve import create_app

    docs = read_documents(cranfield_dir)[:40]
    build_index(docs, minilm, tmp_path / "idx", progress=False)
    port = free_port()
    config = uvicorn.Config(create_app(tmp_path / "idx", texts=dict(docs)), host="127.0.0.1",
                            port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not running.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield port
    finally:
        running.should_exit = True
        thread.join(timeout=30)


def test_curl_examples_answer_without_error(server):
    commands = curl_commands()
    assert len(commands) == 8 and all("127.0.0.1:8000" in c for c in commands)
    for command in commands:
        done = subprocess.run(["bash", "-c", command.replace("8000", str(server))],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, (command, done.stderr)
        answer = json.loads(done.stdout)
        assert "error" not in answer, (command, answer)
        assert "generation" in answer or answer.get("status") == "ok"
