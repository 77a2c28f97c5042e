"""``hyperlens hft capture|train|eval|generate``: the HyperField transformer experiment.

``capture`` runs the teacher over a corpus split by text and stores the shards;
``train`` (capturing first when needed) fits the baselines and the students over seeds and
writes the full report (held-out metrics with bootstrap intervals over texts, t intervals
over seeds, the information-flow checks, speed), saving the seed-0 Track A student;
``eval`` re-scores a saved student; ``generate`` continues a prompt from the rolling buffer.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..report import Report
from .options import nonnegative_int, positive_float, positive_int

__all__ = ["COMMAND", "HELP", "add_arguments", "validate", "main", "run_train",
           "tour_section"]

COMMAND = "hft"
HELP = ("HyperField transformer: distil a teacher LM into a HyperTensor mixture "
        "(capture|train|eval|generate)")
ACTIONS = ("capture", "train", "eval", "generate")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..hft.train import StudentConfig as _SC  # the students' defaults live there

    p.add_argument("action", choices=ACTIONS, help="what to do")
    g = p.add_argument_group("capture")
    g.add_argument("--teacher", default="smollm2", help="causal LM (zoo name, HF id or path)")
    g.add_argument("--dataset", default="agnews",
                   help="agnews | sst2 | rotten-tomatoes | a csv/tsv/jsonl file | a .txt file "
                        "(one text per line)")
    g.add_argument("--data-dir", default=None, help="folder holding sst2/ and agnews/")
    g.add_argument("--text-column", default=None, help="text column of a file")
    g.add_argument("--train-tokens", type=positive_int, default=32_000,
                   help="tokens the teacher predicts in the training texts (whole texts are "
                        "taken until the count is reached; the README's full run uses "
                        "250000)")
    g.add_argument("--heldout-tokens", type=positive_int, default=8_000,
                   help="tokens the teacher predicts in the held-out texts, which every "
                        "model is scored on (the README's full run uses 50000)")
    g.add_argument("--layer", type=nonnegative_int, default=15,
                   help="teacher layer l (Track B, Stage-1 target)")
    g.add_argument("--heads", type=nonnegative_int, nargs="+", default=[0, 1, 2],
                   help="q/k/v heads at layer l (indices from 0)")
    g.add_argument("--window", type=positive_int, default=32,
                   help="context window W in tokens")
    g.add_argument("--cut-fraction", type=float, default=0.25,
                   help="share of held-out rows past the window that get the one-forward-per-"
                        "window 'teacher cut to W' baseline (weighted by its inverse)")
    g.add_argument("--capture-dir", type=Path, default=None,
                   help="capture folder (default: runs/hft-capture-<teacher>-<dataset>-<tokens>)")
    s = p.add_argument_group("students")
    s.add_argument("--tracks", nargs="+", default=["A"], choices=["A", "B"],
                   help="A: tokens only (default); B: also the teacher's layer-l state, with "
                        "the logit and tuned lens (about 16 more minutes per seed at the "
                        "default size)")
    s.add_argument("--seeds", type=positive_int, default=3, help="training seeds per student")
    s.add_argument("--k1", type=positive_int, default=_SC.k1, help="Stage-1 HyperTensors")
    s.add_argument("--k2", type=positive_int, default=_SC.k2, help="Stage-2 HyperTensors")
    s.add_argument("--top-k", type=positive_int, default=_SC.top1,
                   help="tensors mixed per routing head")
    s.add_argument("--mix-heads", type=positive_int, default=_SC.heads1,
                   help="routing heads per HyperTensor layer (each mixes its own top-k; "
                        "their outputs add; 1 is the seed's single mixture). 8 heads x top-4 "
                        "were chosen on a validation split of the training texts "
                        "(scripts/hft_tune.py)")
    s.add_argument("--d-sketch", type=positive_int, default=4096, help="Stage-1 sketch width")
    s.add_argument("--pca", type=positive_int, default=None,
                   help="StreamingPCA components after the sketch (the saved student then "
                        "cannot be reloaded by eval / generate)")
    s.add_argument("--stage1-epochs", type=positive_int, default=_SC.stage1_epochs)
    s.add_argument("--stage2-epochs", type=positive_int, default=_SC.stage2_epochs)
    s.add_argument("--e2e-epochs", type=nonnegative_int, default=_SC.e2e_epochs)
    s.add_argument("--batch-size", type=positive_int, default=_SC.batch_size)
    s.add_argument("--lr", type=positive_float, default=_SC.lr)
    s.add_argument("--hard", type=float, default=_SC.hard,
                   help="weight of the hard-label cross-entropy added to the KL to the teacher "
                        "(more lowers true-token perplexity, raises the KL; see the README)")
    s.add_argument("--no-online", dest="online", action="store_false",
                   help="skip the seed's online-rule variant")
    s.add_argument("--no-mlp", dest="mlp", action="store_false", help="skip the equal-size MLP")
    s.add_argument("--boot", type=positive_int, default=1000,
                   help="bootstrap resamples over texts")
    s.add_argument("--student", type=Path, default=None,
                   help="eval, generate: the --out folder of `hyperlens hft train` (or its "
                        "'student' sub-folder)")
    s.add_argument("--prompt", default="The stock market", help="generate: prompt text")
    s.add_argument("--n-tokens", type=positive_int, default=30,
                   help="generate: tokens to produce")


# --------------------------------------------------------------------------- helpers
def _texts(args: argparse.Namespace) -> list[str]:
    from .. import data as hdata
    from ..hft.capture import check_texts

    name = str(args.dataset)
    if name.endswith(".txt"):
        path = Path(name)
        if not path.is_file():
            raise InputError(f"--dataset {name}: file not found; pass an existing .txt file.")
        texts = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    else:
        split = "train" if name in ("agnews", "sst2") else None
        kw: dict[str, Any] = {"data_dir": args.data_dir}
        if split:
            kw["split"] = split
        if args.text_column:
            kw["text_column"] = args.text_column
        texts = list(hdata.load(name, **kw).texts)
    return check_texts(texts, f"--dataset {name}")


def _capture_cfg(args: argparse.Namespace) -> Any:
    from ..hft.capture import CaptureConfig

    cfg = CaptureConfig(model=args.teacher, dataset=str(args.dataset),
                        train_tokens=args.train_tokens, heldout_tokens=args.heldout_tokens,
                        layer=args.layer, heads=tuple(args.heads), window=args.window,
                        cut_fraction=args.cut_fraction, seed=args.seed)
    cfg.validate()
    return cfg


def _student_cfg(args: argparse.Namespace) -> Any:
    from ..hft.train import StudentConfig

    sc = StudentConfig(k1=args.k1, k2=args.k2, top1=args.top_k, top2=args.top_k, lr=args.lr,
                       hard=args.hard, heads1=args.mix_heads, heads2=args.mix_heads,
                       batch_size=args.batch_size, stage1_epochs=args.stage1_epochs,
                       stage2_epochs=args.stage2_epochs, e2e_epochs=args.e2e_epochs)
    sc.validate()
    return sc


def _capture_dir(args: argparse.Namespace) -> Path:
    if args.capture_dir is not None:
        return Path(args.capture_dir)
    tag = f"{args.teacher}-{Path(str(args.dataset)).stem}-{args.train_tokens}-{args.heldout_tokens}"
    return Path("runs") / f"hft-capture-{tag}-w{args.window}-l{args.layer}-s{args.seed}"


def _ensure_capture(args: argparse.Namespace, teacher: Any, rep: Report,
                    texts: list[str] | None) -> Any:
    """The capture of the options: reopened when complete, else captured (resumed)."""
    from ..hft.capture import check_capture_dir, load_capture, run_capture

    folder, cfg = _capture_dir(args), _capture_cfg(args)
    manifest = check_capture_dir(folder, cfg)
    if manifest is not None and manifest.get("complete"):
        return load_capture(folder, expect=cfg)
    with rep.timer("capture"):
        return run_capture(teacher, texts if texts is not None else _texts(args), cfg, folder,
                           show_progress=args.progress)


def _texts_unless_captured(args: argparse.Namespace) -> list[str] | None:
    """The corpus when the capture still has to run (read before the teacher is loaded, so a
    bad corpus is refused first), else ``None``."""
    from ..hft.capture import check_capture_dir

    manifest = check_capture_dir(_capture_dir(args), _capture_cfg(args))
    return None if manifest is not None and manifest.get("complete") else _texts(args)


def _est(e: Any) -> list[float]:
    return [round(e.value, 4), round(e.lo, 4), round(e.hi, 4)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- train
def run_train(args: argparse.Namespace, out: Path) -> Path:
    from .. import models as hmodels
    from ..functional.stats import paired_bootstrap, t_interval
    from ..hft import checks
    from ..hft.capture import Unembedding, start_token
    from ..hft.evaluate import logprobs_from_final, per_text, score, subset, summarise
    from ..hft.features import FeatureConfig, Featurizer
    from ..hft.generate import Student, save_student
    from ..hft.model import (
        MLPStudent,
        TunedLens,
        count_parameters,
        log_unigram,
        mlp_hidden_for,
    )
    from ..hft.train import (
        aux_stats,
        build_features,
        build_model,
        train_hyperfield,
        train_mlp,
        train_online,
        train_tuned_lens,
    )
    from ..models.arch import resolve_backbone
    from ..utils import retain_freed_memory

    cap_cfg = _capture_cfg(args)
    sc = _student_cfg(args)
    texts = _texts_unless_captured(args)
    config = {"capture": asdict(cap_cfg), "student": asdict(sc), "tracks": args.tracks,
              "seeds": args.seeds, "d_sketch": args.d_sketch, "pca": args.pca,
              "online": args.online, "mlp": args.mlp, "boot": args.boot}
    rep = Report("hft", config, out_dir=out, seed=args.seed, device="cpu",
                 description="HyperField transformer distilled from a teacher LM.")
    retain_freed_memory()  # capture, scoring and training reuse their vocabulary-wide buffers
    with rep.timer("load teacher"):
        teacher = hmodels.load(args.teacher, device="cpu")
    cap = _ensure_capture(args, teacher, rep, texts)
    U = Unembedding.from_model(teacher)
    V = U.vocab_size
    d = teacher.hidden_size
    tr, he = cap.train, cap.heldout
    text = np.asarray(he["text"])
    start = start_token(teacher.tokenizer)
    results: dict[str, dict[str, np.ndarray]] = {}
    weights: dict[str, np.ndarray] = {}  # predictors scored on a weighted subsample
    seeds_res: dict[str, list[dict[str, float]]] = {}
    tmod: Any = teacher.module
    params: dict[str, int] = {"teacher": sum(int(p.numel()) for p in tmod.parameters())}
    lu = log_unigram(torch.from_numpy(np.asarray(tr["target"]).astype(np.int64)), V)

    sec = rep.section("Data", (
        f"Teacher {args.teacher}; corpus {args.dataset} split by text: {len(tr):,} training "
        f"and {len(he):,} held-out prediction positions ({tr.n_texts} / {he.n_texts} texts). "
        f"Window W = {args.window}, layer l = {args.layer}, heads {list(args.heads)}."))
    sec.metrics({"train_tokens": len(tr), "heldout_tokens": len(he), "train_texts": tr.n_texts,
                 "heldout_texts": he.n_texts, "vocab": V})

    # ---------------------------------------------------------------- baselines
    with rep.timer("baselines"):
        results["uniform"] = score(lambda r: torch.full((r.stop - r.start, V), -np.log(V)), he, U)
        counts = _count_baselines(lu, tr, he, start, (3, 5))
        for name, fn in counts.items():
            results[name] = score(fn, he, U)
        results["teacher"] = score(logprobs_from_final(U, he), he, U)
        wcut = (np.asarray(he["w_weight"]) if "w_weight" in he.arrays
                else np.ones(len(he), np.float32))
        keep = np.flatnonzero(wcut > 0)
        sub = subset(he, keep)
        rc = score(logprobs_from_final(U, sub, "final_w"), sub, U)
        full = {k: np.zeros(len(he)) for k in rc}
        for k, v in rc.items():
            full[k][keep] = v
        results["teacher, context cut to W"] = full
        weights["teacher, context cut to W"] = wcut
    stats = aux_stats(tr)
    students: dict[str, Any] = {}
    for track in args.tracks:
        fc = FeatureConfig(window=args.window, d_sketch=args.d_sketch, pca=args.pca, track=track,
                           seed=args.seed)
        with rep.timer(f"features {track}"):
            feat = Featurizer(teacher.token_embeddings(), fc).fit(
                tr["ctx"], tr["pos"], tr["state"] if track == "B" else None)
            ftr = build_features(feat, cap, "train", show_progress=args.progress)
            fhe = build_features(feat, cap, "heldout", show_progress=args.progress)
        X, T = torch.from_numpy(fhe.x1), torch.from_numpy(fhe.tail)

        def fn_of(model: Any, X: torch.Tensor = X, T: torch.Tensor = T) -> Any:
            def fn(r: slice) -> torch.Tensor:
                y, _ = model(X[r].float(), T[r].float())
                return torch.log_softmax(model.logits(y), -1)
            return fn

        if track == "B":
            bb = resolve_backbone(tmod)
            norm: Any = bb.final_norm
            results["B: logit lens"] = score(_state_fn(nn.Sequential(norm, U), he), he, U)
            for s in range(args.seeds):
                lens = TunedLens(d, norm, U)
                with rep.timer("train tuned lens"):
                    train_tuned_lens(lens, tr, U, sc, seed=args.seed + s,
                                     show_progress=args.progress)
                r_ = score(_state_fn(lens, he), he, U)
                seeds_res.setdefault("B: tuned lens", []).append(_means(r_))
                if s == 0:
                    results["B: tuned lens"] = r_
                    params["B: tuned lens"] = count_parameters(lens)
        for s in range(args.seeds):
            name = f"{track}: HyperField"
            model = build_model(sc, feat.d1, fc.d_tail, d, int(stats["mean"].numel()), U, lu,
                                seed=args.seed + s)
            with rep.timer(f"train {name}"):
                hist = train_hyperfield(model, ftr, tr, stats, U, sc, seed=args.seed + s,
                                        show_progress=args.progress)
            r_ = score(fn_of(model), he, U)
            seeds_res.setdefault(name, []).append(_means(r_))
            if s == 0:
                results[name] = r_
                params[name] = count_parameters(model)
                students[track] = (feat, model, fhe, hist)
                if track == "A":  # complementary to counts? a fixed, untuned mixture
                    results[MIX] = score(_mix_fn(fn_of(model), counts["KN-5"]), he, U)
                    params[MIX] = params[name]
                rep.data[f"history {name}"] = {k: v for k, v in hist.items() if k != "reseeds"}
                rep.data[f"reseeds {name}"] = hist["reseeds"]
            if args.mlp:
                mname = f"{track}: MLP (same parameters)"
                hidden = mlp_hidden_for(count_parameters(model), feat.d1 + fc.d_tail, d)
                mlp = MLPStudent(feat.d1, fc.d_tail, d, hidden, U, lu, seed=args.seed + s)
                with rep.timer(f"train {mname}"):
                    train_mlp(mlp, ftr, tr, U, sc, seed=args.seed + s,
                              show_progress=args.progress)
                r_ = score(fn_of(mlp), he, U)
                seeds_res.setdefault(mname, []).append(_means(r_))
                if s == 0:
                    results[mname] = r_
                    params[mname] = count_parameters(mlp)
        if args.online and track == "A":
            oname = "A: HyperField, online rule"
            om = build_model(sc, feat.d1, fc.d_tail, d, int(stats["mean"].numel()), U, lu,
                             seed=args.seed)
            with rep.timer(f"train {oname}"):
                oh = train_online(om, ftr, tr, stats, sc, seed=args.seed,
                                  show_progress=args.progress)
            results[oname] = score(fn_of(om), he, U)
            params[oname] = count_parameters(om)
            rep.data["online residual"] = oh["residual"]
        rep.save()

    # ---------------------------------------------------------------- metrics table
    summ = {k: summarise(v, text, n_boot=args.boot, seed=args.seed, weights=weights.get(k))
            for k, v in results.items()}
    rows = []
    for k, e in summ.items():
        rows.append([k, params.get(k, 0)] + [v for m in ("ppl", "kl", "agree", "top1", "top5")
                                             for v in _est(e[m])])
    cols = ["model", "parameters"] + [f"{m} {b}" for m in ("ppl", "KL", "agree", "top-1", "top-5")
                                      for b in ("", "lo", "hi")]
    sec = rep.section("Held-out metrics", (
        "Full-vocabulary metrics on the same held-out tokens, seed 0 for trained models; "
        "95 % percentile-bootstrap intervals over held-out texts. KL is KL(teacher || model) "
        "in nats per token; agree is top-1 agreement with the teacher. The teacher cut to W "
        f"runs one forward per window, so it is scored on a seeded {args.cut_fraction:.0%} of "
        "the rows past the window (all rows inside it), weighted by inverse inclusion "
        "probability."))
    sec.table("Held-out metrics (seed 0)", cols, rows)
    seed_rows = []
    for k, lst in seeds_res.items():
        row = [k, len(lst)]
        for m in ("ppl", "kl", "agree"):
            row += _est(t_interval([x[m] for x in lst]))
        seed_rows.append(row)
    sec.table("Across seeds (mean, 95 % t interval)",
              ["model", "seeds", "ppl", "lo", "hi", "KL", "lo", "hi", "agree", "lo", "hi"],
              seed_rows)
    ppl = {k: e["ppl"].value for k, e in summ.items()}
    sec.plot("ppl.png", {"kind": "bar", "title": "Held-out perplexity", "ylabel": "perplexity",
                         "yscale": "log", "categories": list(ppl),
                         "series": [{"label": "seed 0", "values": list(ppl.values()),
                                     "lo": [summ[k]["ppl"].lo for k in ppl],
                                     "hi": [summ[k]["ppl"].hi for k in ppl]}]})
    targets = _targets(summ, results, text, paired_bootstrap, per_text)
    rep.section("Targets").table("Issue targets", ["target", "value", "lo", "hi", "met"], targets)
    rep.data["summary"] = {k: {m: e.as_dict() for m, e in v.items()} for k, v in summ.items()}
    rep.data["seeds"] = seeds_res
    rep.data["parameters"] = params
    rep.save()

    # ---------------------------------------------------------------- checks and speed
    for track, (feat, model, fhe, _hist) in students.items():
        st = Student(feat, model)
        X, T = torch.from_numpy(fhe.x1), torch.from_numpy(fhe.tail)
        n = min(1024, len(he))
        rows_ = slice(0, n)
        with rep.timer(f"checks {track}"):
            res = {
                "token ablation": checks.token_ablation(st, he, seed=args.seed),
                "position shuffle": checks.position_shuffle(st, he, seed=args.seed),
                # Track B reads teacher states, which a token stream alone does not give
                "beyond window": (checks.beyond_window(st, V, start, seed=args.seed)
                                  if track == "A" else {"max_abs_logprob_diff": None}),
                "hash collisions": checks.hash_collisions(st, tr, he,
                                                          results[f"{track}: HyperField"]["kl"]),
                "stage-1 reconstruction": checks.stage1_reconstruction(
                    model, X[rows_].float(), he, stats, d, len(args.heads),
                    int(cap.manifest["head_dim"]), rows_),
                "tail toggle": checks.tail_toggle(model, X[rows_].float(), T[rows_].float(),
                                                  he.tensor("final", rows_), U),
                "cached vs fresh": checks.cached_vs_fresh(st, X[:256], T[:256], he,
                                                          slice(0, 256)),
            }
        with rep.timer(f"speed {track}"):
            res["throughput"] = checks.throughput(st, teacher, he)
        _checks_section(rep, track, res, params.get(f"{track}: HyperField", 0), params["teacher"])
        rep.data[f"checks {track}"] = res
        if track == "A":
            save_student(out / "student", feat, model,
                         {"teacher": args.teacher, "capture": str(cap.root), "student": asdict(sc),
                          "d_aux": int(stats["mean"].numel()), "d_model": d,
                          "capture_config": cap.config})
        rep.save()
    rep.data["max_rss_mb"] = _rss_mb()
    rep.summary([[r[0], f"ppl {r[2]:.1f}", f"KL {r[5]:.3f}", f"agree {r[8]:.3f}"] for r in rows])
    return rep.save()


MIX = "A: HyperField + KN-5, p = (p_HF + p_KN) / 2"


def _mix_fn(fa: Any, fb: Any) -> Any:
    """Log-probabilities of the equal-weight linear mixture of two predictors (the weight
    is fixed, not fitted, so nothing is chosen on the held-out rows)."""
    def fn(r: slice) -> torch.Tensor:
        return torch.logaddexp(fa(r).float(), fb(r).float()) - float(np.log(2.0))

    return fn


def _count_baselines(lu: torch.Tensor, tr: Any, he: Any, start: int,
                     orders: tuple[int, ...]) -> dict[str, Any]:
    """Row-slice -> log-probability functions of the unigram ``lu`` and the Kneser-Ney
    N-grams, fitted on the training split's texts and read on the held-out histories."""
    from ..hft.ngram import KneserNey

    V = int(lu.numel())
    tg = np.asarray(tr["target"])
    fns: dict[str, Any] = {"unigram": lambda r: lu[None].expand(r.stop - r.start, -1)}
    seqs = np.split(tg, np.flatnonzero(np.diff(np.asarray(tr["text"]))) + 1)
    for N in orders:
        kn = KneserNey(N, V, start).fit(seqs)
        fns[f"KN-{N}"] = _kn_fn(kn, KneserNey.histories(he["ctx"], N, start))
    return fns


def _kn_fn(kn: Any, H: np.ndarray) -> Any:
    def fn(r: slice) -> torch.Tensor:
        return kn.distribution(H[r]).log().float()

    return fn


def _state_fn(to_logits: Any, he: Any) -> Any:
    def fn(r: slice) -> torch.Tensor:
        return torch.log_softmax(to_logits(he.tensor("state", r).float()), -1)

    return fn


def _means(r: dict[str, np.ndarray]) -> dict[str, float]:
    return {"ppl": float(np.exp(r["nll"].mean())), "kl": float(r["kl"].mean()),
            "agree": float(r["agree"].mean())}


def _targets(summ: dict[str, Any], results: dict[str, Any], text: np.ndarray,
             paired_bootstrap: Any, per_text: Any) -> list[list[Any]]:
    def ratio_ci(a: str, b: str) -> list[Any]:
        """ppl(a) / ppl(b) with a paired bootstrap over texts of the log ratio."""
        sa, ca = per_text(results[a]["nll"], text)
        sb, _ = per_text(results[b]["nll"], text)
        est = paired_bootstrap(np.stack([sa, ca], 1), np.stack([sb, ca], 1),
                               statistic=lambda x: x[..., 0].sum(-1) / x[..., 1].sum(-1),
                               vectorized=True, n_boot=1000)
        return [round(float(np.exp(est.value)), 4), round(float(np.exp(est.lo)), 4),
                round(float(np.exp(est.hi)), 4)]

    out = []
    for track in ("A", "B"):
        name = f"{track}: HyperField"
        if name not in results:
            continue
        r = ratio_ci(name, "unigram")
        out.append([f"{track}: ppl / unigram ppl <= 0.5", *r, bool(r[2] <= 0.5)])
        if track == "A":
            r = ratio_ci(name, "KN-5")
            out.append(["A: ppl / KN-5 ppl <= 0.85", *r, bool(r[2] <= 0.85)])
            a = summ[name]["agree"]
            out.append(["A: top-1 agreement >= 0.5 (ambitious)", *_est(a), bool(a.lo >= 0.5)])
            if "A: MLP (same parameters)" in results:
                r = ratio_ci(name, "A: MLP (same parameters)")
                out.append(["A: ppl / MLP ppl < 1 (ambitious)", *r, bool(r[2] < 1.0)])
            kn, tw, st = (np.log(summ[k]["ppl"].value) for k in
                          ("KN-5", "teacher, context cut to W", name))
            frac = (kn - st) / max(kn - tw, 1e-9)
            out.append(["A: share of the log-ppl gap KN-5 -> teacher@W closed >= 0.5 (ambitious)",
                        round(float(frac), 4), None, None, bool(frac >= 0.5)])
            if MIX in results:  # not a target: does HyperField know what the counts miss?
                r = ratio_ci(MIX, "KN-5")
                out.append(["A (context, not a target): (HF + KN-5) / 2 ppl / KN-5 ppl", *r,
                            None])
        else:
            r = ratio_ci(name, "B: tuned lens")
            out.append(["B: ppl / tuned-lens ppl <= 0.85", *r, bool(r[2] <= 0.85)])
    return out


def _checks_section(rep: Report, track: str, res: dict[str, Any], n_params: int,
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
    rec = res["stage-1 reconstruction"]
    for k in ("state", "q", "k", "v"):
        rows.append([f"stage-1 cosine {k} (seed: >= 0.9) / mean-only baseline",
                     round(rec[k], 4), round(rec[k + "_mean_only"], 4)])
    tp = res["throughput"]
    rows += [["tokens/s batch 1: student / teacher", round(tp["student_batch1"], 1),
              round(tp["teacher_batch1"], 1)],
             ["tokens/s batch 512: student / teacher", round(tp["student_batch"], 1),
              round(tp["teacher_batch"], 1)],
             ["speed-up batch 1 / batch 512, float32 (target >= 5)",
              round(tp["speedup_batch1"], 2), round(tp["speedup_batch"], 2)]]
    if "speedup_batch1_bf16" in tp:
        rows += [["tokens/s batch 1, bfloat16: student / teacher",
                  round(tp["student_batch1_bf16"], 1), round(tp["teacher_batch1_bf16"], 1)],
                 ["tokens/s batch 512, bfloat16: student / teacher",
                  round(tp["student_batch_bf16"], 1), round(tp["teacher_batch_bf16"], 1)],
                 ["speed-up batch 1 / batch 512, bfloat16",
                  round(tp["speedup_batch1_bf16"], 2), round(tp["speedup_batch_bf16"], 2)],
                 ["speed-up batch 1 / batch 512, fastest of each",
                  round(tp["speedup_batch1_fastest"], 2), round(tp["speedup_batch_fastest"], 2)]]
    rows += [["parameters: student / teacher", n_params, teacher_params],
             ["parameter MB (float32): student / teacher", round(n_params * 4 / 2**20, 1),
              round(teacher_params * 4 / 2**20, 1)]]
    sec.table("Checks", ["check", "value", "second value"], rows)
    sec.table("Perplexity by position", ["from", "to", "rows", "ppl", "ppl shuffled phases"],
              [[b["from"], b["to"], b["rows"], round(b["ppl"], 2), round(b["ppl_shuffled"], 2)]
               for b in ps["by_position"]])
    sec.table("Hash collisions against KL", ["collisions", "rows", "mean KL"],
              [[b["collisions"], b["rows"], round(b["kl"], 4)]
               for b in res["hash collisions"]["bins"]])


# --------------------------------------------------------------------------- eval / generate
def run_eval(args: argparse.Namespace, out: Path) -> Path:
    from ..hft.capture import Unembedding, load_capture, read_manifest, start_token
    from ..hft.evaluate import logprobs_from_final, score, summarise
    from ..hft.generate import check_student_capture, load_student, load_student_state
    from ..hft.model import log_unigram

    if args.student is None:
        raise InputError("hft eval needs --student DIR (the --out folder of `hyperlens hft "
                         "train`, or its 'student' sub-folder).")
    # every check that needs no teacher first: the student's files, then the capture
    fc, meta, state, _ = load_student_state(args.student)
    cap_dir = Path(args.capture_dir or meta["capture"])
    manifest = read_manifest(cap_dir)
    if manifest is None:
        raise InputError(f"--capture-dir {cap_dir} holds no capture; pass the capture the "
                         "student was trained on (`hyperlens hft capture --capture-dir DIR`).")
    check_student_capture(meta, fc, int(state["unigram"].numel()), manifest, cap_dir)
    cap = load_capture(cap_dir)
    st, teacher, meta = load_student(args.student)
    tr, he = cap.train, cap.heldout
    U = Unembedding.from_model(teacher)
    V = U.vocab_size
    start = start_token(teacher.tokenizer)
    rep = Report("hft-eval", {"student": str(args.student), "capture": str(cap.root)},
                 out_dir=out, seed=args.seed, device="cpu")
    results: dict[str, dict[str, np.ndarray]] = {}
    with rep.timer("baselines"):  # fitted on the capture's training texts, as in train
        lu = log_unigram(torch.from_numpy(np.asarray(tr["target"]).astype(np.int64)), V)
        counts = _count_baselines(lu, tr, he, start, (5,))
        for name, fn in counts.items():
            results[name] = score(fn, he, U)
        results["teacher"] = score(logprobs_from_final(U, he), he, U)

    def student(rows: slice) -> torch.Tensor:
        return st.logprobs(np.array(he["ctx"][rows]), np.array(he["pos"][rows]))

    with rep.timer("score"):
        results["A: HyperField (saved)"] = score(student, he, U)
        results[MIX] = score(_mix_fn(student, counts["KN-5"]), he, U)
    text = np.asarray(he["text"])
    summ = {k: summarise(v, text, n_boot=args.boot, seed=args.seed) for k, v in results.items()}
    rows = [[k] + [v for m in ("ppl", "kl", "agree", "top1", "top5") for v in _est(e[m])]
            for k, e in summ.items()]
    cols = ["model"] + [f"{m} {b}" for m in ("ppl", "KL", "agree", "top-1", "top-5")
                        for b in ("", "lo", "hi")]
    rep.section("Held-out metrics", (
        f"The saved student on the capture's {len(he):,} held-out positions ({he.n_texts} "
        "texts), features recomputed from token ids, beside baselines fitted on the capture's "
        "training texts; 95 % percentile-bootstrap intervals over held-out texts. The mixture "
        "weights the student and KN-5 equally (a fixed weight, not fitted).")).table(
        "Held-out metrics", cols, rows)
    rep.data["summary"] = {k: {m: e.as_dict() for m, e in v.items()} for k, v in summ.items()}
    rep.summary([[r[0], f"ppl {r[1]:.1f}", f"KL {r[4]:.3f}", f"agree {r[7]:.3f}"] for r in rows])
    return rep.save()


def run_generate(args: argparse.Namespace, out: Path) -> Path:
    if args.student is None:
        raise InputError("hft generate needs --student DIR (the --out folder of `hyperlens hft "
                         "train`, or its 'student' sub-folder).")
    from ..hft.capture import start_token
    from ..hft.generate import load_student

    st, teacher, _ = load_student(args.student)  # checks the folder before loading the teacher
    tok = teacher.tokenizer
    prompt = tok(args.prompt, add_special_tokens=False)["input_ids"]
    t0 = time.perf_counter()
    ids = st.generate(prompt, args.n_tokens, start_token(tok), seed=args.seed)
    secs = time.perf_counter() - t0
    text = tok.decode(ids)
    rep = Report("hft-generate", {"student": str(args.student), "prompt": args.prompt,
                                  "n_tokens": args.n_tokens}, out_dir=out, seed=args.seed)
    rep.timings["generate_s"] = secs
    rep.section("Generation", "Greedy continuation from the rolling buffer (no teacher).").table(
        "Output", ["prompt", "continuation"], [[args.prompt, text]])
    rep.summary([["prompt", args.prompt], ["continuation", text]])
    return rep.save()


def run_capture_only(args: argparse.Namespace, out: Path) -> Path:
    from .. import models as hmodels

    texts = _texts_unless_captured(args)
    rep = Report("hft-capture", {"capture": asdict(_capture_cfg(args))}, out_dir=out,
                 seed=args.seed, device="cpu")
    teacher = hmodels.load(args.teacher, device="cpu")
    cap = _ensure_capture(args, teacher, rep, texts)
    rep.section("Capture").metrics({"folder": str(cap.root), "train": len(cap.train),
                                    "heldout": len(cap.heldout)})
    rep.summary([["capture", str(cap.root)], ["train positions", len(cap.train)],
                 ["held-out positions", len(cap.heldout)]])
    return rep.save()


def validate(args: argparse.Namespace) -> None:
    """Checks across options and on the folders they name, before any model or dataset is
    loaded (the CLI calls it before :func:`main`; :func:`main` calls it too)."""
    from ..hft.capture import check_capture_dir
    from ..hft.generate import load_student_state

    for name in ("train_tokens", "heldout_tokens", "seeds", "k1", "k2", "top_k", "window",
                 "boot", "n_tokens"):
        v = getattr(args, name)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}.")
    if not args.hard >= 0:
        raise InputError(f"--hard must be >= 0 (a loss weight), got {args.hard}.")
    if args.mix_heads <= 0 or args.k1 % args.mix_heads or args.k2 % args.mix_heads:
        raise InputError(f"--mix-heads ({args.mix_heads}) must be positive and divide --k1 "
                         f"({args.k1}) and --k2 ({args.k2}).")
    if args.top_k > min(args.k1, args.k2) // args.mix_heads:
        raise InputError(f"--top-k ({args.top_k}) must not exceed the tensors per head, "
                         "min(--k1, --k2) / --mix-heads.")
    if str(args.dataset).endswith(".txt") and not Path(str(args.dataset)).is_file():
        raise InputError(f"--dataset {args.dataset}: file not found; pass an existing .txt file.")
    if args.action in ("eval", "generate"):
        if args.student is None:
            raise InputError(f"hft {args.action} needs --student DIR (the --out folder of "
                             "`hyperlens hft train`, or its 'student' sub-folder).")
        load_student_state(args.student)
        return
    cfg = _capture_cfg(args)
    if args.action == "train":
        _student_cfg(args)
    check_capture_dir(_capture_dir(args), cfg)


def main(args: argparse.Namespace) -> Path:
    validate(args)
    out = args.out or Path("runs") / f"hft-{args.action}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.action == "capture":
        return run_capture_only(args, Path(out))
    if args.action == "train":
        return run_train(args, Path(out))
    if args.action == "eval":
        return run_eval(args, Path(out))
    return run_generate(args, Path(out))


def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """A small HyperField run for the tour: rotten-tomatoes, 4,000 / 1,000 positions, Track
    A, one seed, a small student, no MLP or online variant (about a minute on 2 cores)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)  # every option the tour leaves alone keeps the CLI's default
    ns = parser.parse_args(["train"])
    vars(ns).update(
        dataset="rotten-tomatoes", train_tokens=4000, heldout_tokens=1000,
        capture_dir=Path(report.out_dir) / "hft-capture", seeds=1, k1=128, k2=256,
        d_sketch=1024, stage1_epochs=1, stage2_epochs=1, e2e_epochs=1,
        online=False, mlp=False, boot=200, seed=seed, progress=False, out=None)
    sub = Path(report.out_dir) / "hft"
    path = run_train(ns, sub)
    from ..report import load_results

    res = load_results(path)
    rows = []
    for s in res["sections"]:
        for t in s.get("tables", []):
            if t["title"] == "Held-out metrics (seed 0)":
                rows = [[r[0], r[2], r[5], r[8]] for r in t["rows"]]
    report.section("HyperField transformer (small)", (
        "SmolLM2 distilled into a two-stage HyperTensor mixture on rotten-tomatoes "
        "(4,000 training / 1,000 held-out positions, one seed); the full experiment is "
        f"`hyperlens hft train`. Full report: {sub}.")).table(
        "Held-out", ["model", "ppl", "KL", "agree"], rows)
