"""The HyperField students' distillation target: full vocabulary against the shortlist.

One training step's vocabulary-wide work, forward and backward with respect to the
student's final state ``y [B, d]``, on SmolLM2's real unembedding (49,152 x 576) and real
teacher final states (SST-2 sentences through the offline model):

* ``full``: teacher logits from the final state, student logits ``y @ W_U^T + b``, the
  fused KL + hard-label loss (:func:`hyperlens.hft.model.distill_loss`) and its backward;
* ``shortlist k``: :func:`hyperlens.hft.shortlist.shortlist_loss` on the batch's union of
  the teacher's top-k tokens with ``m`` sampled negatives, and its backward; the teacher's
  top-k and log normaliser are computed once per row for a whole run
  (:func:`~hyperlens.hft.shortlist.teacher_targets`), timed separately per row.

The two run interleaved in one process, each the median of ``rounds`` rounds of ``steps``
steps, in the training products' precision (bfloat16 where the CPU has native bf16, else
float32, as ``hft train`` chooses) and in float32. Also recorded: the mean shortlist size
and the teacher's probability mass outside it (how much the grouped tail carries).

Usage: ``python benchmarks/bench_hft_target.py [--threads N]``; writes
``benchmarks/results/bench_hft_target.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench_embed import sst2_sentences  # noqa: E402

from hyperlens.functional.kernels import cpu_info, features  # noqa: E402
from hyperlens.hft.capture import Unembedding  # noqa: E402
from hyperlens.hft.model import distill_loss  # noqa: E402
from hyperlens.hft.shortlist import Shortlist, shortlist_loss, teacher_targets  # noqa: E402
from hyperlens.models import load  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_hft_target.json"


class _Bias(nn.Module):
    """The part of a student the target reads besides ``y``: its trainable logit bias."""

    def __init__(self, U: Unembedding, prior: torch.Tensor) -> None:
        super().__init__()
        self.unembed = U
        self.unigram = nn.Parameter(prior.clone())

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.unembed(y) + self.unigram


@torch.no_grad()
def teacher_finals(n_rows: int) -> tuple[Unembedding, torch.Tensor, torch.Tensor]:
    """SmolLM2's unembedding, and the final states and next tokens of ``n_rows`` positions."""
    m = load("smollm2", device="cpu")
    U = Unembedding.from_model(m)
    finals, targets = [], []
    have = 0
    for text in sst2_sentences(4 * n_rows):
        ids = m.tokenizer(text, return_tensors="pt")["input_ids"][:, :64]
        if ids.shape[1] < 2:
            continue
        out = m.module(input_ids=ids, output_hidden_states=True)
        fin = out.hidden_states[-1][0, :-1].float()
        if not finals:  # the last hidden state is the one the unembedding reads
            torch.testing.assert_close(U(fin), out.logits[0, :-1].float(), atol=1e-2, rtol=1e-3)
        finals.append(fin)
        targets.append(ids[0, 1:])
        have += len(fin)
        if have >= n_rows:
            break
    return U, torch.cat(finals)[:n_rows], torch.cat(targets)[:n_rows]


def _step_full(model: _Bias, y: torch.Tensor, final: torch.Tensor, target: torch.Tensor
               ) -> None:
    with torch.no_grad():
        t = model.unembed(final)
    loss, _, _ = distill_loss(model.logits(y), t, target, 0.1)
    loss.backward()


def _step_short(model: _Bias, y: torch.Tensor, final: torch.Tensor, target: torch.Tensor,
                tt: dict[str, torch.Tensor], sl: Shortlist, gen: torch.Generator) -> None:
    loss, _, _ = shortlist_loss(model, y, final, tt["topk"], tt["lse"], target, sl, 0.1, gen)
    loss.backward()


def bench(U: Unembedding, final: torch.Tensor, target: torch.Tensor, dtype: torch.dtype,
          ks: list[int], negatives: int, batch: int, steps: int, rounds: int
          ) -> dict[str, Any]:
    U.compute_dtype = dtype
    prior = torch.log_softmax(torch.bincount(target, minlength=U.vocab_size).float() + 0.1, -1)
    model = _Bias(U, prior)
    d = final.shape[1]
    gen = torch.Generator().manual_seed(0)
    n = final.shape[0]
    starts = [(i * batch) % max(1, n - batch) for i in range(steps)]
    ys = [(final[a:a + batch] + 0.5 * torch.randn(batch, d, generator=gen)).requires_grad_(True)
          for a in starts]
    teacher_targets(final[:64], U, 1)  # warm-up (the bf16 copy of the unembedding)
    tts, precompute = {}, {}
    for k in ks:
        t0 = time.perf_counter()
        tts[k] = teacher_targets(final, U, k)
        precompute[k] = (time.perf_counter() - t0) / n
    sls = {k: Shortlist(U, prior, negatives) for k in ks}
    times: dict[str, list[float]] = {"full": [], **{f"shortlist {k}": [] for k in ks}}
    for name in times:  # warm-up
        _one(name, model, ys[:1], final, target, starts[:1], batch, tts, sls, gen)
    for _ in range(rounds):
        for name in times:
            t0 = time.perf_counter()
            _one(name, model, ys, final, target, starts, batch, tts, sls, gen)
            times[name].append((time.perf_counter() - t0) / steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    sizes = {}
    outside = {}
    for k in ks:
        S_sizes, mass = [], []
        for a in starts:
            tk = tts[k]["topk"][a:a + batch].long()
            S = torch.unique(torch.cat([tk.reshape(-1), target[a:a + batch]]))
            S_sizes.append(len(S))
            with torch.no_grad():
                lp = U(final[a:a + batch])[:, S] - tts[k]["lse"][a:a + batch, None]
            mass.append(float(1 - lp.exp().sum(-1).mean()))
        sizes[k] = statistics.mean(S_sizes)
        outside[k] = statistics.mean(mass)
    return {"dtype": str(dtype).replace("torch.", ""), "seconds_per_step": med,
            "speedup_vs_full": {k: med["full"] / v for k, v in med.items() if k != "full"},
            "precompute_seconds_per_row": {str(k): v for k, v in precompute.items()},
            "mean_shortlist_size": {str(k): v for k, v in sizes.items()},
            "teacher_mass_outside": {str(k): v for k, v in outside.items()}}


def _one(name: str, model: _Bias, ys: list[torch.Tensor], final: torch.Tensor,
         target: torch.Tensor, starts: list[int], batch: int, tts: dict[int, Any],
         sls: dict[int, Shortlist], gen: torch.Generator) -> None:
    for y, a in zip(ys, starts, strict=True):
        f, t = final[a:a + batch], target[a:a + batch]
        if name == "full":
            _step_full(model, y, f, t)
        else:
            k = int(name.split()[1])
            _step_short(model, y, f, t, {q: v[a:a + batch] for q, v in tts[k].items()},
                        sls[k], gen)
        y.grad = None
        model.unigram.grad = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--negatives", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    U, final, target = teacher_finals(a.rows)
    dtypes = [torch.float32] + ([torch.bfloat16] if features().bf16 else [])
    res = {"rows": int(final.shape[0]), "batch": a.batch, "steps": a.steps, "rounds": a.rounds,
           "negatives": a.negatives, "vocab": U.vocab_size, "d": int(final.shape[1]),
           "runs": [bench(U, final, target, dt, a.k, a.negatives, a.batch, a.steps, a.rounds)
                    for dt in dtypes],
           "cpu": cpu_info(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "note": "interleaved runs on a shared machine; compare the ratios, not the seconds"}
    atomic_write_json(a.out, res)
    for r in res["runs"]:
        print(r["dtype"], {k: round(v * 1e3, 1) for k, v in r["seconds_per_step"].items()},
              "ms/step; speed-up", {k: round(v, 2) for k, v in r["speedup_vs_full"].items()})


if __name__ == "__main__":
    main()
