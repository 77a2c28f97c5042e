"""Cost of ``hyperlens.models.intervene`` on a real forward pass, side by side with the plain one.

SmolLM2 (30 blocks) runs its backbone over the first ``--n`` SST-2 sentences (length-sorted
batches of 32, as :func:`hyperlens.models.embed` does), alternately plain and with an
identity function at every block's ``resid_post`` (30 hooks that call a Python function
and write its result back) and, optionally, at every site the model has. Runs alternate
(plain, hooked, plain, hooked, ...) so a busy machine slows both alike; the ratio of the
medians is the figure. The outputs of every hooked run are compared with the plain run bit
for bit. Results go to ``benchmarks/results/bench_intervene.json``::

    python benchmarks/bench_intervene.py                 # 2,000 sentences, 3 rounds
    python benchmarks/bench_intervene.py --n 500 --rounds 5 --all-sites
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench_embed import sst2_sentences  # noqa: E402

from hyperlens.models import intervene, load, sites  # noqa: E402
from hyperlens.models.arch import resolve_backbone  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402


def batches(tok, texts: list[str], bs: int, max_length: int) -> list[dict[str, torch.Tensor]]:
    enc = tok(texts, truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
    out = []
    for s in range(0, len(order), bs):
        rows = [{k: enc[k][i] for k in ("input_ids", "attention_mask")} for i in order[s:s + bs]]
        out.append(tok.pad(rows, return_tensors="pt"))
    return out


def run(
    stack: torch.nn.Module, data: list[dict[str, torch.Tensor]]
) -> tuple[float, list[torch.Tensor]]:
    outs = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in data:
            outs.append(stack(**b).last_hidden_state)
    return time.perf_counter() - t0, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--all-sites", action="store_true", help="also time identity at every site")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_intervene.json"))
    a = ap.parse_args()

    m = load(a.model, device="cpu")
    stack = resolve_backbone(m.module).stack
    data = batches(m.tokenizer, sst2_sentences(a.n), a.batch_size, m.max_length)
    variants = {"every_block": {"blocks.*.resid_post": lambda act, ctx: act}}
    if a.all_sites:
        names = [s for s in sites(m) if s not in ("inputs", "unembed")]
        variants["every_site"] = {s: (lambda act, ctx: act) for s in names}
    times: dict[str, list[float]] = {"plain": [], **{k: [] for k in variants}}
    identical: dict[str, bool] = {k: True for k in variants}
    run(stack, data[:2])  # warm-up
    ref: list[torch.Tensor] | None = None
    for r in range(a.rounds):
        t, outs = run(stack, data)
        times["plain"].append(t)
        ref = outs if ref is None else ref
        for name, fns in variants.items():
            with intervene(m, fns):
                t, outs = run(stack, data)
            times[name].append(t)
            identical[name] &= all(torch.equal(x, y) for x, y in zip(ref, outs, strict=True))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()),
              flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "model": a.model, "n_texts": a.n, "batch_size": a.batch_size, "rounds": a.rounds,
        "tokens": int(sum(int(b["attention_mask"].sum()) for b in data)),
        "seconds": times, "median_s": med,
        "ratio_to_plain": {k: med[k] / med["plain"] for k in variants},
        "bit_identical": identical,
        "sites_hooked": {k: len(v) if "*" not in next(iter(v)) else m.num_layers
                         for k, v in variants.items()},
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "note": "interleaved runs on a shared machine; compare the ratio, not the seconds",
    }
    atomic_write_json(a.out, res)
    print({k: round(v, 4) for k, v in res["ratio_to_plain"].items()}, res["bit_identical"])


if __name__ == "__main__":
    main()
