"""Gemma 3 270M in the zoo: conversion, warm load, and embedding throughput beside SmolLM2.

In one run:

- ``convert``: join the packaged GGUF chunks and convert them to float32 safetensors in a
  temporary folder (what the first ``load("gemma3")`` does; skipped with ``--no-convert``);
- ``warm_load``: ``load("gemma3")`` and ``load("smollm2")`` from their cached folders;
- ``embed``: :func:`hyperlens.models.embed` (mean pooling, last layer, float32) on the first
  ``--n`` SST-2 sentences, alternating SmolLM2 and Gemma 3 for ``--rounds`` rounds so a busy
  machine slows both alike; texts per second and token positions per second.

Results go to ``benchmarks/results/bench_gemma3.json``::

    python benchmarks/bench_gemma3.py --n 2000
    python benchmarks/bench_gemma3.py --n 500 --no-convert
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench_embed import sst2_sentences  # noqa: E402

from hyperlens.models import embed, load, zoo  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-convert", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_gemma3.json"))
    a = ap.parse_args()
    res: dict[str, object] = {"n_texts": a.n, "rounds": a.rounds}
    if not a.no_convert:
        with tempfile.TemporaryDirectory(dir=zoo.cache_dir("models")) as tmp:
            t0 = time.perf_counter()
            zoo.convert_gemma3(Path(tmp) / "gemma3")
            res["convert_s"] = time.perf_counter() - t0
        print(f"convert {res['convert_s']:.1f}s", flush=True)
    models = {}
    for name in ("smollm2", "gemma3"):
        t0 = time.perf_counter()
        models[name] = load(name, device="cpu")
        res[f"warm_load_{name}_s"] = time.perf_counter() - t0
    texts = sst2_sentences(a.n)
    tokens = {k: int(sum(len(x) for x in m.tokenizer(texts, truncation=True,
                                                       max_length=m.max_length)["input_ids"]))
              for k, m in models.items()}
    secs: dict[str, list[float]] = {k: [] for k in models}
    for r in range(a.rounds):
        for name, m in models.items():
            t0 = time.perf_counter()
            X = embed(texts, m, pooling="mean", batch_size=32, progress=False)
            secs[name].append(time.perf_counter() - t0)
            assert X.shape == (a.n, m.hidden_size)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in secs.items()),
              flush=True)
    med = {k: statistics.median(v) for k, v in secs.items()}
    res.update({
        "embed_seconds": secs,
        "texts_per_s": {k: a.n / v for k, v in med.items()},
        "tokens": tokens,
        "tokens_per_s": {k: tokens[k] / v for k, v in med.items()},
        "gemma3_over_smollm2_time": med["gemma3"] / med["smollm2"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "note": "alternating runs on a shared machine; compare the ratio, not the seconds",
    })
    atomic_write_json(a.out, res)
    print(res)


if __name__ == "__main__":
    main()
