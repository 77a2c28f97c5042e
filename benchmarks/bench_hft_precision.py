"""The HyperField study's students trained in float32 and in bfloat16 autocast, side by side.

One training step (forward, backward and the Adam update) of each student at the study's
default size: the HyperField student (1,024 + 2,048 HyperTensors over the 6,400-wide
Stage-1 input and the 2,048-wide tail, SmolLM2's 576-wide output), the MLP with its
parameter count on the same input, and the 2-layer transformer over the 32-token window
with that count too (width from the same rule as ``hyperlens hft``), batch 256. The loss
is the squared error to a fixed target in the output space, so the figure is the student's
own cost (the study's shortlist KL adds the same small cost to both precisions). Under
``hyperlens hft --precision bfloat16`` (and ``auto`` where the CPU has native bf16 units)
the forward pass runs in ``torch.autocast`` bfloat16, weights, optimiser and loss stay
float32. Rounds alternate the precisions so a busy machine slows both alike; the ratio of
the medians is the figure. The outputs of the two precisions on the same batch are
compared after the steps, and the float32 weights' forward in both precisions (relative
differences of the outputs: the cost of bf16 in the numbers beside its gain in time).
Results go to ``benchmarks/results/bench_hft_precision.json``::

    python benchmarks/bench_hft_precision.py               # 5 rounds of 2 steps
    python benchmarks/bench_hft_precision.py --students mlp --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import alternate, machine, medians  # noqa: E402

from hyperlens.functional import kernels as K  # noqa: E402
from hyperlens.hft.capture import Unembedding  # noqa: E402
from hyperlens.hft.model import (  # noqa: E402
    MLPStudent,
    TransformerStudent,
    count_parameters,
    mlp_hidden_for,
    transformer_width_for,
)
from hyperlens.hft.train import StudentConfig, build_model  # noqa: E402
from hyperlens.utils import atomic_write_json, retain_freed_memory  # noqa: E402

VOCAB, D1, D_TAIL, D_MODEL, WINDOW = 49_152, 6400, 2048, 576, 32


def students(g: torch.Generator) -> dict[str, torch.nn.Module]:
    """The three students at the study's default size, on random frozen tables."""
    U = Unembedding(torch.randn(VOCAB, D_MODEL, generator=g) / 24)
    lu = torch.log_softmax(torch.randn(VOCAB, generator=g), 0)
    hf = build_model(StudentConfig(), D1, D_TAIL, D_MODEL, 1152, U, lu)
    with torch.no_grad():
        hf.init_stage1(torch.randn(4096, D1, generator=g), torch.randn(4096, 1152, generator=g))
        for layer in (hf.stage1, hf.stage2):
            for c in (layer.c_neg, layer.c_mid, layer.c_pos):
                c.copy_(torch.randn(c.shape, generator=g) / 8)
    n = count_parameters(hf)
    mlp = MLPStudent(D1, D_TAIL, D_MODEL, mlp_hidden_for(n, D1 + D_TAIL, D_MODEL), U, lu)
    emb = torch.randn(VOCAB, D_MODEL, generator=g) / 24
    width = transformer_width_for(n, D_MODEL, WINDOW, D_MODEL, VOCAB)
    tf = TransformerStudent(emb, WINDOW, D_MODEL, width, U, lu, seed=1)
    for m in (mlp, tf):  # the zero-initialised output map would make every output zero
        torch.nn.init.normal_(m.out.weight if isinstance(m, TransformerStudent)
                              else m.net[2].weight, std=0.02)
    return {"hyperfield": hf, "mlp": mlp, "transformer": tf}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--students", nargs="+", default=["hyperfield", "mlp", "transformer"],
                    choices=["hyperfield", "mlp", "transformer"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "bench_hft_precision.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    retain_freed_memory()  # as the training loop does: steps reuse their buffers
    g = torch.Generator().manual_seed(0)
    built = students(g)
    ids = torch.randint(0, VOCAB, (a.batch, WINDOW), generator=g)
    ids[: a.batch // 8, WINDOW // 2:] = -1  # rows near the start of a text
    inputs = {"hyperfield": (torch.randn(a.batch, D1, generator=g),
                             torch.randn(a.batch, D_TAIL, generator=g)),
              "transformer": (ids.float(), None)}
    inputs["mlp"] = inputs["hyperfield"]
    target = torch.randn(a.batch, D_MODEL, generator=g) / 8
    rows: dict[str, Any] = {}
    for name in a.students:
        copies = {"float32": built[name], "bfloat16": copy.deepcopy(built[name])}
        opts = {p: torch.optim.Adam([q for q in m.parameters() if q.requires_grad], lr=1e-5)
                for p, m in copies.items()}
        x, tail = inputs[name]

        def step(prec: str) -> None:
            m, opt = copies[prec], opts[prec]
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bfloat16"):
                y, _ = m(x, tail)
            (y.float() - target).pow(2).mean().backward()
            opt.step()

        for prec in copies:
            step(prec)  # warm: first-call allocation, oneDNN primitives
        seconds, _ = alternate({p: partial(step, p) for p in copies}, a.rounds, a.steps,
                               label=name)
        med = medians(seconds)
        with torch.no_grad():
            ref = copies["float32"](x, tail)[0]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = copies["bfloat16"](x, tail)[0].float()
                same = copies["float32"](x, tail)[0].float()
        rows[name] = {"parameters": count_parameters(built[name]), "seconds_per_step": seconds,
                      "median_s_per_step": med, "speedup": med["float32"] / med["bfloat16"],
                      "output_rel_diff": float((low - ref).norm() / ref.norm()),
                      "forward_rel_diff": float((same - ref).norm() / ref.norm())}
        print(name, round(rows[name]["speedup"], 2), med, rows[name]["output_rel_diff"],
              rows[name]["forward_rel_diff"])
    results = {
        "benchmark": "hft_precision", "batch": a.batch, "rounds": a.rounds,
        "steps_per_round": a.steps, "students": rows,
        "native_bf16": K.features().bf16, **machine(),
        "note": "one training step (forward, backward, Adam) of each student at the study's "
                "default size in float32 and in bfloat16 autocast (float32 weights and "
                "optimiser); the precisions alternate their order within each round; compare "
                "the ratio. output_rel_diff: ||y_bf16 - y_fp32|| / ||y_fp32|| on the same batch "
                "after the timed steps (each precision took the same steps from the same "
                "weights); forward_rel_diff: the float32-trained weights' forward in bf16 "
                "autocast against float32 (the rounding alone).",
    }
    atomic_write_json(a.out, results)


if __name__ == "__main__":
    main()
