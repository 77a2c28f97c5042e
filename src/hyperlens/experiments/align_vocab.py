"""``hyperlens align-vocab --models A B``: Procrustes between two models' token embeddings.

Fits an orthogonal map (PCA to a common width when the widths differ, plus a scale) from
model A's input token embeddings to model B's over the tokens both vocabularies share,
and scores it on held-out tokens: relative residual, per-token cosine, top-1 retrieval
(the mapped token's nearest B token is itself), overlap of the 10 nearest B tokens of
the mapped token with those of the B token, and the correlation of pairwise cosines
(invariant to the map: it compares the two geometries), each beside a null map fitted
on shuffled pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..align.vocab import align_vocabularies
from ..config import Command, Config, RunContext, at_least, between, option, start_report
from ..errors import ConfigError
from ..report import Report

__all__ = ["AlignVocabConfig", "run", "COMMANDS"]


@dataclass(frozen=True, kw_only=True)
class AlignVocabConfig(Config):
    """Options of ``hyperlens align-vocab``."""

    RANDOM = "which shared tokens are held out, and the null map's re-pairing"

    models: tuple[str, ...] = option(
        help="two models: the first's token embeddings are mapped onto the second's "
             "(zoo name, HF id or path)", min_items=2, metavar="MODEL")
    test_fraction: float = option(0.2, help="share of the shared vocabulary held out for "
                                  "scoring", check=between(0, 1, closed=False))
    max_test: int = option(3000, help="cap on held-out tokens", check=at_least(1))
    k: int = option(10, help="neighbours for the overlap score", check=at_least(1))
    cased: bool = option(False, help="match token strings case-sensitively")
    whole_words: bool = option(False, help="use word-initial tokens only (drop continuation "
                                           "pieces)")
    scaling: bool = option(True, help="fit a global scale beside the rotation (--no-scaling: "
                                      "a pure rotation)")
    n_components: int | None = option(None, help="common width (default: the smaller "
                                      "model's width)", check=at_least(1))

    def check(self) -> None:
        if len(self.models) != 2:
            raise ConfigError(
                f"--models takes exactly two models (A mapped onto B), got {len(self.models)}: "
                f"{' '.join(self.models)}."
            )


def run(config: AlignVocabConfig, ctx: RunContext | None = None) -> Report:
    """Load both models, align their token embeddings and write the report folder."""
    from .. import models as hmodels

    ctx = ctx or RunContext()
    model_a, model_b = config.models
    k = config.k
    rep = start_report("align-vocab", config, ctx,
                       description=f"Token-embedding Procrustes from {model_a} to {model_b}.")
    mats = {}
    for name in (model_a, model_b):
        with rep.timer(f"load:{name}"):
            h = hmodels.load(name, device=ctx.torch_device)
            mats[name] = (h.token_embeddings().detach().float().cpu().numpy(), h.vocab())
    with rep.timer("align"):
        res = align_vocabularies(mats[model_a][0], mats[model_a][1], mats[model_b][0],
                                 mats[model_b][1], test_fraction=config.test_fraction,
                                 max_test=config.max_test, k=k, seed=ctx.seed,
                                 lowercase=not config.cased,
                                 whole_words_only=config.whole_words, scaling=config.scaling,
                                 n_components=config.n_components)
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
    sec.metrics(res.metrics())
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
    rep.save()
    return rep


COMMANDS = (
    Command("align-vocab", "Procrustes between two models' token embeddings over their shared "
            "vocabulary", AlignVocabConfig, run, description=__doc__ or ""),
)
