"""Where the crash tests stop a child process: `hang_at(stage, marker)` makes the next build or
change in that process hang at a named stage, after writing `marker`, so that the test can
SIGKILL it exactly there (tests/test_index_storage.py, tests/test_index_concurrency.py).

Stages, in the order a commit passes them: `encoding` (inside the model, nothing written),
`writing` (the new generation's entries exist, nothing published), `publishing` (the new
manifest is written under its temporary name, not renamed), `published` (the rename is done:
only clean-up is left).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STAGES = ("encoding", "writing", "publishing", "published")
# The first lines of a child script that imports this module.
SCRIPT_HEADER = f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"


def hang_at(stage: str, marker: str) -> None:
    import tokretrieve.index.generations as generations
    import tokretrieve.index.storage as storage

    def hang() -> None:
        Path(marker).write_text(stage)
        time.sleep(120)

    if stage == "encoding":
        from tokretrieve import Encoder  # torch: only where a model runs

        real_embed = Encoder.embed

        def embed(self, texts, *args, **kwargs):
            real_embed(self, texts[:2], *args, **kwargs)  # genuinely inside the model
            hang()
        Encoder.embed = embed
    elif stage == "writing":
        def fsync_tree(entry):
            hang()
        generations.fsync_tree = fsync_tree
    elif stage == "publishing":
        real_replace = os.replace

        def replace(src, dst):
            if Path(dst).name == "manifest.json":
                hang()
            return real_replace(src, dst)
        storage.os.replace = replace
    elif stage == "published":
        real_write = generations.write_json_durably

        def write(file, data):
            real_write(file, data)
            hang()
        generations.write_json_durably = write
    else:
        raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
