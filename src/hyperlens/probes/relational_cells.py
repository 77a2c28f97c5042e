"""The relational battery as independent cells, for :func:`hyperlens.run.run_cells`.

A model's pool (its representations, the synsets and the WordNet similarity matrices) is
handed to every cell once (:meth:`hyperlens.run.Executor.share`); a cell names the rows it
analyses. Two kinds of cell:

- :func:`analysis_cell`: :func:`~hyperlens.probes.relational.align_representations` on one
  set of synsets (all parts of speech, nouns, one part of speech);
- :func:`redraw_cell`: one redraw of the stability study
  (:func:`~hyperlens.probes.relational.stability_redraw`); the driver pools the redraws
  with :func:`~hyperlens.probes.relational.stability_summary`.

Both are module-level functions of plain arguments (they run as Ray tasks), pure functions
of them (on one thread, :func:`~hyperlens.run.pinned_threads`, they give the same bits in
any process), and return JSON-ready values. The WordNet graph is built once per process
(:func:`wordnet_graph` caches it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data.wordnet_similarity import wordnet_graph
from ..run import pinned_threads
from .relational import align_representations, stability_redraw

__all__ = ["pool_inputs", "analysis_cell", "redraw_cell"]


def pool_inputs(reps: Mapping[str, Any], synsets: np.ndarray,
                similarities: Mapping[Any, np.ndarray]) -> dict[str, Any]:
    """What every cell of one model reads: ``reps`` (``{name: [N, d]}``, dense or sparse),
    ``synsets`` ``[N]`` and ``similarities`` (``{measure: [N, N]}``)."""
    return {"reps": dict(reps), "synsets": np.asarray(synsets), "sims": dict(similarities)}


def _subset(pool: Mapping[str, Any], rows: Sequence[int]) -> tuple[dict[str, Any], np.ndarray,
                                                                     dict[str, np.ndarray]]:
    r = np.asarray(rows, dtype=np.int64)
    ix = np.ix_(r, r)
    return ({k: v[r] for k, v in pool["reps"].items()}, pool["synsets"][r],
            {m: S[ix] for m, S in pool["sims"].items()})


def analysis_cell(pool: Mapping[str, Any], rows: Sequence[int], *, measures: Sequence[str],
                  n_perm: int, n_boot: int, seed: int, simulate_root: bool,
                  n_simplices: int) -> dict[str, Any]:
    """The battery on ``rows`` of the pool, TF-IDF as the baseline and the pentachoron CV of
    the contextual and static vectors."""
    reps, synsets, sims = _subset(pool, rows)
    with pinned_threads(1):
        return align_representations(
            reps, synsets, measures=tuple(measures), n_perm=n_perm, n_boot=n_boot, seed=seed,
            simulate_root=simulate_root, baseline="tfidf", similarities=sims,
            n_simplices=n_simplices, pentachoron=("contextual", "static"),
            graph=wordnet_graph())


def redraw_cell(pool: Mapping[str, Any], rows: Sequence[int], *, redraw: int, n_sample: int,
                seed: int) -> dict[str, float]:
    """Redraw ``redraw`` of the stability study of ``rows`` of the pool."""
    reps, synsets, sims = _subset(pool, rows)
    with pinned_threads(1):
        return stability_redraw(reps, synsets, similarities=sims, redraw=redraw,
                                n_sample=n_sample, seed=seed, graph=wordnet_graph())
