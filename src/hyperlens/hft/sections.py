"""Report sections of ``hyperlens hft train``: targets, checks, learning curves, ablation.

The command (``experiments/hft.py``) computes; these functions lay its results out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional.stats import detectable_difference, paired_bootstrap
from ..report import Report
from .evaluate import MIXTURE, per_text

__all__ = ["KN5_ROW", "LAYER_ROW", "INPUT_ROW", "WINDOW_ROW", "est_row", "metric_table",
           "ppl_plot", "feature_label", "ppl_ratio", "target_rows", "ablation_rows",
           "checks_section", "curves_section", "speed_rows", "speed_section"]


def est_row(e: Any) -> list[float]:
    """``[value, lo, hi]`` of an estimate, rounded to 4 places."""
    return [round(e.value, 4), round(e.lo, 4), round(e.hi, 4)]


def metric_table(summ: dict[str, Any], params: dict[str, int] | None = None
                 ) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of a held-out metrics table: per model (and its parameters, when
    ``params`` is given) perplexity, KL, agreement, top-1 and top-5, each with its interval."""
    ms = ("ppl", "kl", "agree", "top1", "top5")
    cols = ["model"] + ["parameters"] * (params is not None) + [
        f"{m} {b}" for m in ("ppl", "KL", "agree", "top-1", "top-5") for b in ("", "lo", "hi")]
    rows: list[list[Any]] = []
    for k, e in summ.items():
        lead: list[Any] = [k] if params is None else [k, params.get(k, 0)]
        rows.append(lead + [v for m in ms for v in est_row(e[m])])
    return cols, rows


def ppl_plot(summ: dict[str, Any]) -> dict[str, Any]:
    """The bar plot of every model's held-out perplexity with its interval (log scale)."""
    ppl = {k: e["ppl"].value for k, e in summ.items()}
    return {"kind": "bar", "title": "Held-out perplexity", "ylabel": "perplexity",
            "yscale": "log", "categories": list(ppl),
            "series": [{"label": "seed 0", "values": list(ppl.values()),
                        "lo": [summ[k]["ppl"].lo for k in ppl],
                        "hi": [summ[k]["ppl"].hi for k in ppl]}]}


def feature_label(kind: str, exact: int) -> str:
    """How the report names a featurisation of ``hft train --features``."""
    return f"last {exact} tokens exact + sketch" if kind == "exact" else "seed's sketch only"


def _log_ratio(results: dict[str, Any], text: np.ndarray, a: str, b: str) -> Any:
    """log ppl(a) - log ppl(b) with a paired bootstrap over texts (an ``Estimate``)."""
    sa, ca = per_text(results[a]["nll"], text)
    sb, _ = per_text(results[b]["nll"], text)
    return paired_bootstrap(np.stack([sa, ca], 1), np.stack([sb, ca], 1),
                            statistic=lambda x: x[..., 0].sum(-1) / x[..., 1].sum(-1),
                            vectorized=True, n_boot=1000)


def ppl_ratio(results: dict[str, Any], text: np.ndarray, a: str, b: str) -> list[Any]:
    """ppl(a) / ppl(b) ``[value, lo, hi]`` with a paired bootstrap over texts of the log
    ratio."""
    return _ratio_row(_log_ratio(results, text, a, b))


def _ratio_row(est: Any) -> list[Any]:
    """``[value, lo, hi]`` of a ratio from the estimate of its log."""
    return [round(float(np.exp(est.value)), 4), round(float(np.exp(est.lo)), 4),
            round(float(np.exp(est.hi)), 4)]


def ablation_rows(summ: dict[str, Any], results: dict[str, Any], text: np.ndarray,
                  seeds_res: dict[str, list[dict[str, float]]], labels: list[str]
                  ) -> list[list[Any]]:
    """Per student and featurisation (``labels[0]`` is the main one, unsuffixed): held-out
    perplexity of seed 0 with its interval over texts, the mean over seeds, and the paired
    ratio to the main featurisation."""
    rows: list[list[Any]] = []
    for track in ("A", "B"):
        for model in ("HyperField", "MLP (same parameters)"):
            base = f"{track}: {model}"
            if base not in results:
                continue
            for j, lab in enumerate(labels):
                name = base if j == 0 else f"{base} [{lab}]"
                if name not in results:
                    continue
                seeds = seeds_res.get(name, [])
                mean = float(np.mean([x["ppl"] for x in seeds])) if seeds else None
                ratio = ([None] * 3 if j == 0 else ppl_ratio(results, text, name, base))
                rows.append([base, lab, *est_row(summ[name]["ppl"]), len(seeds),
                             None if mean is None else round(mean, 2), *ratio])
    return rows


#: labels of the targets table's rows that ``hft scale`` reads back, size by size:
#: HyperField against KN-5, against the MLP on the same features (the layer's share of the
#: gap), that MLP against the window MLP on the last tokens alone (the input's share), and
#: HyperField against the window MLP
KN5_ROW = "A: ppl / KN-5 ppl <= 0.85"
LAYER_ROW = "A: ppl / MLP ppl < 1 (ambitious)"
INPUT_ROW = "A (context, not a target): MLP ppl / window MLP ppl"
WINDOW_ROW = "A (context, not a target): ppl / window MLP ppl"


def target_rows(summ: dict[str, Any], results: dict[str, Any], text: np.ndarray
                ) -> list[list[Any]]:
    """The issue targets: ratios of perplexities with paired bootstrap intervals over texts,
    each with the power of its comparison: the smallest relative change of the ratio
    (agreement: the smallest difference) that it finds with probability 0.8 at the 95 %
    level (over held-out texts; seed-to-seed variation is not in it)."""
    def ratio_ci(a: str, b: str) -> list[Any]:
        est = _log_ratio(results, text, a, b)
        see = float(np.expm1(detectable_difference(float(est.std))))
        return [*_ratio_row(est), round(see, 4)]

    out = []
    for track in ("A", "B"):
        name = f"{track}: HyperField"
        if name not in results:
            continue
        r = ratio_ci(name, "unigram")
        out.append([f"{track}: ppl / unigram ppl <= 0.5", *r, bool(r[2] <= 0.5)])
        if track == "A":
            r = ratio_ci(name, "KN-5")
            out.append([KN5_ROW, *r, bool(r[2] <= 0.85)])
            a = summ[name]["agree"]
            out.append(["A: top-1 agreement >= 0.5 (ambitious)", *est_row(a),
                        round(detectable_difference(float(a.std)), 4), bool(a.lo >= 0.5)])
            mlp = "A: MLP (same parameters)"
            if mlp in results:
                r = ratio_ci(name, mlp)
                out.append([LAYER_ROW, *r, bool(r[2] < 1.0)])
            window = next((k for k in results if k.startswith("A: window MLP")
                           and not k.endswith("]")), None)  # the main featurisation's
            if window is not None and mlp in results:  # not targets: the input or the layer?
                out.append([INPUT_ROW, *ratio_ci(mlp, window), None])
                out.append([WINDOW_ROW, *ratio_ci(name, window), None])
            kn, tw, st = (np.log(summ[k]["ppl"].value) for k in
                          ("KN-5", "teacher, context cut to W", name))
            frac = (kn - st) / max(kn - tw, 1e-9)
            out.append(["A: share of the log-ppl gap KN-5 -> teacher@W closed >= 0.5 (ambitious)",
                        round(float(frac), 4), None, None, None, bool(frac >= 0.5)])
            if MIXTURE in results:  # not a target: does HyperField know what the counts miss?
                r = ratio_ci(MIXTURE, "KN-5")
                out.append(["A (context, not a target): (HF + KN-5) / 2 ppl / KN-5 ppl", *r,
                            None])
        else:
            r = ratio_ci(name, "B: tuned lens")
            out.append(["B: ppl / tuned-lens ppl <= 0.85", *r, bool(r[2] <= 0.85)])
    return out


def checks_section(rep: Report, track: str, res: dict[str, Any], n_params: int,
                    teacher_params: int) -> None:
    sec = rep.section(f"Information flow and speed, Track {track}", (
        "The seed's checks on held-out rows (seed-0 student). Token ablation: KL between the "
        "prediction with and without the token in each window slot. Beyond window: largest "
        "log-probability difference between streams that differ only before the window. "
        "Throughput: positions per second side by side on this machine (shared CPU: ratios "
        "are what to read)."))
    ab = res["token ablation"]
    sec.plot(f"ablation_{track}.png", {"kind": "line", "title": "Token ablation by window slot",
                                       "xlabel": "slot (0 = current token)",
                                       "ylabel": "KL(original || ablated)",
                                       "series": [{"label": track, "x": ab["slot"],
                                                   "y": ab["kl"]}]})
    ps = res["position shuffle"]
    rows = [["position shuffle: ppl true / shuffled phases", round(ps["ppl"], 3),
             round(ps["ppl_shuffled"], 3)],
            ["beyond window: max |delta log p|", res["beyond window"]["max_abs_logprob_diff"], ""],
            ["tail toggle: KL with / without tail", round(res["tail toggle"]["kl_with_tail"], 4),
             round(res["tail toggle"]["kl_without_tail"], 4)],
            ["tail toggle: relative KL rise (seed: >= 0.10)",
             round(res["tail toggle"]["relative_rise"], 4), ""],
            ["cached vs fresh: max |delta log p|, top-1 same",
             round(res["cached vs fresh"]["max_abs_logprob_diff"], 5),
             res["cached vs fresh"]["top1_same"]],
            ["hash collisions: rate, Spearman(collisions, KL)",
             round(res["hash collisions"]["collision_rate"], 5),
             round(res["hash collisions"].get("spearman_rho", float("nan")), 4)]]
    if "shortlist target" in res:
        sl = res["shortlist target"]
        rows += [["shortlist target: mean size, teacher mass outside it",
                  round(sl["shortlist_size"], 1), round(sl["teacher_mass_outside"], 4)],
                 ["shortlist target: KL full vocabulary / as the loss estimates it",
                  round(sl["kl_full"], 4), round(sl["kl_shortlist"], 4)],
                 ["shortlist target: mean |estimate - full| per row / KL with the tail "
                  "as one outcome", round(sl["sampling_abs_error"], 4),
                  round(sl["kl_grouped"], 4)]]
    rec = res["stage-1 reconstruction"]
    for k in ("state", "q", "k", "v"):
        rows.append([f"stage-1 cosine {k} (seed: >= 0.9) / mean-only baseline",
                     round(rec[k], 4), round(rec[k + "_mean_only"], 4)])
    rows += speed_rows(res["throughput"], n_params, teacher_params)
    sec.table("Checks", ["check", "value", "second value"], rows)
    sec.table("Perplexity by position", ["from", "to", "rows", "ppl", "ppl shuffled phases"],
              [[b["from"], b["to"], b["rows"], round(b["ppl"], 2), round(b["ppl_shuffled"], 2)]
               for b in ps["by_position"]])
    sec.table("Hash collisions against KL", ["collisions", "rows", "mean KL"],
              [[b["collisions"], b["rows"], round(b["kl"], 4)]
               for b in res["hash collisions"]["bins"]])


# --------------------------------------------------------------------------- eval / generate


def _phases(hist: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(phase, History dict)]`` of a stored history (HyperField keeps one per phase)."""
    if "evals" in hist:
        return [("distillation", hist)]
    return [(p, hist[p]) for p in ("stage1", "stage2", "e2e") if p in hist]


def curves_section(rep: Report, histories: dict[str, dict[str, Any]],
                   min_improvement: float = 0.0) -> None:
    """Validation curves and where each phase of each student stopped (training to a
    plateau); ``histories`` maps a model to its stored training history (seed 0), and
    ``min_improvement`` is the share of the best value an epoch had to gain."""
    rows: list[list[Any]] = []
    series: list[dict[str, Any]] = []
    for name, hist in histories.items():
        x0 = 0
        for phase, h in _phases(hist):
            ev = h.get("evals") or []
            if not ev:
                continue
            key = "val_aux" if "val_aux" in ev[0] else "val_kl"
            vals = [float(e[key]) for e in ev]
            best = h.get("best") or {}
            kept = next((j for j, e in enumerate(ev) if e["step"] == h.get("restored_step")),
                        None)
            rows.append([name, phase, len(ev) - 1, kept, key, round(vals[0], 4),
                         round(float(best.get(key, np.nan)), 4), round(vals[-1], 4),
                         bool(h.get("stopped_early"))])
            if key == "val_kl":
                series.append({"label": f"{name}, {phase}",
                               "x": [x0 + j for j in range(len(vals))], "y": vals})
                x0 += len(vals) - 1
    sec = rep.section("Training to a plateau", (
        "Every phase is evaluated on the validation slice (training texts no model fits) "
        "before its first step and after each epoch, halves its rate after every epoch "
        "without a better value, stops after --patience such epochs in a row and keeps its "
        "best epoch. " + (f"An epoch counted as better only when it gained more than "
                          f"{100 * min_improvement:g} % of the best value "
                          f"(--min-improvement {min_improvement:g}). " if min_improvement
                          else "") + "'epochs' counts the epochs run, 'kept' the "
        "epoch whose weights were kept (0 = the starting weights); a phase that reached "
        "--max-epochs without stopping early may not have plateaued."))
    if not rows:
        sec.text += " No validation slice in this run (fixed epochs, --patience 0): no curves."
        return
    sec.table("Where training stopped", ["model", "phase", "epochs", "kept", "metric", "start",
                                         "best", "last", "stopped early"], rows)
    if series:
        sec.plot("curves.png", {"kind": "line", "title": "Validation KL per epoch",
                                "xlabel": "epoch (phases in order)",
                                "ylabel": "KL(teacher || student), nats", "series": series})


def speed_rows(tp: dict[str, Any], n_params: int, teacher_params: int) -> list[list[Any]]:
    """Table rows of :func:`hyperlens.hft.checks.throughput`'s result: tokens per second of
    student and teacher at batch 1 and 512 in each precision, the speed-ups, the 16-bit
    copies' agreement with float32, and the parameters."""
    rows: list[list[Any]] = [
        ["tokens/s batch 1: student / teacher", round(tp["student_batch1"], 1),
         round(tp["teacher_batch1"], 1)],
        ["tokens/s batch 512: student / teacher", round(tp["student_batch"], 1),
         round(tp["teacher_batch"], 1)],
        ["speed-up batch 1 / batch 512, float32",
         round(tp["speedup_batch1"], 2), round(tp["speedup_batch"], 2)]]
    if "speedup_batch1_bf16" in tp:
        rows += [["tokens/s batch 1, bfloat16: student / teacher",
                  round(tp["student_batch1_bf16"], 1), round(tp["teacher_batch1_bf16"], 1)]]
        if "speedup_batch_bf16" in tp:  # timed where the CPU has native bfloat16
            rows += [["tokens/s batch 512, bfloat16: student / teacher",
                      round(tp["student_batch_bf16"], 1), round(tp["teacher_batch_bf16"], 1)],
                     ["speed-up batch 1 / batch 512, bfloat16",
                      round(tp["speedup_batch1_bf16"], 2), round(tp["speedup_batch_bf16"], 2)]]
        else:
            rows += [["speed-up batch 1, bfloat16", round(tp["speedup_batch1_bf16"], 2), ""]]
    if "speedup_batch1_fp16" in tp:  # batch 1 only
        rows += [["tokens/s batch 1, float16: student / teacher",
                  round(tp["student_batch1_fp16"], 1), round(tp["teacher_batch1_fp16"], 1)],
                 ["speed-up batch 1, float16", round(tp["speedup_batch1_fp16"], 2), ""]]
    if "speedup_batch1_fastest" in tp:
        rows += [["speed-up batch 1 / batch 512, fastest of each (target >= 5 at batch 1)",
                  round(tp["speedup_batch1_fastest"], 2), round(tp["speedup_batch_fastest"], 2)]]
    for tag, name in (("_bf16", "bfloat16"), ("_fp16", "float16")):
        if f"agree_student{tag}" in tp:
            rows += [[f"{name} copy against float32, top-1 agreement: student / teacher",
                      round(tp[f"agree_student{tag}"], 4), round(tp[f"agree_teacher{tag}"], 4)],
                     [f"{name} copy against float32, largest |delta log p| of the top-1 "
                      "token: student / teacher", round(tp[f"maxdiff_student{tag}"], 4),
                      round(tp[f"maxdiff_teacher{tag}"], 4)]]
    rows += [["parameters: student / teacher", n_params, teacher_params],
             ["parameter MB (float32): student / teacher", round(n_params * 4 / 2**20, 1),
              round(teacher_params * 4 / 2**20, 1)]]
    return rows


def speed_section(rep: Report, tp: dict[str, Any], n_params: int, teacher_params: int,
                  rss_mb: float | None) -> None:
    """``hft eval``'s speed section: :func:`speed_rows` and the process's peak memory."""
    rep.section("Speed", "Tokens per second side by side on this machine: the student from a "
                "rolling buffer at batch 1 and on 512 held-out rows, the teacher with its KV "
                "cache at batch 1 and on whole sequences, each in float32 and as bfloat16 and "
                "float16 copies (at batch 512 bfloat16 only, and only where the CPU has native "
                "bfloat16: emulated, it is slower there).").table(
        "Speed", ["measure", "student", "teacher"], speed_rows(tp, n_params, teacher_params)
        + [["peak resident MB of this process", None if rss_mb is None else round(rss_mb, 1),
            ""]])
