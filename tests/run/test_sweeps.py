"""Every sweep on the executor: each command with independent units of work runs them as
cells (or shards) through the one ledger, gives the same ``results.json`` on a local Ray
cluster as in-process (apart from timings, environment, creation time and the executor), and
resumes from a truncated ``cells.jsonl`` computing only the missing cells, with the same
numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hyperlens.config import RunContext
from hyperlens.errors import DataError
from hyperlens.report import comparable
from hyperlens.report.core import VOLATILE_KEYS

_DIFFERS = (*VOLATILE_KEYS, "config.context.executor", "config.context.ray_address")


def _results(out: Path) -> dict[str, Any]:
    return comparable(json.loads((out / "results.json").read_text()), _DIFFERS)


def _cells(out: Path) -> dict[str, Any]:
    """Ledger results by cell id; each cell recorded once."""
    recs = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)), "a cell was recorded twice"
    return {r["id"]: r["result"] for r in recs}


def _truncate(out: Path, keep: int) -> int:
    """Keep the first ``keep`` lines of the ledger (a driver killed after ``keep`` cells);
    returns how many lines there were."""
    lines = (out / "cells.jsonl").read_text().splitlines()
    assert len(lines) > keep
    (out / "cells.jsonl").write_text("".join(x + "\n" for x in lines[:keep]))
    return len(lines)


def _check_local_ray_and_resume(run: Callable[..., Any], tmp_path: Path, ray: Any,
                                cells_key: str = "cells") -> None:
    """Local run, the same on Ray, then the local run resumed from half its ledger."""
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run(out=local)
    run(out=on_ray, executor="ray", ray_address=ray.cluster_address)
    ray_res = json.loads((on_ray / "results.json").read_text())
    assert ray_res["config"]["context"]["executor"] == "ray"
    assert _results(on_ray) == _results(local)
    assert _cells(on_ray) == _cells(local)  # floats compared exactly
    ref_cells, ref = _cells(local), _results(local)
    total = _truncate(local, len(ref_cells) // 2)
    run(out=local)
    res = json.loads((local / "results.json").read_text())
    assert res["data"][cells_key]["resumed"] == len(ref_cells) // 2
    assert res["data"][cells_key]["computed"] == total - len(ref_cells) // 2
    assert _cells(local) == ref_cells
    ref["data"].pop(cells_key)
    again = _results(local)
    again["data"].pop(cells_key)
    assert again == ref


# --------------------------------------------------------------------------- relational
def _glove_and_wordnet_or_skip() -> None:
    from hyperlens.data.wordnet_similarity import wordnet_graph
    from hyperlens.models.static import check_static

    try:
        wordnet_graph()
    except DataError as exc:
        pytest.skip(f"WordNet is not installed: {exc}")
    ok, detail = check_static("glove-50d")
    if not ok:
        pytest.skip(f"glove-50d unavailable: {detail}")


def _relational(**ctx: Any) -> Any:
    from hyperlens.experiments import relational as rel

    cfg = rel.RelationalConfig(models=("glove-50d",), max_entries=120, n_main=100, n_redraws=3,
                               n_sample=40, n_permutations=9, n_boot=20, n_simplices=20,
                               per_pos=False, cache=False)
    return rel.run(cfg, RunContext(device="cpu", seed=3, progress=False, **ctx))


@pytest.mark.integration
def test_relational_cells_on_ray_and_resumed(tmp_path: Path, ray_executor) -> None:
    _glove_and_wordnet_or_skip()
    _check_local_ray_and_resume(_relational, tmp_path, ray_executor)
    res = json.loads((tmp_path / "ray" / "results.json").read_text())
    stab = res["data"]["relational"]["glove-50d"]["stability"]["all POS"]
    assert stab["n_seeds"] == 3 and stab["estimates"]["static.path.spearman"]["n"] == 3


def test_stability_is_its_redraws_pooled(graph: Any) -> None:
    """The stability study equals its redraws computed one by one, in any order."""
    import numpy as np

    from hyperlens.probes import relational as rel

    nouns = np.flatnonzero(graph.pos == "n")[:80]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    sims = {"path": rng.random((80, 80))}
    whole = rel.stability({"x": X}, nouns, similarities=sims, n_seeds=3, n_sample=30, seed=5,
                          n_simplices=20, graph=graph)
    parts = {s: rel.stability_redraw({"x": X}, nouns, similarities=sims, redraw=s,
                                     n_sample=30, seed=5, n_simplices=20, graph=graph)
             for s in (2, 0, 1)}
    pooled = rel.stability_summary([parts[s] for s in range(3)], n_sample=30, pool=80)
    assert json.dumps(pooled) == json.dumps(whole)
    assert parts[0] != parts[1]  # each redraw draws its own synsets
