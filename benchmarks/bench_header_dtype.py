"""The header's training steps with the frozen LM in float32 and in bfloat16, side by side.

SmolLM2 frozen, SST-2 training sentences, the text withheld (``hyperlens header --text
withheld``): one stage R step (the reconstruction header at the input embeddings, forward
and backward through all 30 blocks, batch 16) and one stage B step (the HDC header + head
entering at two thirds of the depth over the cached instruction, batch 16), each timed in
both precisions. Rounds alternate the precisions so a busy machine slows both alike; the
ratio of the medians is the figure. The same batch's NLL per token and head loss are
recorded in both precisions at initialisation, so the cost of bfloat16 in the numbers
shows beside its gain in time. Results go to ``benchmarks/results/bench_header_dtype.json``::

    python benchmarks/bench_header_dtype.py                # 5 rounds of 3 steps
    python benchmarks/bench_header_dtype.py --rounds 3 --steps 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hyperlens.config import RunContext  # noqa: E402
from hyperlens.experiments.header import HeaderRunConfig  # noqa: E402
from hyperlens.functional import kernels as K  # noqa: E402
from hyperlens.inject.header_arms import HeaderArm, prepare  # noqa: E402
from hyperlens.inject.header_recon import ReconHeader  # noqa: E402
from hyperlens.report import Report  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402


def setups(dtype: str, out: Path, n_train: int) -> dict[str, Any]:
    """The prepared run and the two trained modules (stage R and stage B) in ``dtype``."""
    cfg = HeaderRunConfig(text="withheld", n_train=n_train, n_val=32, n_eval=32, seeds=(0,))
    p = cfg.protocol(RunContext(device="cpu", dtype=dtype))
    run = prepare(p, out / dtype, Report("header", out_dir=out / dtype))
    return {"run": run, "R": ReconHeader(run, run.hdc_codes(0), 0),
            "B": HeaderArm(run, "hdc", 0)}


def step(s: dict[str, Any], stage: str, rows: torch.Tensor) -> float:
    """One forward and backward of ``stage`` on training rows ``rows``; the loss."""
    model = s[stage]
    model.train()
    model.zero_grad(set_to_none=True)
    if stage == "R":
        loss = model.nll(rows).mean()
    else:
        logits = model(rows)
        loss = torch.nn.functional.cross_entropy(logits, s["run"].y[rows])
    loss.backward()
    return float(loss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="steps timed per round and stage")
    ap.add_argument("--n-train", type=int, default=320)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "bench_header_dtype.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        s = {dt: setups(dt, Path(tmp), a.n_train) for dt in ("float32", "bfloat16")}
        train = torch.from_numpy(s["float32"]["run"].split.rows["train"])
        gen = torch.Generator().manual_seed(0)
        batches = [train[torch.randperm(len(train), generator=gen)[:16]]
                   for _ in range(a.steps)]
        seconds: dict[str, dict[str, list[float]]] = {
            st: {dt: [] for dt in s} for st in ("R", "B")}
        loss: dict[str, dict[str, float]] = {st: {} for st in ("R", "B")}
        for st in ("R", "B"):
            for dt in s:  # warm-up, and the loss of the same first batch at initialisation
                loss[st][dt] = step(s[dt], st, batches[0])
        for r in range(a.rounds):
            for st in ("R", "B"):
                for dt in (s if r % 2 == 0 else list(s)[::-1]):
                    t0 = time.perf_counter()
                    for b in batches:
                        step(s[dt], st, b)
                    seconds[st][dt].append((time.perf_counter() - t0) / len(batches))
            print(f"round {r + 1}/{a.rounds}", file=sys.stderr)
    med = {st: {dt: statistics.median(v) for dt, v in per.items()} for st, per in seconds.items()}
    results = {
        "benchmark": "header_dtype", "model": "smollm2", "dataset": "sst2 (train sentences)",
        "batch_size": 16, "rounds": a.rounds, "steps_per_round": a.steps,
        "stages": {"R": "reconstruction: header at the input embeddings, all 30 blocks",
                   "B": "HDC header + head entering at block 20 over the cached prefix"},
        "seconds_per_step": seconds, "median_s_per_step": med,
        "speedup_bf16": {st: med[st]["float32"] / med[st]["bfloat16"] for st in med},
        "loss_at_init": loss, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": K.cpu_info(),
        "loadavg": os.getloadavg(),
        "note": "precisions alternate within each round; compare the ratio, not the seconds",
    }
    atomic_write_json(a.out, results)
    print({st: round(v, 2) for st, v in results["speedup_bf16"].items()}, loss)


if __name__ == "__main__":
    main()
