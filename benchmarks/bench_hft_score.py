"""Held-out scoring of several predictors: one pass for all of them against one pass each.

Every held-out figure of ``hyperlens hft`` (perplexity, full-vocabulary KL to the teacher,
agreement, top-1 / top-5) needs the teacher's log-probabilities over the whole vocabulary
at every row: SmolLM2's 49,152 x 576 unembedding and a float64 log-softmax. Scoring each
predictor alone forms them once per predictor; :func:`hyperlens.hft.evaluate.score_many`
forms them once per batch for all. Here five predictors as ``hft train`` scores its
baselines (uniform, a unigram, two n-gram-like tables, the teacher itself) on ``--rows``
rows whose final states are drawn at the teacher's scale; the figures of the two ways are
checked equal bit for bit. Rounds alternate the order; the ratio of the medians is the
figure. Results go to ``benchmarks/results/bench_hft_score.json``::

    python benchmarks/bench_hft_score.py                  # 1,024 rows, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import alternate, machine, medians  # noqa: E402

from hyperlens import models as hmodels  # noqa: E402
from hyperlens.hft.capture import CapturedSplit, Unembedding  # noqa: E402
from hyperlens.hft.evaluate import logprobs_from_final, score, score_many  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "bench_hft_score.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    U = Unembedding.from_model(hmodels.load("smollm2", device="cpu"))
    V = U.vocab_size
    g = torch.Generator().manual_seed(0)
    final = (torch.randn(a.rows, U.weight.shape[1], generator=g) * 3).numpy()
    sp = CapturedSplit({"final": final.astype(np.float16),
                        "target": torch.randint(0, V, (a.rows,), generator=g).numpy(),
                        "text": np.arange(a.rows) // 20}, a.rows // 20)
    tables = [torch.log_softmax(torch.randn(1, V, generator=g) * s, -1) for s in (1.0, 2.0, 3.0)]
    fns = {"uniform": lambda r: torch.full((r.stop - r.start, V), -float(np.log(V))),
           "unigram": lambda r: tables[0].expand(r.stop - r.start, -1),
           "table 2": lambda r: tables[1].expand(r.stop - r.start, -1),
           "table 3": lambda r: tables[2].expand(r.stop - r.start, -1),
           "teacher": logprobs_from_final(U, sp)}
    ways = {"one pass each": lambda: {k: score(f, sp, U) for k, f in fns.items()},
            "one pass for all": lambda: score_many(fns, sp, U)}
    seconds, got = alternate(ways, a.rounds)
    same = all(np.array_equal(got["one pass each"][k][m], got["one pass for all"][k][m])
               for k in fns for m in got["one pass each"][k])
    med = medians(seconds)
    results = {
        "benchmark": "hft_score", "model": "smollm2 (unembedding)", "rows": a.rows,
        "predictors": list(fns), "rounds": a.rounds, "seconds": seconds, "median_s": med,
        "speedup": med["one pass each"] / med["one pass for all"], "identical": same,
        **machine(),
        "note": "the two ways alternate their order within each round; compare the ratio",
    }
    atomic_write_json(a.out, results)
    print(round(results["speedup"], 2), "identical" if same else "DIFFERENT")


if __name__ == "__main__":
    main()
