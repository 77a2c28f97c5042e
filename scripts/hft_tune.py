"""Tune HyperField / MLP settings on a slice of the *training* texts of a capture.

The capture's training rows are split by text: the first ``1 - val`` share of training texts
fits the students, the rest scores them. The capture's held-out texts are never read, so
nothing here is chosen on the evaluation set. One JSON line per configuration:

    python scripts/hft_tune.py --capture /tmp/cap --set k2=512 heads2=4 --mlp
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, fields

import numpy as np
import torch

from hyperlens import models as hmodels
from hyperlens.hft.capture import Unembedding, load_capture
from hyperlens.hft.evaluate import score, subset
from hyperlens.hft.features import FeatureConfig, Featurizer
from hyperlens.hft.model import MLPStudent, count_parameters, log_unigram, mlp_hidden_for
from hyperlens.hft.ngram import KneserNey
from hyperlens.hft.train import (
    FeatureStore,
    StudentConfig,
    aux_stats,
    build_features,
    build_model,
    train_hyperfield,
    train_mlp,
)


def _value(v: str) -> object:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--capture", required=True)
    ap.add_argument("--teacher", default="smollm2")
    ap.add_argument("--val", type=float, default=0.2, help="share of training texts scored")
    ap.add_argument("--rows", type=int, default=0, help="cap on fitting rows (0: all)")
    ap.add_argument("--d-sketch", type=int, default=4096)
    ap.add_argument("--track", default="A", choices=["A", "B"])
    ap.add_argument("--set", nargs="*", default=[], help="StudentConfig fields, k=v")
    ap.add_argument("--mlp", action="store_true", help="also train the equal-size MLP")
    ap.add_argument("--no-hf", dest="hf", action="store_false")
    ap.add_argument("--kn", action="store_true", help="also score Kneser-Ney 5-gram")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    known = {f.name for f in fields(StudentConfig)}
    kv = dict(x.split("=", 1) for x in a.set)
    bad = set(kv) - known
    if bad:
        raise SystemExit(f"unknown StudentConfig fields {sorted(bad)}; known: {sorted(known)}")
    sc = StudentConfig(**{k: _value(v) for k, v in kv.items()})  # type: ignore[arg-type]
    torch.manual_seed(a.seed)
    cap = load_capture(a.capture)
    teacher = hmodels.load(a.teacher, device="cpu")
    U = Unembedding.from_model(teacher)
    tr = cap.train
    text = np.asarray(tr["text"])
    cut = np.quantile(np.unique(text), 1 - a.val)
    fit_rows, val_rows = np.flatnonzero(text < cut), np.flatnonzero(text >= cut)
    if a.rows:
        fit_rows = fit_rows[: a.rows]
    fit_sp, val_sp = subset(tr, fit_rows), subset(tr, val_rows)
    fc = FeatureConfig(d_sketch=a.d_sketch, track=a.track, seed=a.seed)
    feat = Featurizer(teacher.token_embeddings(), fc).fit(
        fit_sp["ctx"], fit_sp["pos"], fit_sp["state"] if a.track == "B" else None)
    store = build_features(feat, cap, "train")
    ftr = FeatureStore(store.x1[fit_rows].numpy(), store.tail[fit_rows].numpy())
    X, T = store.x1[val_rows], store.tail[val_rows]
    lu = log_unigram(torch.from_numpy(np.asarray(fit_sp["target"]).astype(np.int64)),
                     U.vocab_size)
    stats = aux_stats(fit_sp)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        def fn(r: slice) -> torch.Tensor:
            y, _ = model(X[r].float(), T[r].float())
            return torch.log_softmax(model.logits(y), -1)  # type: ignore[operator]

        res = score(fn, val_sp, U)
        return {"ppl": float(np.exp(res["nll"].mean())), "kl": float(res["kl"].mean()),
                "agree": float(res["agree"].mean())}

    base = {"fit_rows": len(fit_rows), "val_rows": len(val_rows), "track": a.track,
            "d_sketch": a.d_sketch}
    uni = score(lambda r: lu[None].expand(r.stop - r.start, -1), val_sp, U)
    print(json.dumps({**base, "model": "unigram", "ppl": float(np.exp(uni["nll"].mean()))}),
          flush=True)
    if a.kn:
        start = int(teacher.tokenizer.bos_token_id if teacher.tokenizer.bos_token_id is not None
                    else teacher.tokenizer.eos_token_id)
        tg, tx = np.asarray(fit_sp["target"]), np.asarray(fit_sp["text"])
        seqs = np.split(tg, np.flatnonzero(np.diff(tx)) + 1)
        kn = KneserNey(5, U.vocab_size, start).fit(seqs)
        H = KneserNey.histories(val_sp["ctx"], 5, start)
        r = score(lambda r: kn.distribution(H[r]).log().float(), val_sp, U)
        print(json.dumps({**base, "model": "KN-5", "ppl": float(np.exp(r["nll"].mean())),
                          "kl": float(r["kl"].mean())}), flush=True)
    n_params = 0
    if a.hf:
        model = build_model(sc, feat.d1, fc.d_tail, teacher.hidden_size,
                            int(stats["mean"].numel()), U, lu, seed=a.seed)
        t0 = time.perf_counter()
        hist = train_hyperfield(model, ftr, fit_sp, stats, U, sc, seed=a.seed)
        n_params = count_parameters(model)
        print(json.dumps({**base, "model": "hyperfield", **evaluate(model), "params": n_params,
                          "seconds": round(time.perf_counter() - t0, 1),
                          "reseeds": hist["reseeds"], "config": asdict(sc),
                          "last": {k: float(np.mean(v["train_loss"][-20:])) for k, v in
                                   hist.items() if isinstance(v, dict) and v.get("train_loss")}
                          }), flush=True)
    if a.mlp:
        n = n_params or int(kv.get("mlp_params", 6_000_000))
        hidden = mlp_hidden_for(n, feat.d1 + fc.d_tail, teacher.hidden_size)
        mlp = MLPStudent(feat.d1, fc.d_tail, teacher.hidden_size, hidden, U, lu, seed=a.seed)
        t0 = time.perf_counter()
        train_mlp(mlp, ftr, fit_sp, U, sc, seed=a.seed)
        print(json.dumps({**base, "model": "mlp", **evaluate(mlp), "params": count_parameters(mlp),
                          "seconds": round(time.perf_counter() - t0, 1), "config": asdict(sc)}),
              flush=True)


if __name__ == "__main__":
    main()
