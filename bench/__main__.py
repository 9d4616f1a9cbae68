"""`python -m bench`: the retrieval-quality benchmark (`python -m bench.quality`), kept under
the package's own name because it is the benchmark the project's figures come from."""

import sys

from bench.quality.__main__ import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m bench"))
