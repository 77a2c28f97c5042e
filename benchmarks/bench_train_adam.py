"""The training loop's Adam step on a CPU: PyTorch's per-tensor loop against its fused kernel.

The parameters are those of the default HyperField student (``hyperlens hft train``:
Stage 1 with 1,024 HyperTensors over the 6,400-wide input, Stage 2 with 2,048, SmolLM2's
576-wide output; every parameter trained, as in its end-to-end phase), each with a random
gradient. One optimizer step is timed both ways, rounds alternating the order; after the
same 20 steps from the same start the two sets of weights are compared (the fused kernel is
the same algorithm, so they differ by float rounding only). Results go to
``benchmarks/results/bench_train_adam.json``::

    python benchmarks/bench_train_adam.py               # 5 rounds of 5 steps
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import alternate, machine, medians  # noqa: E402

from hyperlens.hft.capture import Unembedding  # noqa: E402
from hyperlens.hft.train import StudentConfig, build_model  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "bench_train_adam.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    vocab = 49_152
    U = Unembedding(torch.randn(vocab, 576) / 24)  # frozen: a buffer, not a parameter
    model = build_model(StudentConfig(), 6400, 2048, 576, 1152, U,
                        torch.log_softmax(torch.randn(vocab), 0))
    params = [p for p in model.parameters()]
    n_params = sum(p.numel() for p in params)
    start = [p.detach().clone() for p in params]
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(p.shape, generator=g) for p in params]
    ways = {"per-tensor loop": {"fused": False, "foreach": False}, "fused": {"fused": True}}
    weights: dict[str, list[torch.Tensor]] = {}
    for w, kw in ways.items():  # the same 20 steps from the same start, both ways
        for p, s in zip(params, start, strict=True):
            p.data.copy_(s)
            p.grad = None
        opt = torch.optim.Adam(params, lr=3e-3, **kw)  # type: ignore[arg-type]
        for _ in range(20):
            for p, gr in zip(params, grads, strict=True):
                p.grad = gr
            opt.step()
        weights[w] = [p.detach().clone() for p in params]
    opts = {w: torch.optim.Adam(params, lr=1e-6, **kw)  # type: ignore[arg-type]
            for w, kw in ways.items()}
    for o in opts.values():
        o.step()  # state allocated before timing
    seconds, _ = alternate({w: o.step for w, o in opts.items()}, a.rounds, a.steps)
    med = medians(seconds)
    diff = max(float((x - y).abs().max()) for x, y in
               zip(weights["per-tensor loop"], weights["fused"], strict=True))
    results = {
        "benchmark": "train_adam", "model": "HyperField student, default size",
        "parameters": n_params, "rounds": a.rounds, "steps_per_round": a.steps,
        "seconds_per_step": seconds, "median_s_per_step": med,
        "speedup": med["per-tensor loop"] / med["fused"],
        "max_abs_weight_diff_after_20_steps": diff,
        **machine(),
        "note": "the two ways alternate their order within each round; compare the ratio",
    }
    atomic_write_json(a.out, results)
    print(round(results["speedup"], 1), n_params, diff)


if __name__ == "__main__":
    main()
