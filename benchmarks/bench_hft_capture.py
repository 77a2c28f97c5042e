"""The HyperField capture's teacher forward: as it was, ended early, and in bfloat16.

SmolLM2 over AG News training texts, batches of 16 texts sorted by length (the capture's
own batching), one thread. Three ways to get the states the capture stores (the final
state, the layer-15 state and the q / k / v of three heads):

- ``float32, full forward``: the whole model, its vocabulary product over every position
  included, as the capture ran it before (the baseline);
- ``float32, ended early``: the same forward ended once the last recorded state is out, so
  the vocabulary product never runs (the same numbers, bit for bit);
- ``bfloat16, ended early``: a bfloat16 copy of the teacher (``hyperlens hft capture
  --dtype bfloat16``, the default where the CPU has native bfloat16 units).

The stored shard arrays come from :func:`hyperlens.hft.capture.shard_arrays` for the two
ended-early ways, so what is timed is what the capture runs. Rounds alternate the order so a
busy machine slows each alike; the ratios of the medians are the figures. What bfloat16
changes in the teacher is recorded beside its gain: the final states' largest difference
from float32, and how often the teacher's top-1 next token (through the float32
unembedding) agrees. Results go to ``benchmarks/results/bench_hft_capture.json``::

    python benchmarks/bench_hft_capture.py                # 64 texts, 3 rounds
    python benchmarks/bench_hft_capture.py --texts 32 --rounds 2
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

from hyperlens import data as hdata, models as hmodels  # noqa: E402
from hyperlens.hft.capture import (  # noqa: E402
    CaptureConfig,
    Unembedding,
    _tokenize,
    capture_sites,
    in_dtype,
    padded_batches,
    shard_arrays,
)
from hyperlens.models.hooks import capture  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402


def full_forward(teacher: Any, seqs: list[list[int]], cfg: CaptureConfig) -> None:
    """The capture's forward as it ran before: every batch through the whole model."""
    with torch.no_grad(), capture(teacher, capture_sites(cfg.layer, teacher.num_layers)):
        for _, ids, mask in padded_batches(seqs, cfg.batch_size):
            teacher.module(input_ids=ids, attention_mask=mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "bench_hft_capture.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    teacher = hmodels.load("smollm2", device="cpu")
    low = in_dtype(teacher, "bfloat16")
    texts = list(hdata.load("agnews", split="train").texts[:a.texts])
    cfg = CaptureConfig()
    seqs = _tokenize(teacher.tokenizer, texts, cfg.max_length)
    tokens = sum(len(s) - 1 for s in seqs)
    ways = {
        "float32, full forward": lambda: full_forward(teacher, seqs, cfg),
        "float32, ended early": lambda: shard_arrays(teacher, seqs, 0, cfg, False),
        "bfloat16, ended early": lambda: shard_arrays(low, seqs, 0, cfg, False),
    }
    seconds, _ = alternate(ways, a.rounds)
    med = medians(seconds)
    base = med["float32, full forward"]
    f32 = shard_arrays(teacher, seqs, 0, cfg, False)["final"].astype(np.float32)
    b16 = shard_arrays(low, seqs, 0, cfg, False)["final"].astype(np.float32)
    U = Unembedding.from_model(teacher)
    with torch.no_grad():
        top_a = U(torch.from_numpy(f32)).argmax(-1)
        top_b = U(torch.from_numpy(b16)).argmax(-1)
    results = {
        "benchmark": "hft_capture", "model": "smollm2", "dataset": "agnews (train texts)",
        "texts": a.texts, "tokens": tokens, "batch_size": cfg.batch_size, "rounds": a.rounds,
        "seconds": seconds, "median_s": med,
        "ms_per_token": {w: 1000 * s / tokens for w, s in med.items()},
        "speedup_vs_full_float32": {w: base / s for w, s in med.items()},
        "bf16_final_max_abs_diff": float(np.abs(f32 - b16).max()),
        "bf16_final_max_abs": float(np.abs(f32).max()),
        "bf16_top1_agreement": float((top_a == top_b).double().mean()),
        **machine(),
        "note": "ways alternate their order within each round; compare the ratios",
    }
    atomic_write_json(a.out, results)
    print({w: round(v, 2) for w, v in results["speedup_vs_full_float32"].items()},
          results["bf16_top1_agreement"])


if __name__ == "__main__":
    main()
