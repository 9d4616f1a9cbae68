"""`python -m bench.serve.server --index DIR --port-file FILE [--corpus C] [--window S]`: the
server the load benchmark drives, in its own process.

The package's application as `tokretrieve serve` runs it (`create_app` under uvicorn, texts
from the corpus), with two differences: the micro-batching window is a setting
(`Limits(batch_window_s=...)`, which the command does not expose), and one read-only route,
`GET /_bench/batches?since=N`, returns the sizes of the batches the batcher has run (from the
N-th on) and the server's thread settings. It binds a free 127.0.0.1 port and writes the number
to FILE (written whole, by a rename) once the application and its model are loaded.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from bench.toolkit.threads import thread_settings
from tokretrieve.serve.app import Limits, create_app, read_texts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.serve.server")
    parser.add_argument("--index", required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--window", type=float, default=Limits.batch_window_s,
                        help="micro-batching window in seconds (0: none)")
    return parser.parse_args(argv)


def make_app(index: str, corpus: str | None, window: float):
    app = create_app(index, texts=read_texts(corpus) if corpus else None,
                     limits=Limits(batch_window_s=window))

    @app.get("/_bench/batches", include_in_schema=False)
    def batches(since: int = 0) -> dict[str, Any]:
        sizes = list(app.state.batcher.batches)
        return {"count": len(sizes), "batches": sizes[since:], "pid": os.getpid(),
                "threads": thread_settings(), "window_s": app.state.batcher.window}

    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    app = make_app(args.index, args.corpus, args.window)
    # IPPROTO_TCP named, as uvicorn's own bind gets it from getaddrinfo: asyncio sets
    # TCP_NODELAY only on connections of a socket whose protocol says TCP, and without it
    # Nagle's algorithm and delayed ACKs hold every answer about 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    partial = args.port_file.with_suffix(".partial")
    partial.write_text(str(sock.getsockname()[1]), encoding="ascii")
    partial.replace(args.port_file)
    # keep-alive longer than any pause of the writer's connection between two changes
    uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=120)).run(
        sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
