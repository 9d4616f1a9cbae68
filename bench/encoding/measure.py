"""`python -m bench.encode_speed`: document-encoding throughput, and how much of the CPU's measured
matmul throughput the model forward reaches.

    python -m bench.encode_speed                                   # minilm + smollm2, fp32 + bf16
    python -m bench.encode_speed --models minilm --dtypes float32 --docs 200
    python -m bench.encode_speed --threads 1,2 --batch-sizes 16,32,64

Why it is built this way:
- Encoding is the dominant cost of an index build, and docs/s alone cannot say whether it could
  be faster. So the forward pass's FLOPs are counted by torch.utils.flop_counter.FlopCounterMode
  (a maintained torch API, not a hand formula) for the batch shapes the encoder really formed, and
  divided by the forward's own wall time; a large torch.mm timed at the same thread count and
  dtype says what this CPU's matmul units deliver. Their ratio is the headroom left in the
  forward itself; the forward's share of Encoder.embed's time is the headroom outside it.
- Everything is timed through the package's own `Encoder.embed`. The batches are observed, not
  re-derived: hooks on the backbone record each batch's attention mask and the forward's start
  and end, so padding waste and forward time are those of the real path. The encoder's
  length-sorted batching is also replicated from token counts (`Encoder.input_ids`), to show
  what unsorted batches and other batch sizes would waste; the run checks the replica against
  the observed batches.
- FlopCounterMode's registry has no formula for the CPU attention kernel
  (aten._scaled_dot_product_flash_attention_for_cpu), so on CPU it silently counts attention
  as 0 FLOPs; `flop_counter()` maps that kernel to torch's own SDPA formula. A batch's count is
  the sum over its rows, and every row of a padded batch has the batch's width, so the count of a
  (B, width) batch is B times that of one (1, width) row; one count per distinct width is
  therefore exact (and checked once per model on a real multi-row batch).
- The bag step (`Encoder.bags`: LM-head projection + top-k over the whole batch) is timed on the
  same embeddings, so the report shows which of the two dominates.
- Thread-count and batch-size comparisons run on an evenly spaced subset (--sweep-docs), every
  setting on the same subset, so that a one-thread float32 SmolLM2 pass does not take minutes;
  the headline rows use all --docs at the encoder's batch size and the most threads. With the
  defaults (256 and 96 documents) a run took 6.6 minutes on the 2-core development machine
  while another job held one core for half of it; 400 and 128 took 15 minutes under that load.
- The padding-waste-by-batch-size table is predicted from the token counts of the whole corpus
  (tokenizing is cheap), so it does not depend on how few documents --docs times.
- The machine is shared: every row records the load average and the share of its threads the
  process really got (CPU seconds / wall seconds / threads), and the matmul reference is taken at
  the start and at the end, keeping the better, so a busy neighbour shows as a low CPU share
  rather than as a slow model.
- OMP_WAIT_POLICY is left as the environment has it (recorded), because that is what a user's
  `tokretrieve index` gets. With another process holding a core, libgomp's default (spin, then
  sleep) made the 2-thread forward 2-3x slower than 1 thread here, while OMP_WAIT_POLICY=PASSIVE
  made 2 threads as fast as 1; run both ways to see which your machine is in.

Writes bench/results/encode/<timestamp>/results.json and report.md, and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from bench.environment import machine, model_record
from bench.records import write_record
from bench.timing import timed
from tokretrieve import Encoder
from tokretrieve.corpus import read_documents
from tokretrieve.encoder import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, DTYPES
from tokretrieve.sparse_index import DEFAULT_K

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "data" / "cranfield"
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "encode"
DEFAULT_MODELS = "minilm,smollm2"
DEFAULT_DTYPES = "float32,bfloat16"
DEFAULT_DOCS = 256
DEFAULT_SWEEP_DOCS = 96
MATMUL_SIZES = (2048, 4096)
MATMUL_REPEATS = 5
BAG_REPEATS = 5
FLOP_CHECK_ROWS = 4
# Batch sizes whose padding waste is predicted from token counts alone (no model run).
WASTE_BATCH_SIZES = (8, 16, 32, 64, 128)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


# ------------------------------------------------------------------------------- pure helpers
def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches as Encoder.embed forms them: longest first (a stable sort), then
    consecutive runs of `batch_size`."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda j: -lengths[j])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def in_order_batches(count: int, batch_size: int) -> list[list[int]]:
    """Index batches in the given order, as an encoder that did not sort would form them."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return [list(range(start, min(start + batch_size, count)))
            for start in range(0, count, batch_size)]


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> dict[str, float]:
    """Positions the forward computes (each batch padded to its longest member) against real
    tokens: `waste` is the padded fraction of all positions computed."""
    positions = sum(len(batch) * max(lengths[j] for j in batch) for batch in batches if batch)
    tokens = sum(lengths[j] for batch in batches for j in batch)
    return {"positions": int(positions), "tokens": int(tokens),
            "waste": (positions - tokens) / positions if positions else 0.0}


def mm_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an (m x k) @ (k x n) product: one multiply and one add per term."""
    return 2 * m * k * n


def gflops(flops: float, seconds: float) -> float:
    """Throughput in GFLOP/s (NaN for a zero or negative time)."""
    return flops / seconds / 1e9 if seconds > 0 else float("nan")


def fraction_of(achieved: float, reference: float) -> float:
    """`achieved / reference`, NaN where the reference is missing or not positive."""
    if reference is None or not reference > 0 or achieved is None:
        return float("nan")
    return achieved / reference


def cpu_share(cpu_seconds: float, wall_seconds: float, threads: int) -> float:
    """The share of `threads` cores the process kept busy: 1.0 means every thread ran the whole
    time; well below 1 on a run that should be compute-bound means it was competing for cores."""
    if wall_seconds <= 0 or threads <= 0:
        return float("nan")
    return cpu_seconds / wall_seconds / threads


def evenly_spaced(count: int, total: int) -> list[int]:
    """`count` indices spread evenly over range(total), first and last included, so a sample
    keeps the collection's mix of lengths."""
    if count >= total:
        return list(range(total))
    if count <= 0:
        return []
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


def parse_list(text: str, kind: Callable[[str], Any], name: str) -> list[Any]:
    """A comma-separated option as a list, refusing empty lists and bad items by name."""
    items = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            items.append(kind(part))
        except ValueError:
            raise SystemExit(f"error: {name}: bad item '{part}'") from None
    if not items:
        raise SystemExit(f"error: {name} is empty")
    return items


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


# ---------------------------------------------------------------------------------- FLOP counts
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's own SDPA formula (two batched matmuls, QK^T and AV), for the CPU kernel."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts attention on CPU (see the module docstring)."""
    mapping = {}
    cpu_kernel = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_kernel is not None:
        mapping[cpu_kernel] = _cpu_sdpa_flop
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_forward_flops(backbone: torch.nn.Module, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor) -> dict[str, int]:
    """FLOPs of one backbone forward on these tensors, total and by op, as FlopCounterMode
    counts them (plus CPU attention)."""
    with torch.inference_mode(), flop_counter() as counter:
        backbone(input_ids=input_ids, attention_mask=attention_mask)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"total": int(counter.get_total_flops()), **by_op}


def matmul_flops_counted(size: int, dtype: torch.dtype) -> int:
    """FLOPs FlopCounterMode assigns to one (size x size) @ (size x size) torch.mm, so that the
    reference and the model forward are counted by the same rules."""
    with torch.device("meta"), flop_counter() as counter:
        torch.mm(torch.empty(size, size, dtype=dtype), torch.empty(size, size, dtype=dtype))
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------- measurement
@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's intra-op pool on `n` threads, then restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def measure_matmul(threads: int, dtype: str, sizes: Sequence[int] = MATMUL_SIZES,
                   repeats: int = MATMUL_REPEATS) -> dict[str, Any]:
    """Best-of-`repeats` GFLOP/s of a square torch.mm per size (after one warm-up call), at
    `threads` torch threads; `gflops` is the best over the sizes."""
    torch_dtype = DTYPES[dtype]
    per_size = {}
    generator = torch.Generator().manual_seed(0)
    with torch_threads(threads), torch.inference_mode():
        for size in sizes:
            a = torch.randn(size, size, generator=generator).to(torch_dtype)
            b = torch.randn(size, size, generator=generator).to(torch_dtype)
            flops = matmul_flops_counted(size, torch_dtype)
            torch.mm(a, b)
            seconds = [timed(lambda a=a, b=b: torch.mm(a, b))[1] for _ in range(repeats)]
            per_size[str(size)] = {"flops": flops, "best_s": min(seconds),
                                   "median_s": float(np.median(seconds)),
                                   "gflops": gflops(flops, min(seconds)),
                                   "gflops_median": gflops(flops, float(np.median(seconds)))}
    return {"threads": threads, "dtype": dtype, "sizes": per_size,
            "gflops": max(s["gflops"] for s in per_size.values()), "load_avg": load_average()}


@dataclass
class BatchLog:
    """What the backbone saw during one Encoder.embed call: per batch, its tokens and mask and
    the forward's wall time."""

    input_ids: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    _start: float = 0.0

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [tuple(mask.shape) for mask in self.masks]

    @property
    def tokens(self) -> int:
        return int(sum(int(mask.sum()) for mask in self.masks))

    @property
    def positions(self) -> int:
        return int(sum(mask.numel() for mask in self.masks))

    @property
    def waste(self) -> float:
        positions = self.positions
        return (positions - self.tokens) / positions if positions else 0.0


@contextlib.contextmanager
def observe_backbone(backbone: torch.nn.Module) -> Iterator[BatchLog]:
    """Record every forward of `backbone` (its input ids, attention mask and wall time) while
    the block runs; the hooks are removed afterwards."""
    log = BatchLog()

    def before(module, args, kwargs):
        log.input_ids.append(kwargs["input_ids"].detach().cpu().clone())
        log.masks.append(kwargs["attention_mask"].detach().cpu().clone())
        log._start = time.perf_counter()

    def after(module, args, output):
        log.seconds.append(time.perf_counter() - log._start)

    handles = [backbone.register_forward_pre_hook(before, with_kwargs=True),
               backbone.register_forward_hook(after)]
    try:
        yield log
    finally:
        for handle in handles:
            handle.remove()


class FlopCache:
    """Forward FLOPs of one model per batch width: a (B, width) batch costs B times a (1, width)
    row (every row of a padded batch is `width` positions long), so one count per width."""

    def __init__(self, backbone: torch.nn.Module):
        self.backbone = backbone
        self.per_row: dict[int, int] = {}
        self.by_op: dict[str, int] = {}

    def row_flops(self, input_ids: torch.Tensor, mask: torch.Tensor) -> int:
        """FLOPs of one row of this batch's width (the batch's longest row, unpadded)."""
        width = int(mask.shape[1])
        if width not in self.per_row:
            row = int(torch.argmax(mask.sum(dim=1)))
            counts = count_forward_flops(self.backbone, input_ids[row:row + 1],
                                         mask[row:row + 1])
            self.per_row[width] = counts.pop("total")
            for op, n in counts.items():
                self.by_op[op] = self.by_op.get(op, 0) + n
        return self.per_row[width]

    def batch_flops(self, log: BatchLog) -> int:
        return sum(mask.shape[0] * self.row_flops(ids, mask)
                   for ids, mask in zip(log.input_ids, log.masks, strict=True))

    def check(self, log: BatchLog, rows: int = FLOP_CHECK_ROWS) -> dict[str, Any]:
        """Count a real multi-row slice of the first batch directly, against rows x per-row."""
        ids, mask = log.input_ids[0][:rows], log.masks[0][:rows]
        direct = count_forward_flops(self.backbone, ids, mask)["total"]
        scaled = ids.shape[0] * self.row_flops(log.input_ids[0], log.masks[0])
        return {"rows": int(ids.shape[0]), "width": int(mask.shape[1]), "direct": direct,
                "rows_x_per_row": scaled, "ratio": direct / scaled if scaled else float("nan")}


def measure_encoding(encoder: Encoder, texts: Sequence[str], threads: int,
                     flops: FlopCache, references: dict[tuple[int, str], float],
                     warm_up: bool = True) -> tuple[dict[str, Any], np.ndarray]:
    """Time Encoder.embed over `texts` at `threads` torch threads (after a one-batch warm-up)
    and return its row of the table, with the embeddings."""
    with torch_threads(threads):
        if warm_up:
            encoder.embed(list(texts[:encoder.batch_size]))
        load_before = load_average()
        cpu_start = time.process_time()
        with observe_backbone(encoder.model.backbone) as log:
            embeddings, seconds = timed(lambda: encoder.embed(list(texts)))
        cpu_seconds = time.process_time() - cpu_start
        load_after = load_average()
    forward_s = float(sum(log.seconds))
    total_flops = flops.batch_flops(log)
    forward_gflops = gflops(total_flops, forward_s)
    reference = references.get((threads, encoder.dtype))
    lengths = [len(ids) for ids in encoder.input_ids([t for t in texts if t.strip()])]
    predicted = padding_waste(lengths, length_sorted_batches(lengths, encoder.batch_size))
    row = {
        "dtype": encoder.dtype, "threads": threads, "batch_size": encoder.batch_size,
        "docs": len(texts), "embed_s": seconds, "docs_per_s": len(texts) / seconds,
        "tokens": log.tokens, "tokens_per_s": log.tokens / seconds,
        "batches": len(log.masks), "forward_s": forward_s,
        "forward_share": forward_s / seconds if seconds > 0 else float("nan"),
        "positions": log.positions, "padding_waste": log.waste,
        "padding_waste_replica": predicted["waste"],
        "replica_matches": (predicted["positions"] == log.positions
                            and predicted["tokens"] == log.tokens),
        "flops": total_flops, "gflop_per_doc": total_flops / len(texts) / 1e9,
        "forward_gflops": forward_gflops, "embed_gflops": gflops(total_flops, seconds),
        "matmul_gflops": reference, "fraction_of_matmul": fraction_of(forward_gflops, reference),
        "cpu_seconds": cpu_seconds, "cpu_share": cpu_share(cpu_seconds, seconds, threads),
        "load_avg_before": load_before, "load_avg_after": load_after,
    }
    if not row["replica_matches"]:
        print(f"  warning: the replicated batching ({predicted}) differs from the batches the "
              f"encoder formed ({log.positions} positions, {log.tokens} tokens)", flush=True)
    return row, embeddings


def measure_bags(encoder: Encoder, embeddings: np.ndarray, k: int, threads: int,
                 repeats: int = BAG_REPEATS) -> dict[str, Any]:
    """Encoder.bags (projection + top-k on the whole batch) on these embeddings: best and
    median of `repeats` calls after one warm-up."""
    with torch_threads(threads):
        bags = encoder.bags(embeddings, k)
        seconds = [timed(lambda: encoder.bags(embeddings, k))[1] for _ in range(repeats)]
    best, median = min(seconds), float(np.median(seconds))
    return {"k": k, "weighting": encoder.model.default_weighting, "threads": threads,
            "docs": len(embeddings), "best_s": best, "median_s": median,
            "docs_per_s": len(embeddings) / median, "docs_per_s_best": len(embeddings) / best,
            "nnz_per_doc": bags.nnz / max(len(embeddings), 1)}


def waste_table(encoder: Encoder, texts: Sequence[str],
                batch_sizes: Sequence[int] = WASTE_BATCH_SIZES) -> list[dict[str, Any]]:
    """Predicted padding waste per batch size, length-sorted (as the encoder batches) and in
    corpus order (as an encoder that did not sort would), from token counts alone."""
    lengths = [len(ids) for ids in encoder.input_ids([t for t in texts if t.strip()])]
    rows = []
    for size in batch_sizes:
        rows.append({"batch_size": size,
                     "sorted": padding_waste(lengths, length_sorted_batches(lengths, size)),
                     "unsorted": padding_waste(lengths, in_order_batches(len(lengths), size))})
    return rows


def cosine_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between two embedding matrices of the same texts (zero rows skipped)."""
    keep = np.any(a, axis=1) & np.any(b, axis=1)
    a, b = a[keep].astype(np.float64), b[keep].astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"mean": float(cos.mean()), "min": float(cos.min()), "rows": int(keep.sum())}


# ------------------------------------------------------------------------------------- driving
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.encode_speed",
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
    parser.add_argument("--threads", default=None,
                        help="torch thread counts to compare on the sweep subset; the largest is "
                             "the headline's (default: 1 and torch's default, "
                             f"{torch.get_num_threads()} here)")
    parser.add_argument("--max-length", type=positive_int, default=DEFAULT_MAX_LENGTH)
    parser.add_argument("--k", type=positive_int, default=DEFAULT_K,
                        help=f"bag size of the bag step (default {DEFAULT_K}, the package's)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="collection read with tokretrieve.corpus.read_documents "
                             "(default ../shared/data/cranfield)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


def run_model(model: str, dtypes: Sequence[str], texts: list[str], sweep: list[str],
              threads: list[int], batch_sizes: list[int], args: argparse.Namespace,
              references: dict[tuple[int, str], float], corpus: Sequence[str]) -> dict[str, Any]:
    """All rows of one model: per dtype the headline (all docs, most threads, first batch
    size), the bag step, then the thread and batch-size comparisons on the subset; and the
    padding waste batching the whole `corpus` would give."""
    most = max(threads)
    record: dict[str, Any] = {"rows": [], "bags": {}}
    flops: FlopCache | None = None
    embeddings: dict[str, np.ndarray] = {}
    for dtype in dtypes:
        print(f"[encode] {model} {dtype}: loading", flush=True)
        loaded, load_s = timed(lambda dtype=dtype: Encoder.load(
            model, max_length=args.max_length, batch_size=batch_sizes[0], device="cpu",
            dtype=dtype))
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
            with torch_threads(most):
                with observe_backbone(encoder.model.backbone) as log:
                    encoder.embed(texts[:encoder.batch_size])
                record["flop_check"] = flops.check(log)
        record["bags"][dtype] = measure_bags(encoder, embeddings[dtype], args.k, most)
        print(f"  bags: {record['bags'][dtype]['docs_per_s']:.0f} docs/s", flush=True)
        settings = [(t, batch_sizes[0]) for t in sorted(threads, reverse=True)]
        settings += [(most, b) for b in batch_sizes[1:]]
        if len(settings) > 1:
            for t, b in settings:
                sized = encoder if b == encoder.batch_size else Encoder(
                    encoder.model, encoder.method, encoder.max_length, b)
                row, _ = measure_encoding(sized, sweep, t, flops, references)
                record["rows"].append({"model": model, "set": "sweep", **row})
                _progress(record["rows"][-1])
        del encoder, loaded
    if flops is not None:
        record["flops_per_row_by_width"] = {str(w): n for w, n in sorted(flops.per_row.items())}
        record["flops_by_op_per_width_sum"] = flops.by_op
    if "float32" in embeddings and "bfloat16" in embeddings:
        record["bf16_vs_fp32_cosine"] = cosine_agreement(embeddings["float32"],
                                                         embeddings["bfloat16"])
    return record


def _progress(row: dict[str, Any]) -> None:
    print(f"  {row['set']}: {row['dtype']} threads={row['threads']} batch={row['batch_size']} "
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = list(argv) if argv is not None else sys.argv[1:]
    command = "python -m bench.encode_speed" + (" " + shlex.join(given) if given else "")
    models = parse_list(args.models, str, "--models")
    dtypes = parse_list(args.dtypes, str, "--dtypes")
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise SystemExit(f"error: --dtypes: unknown {unknown}; choose from {', '.join(DTYPES)}")
    batch_sizes = parse_list(args.batch_sizes, positive_int, "--batch-sizes")
    threads = parse_list(args.threads or f"1,{torch.get_num_threads()}", positive_int,
                         "--threads")
    threads = sorted(set(threads))
    documents = read_documents(args.corpus)
    picks = evenly_spaced(args.docs, len(documents))
    texts = [documents[i][1] for i in picks]
    sweep = [texts[i] for i in evenly_spaced(args.sweep_docs, len(texts))]
    started = dt.datetime.now()
    out_dir = args.output / started.strftime("%Y%m%d-%H%M%S")
    record: dict[str, Any] = {
        "command": command, "started": started.isoformat(timespec="seconds"),
        "environment": machine() | {"bf16": bf16_support(), "env": {
            k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                           "OMP_WAIT_POLICY")}},
        "settings": {"models": models, "dtypes": dtypes, "docs": len(texts),
                     "sweep_docs": len(sweep), "batch_sizes": batch_sizes, "threads": threads,
                     "max_length": args.max_length, "k": args.k, "corpus": str(args.corpus),
                     "corpus_docs": len(documents), "matmul_sizes": list(MATMUL_SIZES)},
        "load_avg_start": load_average(), "matmul": {}, "models": {}}
    print(f"[encode] {len(texts)} docs from {args.corpus} ({len(sweep)} in the sweep subset); "
          f"threads {threads}, dtypes {dtypes}; measuring torch.mm ...", flush=True)
    starts = {(t, d): measure_matmul(t, d) for t in threads for d in dtypes}
    references = {key: value["gflops"] for key, value in starts.items()}
    for model in models:
        record["models"][model] = run_model(model, dtypes, texts, sweep, threads, batch_sizes,
                                            args, references,
                                            [text for _, text in documents])
        write_record(out_dir, record, render_report, partial=True)
    print("[encode] measuring torch.mm again ...", flush=True)
    ends = {(t, d): measure_matmul(t, d) for t in threads for d in dtypes}
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
    record["load_avg_end"] = load_average()
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    write_record(out_dir, record, render_report, partial=False)
    print()
    print(render_report(record))
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'report.md'}")
    return 0


# -------------------------------------------------------------------------------------- report
def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{100 * value:.{digits}f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def main_table(record: dict[str, Any]) -> list[str]:
    """One row per model x setting: docs/s, tokens/s, forward GFLOP/s against torch.mm, padding
    waste, the bag step, and the CPU share the run got."""
    header = ["model", "set", "dtype", "threads", "batch", "docs", "docs/s", "vs default",
              "tokens/s", "GFLOP/doc", "forward share", "forward GFLOP/s", "mm GFLOP/s",
              "of mm", "padding waste", "bag docs/s", "bag share", "CPU share", "load 1m"]
    rows = []
    for model, data in record["models"].items():
        for r in data["rows"]:
            bags = data["bags"].get(r["dtype"]) if r["set"] == "headline" else None
            bag_share = (r["docs_per_s"] / (r["docs_per_s"] + bags["docs_per_s"])
                         if bags else None)
            base = _sweep_default(data["rows"], r) if r["set"] == "sweep" else None
            rows.append([model, r["set"], r["dtype"], str(r["threads"]), str(r["batch_size"]),
                         str(r["docs"]), _f(r["docs_per_s"]),
                         f"{r['docs_per_s'] / base['docs_per_s']:.2f}x" if base else "",
                         _f(r["tokens_per_s"], 0),
                         _f(r["gflop_per_doc"], 2), _pct(r["forward_share"], 0),
                         _f(r["forward_gflops"], 0), _f(r["matmul_gflops"], 0),
                         _pct(r["fraction_of_matmul"], 0), _pct(r["padding_waste"]),
                         _f(bags["docs_per_s"], 0) if bags else "",
                         _pct(bag_share) if bags else "", _f(r["cpu_share"], 2),
                         _f((r.get("load_avg_after") or [None])[0], 2)])
    return _table(header, rows)


def _sweep_default(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """The sweep row `row` is compared with: same dtype, the headline's threads and batch."""
    headline = next((r for r in rows if r["set"] == "headline" and r["dtype"] == row["dtype"]),
                    None)
    if headline is None:
        return None
    return next((r for r in rows if r["set"] == "sweep" and r["dtype"] == row["dtype"]
                 and r["threads"] == headline["threads"]
                 and r["batch_size"] == headline["batch_size"]), None)


def render_report(record: dict[str, Any]) -> str:
    """report.md, from the results record alone."""
    s = record["settings"]
    lines = ["# Document encoding throughput", "",
             f"`{record['command']}`, started {record['started']}, on "
             f"{record['environment']['cpu']} ({record['environment']['cpu_count']} CPUs, "
             f"torch {record['environment']['packages'].get('torch')}; native bf16: "
             f"{_f(record['environment']['bf16']['native'])}). "
             f"Headline rows: {s['docs']} documents evenly spaced over {s['corpus']} "
             f"({s['corpus_docs']} docs), max length {s['max_length']}; sweep rows: "
             f"{s['sweep_docs']} of those. Load average start/end: "
             f"{record.get('load_avg_start')} / {record.get('load_avg_end')}.", "",
             "docs/s and tokens/s are through `Encoder.embed` (tokenizing, padding, forward, "
             "pooling); *forward share* is the part of that time spent inside the backbone's "
             "forward; *forward GFLOP/s* is the FlopCounterMode count of the batches the "
             "encoder formed over that forward time; *of mm* divides it by the best GFLOP/s of a "
             f"square torch.mm ({', '.join(map(str, s['matmul_sizes']))}) at the same threads "
             "and dtype; *padding waste* is the padded share of the positions the forward "
             "computed; *bag docs/s* is `Encoder.bags` (projection + top-k, "
             f"k={s['k']}) on the headline embeddings, and *bag share* its part of encode + "
             "bag time; *vs default* is a sweep row's docs/s over the sweep row at the "
             "headline's threads and batch size (same documents); *CPU share* is CPU seconds "
             "/ wall seconds / threads (below ~0.9: another process had the cores). "
             f"OMP_WAIT_POLICY: {record['environment']['env'].get('OMP_WAIT_POLICY')}.", ""]
    lines += main_table(record)
    lines += ["", "## torch.mm reference (best of start and end)", ""]
    lines += _table(["dtype", "threads", "GFLOP/s", "start", "end"], [
        [m["dtype"], str(m["threads"]), _f(m["gflops"], 0), _f(m["start"]["gflops"], 0),
         _f(m["end"]["gflops"], 0)] for m in record.get("matmul", {}).values()])
    lines += ["", f"## Padding waste by batch size, whole corpus ({s['corpus_docs']} docs; "
              "predicted from token counts)", ""]
    waste_rows = []
    for model, data in record["models"].items():
        for w in data.get("padding_waste_by_batch_size", []):
            waste_rows.append([model, str(w["batch_size"]), _pct(w["sorted"]["waste"]),
                               _pct(w["unsorted"]["waste"])])
    lines += _table(["model", "batch", "length-sorted (the encoder)", "corpus order"],
                    waste_rows)
    lines += ["", "## Checks", ""]
    for model, data in record["models"].items():
        check = data.get("flop_check")
        if check:
            lines.append(f"- {model}: FLOPs of a real {check['rows']}-row batch of width "
                         f"{check['width']} counted directly / rows x one-row count = "
                         f"{check['ratio']:.6f}.")
        replica = all(r["replica_matches"] for r in data["rows"])
        lines.append(f"- {model}: replicated length-sorted batching matches the observed "
                     f"batches in every row: {_f(replica)}.")
        cosine = data.get("bf16_vs_fp32_cosine")
        if cosine:
            lines.append(f"- {model}: bf16 vs fp32 document embeddings, cosine mean "
                         f"{cosine['mean']:.5f}, min {cosine['min']:.5f}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
