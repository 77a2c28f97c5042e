"""The HyperField students' training rows: held in memory against read from the shards.

What ``hft train`` needs of a capture's training split besides the stored features: the
teacher's final state (the distillation target), the layer-l state and q/k/v z-scored (the
Stage-1 aux target) and the true token, for every row, batch after batch.

* ``arrays``: the shards' arrays concatenated into memory, the aux targets z-scored into
  one float16 array, the final states one tensor (how ``hft train`` held them before);
* ``rows``: :func:`~hyperlens.hft.capture.load_capture`'s row files, read per batch with
  ``pread`` and z-scored as read (:class:`~hyperlens.hft.rows.Standardised`).

Each runs in its own process (so its peak resident memory is its own) on a capture of
real SmolLM2 rows whose training shards are listed again until they reach ``--rows``
(the same bytes on disk, the real widths: 576-wide float16 states, 32-token windows).
Recorded per size: the process's peak resident memory above the Python + torch baseline
(measured in the same process before anything is read), the seconds to get the training
data ready, and the median time to read one batch of ``--batch`` random rows
(Stage-1: aux + target; Stage-2: final + target).

Usage: ``python benchmarks/bench_hft_rows.py [--capture-dir DIR] [--rows 250000 1000000]
[--threads 1]`` (``DIR`` a finished ``hyperlens hft capture``; by default the one
``hyperlens hft train`` makes with its defaults, captured first if missing); writes
``benchmarks/results/bench_hft_rows.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _timing import in_children, ready_capture  # noqa: E402

from hyperlens.functional.kernels import cpu_info  # noqa: E402
from hyperlens.hft.capture import CapturedSplit, load_capture  # noqa: E402
from hyperlens.hft.rows import RowArray, RowFile, Standardised  # noqa: E402
from hyperlens.hft.train import aux_stats  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_hft_rows.json"
#: the capture ``hyperlens hft train`` makes with its defaults
DEFAULT_CAPTURE = ROOT / "runs" / "hft-capture-smollm2-agnews-32000-8000-w32-l15-s0"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _repeated(sp: CapturedSplit, rows: int) -> CapturedSplit:
    """The split's shards listed again until ``rows`` rows (then cut to ``rows``)."""
    reps = -(-rows // len(sp))
    arrays: dict[str, Any] = {}
    for k, v in sp.arrays.items():
        if isinstance(v, RowArray):
            arrays[k] = RowArray(RowFile(v.file.paths * reps).rows(0, rows))
        else:
            arrays[k] = np.tile(v, reps)[:rows]
    return CapturedSplit(arrays, sp.n_texts * reps)


def _ready(mode: str, sp: CapturedSplit) -> dict[str, Any]:
    stats = aux_stats(sp)
    if mode == "rows":
        return {"final": sp.source("final"),
                "aux": Standardised([sp.source("state"), sp.source("qkv")], stats["mean"],
                                    stats["std"]),
                "target": torch.from_numpy(sp["target"].astype(np.int64))}
    held = {k: np.asarray(v) for k, v in sp.arrays.items()}  # every shard into memory
    n, step = len(sp), 16384
    aux = torch.empty(n, int(stats["mean"].numel()), dtype=torch.float16)
    for a in range(0, n, step):
        raw = np.concatenate([held["state"][a:a + step], held["qkv"][a:a + step]], 1)
        aux[a:a + step] = ((torch.from_numpy(raw.astype(np.float32)) - stats["mean"])
                           / stats["std"]).half()
    return {"final": torch.from_numpy(held["final"]), "aux": aux,
            "target": torch.from_numpy(held["target"].astype(np.int64)), "_held": held}


def _take(v: Any, idx: torch.Tensor) -> torch.Tensor:
    return v[idx] if isinstance(v, torch.Tensor) else v.take_rows(idx)


def child(capture: str, mode: str, rows: int, batch: int, batches: int) -> dict[str, Any]:
    base = _peak_mb()
    sp = _repeated(load_capture(capture).train, rows)
    t0 = time.perf_counter()
    data = _ready(mode, sp)
    ready = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    per: dict[str, list[float]] = {"stage 1": [], "stage 2": []}
    for _ in range(batches):
        idx = torch.randint(0, rows, (batch,), generator=gen)
        for name, keys in (("stage 1", ("aux", "target")), ("stage 2", ("final", "target"))):
            t1 = time.perf_counter()
            for k in keys:
                _take(data[k], idx).float()
            per[name].append(time.perf_counter() - t1)
    return {"rows": rows, "mode": mode, "peak_mb_above_baseline": _peak_mb() - base,
            "baseline_mb": base, "ready_s": ready,
            **{f"{k} batch ms": 1e3 * statistics.median(v) for k, v in per.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capture-dir", default=str(DEFAULT_CAPTURE),
                    help="a finished capture (default: hft's default one, captured first "
                    "when missing)")
    ap.add_argument("--rows", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of each child (a student cell's own count)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--child", nargs=2, metavar=("MODE", "ROWS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        torch.set_num_threads(a.threads)
        res = child(a.capture_dir, a.child[0], int(a.child[1]), a.batch, a.batches)
        print(json.dumps(res))
        return
    ready_capture(a.capture_dir, str(DEFAULT_CAPTURE), str(ROOT))
    load_capture(a.capture_dir)  # a clear error before any child starts
    args = ["--capture-dir", a.capture_dir, "--batch", str(a.batch), "--batches",
            str(a.batches), "--threads", str(a.threads)]
    out = in_children(__file__, args, [(m, rows) for rows in a.rows for m in ("arrays", "rows")])
    ratios = {}
    for rows in a.rows:
        arr, rf = (next(r for r in out if r["rows"] == rows and r["mode"] == m)
                   for m in ("arrays", "rows"))
        ratios[str(rows)] = {
            "memory arrays / rows": arr["peak_mb_above_baseline"]
            / max(1.0, rf["peak_mb_above_baseline"]),
            "stage 1 batch rows / arrays": rf["stage 1 batch ms"] / arr["stage 1 batch ms"],
            "stage 2 batch rows / arrays": rf["stage 2 batch ms"] / arr["stage 2 batch ms"]}
    res = {"benchmark": "hft training rows: in memory vs read from the shards",
           "capture": str(Path(a.capture_dir).resolve()), "batch": a.batch,
           "batches": a.batches, "results": out, "ratios": ratios, "cpu": cpu_info(),
           "threads": a.threads, "torch": torch.__version__,
           "numpy": np.__version__}
    atomic_write_json(a.out, res)
    print(json.dumps(ratios, indent=1))


if __name__ == "__main__":
    main()
