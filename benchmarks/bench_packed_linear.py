"""bfloat16 linear maps for inference on a CPU: PyTorch's default path against oneDNN's
linear on weights packed once (:mod:`hyperlens.functional.packed`).

Two measurements, each both ways with rounds alternating the order, one thread:

* the vocabulary product of a token-by-token decoder, ``[B, 576] @ W.T`` with SmolLM2's
  ``49,152 x 576`` unembedding in bfloat16, at ``B`` = 1, 8 and 512 (the HyperField
  student's largest product at batch 1), outputs compared bit for bit;
* SmolLM2 itself as a bfloat16 copy decoding 64 tokens with its KV cache (the teacher of
  ``hyperlens hft``'s speed check), every ``nn.Linear`` packed against none, the last
  logits compared.

Results go to ``benchmarks/results/bench_packed_linear.json``::

    python benchmarks/bench_packed_linear.py               # 5 rounds
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import alternate, machine, medians  # noqa: E402

from hyperlens import models as hmodels  # noqa: E402
from hyperlens.functional.packed import PackedLinear, pack_linears, packable  # noqa: E402
from hyperlens.hft.capture import in_dtype  # noqa: E402
from hyperlens.models.arch import cache_kwarg  # noqa: E402
from hyperlens.utils import atomic_write_json, retain_freed_memory  # noqa: E402


def products(x: torch.Tensor, W: torch.Tensor, lin: PackedLinear
             ) -> dict[str, Callable[[], Any]]:
    """The vocabulary product of ``x`` both ways."""
    return {"plain": lambda: x @ W.T, "packed": lambda: lin(x)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "bench_packed_linear.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    retain_freed_memory()
    teacher = hmodels.load("smollm2", device="cpu")
    module: Any = teacher.module
    W = module.get_output_embeddings().weight.detach().bfloat16()
    if not packable(W):
        raise SystemExit("this CPU or torch has no native bfloat16 oneDNN linear: nothing to "
                         "compare (the packed path is not used here).")
    lin = PackedLinear(W)
    med: dict[str, dict[str, float]] = {}
    same: dict[str, bool] = {}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in (1, 8, 512):
            x = torch.randn(b, W.shape[1], generator=g).bfloat16()
            med[str(b)] = medians(alternate(products(x, W, lin), a.rounds,
                                            50 if b < 512 else 3, warm=True)[0])
            same[str(b)] = bool(torch.equal(x @ W.T, lin(x)))
            print(f"vocabulary product, batch {b}: {med[str(b)]}", file=sys.stderr)
        low: Any = in_dtype(teacher, "bfloat16").module
        packed: Any = copy.deepcopy(low)
        n_packed = pack_linears(packed)
        name = cache_kwarg(low)
        ids = list(range(100, 164))

        def decode(mod: Any) -> torch.Tensor:
            past, tok = None, torch.tensor([[1]])
            for t in ids:
                out = mod(input_ids=tok, use_cache=True, **{name: past})
                past, tok = getattr(out, name), torch.tensor([[t]])
            return out.logits

        steps = medians(alternate({"plain": lambda: decode(low),
                                   "packed": lambda: decode(packed)}, a.rounds, warm=True)[0])
        med["teacher step"] = {w: s / len(ids) for w, s in steps.items()}
        same["teacher step"] = bool(torch.equal(decode(low), decode(packed)))
    results = {
        "benchmark": "packed_linear", "vocabulary": list(W.shape), "rounds": a.rounds,
        "median_s": med, "speedup": {k: v["plain"] / v["packed"] for k, v in med.items()},
        "same_bits": same, "teacher_linears_packed": n_packed, "teacher_tokens": len(ids),
        **machine(),
        "note": "teacher step: seconds per token of a 64-token KV-cache decode; the two ways "
                "alternate their order within each round; compare the ratio",
    }
    atomic_write_json(a.out, results)
    print({k: round(v, 2) for k, v in results["speedup"].items()}, same)


if __name__ == "__main__":
    main()
