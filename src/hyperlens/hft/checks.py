"""Information-flow checks of a trained student (the seed's section 9) and speed.

Each check returns plain numbers for the report; :mod:`tests.hft` asserts the properties
that must hold by construction (window, cache) on small models.

* :func:`token_ablation`: remove the token in window slot ``j`` (as if never seen) and
  measure ``KL(original || ablated)`` of the student's prediction, per slot.
* :func:`position_shuffle`: perplexity with the true positional phases against phases of
  randomly permuted positions, and perplexity by absolute position.
* :func:`beyond_window`: two token streams that differ only before the window give
  identical predictions (the rolling buffer forgets them).
* :func:`hash_collisions`: per row, how many of its 1..4-grams share a hash bucket with a
  different n-gram of the training text; mean KL to the teacher by collision count.
* :func:`stage1_reconstruction`: cosine between the Stage-1 aux head's reconstruction and
  the teacher's layer-l state, q, k and v on held-out rows.
* :func:`tail_toggle`: relative rise of KL when the 16-token tail is zeroed.
* :func:`cached_vs_fresh`: logits from the cached float16 projections against projections
  recomputed from the token ids.
* :func:`shortlist_target`: with training on a shortlist, how exact that target is for the
  trained student on held-out rows (:func:`~hyperlens.hft.shortlist.target_error`).
* :func:`throughput`: tokens per second of student and teacher at batch 1 (incremental) and
  batch 512, measured side by side.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..models.arch import cache_kwarg
from ..models.handle import ModelHandle
from .capture import CapturedSplit, Unembedding, in_dtype
from .features import ngram_keys
from .generate import RollingBuffer, Student
from .model import HyperFieldModel

__all__ = ["token_ablation", "position_shuffle", "beyond_window", "hash_collisions",
           "stage1_reconstruction", "tail_toggle", "cached_vs_fresh", "shortlist_target",
           "throughput"]


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0)


def _state(student: Student, sp: CapturedSplit, rows: Any) -> Any:
    return sp["state"][rows] if student.feat.cfg.track == "B" else None


@torch.no_grad()
def token_ablation(student: Student, sp: CapturedSplit, n_rows: int = 512, seed: int = 0
                   ) -> dict[str, list[Any]]:
    W = student.feat.cfg.window
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(sp), size=min(n_rows, len(sp)), replace=False))
    ctx, pos, st = np.array(sp["ctx"][rows]), np.array(sp["pos"][rows]), _state(student, sp, rows)
    base = student.logprobs(ctx, pos, st)
    kls, present = [], []
    for j in range(W):
        has = ctx[:, j] >= 0
        if not has.any():
            kls.append(float("nan"))
            present.append(0)
            continue
        c2 = ctx.copy()
        c2[:, j] = -1
        kls.append(float(_kl(base[has], student.logprobs(c2, pos, st)[has]).mean()))
        present.append(int(has.sum()))
    return {"slot": list(range(W)), "kl": kls, "rows": present}


@torch.no_grad()
def position_shuffle(student: Student, sp: CapturedSplit, n_rows: int = 2048, seed: int = 0
                     ) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(sp), size=min(n_rows, len(sp)), replace=False))
    ctx, pos, st = np.array(sp["ctx"][rows]), np.array(sp["pos"][rows]), _state(student, sp, rows)
    tgt = torch.from_numpy(np.array(sp["target"][rows]).astype(np.int64))
    nll = (-student.logprobs(ctx, pos, st).gather(1, tgt[:, None]).squeeze(1)).double().numpy()
    nll_s = (-student.logprobs(ctx, rng.permutation(pos), st).gather(1, tgt[:, None])
             .squeeze(1)).double().numpy()
    edges = [0, 4, 8, 16, 32, 64, 10**9]
    by_pos = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        m = (pos >= a) & (pos < b)
        if m.any():
            by_pos.append({"from": a, "to": b, "rows": int(m.sum()),
                           "ppl": float(np.exp(nll[m].mean())),
                           "ppl_shuffled": float(np.exp(nll_s[m].mean()))})
    return {"ppl": float(np.exp(nll.mean())), "ppl_shuffled": float(np.exp(nll_s.mean())),
            "by_position": by_pos}


@torch.no_grad()
def beyond_window(student: Student, vocab: int, start: int, n_pairs: int = 8, extra: int = 20,
                  seed: int = 0) -> dict[str, float]:
    """Streams ``a + common`` and ``b + common`` (``common`` as long as the window); the
    largest absolute difference between their next-token log-probabilities."""
    W = student.feat.cfg.window
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n_pairs):
        common = rng.integers(0, vocab, size=W)
        outs = []
        for _k in range(2):
            buf = RollingBuffer(W, start)
            for t in np.concatenate([rng.integers(0, vocab, size=extra), common]):
                buf.push(int(t))
            c, p = buf.row()
            outs.append(student.logprobs(c, p))
        worst = max(worst, float((outs[0] - outs[1]).abs().max()))
    return {"max_abs_logprob_diff": worst, "pairs": n_pairs}


@torch.no_grad()
def hash_collisions(student: Student, train: CapturedSplit, sp: CapturedSplit,
                    per_row_kl: np.ndarray) -> dict[str, Any]:
    """Collisions in the "recent n-gram" hash half: a held-out row's n-gram collides when its
    bucket was also hit by a *different* training n-gram."""
    from .features import _splitmix

    cfg = student.feat.cfg
    half = np.uint64(1 << (cfg.hash_bits - 1))

    def recent(ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys, valid = ngram_keys(np.asarray(ctx), cfg.max_n)
        k, v = keys[:, 0, :], valid[:, 0, :]
        return k, (_splitmix(k) % half).astype(np.int64), v

    tk, tb, tv = recent(train["ctx"])
    pairs = np.unique(np.stack([tb[tv], tk[tv].view(np.int64)], 1), axis=0)
    buckets, n_keys = np.unique(pairs[:, 0], return_counts=True)
    hk, hb, hv = recent(sp["ctx"])
    pos = np.searchsorted(buckets, hb).clip(max=len(buckets) - 1)
    hit = buckets[pos] == hb
    # the bucket holds another key: more than one key there, or one key that is not ours
    first_key = pairs[np.searchsorted(pairs[:, 0], hb).clip(max=len(pairs) - 1), 1]
    other = hit & ((n_keys[pos] > 1) | (first_key != hk.view(np.int64)))
    coll = (other & hv).sum(1)
    out: dict[str, Any] = {"collision_rate": float((other & hv).sum() / max(1, hv.sum())),
                           "buckets_used": int(len(buckets)), "bins": []}
    for c in np.unique(coll):
        m = coll == c
        out["bins"].append({"collisions": int(c), "rows": int(m.sum()),
                            "kl": float(per_row_kl[m].mean())})
    if len(np.unique(coll)) > 1:
        from scipy.stats import spearmanr

        r = spearmanr(coll, per_row_kl)
        out["spearman_rho"], out["spearman_p"] = float(r.statistic), float(r.pvalue)
    return out


@torch.no_grad()
def stage1_reconstruction(model: HyperFieldModel, x1: torch.Tensor, sp: CapturedSplit,
                          stats: dict[str, torch.Tensor], d_model: int, heads: int,
                          head_dim: int, rows: slice) -> dict[str, float]:
    pred = model.aux(model.embed(x1)) * stats["std"] + stats["mean"]
    true = torch.from_numpy(np.concatenate([sp["state"][rows], sp["qkv"][rows]], 1).astype(
        np.float32))
    hd = heads * head_dim
    spans = {"state": (0, d_model), "q": (d_model, d_model + hd),
             "k": (d_model + hd, d_model + 2 * hd), "v": (d_model + 2 * hd, d_model + 3 * hd)}
    out = {}
    for name, (a, b) in spans.items():
        if name == "state":
            cos = torch.cosine_similarity(pred[:, a:b], true[:, a:b], dim=1)
        else:  # per head
            p = pred[:, a:b].reshape(len(pred), heads, head_dim)
            t = true[:, a:b].reshape(len(true), heads, head_dim)
            cos = torch.cosine_similarity(p, t, dim=2)
        out[name] = float(cos.mean())
        # the same cosine for the mean vector alone: what a constant prediction scores
        m = stats["mean"][a:b].expand(len(true), -1)
        if name == "state":
            base = torch.cosine_similarity(m, true[:, a:b], dim=1)
        else:
            base = torch.cosine_similarity(m.reshape(len(true), heads, head_dim),
                                           true[:, a:b].reshape(len(true), heads, head_dim), 2)
        out[name + "_mean_only"] = float(base.mean())
    return out


@torch.no_grad()
def tail_toggle(model: Any, x1: torch.Tensor, tail: torch.Tensor, final: torch.Tensor,
                teacher: Unembedding) -> dict[str, float]:
    logp = torch.log_softmax(teacher(final.float()), -1)
    res = {}
    for use in (True, False):
        model.use_tail = use
        y, _ = model(x1, tail)
        res[use] = float(_kl(logp, torch.log_softmax(model.logits(y), -1)).mean())
    model.use_tail = True
    return {"kl_with_tail": res[True], "kl_without_tail": res[False],
            "relative_rise": res[False] / max(res[True], 1e-12) - 1.0}


@torch.no_grad()
def shortlist_target(model: Any, x1: torch.Tensor, tail: torch.Tensor, sp: CapturedSplit,
                     rows: slice, teacher: Unembedding, log_prior: torch.Tensor, k: int,
                     negatives: int, batch: int = 256) -> dict[str, float]:
    """:func:`~hyperlens.hft.shortlist.target_error` of the trained ``model`` on ``rows``
    (float32 products), batches of the training size."""
    from .shortlist import Shortlist, target_error

    y = torch.cat([model(a.float(), b.float())[0]
                   for a, b in zip(x1.split(batch), tail.split(batch), strict=True)])
    return target_error(model, y, sp.tensor("final", rows), sp.tensor("target", rows),
                        Shortlist(teacher, log_prior, negatives), k, batch=batch)


@torch.no_grad()
def cached_vs_fresh(student: Student, x1_cached: torch.Tensor, tail_cached: torch.Tensor,
                    sp: CapturedSplit, rows: slice) -> dict[str, float]:
    m = student.model
    y, _ = m(x1_cached.float(), tail_cached.float())
    a = torch.log_softmax(m.logits(y), -1)
    b = student.logprobs(np.array(sp["ctx"][rows]), np.array(sp["pos"][rows]),
                         _state(student, sp, rows))
    return {"max_abs_logprob_diff": float((a - b).abs().max()),
            "mean_kl": float(_kl(b, a).mean()),
            "top1_same": float((a.argmax(1) == b.argmax(1)).double().mean())}


@torch.no_grad()
def throughput(student: Student, teacher: ModelHandle, sp: CapturedSplit, *, steps: int = 64,
               batch: int = 512, repeats: int = 5, bf16: bool = True
               ) -> dict[str, float]:
    """Positions per second; teacher at batch 1 uses its KV cache (one new token a step).

    Both models run in float32 (the precision the held-out scores use) and, with ``bf16``,
    again as bfloat16 and float16 copies (``_bf16``, ``_fp16``: the student's vocabulary
    product, which is most of its cost; the teacher's whole module), on every CPU: at
    batch 1 a step is bound by the weight bytes it reads, which a 16-bit copy halves
    whether or not the CPU computes in it natively (on a 2-core AVX2 EPYC without native
    bfloat16 both models ran faster at batch 1 as 16-bit copies,
    ``benchmarks/results/bench_hft_batch1_avx2.json``; on an AVX-512 EPYC with bfloat16 the
    teacher's fastest copy was float16, ``bench_hft_batch1_epyc_avx512.json``). At batch
    512, bound by arithmetic, the bfloat16 copies are timed only where the CPU has native
    bfloat16 (emulated, it is slower than float32), on weights in oneDNN's packed layout
    (:mod:`~hyperlens.functional.packed`), and float16 not at all. The speed-ups are given
    at equal precision and fastest against fastest, and each copy's answers are compared
    with its float32 original on the batch rows (``agree_*``: top-1 agreement;
    ``maxdiff_*``: largest |delta log p| of the float32 top-1 token).
    """
    from ..functional import kernels
    from ..functional.packed import pack_linears
    from ..utils import retain_freed_memory

    retain_freed_memory()  # steady state: a repeat reuses its buffers instead of re-faulting
    module: Any = teacher.module
    assert module is not None
    start = int(sp["ctx"][0, -1]) if sp["ctx"][0, -1] >= 0 else 0
    ids = [int(t) for t in np.asarray(sp["target"][:steps])]

    def best(fn: Any) -> float:
        fn()  # warm-up: first-call allocation and dispatch
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    def student_inc(stud: Student) -> None:
        buf = RollingBuffer(stud.feat.cfg.window, start)
        for t in ids:
            c, p = buf.row()
            stud.logprobs(c, p, None if stud.feat.cfg.track == "A" else
                          np.asarray(sp["state"][:1]))
            buf.push(t)

    def teacher_inc(mod: Any) -> None:
        name = cache_kwarg(mod)
        past = None
        tok = torch.tensor([[start]])
        for t in ids:
            out = mod(input_ids=tok, use_cache=True, **{name: past})
            past = getattr(out, name)
            tok = torch.tensor([[t]])

    n = min(batch, len(sp))
    ctx, pos = np.array(sp["ctx"][:n]), np.array(sp["pos"][:n])
    st = np.asarray(sp["state"][:n]) if student.feat.cfg.track == "B" else None
    T = student.feat.cfg.window
    seqs = torch.from_numpy(np.where(ctx[: max(1, n // T), ::-1] < 0, 0,
                                     ctx[: max(1, n // T), ::-1]).astype(np.int64).copy())
    def measure(tag: str, mod: Any, stud: Student, batched: bool = True) -> dict[str, float]:
        out = {f"student_batch1{tag}": steps / best(lambda: student_inc(stud)),
               f"teacher_batch1{tag}": steps / best(lambda: teacher_inc(mod))}
        if batched:
            out[f"student_batch{tag}"] = n / best(lambda: stud.logprobs(ctx, pos, st))
            out[f"teacher_batch{tag}"] = seqs.numel() / best(lambda: mod(input_ids=seqs))
        return out

    def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
        top = a.argmax(-1, keepdim=True)
        return (float((b.argmax(-1, keepdim=True) == top).double().mean()),
                float((a.gather(-1, top) - b.float().gather(-1, top)).abs().max()))

    res = measure("", module, student)
    for b in ("batch1", "batch"):
        res[f"speedup_{b}"] = res[f"student_{b}"] / res[f"teacher_{b}"]
    if bf16:
        # batch 512 is bound by arithmetic, which bfloat16 speeds only where it is native;
        # float16 is timed at batch 1 only, where the bytes read, not arithmetic, bound a step
        native = kernels.features().bf16
        ref = torch.log_softmax(module(input_ids=seqs).logits.float(), -1)
        ref_student = student.logprobs(ctx, pos, st)
        for name, tag in (("bfloat16", "_bf16"), ("float16", "_fp16")):
            low: Any = in_dtype(teacher, name).module
            if name == "bfloat16":  # oneDNN's layout where the CPU has native bf16 (0 elsewhere)
                res["teacher_packed_linears"] = pack_linears(low)
            low_student = student.with_vocab_dtype(getattr(torch, name))
            batched = native and name == "bfloat16"
            res.update(measure(tag, low, low_student, batched=batched))
            res[f"agree_student{tag}"], res[f"maxdiff_student{tag}"] = agreement(
                ref_student, low_student.logprobs(ctx, pos, st))
            res[f"agree_teacher{tag}"], res[f"maxdiff_teacher{tag}"] = agreement(
                ref, torch.log_softmax(low(input_ids=seqs).logits.float(), -1))
            del low, low_student
            for b in ("batch1", "batch") if batched else ("batch1",):
                res[f"speedup_{b}{tag}"] = res[f"student_{b}{tag}"] / res[f"teacher_{b}{tag}"]
        for b in ("batch1", "batch"):
            res[f"speedup_{b}_fastest"] = (
                max(res.get(f"student_{b}{t}", 0.0) for t in ("", "_bf16", "_fp16"))
                / max(res.get(f"teacher_{b}{t}", 0.0) for t in ("", "_bf16", "_fp16")))
    return res
