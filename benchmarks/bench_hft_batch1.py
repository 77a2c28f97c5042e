"""Batch-1 generation speed of the HyperField student against its teacher, and its bound.

At batch 1 both models are limited by how many weight bytes each token reads, not by
arithmetic. The teacher (SmolLM2, KV cache, one new token a step) reads all of its layers
and its output embedding; a student that gives full-vocabulary log-probabilities through
the teacher's unembedding reads at least that unembedding (49,152 x 576). So no such
student can be faster than the teacher by more than the ratio of the two times, whatever
its layers do. This benchmark times, one token at a time, in float32 and as bfloat16 and
float16 copies (on a CPU with native bf16, bfloat16 products on weights in oneDNN's packed
layout, as ``hft eval`` does): at batch 1 a step is bound by the bytes of weight it reads,
which a 16-bit copy halves whether or not the CPU computes in it natively:

* ``teacher``: one cached decoder step and its log-softmax (as ``hyperlens hft eval``);
* ``student``: the default-size HyperField student (exact-tail featurisation, random
  weights: its cost does not depend on their values) from the rolling buffer of token ids
  to full-vocabulary log-probabilities, as ``hft eval`` times a trained one;
* ``unembedding only``: the student's last step alone, the product with the unembedding
  and the log-softmax: the bound.

The ways alternate within each round; each round is ``--steps`` tokens; the whole is
timed on one thread and on every core (``hft eval`` uses every core). Writes
``benchmarks/results/bench_hft_batch1.json`` with tokens per second, the student's and the
bound's speed-up over the teacher at equal precision and fastest against fastest::

    python benchmarks/bench_hft_batch1.py [--rounds 5] [--steps 32] [--threads 1 2]
        [--precisions float32 bfloat16 float16]
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import alternate, machine, medians  # noqa: E402

from hyperlens.functional import kernels as K  # noqa: E402
from hyperlens.functional.packed import pack_linears  # noqa: E402
from hyperlens.hft.capture import Unembedding, in_dtype  # noqa: E402
from hyperlens.hft.features import FeatureConfig, Featurizer  # noqa: E402
from hyperlens.hft.generate import RollingBuffer, Student  # noqa: E402
from hyperlens.hft.model import count_parameters, log_unigram  # noqa: E402
from hyperlens.hft.train import StudentConfig, build_model  # noqa: E402
from hyperlens.models import load  # noqa: E402
from hyperlens.models.arch import cache_kwarg  # noqa: E402
from hyperlens.utils import atomic_write_json, retain_freed_memory  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_hft_batch1.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts to time (default: one, and every core)")
    ap.add_argument("--precisions", nargs="+", default=["float32", "bfloat16", "float16"],
                    choices=["float32", "bfloat16", "float16"],
                    help="the copies to time (float32 is always timed)")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    threads = a.threads or sorted({1, cores})
    retain_freed_memory()
    teacher = load("smollm2", device="cpu")
    models: dict[str, Any] = {"float32": teacher.module}
    packed = 0
    for p in a.precisions:
        if p != "float32":
            models[p] = in_dtype(teacher, p).module
    if "bfloat16" in models:  # on oneDNN's packed weights where native, as hft eval times it
        packed = pack_linears(models["bfloat16"])
    rng = np.random.default_rng(0)
    V = int(teacher.module.get_output_embeddings().weight.shape[0])  # type: ignore[union-attr]
    ctx = rng.integers(0, V, size=(2048, 32))
    fc = FeatureConfig(exact=4)
    feat = Featurizer(teacher.token_embeddings(), fc).fit(ctx, np.arange(len(ctx)) % 64)
    U = Unembedding.from_model(teacher)
    model = build_model(StudentConfig(), feat.d1, fc.d_tail, teacher.hidden_size,
                        teacher.hidden_size * 2, U,
                        log_unigram(torch.from_numpy(ctx.ravel()), V)).eval()
    students = {p: Student(feat, model).with_vocab_dtype(getattr(torch, p)) for p in models}
    ids = [int(t) for t in ctx[0, : a.steps]]
    y = torch.randn(1, teacher.hidden_size, generator=torch.Generator().manual_seed(0))

    @torch.no_grad()
    def run_teacher(p: str) -> None:
        fast = models[p]
        name, past, tok = cache_kwarg(fast), None, torch.tensor([[ids[0]]])
        for t in ids:
            out = fast(input_ids=tok, use_cache=True, **{name: past})
            torch.log_softmax(out.logits[:, -1].float(), -1)
            past, tok = getattr(out, name), torch.tensor([[t]])

    def run_student(p: str) -> None:
        buf = RollingBuffer(fc.window, ids[0])
        for t in ids:
            c, q = buf.row()
            students[p].logprobs(c, q)
            buf.push(t)

    @torch.no_grad()
    def run_unembedding(p: str) -> None:
        m = students[p].model
        for _ in ids:
            torch.log_softmax(m.unembed(y) + m.unigram, -1)

    ways = {f"{w} {p}": partial(fn, p) for p in models
            for w, fn in (("teacher", run_teacher), ("student", run_student),
                          ("unembedding only", run_unembedding))}

    def measure(n_threads: int) -> dict[str, Any]:
        torch.set_num_threads(n_threads)
        seconds, _ = alternate(ways, a.rounds, warm=True, label=f"{n_threads} threads")
        med = medians(seconds)
        tps = {w: a.steps / s for w, s in med.items()}

        def fastest(w: str) -> str:
            return max((f"{w} {p}" for p in models), key=lambda k: tps[k])

        t, st = fastest("teacher"), fastest("student")
        per_round = [ts / ss for ts, ss in zip(seconds[t], seconds[st], strict=True)]
        return {
            "threads": n_threads, "seconds_per_round": seconds, "tokens_per_s": tps,
            "speedup": {p: {"student": tps[f"student {p}"] / tps[f"teacher {p}"],
                            "bound": tps[f"unembedding only {p}"] / tps[f"teacher {p}"]}
                        for p in models},
            "speedup_fastest": {"student": tps[st] / tps[t],
                                "bound": tps[fastest("unembedding only")] / tps[t],
                                "student_rounds_min": min(per_round),
                                "student_rounds_max": max(per_round)},
            "student_time_in_unembedding": {
                p: med[f"unembedding only {p}"] / med[f"student {p}"] for p in models},
        }

    runs = {str(n): measure(n) for n in threads}
    with torch.no_grad():  # each teacher copy against float32 on 4 x 32 tokens of the ids
        seqs = torch.from_numpy(ctx[:4]).long()
        ref = teacher.module(input_ids=seqs).logits.float()  # type: ignore[misc]
        agree = {p: float((m(input_ids=seqs).logits.float().argmax(-1) == ref.argmax(-1))
                          .double().mean()) for p, m in models.items() if p != "float32"}
    t_params = sum(int(p.numel()) for p in teacher.module.parameters())  # type: ignore[union-attr]
    emb = int(teacher.token_embeddings().numel())  # tied: a row lookup in, the head out
    res = {
        "benchmark": "hft_batch1", "precisions": list(models), "rounds": a.rounds,
        "steps_per_round": a.steps, "teacher_packed_linears": packed, "runs": runs,
        "one_thread": runs.get("1"), "all_cores": runs.get(str(cores)),
        "parameters": {"teacher": t_params, "student": count_parameters(model),
                       "unembedding": emb},
        "native_bf16": K.features().bf16,
        "teacher_top1_agreement_with_float32": agree,
        **machine(),
        "note": "one token at a time; the ways alternate their order within each round and "
                "the medians are compared; bound: the unembedding product and log-softmax "
                "alone, which any student answering with full-vocabulary log-probabilities "
                "through the teacher's unembedding does every token; fastest: each model "
                "in its fastest precision (teacher_top1_agreement_with_float32: each "
                "teacher copy's top-1 next token against float32's on 4 x 32 tokens); "
                "student_rounds_min/max: the fastest student's speed-up over the fastest "
                "teacher within each round",
    }
    atomic_write_json(a.out, res)
    for n, r in runs.items():
        print(n, "threads:", {w: round(v, 1) for w, v in r["tokens_per_s"].items()},
              "tok/s; fastest against fastest",
              {k: round(v, 2) for k, v in r["speedup_fastest"].items()})


if __name__ == "__main__":
    main()
