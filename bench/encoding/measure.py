"""The encoding benchmark's measurements: document-encoding throughput, and how much of the CPU's
measured matmul throughput the model forward reaches (`python -m bench.encoding` drives them).

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
  the headline rows use all --docs at the encoder's batch size and the most threads. On the
  2-core development machine, mpnet in both dtypes with 256 and 128 documents, two batch sizes
  and three rounds took 16 minutes.
- The sweep runs every setting once per round, for --rounds rounds, interleaved, and keeps each
  setting's median round (by docs/s) with every round's docs/s beside it: the machine is shared,
  and one setting measured 7.6 and 9.1 docs/s in one earlier run that timed it twice.
- On a CPU the encoder runs batches side by side, one thread each (tokretrieve.encoding.
  parallel); the sweep also times one batch at a time on all threads (`side_by_side = False`)
  at the headline's settings. The forward time is the wall time during which any forward ran.
- Where the forward's time goes: the FLOP share alone cannot say why a forward reaches less of
  the matmul than its products would, so one more pass over the sweep subset runs on one
  thread, batches one at a time (what each side-by-side worker runs), under torch.profiler, and
  sums the ops' self CPU times into matrix products, attention and everything else, each with
  its FLOPs (from the same per-width counts), its GFLOP/s and its fraction of the one-thread
  torch.mm. Not on CUDA, whose kernels run asynchronously to the CPU times the profiler sums.
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
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from bench.toolkit.clock import load_average, timed
from bench.toolkit.threads import pinned
from tokretrieve import Encoder
from tokretrieve.encoding.encoder import DTYPES

MATMUL_SIZES = (2048, 4096)
MATMUL_REPEATS = 5
BAG_REPEATS = 5
FLOP_CHECK_ROWS = 4
# The ops the reference torch.mm stands for, in the time breakdown (op_class).
MATRIX_PRODUCT_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"})
OP_CLASSES = ("matrix products", "attention", "other")
# Batch sizes whose padding waste is predicted from token counts alone (no model run).
WASTE_BATCH_SIZES = (8, 16, 32, 64, 128)


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
def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA runs kernels asynchronously: a wall-clock
    interval ends when they have run, not when they were queued); nothing on a CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul(threads: int, dtype: str, sizes: Sequence[int] = MATMUL_SIZES,
                   repeats: int = MATMUL_REPEATS, device: str = "cpu") -> dict[str, Any]:
    """Best-of-`repeats` GFLOP/s of a square torch.mm per size on `device` (after one warm-up
    call), at `threads` torch threads; `gflops` is the best over the sizes."""
    torch_dtype = DTYPES[dtype]
    per_size = {}
    generator = torch.Generator().manual_seed(0)

    def product(a: torch.Tensor, b: torch.Tensor) -> None:
        torch.mm(a, b)
        synchronize(device)

    with pinned(threads), torch.inference_mode():
        for size in sizes:
            a = torch.randn(size, size, generator=generator).to(device, torch_dtype)
            b = torch.randn(size, size, generator=generator).to(device, torch_dtype)
            flops = matmul_flops_counted(size, torch_dtype)
            product(a, b)
            seconds = [timed(lambda a=a, b=b: product(a, b))[1] for _ in range(repeats)]
            per_size[str(size)] = {"flops": flops, "best_s": min(seconds),
                                   "median_s": float(np.median(seconds)),
                                   "gflops": gflops(flops, min(seconds)),
                                   "gflops_median": gflops(flops, float(np.median(seconds)))}
    return {"threads": threads, "dtype": dtype, "device": str(device), "sizes": per_size,
            "gflops": max(s["gflops"] for s in per_size.values()), "load_avg": load_average()}


@dataclass
class BatchLog:
    """What the backbone saw during one Encoder.embed call: per batch, its tokens and mask and
    the forward's (start, end) wall-clock interval. Batches may run side by side
    (tokretrieve.encoding.parallel), so the forward time is the union of the intervals: the
    wall time during which at least one forward ran."""

    input_ids: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    intervals: list[tuple[float, float]] = field(default_factory=list)

    @property
    def forward_seconds(self) -> float:
        return busy_seconds(self.intervals)

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
    started = threading.local()  # one start per thread: forwards may overlap
    appending = threading.Lock()  # a batch's ids and mask at the same position of both lists

    def before(module, args, kwargs):
        ids = kwargs["input_ids"].detach().cpu().clone()
        mask = kwargs["attention_mask"].detach().cpu().clone()
        with appending:
            log.input_ids.append(ids)
            log.masks.append(mask)
        synchronize(kwargs["input_ids"].device)
        started.at = time.perf_counter()

    def after(module, args, output):
        synchronize(next(module.parameters()).device)
        log.intervals.append((started.at, time.perf_counter()))

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
        self.per_row_by_op: dict[int, dict[str, int]] = {}

    def row_flops(self, input_ids: torch.Tensor, mask: torch.Tensor) -> int:
        """FLOPs of one row of this batch's width (the batch's longest row, unpadded)."""
        width = int(mask.shape[1])
        if width not in self.per_row:
            row = int(torch.argmax(mask.sum(dim=1)))
            counts = count_forward_flops(self.backbone, input_ids[row:row + 1],
                                         mask[row:row + 1])
            self.per_row[width] = counts.pop("total")
            self.per_row_by_op[width] = counts
        return self.per_row[width]

    @property
    def by_op(self) -> dict[str, int]:
        """One row's FLOPs by op, summed over the widths counted so far."""
        totals: dict[str, int] = {}
        for counts in self.per_row_by_op.values():
            for op, n in counts.items():
                totals[op] = totals.get(op, 0) + n
        return totals

    def batch_flops(self, log: BatchLog) -> int:
        return sum(mask.shape[0] * self.row_flops(ids, mask)
                   for ids, mask in zip(log.input_ids, log.masks, strict=True))

    def batch_flops_by_op(self, log: BatchLog) -> dict[str, int]:
        """The logged batches' FLOPs by op, named as the profiler names them ("aten::addmm")."""
        totals: dict[str, int] = {}
        for ids, mask in zip(log.input_ids, log.masks, strict=True):
            self.row_flops(ids, mask)
            for op, n in self.per_row_by_op[int(mask.shape[1])].items():
                name = op.replace("aten.", "aten::", 1)
                totals[name] = totals.get(name, 0) + int(mask.shape[0]) * n
        return totals

    def check(self, log: BatchLog, rows: int = FLOP_CHECK_ROWS) -> dict[str, Any]:
        """Count a real multi-row slice of the first batch directly, against rows x per-row."""
        ids, mask = log.input_ids[0][:rows], log.masks[0][:rows]
        direct = count_forward_flops(self.backbone, ids, mask)["total"]
        scaled = ids.shape[0] * self.row_flops(log.input_ids[0], log.masks[0])
        return {"rows": int(ids.shape[0]), "width": int(mask.shape[1]), "direct": direct,
                "rows_x_per_row": scaled, "ratio": direct / scaled if scaled else float("nan")}


def busy_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def measure_encoding(encoder: Encoder, texts: Sequence[str], threads: int,
                     flops: FlopCache, references: dict[tuple[int, str], float],
                     warm_up: bool = True) -> tuple[dict[str, Any], np.ndarray]:
    """Time Encoder.embed over `texts` at `threads` torch threads (after a one-batch warm-up)
    and return its row of the table, with the embeddings."""
    with pinned(threads):
        if warm_up:
            encoder.embed(list(texts[:encoder.batch_size]))
        load_before = load_average()
        cpu_start = time.process_time()
        with observe_backbone(encoder.model.backbone) as log:
            embeddings, seconds = timed(lambda: encoder.embed(list(texts)))
        cpu_seconds = time.process_time() - cpu_start
        load_after = load_average()
    forward_s = log.forward_seconds
    total_flops = flops.batch_flops(log)
    forward_gflops = gflops(total_flops, forward_s)
    reference = references.get((threads, encoder.dtype))
    lengths = [len(ids) for ids in encoder.input_ids([t for t in texts if t.strip()])]
    predicted = padding_waste(lengths, length_sorted_batches(lengths, encoder.batch_size))
    row = {
        "dtype": encoder.dtype, "threads": threads, "batch_size": encoder.batch_size,
        "side_by_side": encoder.side_by_side,
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


def op_class(name: str) -> str:
    """The class of a profiled op (by its profiler name, "aten::addmm"): a matrix product (what
    the reference torch.mm stands for), attention (the SDPA kernels and their dispatchers), or
    other (norms, activations, copies, the encoder's own padding and pooling)."""
    if name in MATRIX_PRODUCT_OPS:
        return "matrix products"
    if "scaled_dot_product" in name:
        return "attention"
    return "other"


def time_breakdown(self_seconds: Mapping[str, float], flops: Mapping[str, int],
                   reference: float | None) -> dict[str, Any]:
    """Ops' self time and FLOPs summed by `op_class`: per class its seconds and share of all the
    ops' time, its FLOPs and share of all FLOPs, its GFLOP/s and their fraction of `reference`
    (a timed torch.mm's GFLOP/s). Self times exclude nested ops, so the classes partition the
    time spent inside torch ops."""
    classes: dict[str, dict[str, Any]] = {name: {"seconds": 0.0, "flops": 0, "ops": {}}
                                          for name in OP_CLASSES}
    for op, seconds in self_seconds.items():
        group = classes[op_class(op)]
        group["seconds"] += seconds
        group["ops"][op] = seconds
    for op, n in flops.items():
        classes[op_class(op)]["flops"] += int(n)
    ops_s = sum(group["seconds"] for group in classes.values())
    total_flops = sum(group["flops"] for group in classes.values())
    for group in classes.values():
        group["time_share"] = group["seconds"] / ops_s if ops_s > 0 else float("nan")
        group["flop_share"] = group["flops"] / total_flops if total_flops else float("nan")
        group["gflops"] = gflops(group["flops"], group["seconds"]) if group["flops"] else None
    breakdown = {"ops_s": ops_s, "flops": total_flops, "classes": classes}
    return refer_breakdown(breakdown, reference)


def refer_breakdown(breakdown: dict[str, Any], reference: float | None) -> dict[str, Any]:
    """Set (or reset) the breakdown's reference GFLOP/s and each class's fraction of it."""
    breakdown["matmul_gflops"] = reference
    for group in breakdown["classes"].values():
        group["fraction_of_matmul"] = (fraction_of(group["gflops"], reference)
                                       if group["gflops"] is not None else None)
    return breakdown


def measure_breakdown(encoder: Encoder, texts: Sequence[str], flops: FlopCache,
                      reference: float | None) -> dict[str, Any]:
    """Where Encoder.embed's time goes on one thread (batches one at a time: what each worker
    of side-by-side batches runs), by op class (`time_breakdown`), from torch.profiler's self
    CPU times, after a one-batch warm-up. `reference`: the one-thread torch.mm GFLOP/s of the
    encoder's dtype. The profiler's own cost shows in the docs/s beside the unprofiled rows."""
    with pinned(1):
        encoder.embed(list(texts[:encoder.batch_size]))
        with observe_backbone(encoder.model.backbone) as log, \
                torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as run:
            _, seconds = timed(lambda: encoder.embed(list(texts)))
    self_seconds: dict[str, float] = {}
    for event in run.key_averages():
        self_seconds[event.key] = self_seconds.get(event.key, 0.0) + event.self_cpu_time_total / 1e6
    breakdown = time_breakdown(self_seconds, flops.batch_flops_by_op(log), reference)
    return {"dtype": encoder.dtype, "threads": 1, "batch_size": encoder.batch_size,
            "docs": len(texts), "embed_s": seconds, "docs_per_s": len(texts) / seconds,
            "forward_s": log.forward_seconds, **breakdown}


def measure_bags(encoder: Encoder, embeddings: np.ndarray, bag_size: int, threads: int,
                 repeats: int = BAG_REPEATS) -> dict[str, Any]:
    """Encoder.bags (projection + top-k on the whole batch) on these embeddings: best and
    median of `repeats` calls after one warm-up."""
    with pinned(threads):
        bags = encoder.bags(embeddings, bag_size)
        seconds = [timed(lambda: encoder.bags(embeddings, bag_size))[1] for _ in range(repeats)]
    best, median = min(seconds), float(np.median(seconds))
    return {"bag_size": bag_size, "weighting": encoder.weighting, "threads": threads,
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
