"""`python -m bench.encoding`: document-encoding throughput, and how much of the CPU's measured
matmul throughput the model forward reaches.

    python -m bench.encoding                                   # minilm + smollm2, fp32 + bf16
    python -m bench.encoding --models minilm --dtypes float32 --docs 200
    python -m bench.encoding --threads 1,2 --batch-sizes 16,32,64
    python -m bench.encoding --device cuda --skeletons skeletons --batch-sizes 32,128,512

What is measured and why: bench/encoding/measure.py. Writes
bench/results/encoding/<timestamp>/results.json and report.md, and prints the report.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.encoding.measure import (
    MATMUL_SIZES,
    FlopCache,
    cosine_agreement,
    evenly_spaced,
    fraction_of,
    measure_bags,
    measure_breakdown,
    measure_encoding,
    measure_matmul,
    observe_backbone,
    refer_breakdown,
    waste_table,
)
from bench.encoding.report import batches_label, render_report
from bench.encoding.skeleton import rebuild
from bench.toolkit import CRANFIELD, RESULTS_DIR
from bench.toolkit.cli import parse_list, positive_int
from bench.toolkit.clock import timed
from bench.toolkit.machine import model_record
from bench.toolkit.results import command_line, finish_record, new_record, run_folder, write_record
from bench.toolkit.threads import pinned
from tokretrieve import Encoder
from tokretrieve.corpus import read_documents
from tokretrieve.encoding.encoder import (
    DEFAULT_BAG_SIZE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    DTYPES,
)
from tokretrieve.encoding.models import model_config
from tokretrieve.errors import TokretrieveError

DEFAULT_OUTPUT = RESULTS_DIR / "encoding"
DEFAULT_MODELS = "minilm,smollm2"
DEFAULT_DTYPES = "float32,bfloat16"
DEFAULT_DOCS = 256
DEFAULT_SWEEP_DOCS = 96
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.encoding",
        description="Document-encoding docs/s and tokens/s through Encoder.embed, the bag step, "
                    "padding waste, and the forward's GFLOP/s as a fraction of a timed torch.mm.")
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"default {DEFAULT_MODELS}")
    parser.add_argument("--dtypes", default=DEFAULT_DTYPES,
                        help=f"model dtypes, of {', '.join(DTYPES)} (default {DEFAULT_DTYPES})")
    parser.add_argument("--docs", type=positive_int, default=DEFAULT_DOCS,
                        help=f"documents of the headline rows, evenly spaced over the corpus "
                             f"(default {DEFAULT_DOCS})")
    parser.add_argument("--sweep-docs", type=positive_int, default=DEFAULT_SWEEP_DOCS,
                        help="documents (evenly spaced over --docs) of the thread and batch-size "
                             f"comparisons (default {DEFAULT_SWEEP_DOCS})")
    parser.add_argument("--batch-sizes", default=str(DEFAULT_BATCH_SIZE),
                        help="encoder batch sizes to compare on the sweep subset; the first is "
                             f"the headline's (default {DEFAULT_BATCH_SIZE}, the encoder's)")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="times every sweep setting is measured, interleaved; its median "
                             "round is reported (default 3)")
    parser.add_argument("--threads", default=None,
                        help="torch thread counts to compare on the sweep subset; the largest is "
                             "the headline's; 1 also gives the time breakdown by op "
                             "(default: 1 and torch's default, "
                             f"{torch.get_num_threads()} here)")
    parser.add_argument("--matmul-sizes", default=",".join(map(str, MATMUL_SIZES)),
                        help="square torch.mm sizes timed for the reference GFLOP/s (default "
                             f"{','.join(map(str, MATMUL_SIZES))}; smaller where a dtype is "
                             "emulated: a 4096 bf16 product takes minutes on a CPU without "
                             "bf16 units)")
    parser.add_argument("--device", default="cpu",
                        help="where the models run: cpu (default) or cuda[:N]; on CUDA the "
                             "thread sweep and side-by-side batches (CPU settings) are left out")
    parser.add_argument("--skeletons", type=Path, default=None,
                        help="a folder of model skeletons (python -m bench.encoding.skeleton): "
                             "each --models name is rebuilt from DIR/<name> with random weights "
                             "instead of loaded, for a machine without the weights; docs/s and "
                             "GFLOP/s are the real model's, embeddings are not")
    parser.add_argument("--max-length", type=positive_int, default=DEFAULT_MAX_LENGTH)
    parser.add_argument("--bag-size", type=positive_int, default=DEFAULT_BAG_SIZE,
                        help=f"tokens per bag in the bag step (default {DEFAULT_BAG_SIZE}, the "
                             "package's)")
    parser.add_argument("--corpus", type=Path, default=CRANFIELD,
                        help="collection read with tokretrieve.corpus.read_documents "
                             "(default ../shared/data/cranfield)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="results go to <output>/<timestamp>/ (default "
                             "bench/results/encoding)")
    return parser.parse_args(argv)


def run_model(model: str, dtypes: Sequence[str], texts: list[str], sweep: list[str],
              threads: list[int], batch_sizes: list[int], args: argparse.Namespace,
              references: dict[tuple[int, str], float], corpus: Sequence[str]) -> dict[str, Any]:
    """One model's rows, loaded (or, with --skeletons, rebuilt with random weights in a
    scratch folder removed afterwards)."""
    if args.skeletons is None:
        return model_rows(model, model, None, dtypes, texts, sweep, threads, batch_sizes, args,
                          references, corpus)
    skeleton = args.skeletons / model
    with tempfile.TemporaryDirectory(prefix=f"rebuilt-{model}-") as scratch:
        print(f"[encode] {model}: random weights from {skeleton}", flush=True)
        try:
            source, method = rebuild(skeleton, Path(scratch) / model)
        except TokretrieveError as error:
            raise SystemExit(f"error: --skeletons: {error}") from None
        record = model_rows(model, str(source), method, dtypes, texts, sweep, threads,
                            batch_sizes, args, references, corpus)
    record["model"]["weights"] = f"random, rebuilt from {skeleton}"
    return record


def model_rows(model: str, source: str, method: str | None, dtypes: Sequence[str],
               texts: list[str], sweep: list[str], threads: list[int], batch_sizes: list[int],
               args: argparse.Namespace, references: dict[tuple[int, str], float],
               corpus: Sequence[str]) -> dict[str, Any]:
    """All rows of one model (`source`: what Encoder.load takes, run by `method`, None for
    its own): per dtype the headline (all docs, most threads, first batch size), the bag
    step, then the thread and batch-size comparisons on the subset; and the padding waste
    batching the whole `corpus` would give."""
    most = max(threads)
    cuda = args.device.startswith("cuda")
    record: dict[str, Any] = {"rows": [], "bags": {}}
    flops: FlopCache | None = None
    embeddings: dict[str, np.ndarray] = {}
    for dtype in dtypes:
        print(f"[encode] {model} {dtype}: loading", flush=True)
        loaded, load_s = timed(lambda dtype=dtype: Encoder.load(
            source, method=method, max_length=args.max_length, batch_size=batch_sizes[0],
            device=args.device, dtype=dtype))
        encoder: Encoder = loaded
        if "model" not in record:
            record["model"] = model_record(model, encoder) | {"load_s": {}}
        record["model"]["load_s"][dtype] = load_s
        if flops is None:  # FLOPs depend on shapes only: one count per width serves all dtypes
            flops = FlopCache(encoder.model.backbone)
            record["padding_waste_by_batch_size"] = waste_table(encoder, corpus)
        else:
            flops.backbone = encoder.model.backbone
        row, embeddings[dtype] = measure_encoding(encoder, texts, most, flops, references)
        record["rows"].append({"model": model, "set": "headline", **row})
        _progress(record["rows"][-1])
        if "flop_check" not in record:
            with pinned(most), observe_backbone(encoder.model.backbone) as log:
                encoder.embed(texts[:encoder.batch_size])
            record["flop_check"] = flops.check(log)
        record["bags"][dtype] = measure_bags(encoder, embeddings[dtype], args.bag_size, most)
        print(f"  bags: {record['bags'][dtype]['docs_per_s']:.0f} docs/s", flush=True)
        if not cuda and (1, dtype) in references:
            breakdown = measure_breakdown(encoder, sweep, flops, references[(1, dtype)])
            record.setdefault("breakdown", {})[dtype] = breakdown
            print("  one thread, by op: " + ", ".join(
                f"{name} {group['time_share']:.0%} of the time"
                for name, group in breakdown["classes"].items()), flush=True)
        else:
            print("  no time breakdown by op: " + ("the profiler's CPU times miss CUDA's "
                  "kernels" if cuda else "--threads has no 1"), flush=True)
        settings = [(t, batch_sizes[0], True) for t in sorted(threads, reverse=True)]
        settings += [(most, b, True) for b in batch_sizes[1:]]
        if most > 1 and not cuda:
            settings.append((most, batch_sizes[0], False))
        if len(settings) > 1:
            record["rows"] += sweep_rows(model, encoder, sweep, settings, args.rounds, flops,
                                         references)
        del encoder, loaded
    if flops is not None:
        record["flops_per_row_by_width"] = {str(w): n for w, n in sorted(flops.per_row.items())}
        record["flops_by_op_per_width_sum"] = flops.by_op
    if "float32" in embeddings and "bfloat16" in embeddings:
        record["bf16_vs_fp32_cosine"] = cosine_agreement(embeddings["float32"],
                                                         embeddings["bfloat16"])
    return record


def sweep_rows(model: str, encoder: Encoder, sweep: list[str],
               settings: Sequence[tuple[int, int, bool]], rounds: int, flops: FlopCache,
               references: dict[tuple[int, str], float]) -> list[dict[str, Any]]:
    """Each (threads, batch size, side by side) setting timed once per round, rounds
    interleaved; per setting the median round's row, with every round's docs/s."""
    timed_rows: dict[tuple[int, int, bool], list[dict[str, Any]]] = {s: [] for s in settings}
    for round_ in range(rounds):
        for t, b, together in settings:
            sized = Encoder(encoder.model, encoder.method, encoder.max_length, b)
            sized.side_by_side = together
            row, _ = measure_encoding(sized, sweep, t, flops, references)
            timed_rows[(t, b, together)].append(row)
            _progress({"set": f"sweep {round_ + 1}/{rounds}", **row})
    out = []
    for rows in timed_rows.values():
        ranked = sorted(rows, key=lambda r: r["docs_per_s"])
        out.append({"model": model, "set": "sweep", **ranked[(len(ranked) - 1) // 2],
                    "rounds_docs_per_s": [r["docs_per_s"] for r in rows]})
    return out


def _progress(row: dict[str, Any]) -> None:
    print(f"  {row['set']}: {row['dtype']} threads={row['threads']} batch={row['batch_size']} "
          f"{batches_label(row)} "
          f"docs={row['docs']}: {row['docs_per_s']:.1f} docs/s, "
          f"{row['forward_gflops']:.0f} GFLOP/s forward "
          f"({row['fraction_of_matmul']:.0%} of mm), waste {row['padding_waste']:.1%}, "
          f"cpu share {row['cpu_share']:.2f}", flush=True)


def bf16_support() -> dict[str, Any]:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 / AMX), from /proc/cpuinfo."""
    flags: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    return {"native": bool(found), "flags": found,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def device_support(device: str) -> dict[str, Any]:
    """The accelerator a --device names, or SystemExit where torch has none such here."""
    if device == "cpu":
        return {"type": "cpu"}
    if not device.startswith("cuda"):
        raise SystemExit(f"error: --device {device}: give cpu or cuda[:N]")
    if not torch.cuda.is_available():
        raise SystemExit(f"error: --device {device}: torch {torch.__version__} sees no CUDA "
                         "device on this machine (torch.cuda.is_available() is False)")
    try:
        name = torch.cuda.get_device_name(device)
    except (RuntimeError, AssertionError, ValueError) as error:
        raise SystemExit(f"error: --device {device}: {error}") from None
    return {"type": "cuda", "name": name, "bf16": torch.cuda.is_bf16_supported(),
            "cuda": torch.version.cuda}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = device_support(args.device)
    models = parse_list(args.models, str, "--models")
    dtypes = parse_list(args.dtypes, str, "--dtypes")
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise SystemExit(f"error: --dtypes: unknown {unknown}; choose from {', '.join(DTYPES)}")
    batch_sizes = parse_list(args.batch_sizes, positive_int, "--batch-sizes")
    # On CUDA the threads only feed the device: one setting, torch's own.
    default_threads = (str(torch.get_num_threads()) if device["type"] == "cuda"
                       else f"1,{torch.get_num_threads()}")
    threads = parse_list(args.threads or default_threads, positive_int, "--threads")
    threads = sorted(set(threads))
    matmul_sizes = parse_list(args.matmul_sizes, positive_int, "--matmul-sizes")
    try:  # a bad corpus or model name is refused before the minutes of timing
        documents = read_documents(args.corpus)
        if args.skeletons is None:
            for model in models:
                model_config(model)
    except TokretrieveError as error:
        raise SystemExit(f"error: {error}") from None
    picks = evenly_spaced(args.docs, len(documents))
    texts = [documents[i][1] for i in picks]
    sweep = [texts[i] for i in evenly_spaced(args.sweep_docs, len(texts))]
    record = new_record(
        command_line("python -m bench.encoding", argv), bf16=bf16_support(), device=device,
        settings={"models": models, "dtypes": dtypes, "docs": len(texts),
                  "device": args.device,
                  "skeletons": None if args.skeletons is None else str(args.skeletons),
                  "sweep_docs": len(sweep), "batch_sizes": batch_sizes, "threads": threads,
                  "rounds": args.rounds,
                  "max_length": args.max_length, "bag_size": args.bag_size,
                  "corpus": str(args.corpus), "corpus_docs": len(documents),
                  "matmul_sizes": matmul_sizes},
        matmul={}, models={})
    out_dir = run_folder(args.output, record)
    print(f"[encode] {len(texts)} docs from {args.corpus} ({len(sweep)} in the sweep subset); "
          f"threads {threads}, dtypes {dtypes}; measuring torch.mm ...", flush=True)
    starts = {(t, d): measure_matmul(t, d, matmul_sizes, device=args.device)
              for t in threads for d in dtypes}
    references = {key: value["gflops"] for key, value in starts.items()}
    for model in models:
        try:
            record["models"][model] = run_model(model, dtypes, texts, sweep, threads,
                                                batch_sizes, args, references,
                                                [text for _, text in documents])
        except TokretrieveError as error:  # e.g. weights that do not load: earlier models kept
            raise SystemExit(f"error: {model}: {error} (results so far: {out_dir})") from None
        write_record(out_dir, record, render_report, partial=True)
    print("[encode] measuring torch.mm again ...", flush=True)
    ends = {(t, d): measure_matmul(t, d, matmul_sizes, device=args.device)
            for t in threads for d in dtypes}
    for (t, d), start in starts.items():
        best = max(start["gflops"], ends[(t, d)]["gflops"])
        record["matmul"][f"{d}/{t}"] = {"threads": t, "dtype": d, "gflops": best,
                                         "start": start, "end": ends[(t, d)]}
        # Rows were divided by the start's figure; re-divide by the better of the two.
        for model_record_ in record["models"].values():
            for row in model_record_["rows"]:
                if row["threads"] == t and row["dtype"] == d:
                    row["matmul_gflops"] = best
                    row["fraction_of_matmul"] = fraction_of(row["forward_gflops"], best)
            breakdown = model_record_.get("breakdown", {}).get(d)
            if breakdown is not None and t == breakdown["threads"]:
                refer_breakdown(breakdown, best)
    finish_record(out_dir, record, render_report, render_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
