"""The Ray executor against the local one, side by side in one run.

(a) per-task overhead: ``--n-noop`` cells that do nothing, and ``--n-cells`` real transfer
    cells (SST-2 pool of ``hyperlens transfer``'s default protocol from the embedding cache,
    minilm <-> glove-50d, ridge, 500 anchors, 4,096-d codes), each through
    ``hyperlens.run.run_cells`` with the local executor and on a private Ray instance with
    ``--cpus`` CPUs: one task at a time (latency; the difference is the per-task overhead)
    and all at once (throughput with every worker busy). Ray's workers are warmed up first
    (one wave of the same tasks), so worker start-up is reported separately.
(b) sharded embedding of the first ``--n-embed`` SST-2 training sentences with MiniLM: one
    local pass against shards of ``--shard-size`` texts on ``--cpus`` Ray actors (each
    loads the model once; the time includes their start-up).

Every Ray result is compared with the local one bit for bit. Results go to
``benchmarks/results/bench_executor.json``. Run from the project root::

    python benchmarks/bench_executor.py
    python benchmarks/bench_executor.py --n-embed 2000 --n-cells 2   # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HYPERLENS_PROGRESS", "0")
# Ray workers of the private instance import this source tree
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)

from bench_embed import sst2_sentences  # noqa: E402

from hyperlens.run import Cell, Ledger, LocalExecutor, RayExecutor, Task, run_cells  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402


def noop() -> dict[str, Any]:
    """A cell that does nothing."""
    return {}


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch and BLAS on one thread, as in a Ray task that asks for one CPU."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(n)


def _timed(cells: list[Cell], ex: Any, one_at_a_time: bool) -> tuple[float, Ledger]:
    led = Ledger(None, "bench")
    start = time.perf_counter()
    if one_at_a_time:
        for c in cells:
            run_cells([c], led, ex)
    else:
        run_cells(cells, led, ex)
    return time.perf_counter() - start, led


def _strip(led: Ledger) -> dict[str, Any]:
    return {k: {m: v for m, v in r["result"].items() if m != "fit_seconds"}
            for k, r in led.cells.items()}


def bench_cells(ex: RayExecutor, n_noop: int, n_cells: int) -> dict[str, Any]:
    from hyperlens.align.sweep import CeilingSpec, TransferSpec, TransferSweep
    from hyperlens.experiments.transfer import TransferConfig

    out: dict[str, Any] = {}
    noops = [Cell({"i": i}, Task(noop)) for i in range(n_noop)]
    t0 = time.perf_counter()
    _timed(noops, ex, False)  # starts the workers
    out["ray_worker_warmup_s"] = time.perf_counter() - t0
    loc = LocalExecutor()
    tl, _ = _timed(noops, loc, True)
    tr1, _ = _timed(noops, ex, True)
    trn, _ = _timed(noops, ex, False)
    out["noop"] = {"n": n_noop, "local_per_task_ms": 1e3 * tl / n_noop,
                   "ray_one_at_a_time_per_task_ms": 1e3 * tr1 / n_noop,
                   "ray_all_at_once_per_task_ms": 1e3 * trn / n_noop}

    cfg = TransferConfig(models=["minilm", "glove-50d"], pair=["minilm", "glove-50d"],
                         seeds=[42, 123, 456])
    protocol = cfg.protocol()
    run = TransferSweep(cfg.design(), protocol, Ledger(None, protocol.fingerprint()),
                        executor=ex)
    specs = [(t, s, seed) for seed in cfg.seeds for t, s in (("minilm", "glove-50d"),
                                                               ("glove-50d", "minilm"))]
    specs = specs[:n_cells]
    for _, s, seed in specs:  # the ceilings these cells read (not timed)
        run.ceiling(CeilingSpec(s, cfg.dataset, seed, cfg.hdc_dim))
    transfers = [TransferSpec(t, s, cfg.dataset, "ridge", "500", seed, cfg.hdc_dim)
                 for t, s, seed in specs]
    cells = [Cell(spec.key(), run._transfer_task(spec)) for spec in transfers]
    t0 = time.perf_counter()
    _timed(cells, ex, False)  # workers import the transfer code once
    out["ray_transfer_warmup_s"] = time.perf_counter() - t0
    tl, led_l = _timed(cells, loc, True)
    with _one_thread():  # what a Ray task with num_cpus=1 runs with
        tl1, led_l1 = _timed(cells, loc, True)
    tr1, led_1 = _timed(cells, ex, True)
    trn, led_n = _timed(cells, ex, False)
    same = _strip(led_l) == _strip(led_l1) == _strip(led_1) == _strip(led_n)
    out["transfer_cell"] = {
        "n": len(cells), "cell": "ridge, 500 anchors, 4096-d, SST-2 (3000 train / 500 test)",
        "local_per_cell_s": tl / len(cells),
        "local_one_thread_per_cell_s": tl1 / len(cells),
        "ray_one_at_a_time_per_cell_s": tr1 / len(cells),
        "ray_all_at_once_per_cell_s": trn / len(cells),
        "overhead_per_cell_s": (tr1 - tl1) / len(cells),
        "identical_results": bool(same)}
    return out


def bench_embed(ex: RayExecutor, n: int, shard_size: int, local_default: bool) -> dict[str, Any]:
    from hyperlens.models import embed, load

    texts = sst2_sentences(n)
    h = load("minilm", device="cpu")
    embed(texts[:64], h)  # warm the local path
    out: dict[str, Any] = {"n_texts": len(texts), "model": "minilm", "shard_size": shard_size}
    t0 = time.perf_counter()
    with _one_thread():  # what each Ray actor (one CPU) runs with
        x_local1 = embed(texts, h, batch_size=32)
    out["local_one_thread_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_ray = embed(texts, h, batch_size=32, executor=ex, shard_size=shard_size)
    out["ray_s"] = time.perf_counter() - t0
    out["identical_to_local_one_thread"] = bool(np.array_equal(x_local1, x_ray))
    if local_default:
        t0 = time.perf_counter()
        x_local = embed(texts, h, batch_size=32)
        out["local_default_threads_s"] = time.perf_counter() - t0
        out["identical_to_local_default_threads"] = bool(np.array_equal(x_local, x_ray))
        out["max_abs_diff_to_local_default_threads"] = float(np.abs(x_local - x_ray).max())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the private Ray instance")
    ap.add_argument("--n-noop", type=int, default=40)
    ap.add_argument("--n-cells", type=int, default=4)
    ap.add_argument("--n-embed", type=int, default=10_000)
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--skip", nargs="*", default=[], choices=["cells", "embed"])
    ap.add_argument("--no-local-default-embed", action="store_true",
                    help="skip the local embedding pass with the default thread count (slow "
                         "under load)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_executor.json"))
    ap.add_argument("--merge", action="store_true",
                    help="keep the parts of an existing --out file that this run skips")
    args = ap.parse_args()
    import ray

    results: dict[str, Any] = {
        "benchmark": "Ray executor vs local executor",
        "torch": torch.__version__, "ray": ray.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_at_start": os.getloadavg(),
        "note": "shared 2-core machine under heavy load; Ray's workers are separate processes "
                "and so get a larger share of a contended CPU than one local process",
    }
    with RayExecutor(num_cpus=args.cpus, object_store_mb=300) as ex:
        results["ray_instance"] = ex.describe()
        if "cells" not in args.skip:
            results["cells"] = bench_cells(ex, args.n_noop, args.n_cells)
            print(results["cells"], flush=True)
        if "embed" not in args.skip:
            results["embed"] = bench_embed(ex, args.n_embed, args.shard_size,
                                           not args.no_local_default_embed)
            print(results["embed"], flush=True)
    results["load_average_at_end"] = os.getloadavg()
    if args.merge and Path(args.out).exists():
        import json

        old = json.loads(Path(args.out).read_text())
        for part in ("cells", "embed"):
            if part in old and (part in args.skip or part not in results):
                results[part] = old[part]
            elif part in old:
                results[f"{part}_previous_run"] = old[part]
        results["previous_run_load_average"] = [old.get("load_average_at_start"),
                                                old.get("load_average_at_end")]
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
