"""A HyperField student's training step on a CPU: the HyperTensor layer written directly
against the layer as it runs.

Three ways. The direct one normalises all ``K x d_in`` planes before the product with the
input and forms the output as a dense ``[B, 3K]`` coefficient matrix (each row holding the
``3 * heads * top_k`` picked coefficients, the rest zeros) times the stacked controls. The
layer divides ``x . v_k`` by ``||v_k||`` instead and sums only the picked control rows
(``embedding_bag``). "dense product" takes its signed distances from the dense ``[B, K]``
product of the input with every plane, gathered at the picks; the layer as it runs on a
CPU computes only the picked products (a sampled matrix product,
:func:`hyperlens.hft.layer.picked_dot`). All three are the same function to float32
rounding. One forward and backward of the default student (Stage 1: 1,024 HyperTensors
over the 6,400-wide input; Stage 2: 2,048 over Stage 1's output and the tail; SmolLM2's
576-wide output; batch 256, every parameter trained; the heap keeps freed blocks, as in
the training loop) is timed each way, rounds alternating the order; the outputs and
gradients are compared on the same batch. Results go to
``benchmarks/results/bench_hft_layer.json``::

    python benchmarks/bench_hft_layer.py               # 5 rounds of 3 steps
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import alternate, in_context, machine, medians  # noqa: E402

from hyperlens.hft.capture import Unembedding  # noqa: E402
from hyperlens.hft.layer import HyperTensorLayer  # noqa: E402
from hyperlens.hft.train import StudentConfig, build_model  # noqa: E402
from hyperlens.utils import atomic_write_json, retain_freed_memory  # noqa: E402


def direct_forward(layer: HyperTensorLayer, x: torch.Tensor) -> torch.Tensor:
    """The layer's training forward the direct way: unit planes, then the dense product."""
    idx, w, _ = layer._pick(x)
    s = (x @ F.normalize(layer.normal, dim=1).T).gather(1, idx) - layer.offset[idx]
    u_neg, u_pos = layer._band_weights(s, idx)
    n = layer.n_tensors
    A = x.new_zeros(x.shape[0], 3 * n).scatter(
        1, torch.cat([idx, idx + n, idx + 2 * n], 1),
        torch.cat([w * u_neg, w * (1 - u_neg - u_pos), w * u_pos], 1))
    return A @ layer.controls()


def direct() -> Any:
    """The layer's forward replaced by :func:`direct_forward` (restored on exit)."""
    return mock.patch.object(HyperTensorLayer, "forward",
                             lambda self, x, return_info=False: direct_forward(self, x))


def dense_product() -> Any:
    """The layer with its signed distances from the dense ``[B, K]`` product, gathered."""
    return mock.patch.object(HyperTensorLayer, "_sampled_pays", lambda self, x: False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "bench_hft_layer.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    retain_freed_memory()  # as the training loop does: steps reuse their buffers
    g = torch.Generator().manual_seed(0)
    vocab, d1, d_tail = 49_152, 6400, 2048
    U = Unembedding(torch.randn(vocab, 576, generator=g) / 24)
    model = build_model(StudentConfig(), d1, d_tail, 576, 1152, U,
                        torch.log_softmax(torch.randn(vocab, generator=g), 0))
    with torch.no_grad():
        model.init_stage1(torch.randn(4096, d1, generator=g), torch.randn(4096, 1152, generator=g))
        for layer in (model.stage1, model.stage2):
            for c in (layer.c_neg, layer.c_mid, layer.c_pos):
                c.copy_(torch.randn(c.shape, generator=g) / 8)
    x1 = torch.randn(a.batch, d1, generator=g)
    tail = torch.randn(a.batch, d_tail, generator=g)
    target = torch.randn(a.batch, 576, generator=g)
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        y, _ = model(x1, tail)
        (y - target).pow(2).mean().backward()
        return y.detach()

    ways: dict[str, Any] = {"direct": direct, "dense product": dense_product,
                            "layer": contextlib.nullcontext}
    outputs = {}
    for w, ctx in ways.items():
        with ctx():
            outputs[w] = (step(), [p.grad.clone() if p.grad is not None else None
                                   for p in params])
            step()  # warm
    seconds, _ = alternate({w: partial(in_context, ctx, step) for w, ctx in ways.items()},
                           a.rounds, a.steps)
    med = medians(seconds)
    (y0, g0), (y1, g1) = outputs["direct"], outputs["layer"]

    def rel_diff(ga: list[Any], gb: list[Any]) -> float:
        return max(float((p - q).abs().max() / p.abs().max().clamp_min(1e-30))
                   for p, q in zip(ga, gb, strict=True) if p is not None and q is not None)

    rel = rel_diff(g0, g1)
    results = {
        "benchmark": "hft_layer", "model": "HyperField student, default size",
        "parameters": sum(p.numel() for p in params), "batch": a.batch,
        "rounds": a.rounds, "steps_per_round": a.steps,
        "seconds_per_step": seconds, "median_s_per_step": med,
        "speedup": med["direct"] / med["layer"],
        "speedup_picked_over_dense_product": med["dense product"] / med["layer"],
        "max_rel_grad_diff_picked_vs_dense_product": rel_diff(outputs["dense product"][1], g1),
        "max_abs_output_diff": float((y0 - y1).abs().max()),
        "max_rel_grad_diff": rel,
        **machine(),
        "note": "forward and backward of the whole student (no optimizer step); the two "
                "ways alternate their order within each round; compare the ratio",
    }
    atomic_write_json(a.out, results)
    print(round(results["speedup"], 2), med, results["max_abs_output_diff"], rel)


if __name__ == "__main__":
    main()
