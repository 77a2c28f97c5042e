"""``hyperlens align-vocab A B``: Procrustes between two models' token embeddings.

Fits an orthogonal map (PCA to a common width when the widths differ, plus a scale) from
model A's input token embeddings to model B's over the tokens both vocabularies share,
and scores it on held-out tokens: relative residual, per-token cosine, top-1 retrieval
(the mapped token's nearest B token is itself), overlap of the 10 nearest B tokens of
the mapped token with those of the B token, and the correlation of pairwise cosines
(invariant to the map: it compares the two geometries), each beside a null map fitted
on shuffled pairs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..align.vocab import align_vocabularies
from ..report import Report
from .options import positive_int, unit_fraction

__all__ = ["COMMAND", "HELP", "add_arguments", "main", "run_align_vocab"]

COMMAND = "align-vocab"
HELP = "Procrustes between two models' token embeddings over their shared vocabulary"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model_a", help="model whose token embeddings are mapped (zoo name, HF id or path)"
    )
    p.add_argument("model_b", help="target model")
    p.add_argument("--test-fraction", type=unit_fraction, default=0.2,
                   help="share of the shared vocabulary held out for scoring (0.2)")
    p.add_argument(
        "--max-test", type=positive_int, default=3000, help="cap on held-out tokens (3000)"
    )
    p.add_argument(
        "--k", type=positive_int, default=10, help="neighbours for the overlap score (10)"
    )
    p.add_argument("--cased", action="store_true", help="match token strings case-sensitively")
    p.add_argument("--whole-words", action="store_true",
                   help="use word-initial tokens only (drop continuation pieces)")
    p.add_argument("--no-scaling", dest="scaling", action="store_false",
                   help="fit a pure rotation (no global scale)")
    p.add_argument("--n-components", type=positive_int, default=None,
                   help="common width (default: the smaller model's width)")


def run_align_vocab(
    model_a: str, model_b: str, *, out: Path, seed: int = 0, device: str = "cpu",
    test_fraction: float = 0.2, max_test: int = 3000, k: int = 10, lowercase: bool = True,
    whole_words_only: bool = False, scaling: bool = True, n_components: int | None = None,
) -> Path:
    """Load both models, align their token embeddings and write the report folder."""
    from .. import models as hmodels

    config = {"model_a": model_a, "model_b": model_b, "test_fraction": test_fraction,
              "max_test": max_test, "k": k, "lowercase": lowercase,
              "whole_words_only": whole_words_only, "scaling": scaling,
              "n_components": n_components, "seed": seed}
    rep = Report("align-vocab", config, out_dir=out, seed=seed, device=device,
                 description=f"Token-embedding Procrustes from {model_a} to {model_b}.")
    mats = {}
    for name in (model_a, model_b):
        with rep.timer(f"load:{name}"):
            h = hmodels.load(name, device="cpu")
            mats[name] = (h.token_embeddings().detach().float().cpu().numpy(), h.vocab())
    with rep.timer("align"):
        t0 = time.perf_counter()
        res = align_vocabularies(mats[model_a][0], mats[model_a][1], mats[model_b][0],
                                 mats[model_b][1], test_fraction=test_fraction,
                                 max_test=max_test, k=k, seed=seed, lowercase=lowercase,
                                 whole_words_only=whole_words_only, scaling=scaling,
                                 n_components=n_components)
        seconds = time.perf_counter() - t0
    dims = (mats[model_a][0].shape, mats[model_b][0].shape)
    sec = rep.section(
        f"{model_a} -> {model_b}",
        f"Vocabularies of {dims[0][0]:,} and {dims[1][0]:,} rows ({res.conventions[0]} and "
        f"{res.conventions[1]} token conventions) share {res.n_shared:,} normalised tokens; "
        f"Procrustes was fitted on {res.n_fit:,} of them in a {res.dim}-d common space and "
        f"scored on {res.n_test:,} held-out tokens. 'null' refits on randomly re-paired tokens.")
    names = [("relative residual ||sAR - B|| / ||B||", "residual"),
             ("per-token cosine, mean", "cosine_mean"),
             ("per-token cosine, median", "cosine_median"),
             ("top-1 retrieval (nearest B token is the same token)", "top1_retrieval"),
             (f"{k}-NN agreement (B neighbours of mapped A token vs of B token)", "knn_overlap"),
             ("relational correlation of pairwise cosines (map-invariant)", "relational_corr")]
    sec.table("Held-out quality", ["metric", "aligned", "null (shuffled pairs)"],
              [[label, getattr(res, key), res.null[key]] for label, key in names])
    edges = np.linspace(-1, 1, 81)
    counts, _ = np.histogram(res.cosines, bins=edges)
    sec.plot(
        "align_vocab_cosines.png",
        {
            "kind": "hist",
            "title": f"Per-token cosine after alignment ({model_a} -> {model_b})",
            "xlabel": "cosine(mapped A token, B token)",
            "series": [
                {"label": "held-out tokens", "edges": edges.tolist(), "counts": counts.tolist()}
            ],
            "vlines": [{"x": res.cosine_mean, "label": f"mean {res.cosine_mean:.3f}"}],
        },
    )
    order = np.argsort(res.cosines)
    sec.table("Worst and best aligned held-out tokens", ["rank", "worst token", "cosine",
                                                        "best token", "cosine"],
              [[i + 1, res.test_keys[order[i]], float(res.cosines[order[i]]),
                res.test_keys[order[-1 - i]], float(res.cosines[order[-1 - i]])]
               for i in range(min(15, len(order)))])
    sec.metrics(res.metrics() | {"fit_seconds": seconds})
    rep.data["cosine_percentiles"] = res.cosine_percentiles
    rep.summary(
        [
            ["shared tokens", f"{res.n_shared:,}"],
            [
                "held-out cosine (mean)",
                f"{res.cosine_mean:.3f} (null {res.null['cosine_mean']:.3f})",
            ],
            [
                "top-1 retrieval",
                f"{res.top1_retrieval:.3f} (null {res.null['top1_retrieval']:.3f})",
            ],
            [f"{k}-NN agreement", f"{res.knn_overlap:.3f} (null {res.null['knn_overlap']:.3f})"],
            ["residual", f"{res.residual:.3f}"],
        ]
    )
    return rep.save()


def main(args: argparse.Namespace) -> Path:
    out = (
        args.out
        if args.out is not None
        else Path("runs") / f"align-vocab-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    return run_align_vocab(args.model_a, args.model_b, out=Path(out), seed=int(args.seed),
                           device=str(args.device), test_fraction=args.test_fraction,
                           max_test=args.max_test, k=args.k, lowercase=not args.cased,
                           whole_words_only=args.whole_words, scaling=args.scaling,
                           n_components=args.n_components)
