"""The whole terrain battery on one model: :func:`run_terrain`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ...errors import InputError
from ...utils import as_float_matrix
from .. import wordlists
from ._common import (
    _histogram,
)
from .config import (
    TerrainConfig,
    TerrainSubject,
)
from .embedding import (
    cosine_statistics,
    distance_statistics,
    norm_statistics,
    pentachoron_statistics,
    spectrum_statistics,
)
from .layers import (
    layer_evolution,
    position_structure,
)
from .tokens import (
    category_clustering,
    digit_manifold,
    find_token_ids,
    special_token_statistics,
)


# --------------------------------------------------------------------------- the battery
def run_terrain(subject: TerrainSubject, config: TerrainConfig | None = None, *,
                seed: int = 0, texts: Sequence[str] | None = None,
                device: str | torch.device = "cpu",
                categories: dict[str, Sequence[str]] | None = None,
                layers: bool = True) -> dict[str, Any]:
    """Run every terrain measurement on ``subject`` and return a JSON-ready dict.

    ``texts`` feed the layer statistics (default: the built-in sentences); ``categories``
    replace the built-in semantic categories; ``layers=False`` skips the forward passes.
    Sections that do not apply (no digits in the vocabulary, a static model) carry
    ``"available": False`` and a ``note`` instead of failing.
    """
    cfg = config or TerrainConfig()
    E = as_float_matrix(subject.embeddings, "embeddings", min_rows=5)
    timings: dict[str, float] = {}
    out: dict[str, Any] = {
        "model": subject.name, "kind": subject.kind, "vocab_size": int(E.shape[0]),
        "dim": int(E.shape[1]), "num_layers": subject.num_layers, "config": cfg.to_dict(),
    }

    cpu: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn()
        timings[name] = time.perf_counter() - t0
        cpu[name] = time.process_time() - c0  # CPU seconds of all threads: robust to a busy machine
        return res

    norms = timed("norms", lambda: norm_statistics(E, subject.vocab))
    norm_values = norms.pop("_norms")
    norms["histogram"] = _histogram(norm_values, cfg.histogram_bins)
    out["norms"] = norms
    out["cosine"] = timed(
        "cosine",
        lambda: cosine_statistics(E, sample=cfg.cosine_sample, seed=seed, bins=cfg.histogram_bins),
    )
    out["distances"] = timed("distances", lambda: distance_statistics(
        E, sample=cfg.distance_sample, seed=seed, bins=cfg.histogram_bins))
    spec = timed("spectrum", lambda: spectrum_statistics(E, seed=seed, blocks=cfg.spectrum_blocks,
                                                         n_bootstrap=cfg.spectrum_bootstrap))
    lo, hi = spec["pr_over_d_ci"]
    spec["pr_band"] = list(cfg.pr_band)
    spec["pr_in_band"] = bool(cfg.pr_band[0] <= spec["pr_over_d"] <= cfg.pr_band[1])
    spec["pr_ci_overlaps_band"] = bool(lo <= cfg.pr_band[1] and hi >= cfg.pr_band[0])
    out["spectrum"] = spec
    out["pentachoron"] = timed("pentachoron", lambda: pentachoron_statistics(
        E, n_simplices=cfg.n_simplices, seed=seed, n_bootstrap=cfg.n_boot,
        bins=cfg.histogram_bins, band=(cfg.cv_band[0], cfg.cv_band[1])))

    def numbers() -> dict[str, Any]:
        res: dict[str, Any] = {}
        for key, words, space in (
            ("digits", wordlists.DIGITS, False),
            ("number_words", wordlists.NUMBER_WORDS, True),
        ):
            ids = find_token_ids(words, subject, prefer_space=space)
            if len(ids) == len(words):
                res[key] = {"available": True, "tokens": list(words),
                            **digit_manifold(E, [ids[w] for w in words],
                                             n_permutations=cfg.n_permutations, seed=seed)}
            else:
                missing = [w for w in words if w not in ids]
                res[key] = {
                    "available": False,
                    "note": "not every item is a single token in this vocabulary (missing: "
                            f"{missing})",
                }
        return res

    out["numbers"] = timed("numbers", numbers)

    def cats() -> dict[str, Any]:
        cat_words = categories if categories is not None else wordlists.SEMANTIC_CATEGORIES
        groups: dict[str, list[int]] = {}
        used: dict[str, list[str]] = {}
        seen_ids: set[int] = set()
        for cname, words in cat_words.items():
            ids = find_token_ids(list(words), subject)
            keep = [(w, i) for w, i in ids.items() if i not in seen_ids]
            seen_ids.update(i for _, i in keep)
            groups[cname] = [i for _, i in keep]
            used[cname] = [w for w, _ in keep]
        try:
            res = category_clustering(E, groups, n_permutations=cfg.n_permutations, seed=seed,
                                      reference_mean=out["cosine"]["mean"])
        except InputError as exc:
            return {"available": False, "note": str(exc)}
        res["available"] = True
        res["words"] = {k: v for k, v in used.items() if len(v) >= 3}
        return res

    out["categories"] = timed("categories", cats)
    out["special_tokens"] = timed("special_tokens", lambda: special_token_statistics(
        E, subject.tokenizer, norms=norm_values, seed=seed))
    if layers:
        out["layers"] = timed("layers", lambda: layer_evolution(
            subject, list(texts) if texts is not None else list(wordlists.TERRAIN_SENTENCES),
            max_length=cfg.max_length, batch_size=cfg.batch_size, seed=seed,
            n_bootstrap=cfg.n_boot, device=device))
    else:
        out["layers"] = {"available": False, "note": "layer statistics were not requested"}
    out["positions"] = timed("positions", lambda: position_structure(
        subject.module, kind=subject.kind, max_positions=cfg.max_positions))
    out["timings"] = timings
    out["cpu_seconds"] = cpu
    return out
