"""The HyperField featuriser's fit: the heap trimmed every ~4k rows against left to grow.

``hft train`` keeps freed blocks in the heap (:func:`~hyperlens.utils.retain_freed_memory`,
so training steps do not fault their buffers in again). A pass over many batches whose
buffers change size from batch to batch (the sparse n-gram sketch of each batch) fragments
that heap: it grows with the rows. :meth:`~hyperlens.hft.features.Featurizer.fit` and the
stored-feature pass now trim it every ~4k rows (:func:`~hyperlens.utils.trimmed`).

* ``trimmed``: the featuriser as shipped;
* ``untrimmed``: the same code with the trim period set beyond the pass (how it ran before).

Each runs in its own process on real rows: the windows and positions of a finished
``hyperlens hft capture`` (its training shards listed again until ``--rows``), with its
teacher's token embeddings. Recorded per size: the anonymous resident memory that the fit
added (``RssAnon`` after it, above the same process before it), the process's high-water
mark above that baseline, the seconds, and whether both modes give the same statistics bit
for bit.

Usage: ``python benchmarks/bench_hft_fit_memory.py --capture-dir DIR [--rows 16384 65536]``
(``DIR`` a finished ``hyperlens hft capture``; by default the one ``hyperlens hft train``
makes with its defaults, captured first if missing); writes
``benchmarks/results/bench_hft_fit_memory.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from hyperlens.hft.capture import load_capture  # noqa: E402
from hyperlens.hft.rows import RowArray, RowFile  # noqa: E402
from hyperlens.utils import atomic_write_json, retain_freed_memory  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_hft_fit_memory.json"
#: the capture ``hyperlens hft train`` makes with its defaults
DEFAULT_CAPTURE = ROOT / "runs" / "hft-capture-smollm2-agnews-32000-8000-w32-l15-s0"


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(capture: str, mode: str, rows: int) -> dict[str, Any]:
    from hyperlens import models as hmodels
    from hyperlens.hft import features as F

    cap = load_capture(capture)
    sp = cap.train
    reps = -(-rows // len(sp))
    ctx = RowArray(RowFile(sp.arrays["ctx"].file.paths * reps).rows(0, rows))
    pos = np.tile(np.asarray(sp["pos"]), reps)[:rows]
    emb = hmodels.load(cap.config["model"], device="cpu").token_embeddings()
    if mode == "untrimmed":
        F.trim_every = lambda batch, rows=0: 1 << 40  # type: ignore[assignment]
    retain_freed_memory()  # as hft train runs it
    feat = F.Featurizer(emb, F.FeatureConfig(exact=8))
    anon0, hwm0 = _status_mb("RssAnon"), _status_mb("VmHWM")
    t0 = time.perf_counter()
    feat.fit(ctx, pos)  # type: ignore[arg-type]  # a RowArray reads like the array
    seconds = time.perf_counter() - t0
    digest = hashlib.sha256(b"".join(feat.stats[k].numpy().tobytes()
                                     for k in sorted(feat.stats))).hexdigest()[:16]
    return {"rows": rows, "mode": mode, "seconds": seconds,
            "anon_added_mb": _status_mb("RssAnon") - anon0,
            "peak_above_start_mb": _status_mb("VmHWM") - max(hwm0, anon0),
            "baseline_anon_mb": anon0, "stats_sha256": digest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capture-dir", default=str(DEFAULT_CAPTURE),
                    help="a finished capture (default: hft's default one, captured first "
                    "when missing)")
    ap.add_argument("--rows", type=int, nargs="+", default=[16_384, 65_536],
                    help="fit sizes (the untrimmed heap grows about 80 MB per 1k rows)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of each child (a student cell's own count)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--child", nargs=2, metavar=("MODE", "ROWS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        torch.set_num_threads(a.threads)
        print(json.dumps(child(a.capture_dir, a.child[0], int(a.child[1]))))
        return
    if not sys.platform.startswith("linux"):
        raise SystemExit("this benchmark reads /proc/self/status (Linux only)")
    ready_capture(a.capture_dir, str(DEFAULT_CAPTURE), str(ROOT))
    load_capture(a.capture_dir)  # a clear error before any child starts
    out = in_children(__file__, ["--capture-dir", a.capture_dir, "--threads", str(a.threads)],
                      [(m, rows) for rows in a.rows for m in ("untrimmed", "trimmed")])
    ratios = {}
    for rows in a.rows:
        un, tr = (next(r for r in out if r["rows"] == rows and r["mode"] == m)
                  for m in ("untrimmed", "trimmed"))
        ratios[str(rows)] = {
            "peak untrimmed / trimmed": un["peak_above_start_mb"]
            / max(1.0, tr["peak_above_start_mb"]),
            "memory left untrimmed / trimmed": un["anon_added_mb"]
            / max(1.0, tr["anon_added_mb"]),
            "seconds trimmed / untrimmed": tr["seconds"] / un["seconds"],
            "same statistics": un["stats_sha256"] == tr["stats_sha256"]}
    res = {"benchmark": "hft featuriser fit: heap trimmed every ~4k rows vs left to grow",
           "capture": str(Path(a.capture_dir).resolve()), "results": out, "ratios": ratios,
           "cpu": cpu_info(), "threads": a.threads, "torch": torch.__version__,
           "numpy": np.__version__}
    atomic_write_json(a.out, res)
    print(json.dumps(ratios, indent=1))


if __name__ == "__main__":
    main()
