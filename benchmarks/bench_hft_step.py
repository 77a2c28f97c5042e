"""The HyperField student's batch-1 step, part by part, each beside the way it was done before.

At batch 1 a step is a few large reads (the vocabulary product, the two routers) and a few
hundred small operations; this benchmark times the parts that changed, each way in the
same rounds (:func:`_timing.alternate`):

* ``router``: the routing product of one row with each layer's router, ``x @ W`` with
  ``W [d_in, heads * d_route]`` held row-major (as it was) against column-major (a
  transposed view of ``[heads * d_route, d_in]`` rows, as ``HyperTensorLayer`` holds it
  now). Each call takes the next of several copies (over 96 MB in all), so the router is
  read from memory, not from cache, as in a real step after the vocabulary product;
* ``sketch``: the Stage-1 sketch of one window, through the checked operators with the
  hashed n-grams as a coalesced sparse tensor against the fused path
  (``Featurizer.raw_sketch``: the n-gram entries added into the CountSketch buckets, no
  checks on inputs the featuriser built);
* ``step``: the whole step (rolling buffer to full-vocabulary log-probabilities, the
  vocabulary product in float16) as ``hft eval`` times it.

The default-size student (exact-tail featurisation, random weights: the cost does not
depend on their values) on SmolLM2's embeddings. Writes
``benchmarks/results/bench_hft_step.json``::

    python benchmarks/bench_hft_step.py [--rounds 15] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import alternate, machine, medians  # noqa: E402

from hyperlens.functional.sketch import CountSketch  # noqa: E402
from hyperlens.hft.capture import Unembedding  # noqa: E402
from hyperlens.hft.features import FeatureConfig, Featurizer  # noqa: E402
from hyperlens.hft.generate import RollingBuffer, Student  # noqa: E402
from hyperlens.hft.model import log_unigram  # noqa: E402
from hyperlens.hft.train import StudentConfig, build_model  # noqa: E402
from hyperlens.models import load  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_hft_step.json"


def checked_sketch(feat: Featurizer, ctx: np.ndarray, pos: np.ndarray) -> torch.Tensor:
    """The Stage-1 sketch the way it was taken before: every operator checks its input,
    and the n-grams are a coalesced sparse COO tensor sketched on their own."""
    cs, bs = feat.sketch.ops
    assert isinstance(cs, CountSketch)
    rows, cols, vals = feat._ngram_entries(ctx)
    sp = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])),
                                 torch.from_numpy(vals), (len(ctx), feat.d_raw),
                                 check_invariants=False).coalesce()
    y = feat._cs_dense.apply(feat._dense(ctx, pos)) + cs.apply(sp)
    return bs.apply(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=20, help="calls per way and round")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts to time (default: one, and every core)")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    threads = a.threads or sorted({1, cores})
    torch.set_grad_enabled(False)
    teacher = load("smollm2", device="cpu")
    V = int(teacher.module.get_output_embeddings().weight.shape[0])  # type: ignore[union-attr]
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, V, size=(2048, 32))
    fc = FeatureConfig(exact=4)
    feat = Featurizer(teacher.token_embeddings(), fc).fit(ctx, np.arange(len(ctx)) % 64)
    model = build_model(StudentConfig(), feat.d1, fc.d_tail, teacher.hidden_size,
                        teacher.hidden_size * 2, Unembedding.from_model(teacher),
                        log_unigram(torch.from_numpy(ctx.ravel()), V)).eval()
    student = Student(feat, model).with_vocab_dtype(torch.float16)
    m = student.model
    row, pos = ctx[:1], np.array([20])
    x1 = feat.stage1(row, pos)
    x2 = m.stage2_input(m.embed(x1), feat.tail(row))
    ids = [int(t) for t in ctx[1, :32]]

    def rotating(mats: list[torch.Tensor], fn: Any) -> Any:
        """``fn`` on the next of several copies each call: more bytes than the last-level
        cache between two reads of one copy, so each call reads from memory, as a real
        step does after the vocabulary product."""
        turn = [0]

        def way() -> Any:
            turn[0] = (turn[0] + 1) % len(mats)
            return fn(mats[turn[0]])
        return way

    layers = {"stage1": (m.stage1, x1), "stage2": (m.stage2, x2)}
    ways: dict[str, Any] = {}
    for name, (layer, x) in layers.items():
        copies = max(2, -(-(96 << 20) // (layer.router.numel() * 4)))  # > 96 MB in all
        plain = [layer.router.detach().contiguous() for _ in range(copies)]
        cols = [layer.router.detach().t().contiguous().t() for _ in range(copies)]
        ways[f"router {name}: row-major"] = rotating(plain, lambda w, x=x: x @ w)
        ways[f"router {name}: column-major"] = rotating(cols, lambda w, x=x: x @ w)
    ways["sketch: checked, sparse n-grams"] = lambda: checked_sketch(feat, row, pos)
    ways["sketch: fused"] = lambda: feat.raw_sketch(row, pos)

    def step() -> None:
        buf = RollingBuffer(fc.window, ids[0])
        for t in ids:
            c, q = buf.row()
            student.logprobs(c, q)
            buf.push(t)

    checks = {  # each new way against the old one, on the same inputs
        "sketch_maxdiff": float((checked_sketch(feat, row, pos)
                                 - feat.raw_sketch(row, pos)).abs().max()),
        **{f"router_{n}_maxdiff": float((x @ layer.router.detach().contiguous()
                                         - x @ layer.router).abs().max())
           for n, (layer, x) in layers.items()},
    }
    runs: dict[str, Any] = {}
    for n in threads:
        torch.set_num_threads(n)
        seconds, _ = alternate(ways, a.rounds, a.repeat, warm=True, label=f"{n} threads")
        step_s, _ = alternate({"step": step}, a.rounds, warm=True, label=f"{n} threads, step")
        med = {w: s * 1e3 for w, s in medians(seconds).items()}
        pairs = {f"router {ln}": (f"router {ln}: row-major", f"router {ln}: column-major")
                 for ln in layers}
        pairs["sketch"] = ("sketch: checked, sparse n-grams", "sketch: fused")
        runs[str(n)] = {
            "threads": n, "ms_per_call": med,
            "speedup": {k: med[old] / med[new] for k, (old, new) in pairs.items()},
            "saved_ms_per_token": sum(med[old] - med[new] for old, new in pairs.values()),
            "step_ms_per_token": medians(step_s)["step"] * 1e3 / len(ids),
            "step_tokens_per_s": len(ids) / medians(step_s)["step"],
        }
    res = {"benchmark": "hft_step", "rounds": a.rounds, "repeat": a.repeat, "runs": runs,
           "agreement": checks, **machine(),
           "note": "ms per call, medians over rounds of --repeat calls; the router ways read "
                   "the next of several copies each call (from memory); step: the "
                   "whole batch-1 step with the vocabulary product in float16, ms per token"}
    atomic_write_json(a.out, res)
    for n, r in runs.items():
        print(n, "threads:", {k: round(v, 2) for k, v in r["speedup"].items()},
              f"saved {r['saved_ms_per_token']:.2f} ms/token; step "
              f"{r['step_ms_per_token']:.2f} ms ({r['step_tokens_per_s']:.1f} tok/s)")


if __name__ == "__main__":
    main()
