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


def _results(out: Path, differs: tuple[str, ...] = ()) -> dict[str, Any]:
    return comparable(json.loads((out / "results.json").read_text()), (*_DIFFERS, *differs))


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
                                cells_key: str = "cells", differs: tuple[str, ...] = (),
                                cell_differs: tuple[str, ...] = ()) -> None:
    """Local run, the same on Ray, then the local run resumed from half its ledger
    (``differs``: measured parts of results.json; ``cell_differs``: of each cell result)."""
    local, on_ray = tmp_path / "local", tmp_path / "ray"

    def cells(out: Path) -> dict[str, Any]:
        return {k: {f: v for f, v in r.items() if f not in cell_differs}
                for k, r in _cells(out).items()}

    run(out=local)
    run(out=on_ray, executor="ray", ray_address=ray.cluster_address)
    ray_res = json.loads((on_ray / "results.json").read_text())
    assert ray_res["config"]["context"]["executor"] == "ray"
    assert _results(on_ray, differs) == _results(local, differs)
    assert cells(on_ray) == cells(local)  # floats compared exactly
    ref_cells, ref = cells(local), _results(local, differs)
    total = _truncate(local, len(ref_cells) // 2)
    run(out=local)
    res = json.loads((local / "results.json").read_text())
    assert res["data"][cells_key]["resumed"] == len(ref_cells) // 2
    assert res["data"][cells_key]["computed"] == total - len(ref_cells) // 2
    assert cells(local) == ref_cells
    ref["data"].pop(cells_key)
    again = _results(local, differs)
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


# --------------------------------------------------------------------------- hft capture
def _capture_arrays(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*.npy"))}


def _capture(cap: Path, out: Path, **ctx: Any) -> dict[str, Any]:
    from hyperlens.experiments import hft

    cfg = hft.CaptureOptions(teacher="smollm2", dataset="rotten-tomatoes", train_tokens=400,
                             heldout_tokens=150, layer=2, heads=(0,), window=4, capture_dir=cap)
    hft.run_capture(cfg, RunContext(seed=1, progress=False, out=out, **ctx))
    return json.loads((cap / "manifest.json").read_text())


@pytest.mark.integration
def test_hft_capture_shards_on_ray_and_resumed(tmp_path: Path, ray_executor,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperlens.hft import capture as capture_mod
    from hyperlens.models import check_available

    try:
        check_available("smollm2")
    except Exception as exc:  # noqa: BLE001 - any reason the offline model is missing
        pytest.skip(f"smollm2 unavailable: {exc}")
    import dataclasses

    from hyperlens.experiments import hft

    real_cfg = hft._capture_cfg
    monkeypatch.setattr(hft, "_capture_cfg", lambda cfg, seed: dataclasses.replace(
        real_cfg(cfg, seed), shard_texts=6))  # several shards per split
    local = _capture(tmp_path / "cap-local", tmp_path / "r-local")
    assert len(local["shards"]["train"]) >= 2 and local["complete"]
    on_ray = _capture(tmp_path / "cap-ray", tmp_path / "r-ray", executor="ray",
                      ray_address=ray_executor.cluster_address)
    res = json.loads((tmp_path / "r-ray" / "results.json").read_text())
    assert res["data"]["executor"]["executor"] == "ray"
    assert on_ray == local
    ref = _capture_arrays(tmp_path / "cap-local")
    assert _capture_arrays(tmp_path / "cap-ray") == ref  # the same bytes
    # a driver killed after the first training shard: the rerun forwards only the others
    cap = tmp_path / "cap-local"
    kept = cap / local["shards"]["train"][0]["name"]
    manifest = dict(local, complete=False,
                    shards={"train": local["shards"]["train"][:1], "heldout": []})
    for d in local["shards"]["train"][1:] + local["shards"]["heldout"]:
        for f in (cap / d["name"]).iterdir():
            f.unlink()
        (cap / d["name"]).rmdir()
    (cap / "manifest.json").write_text(json.dumps(manifest))
    stamp = {f.name: f.stat().st_mtime_ns for f in kept.iterdir()}
    calls: list[int] = []
    real = capture_mod.shard_arrays
    monkeypatch.setattr(capture_mod, "shard_arrays",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    again = _capture(cap, tmp_path / "r-again")
    assert len(calls) == len(local["shards"]["train"]) - 1 + len(local["shards"]["heldout"])
    assert {f.name: f.stat().st_mtime_ns for f in kept.iterdir()} == stamp
    assert again == local and _capture_arrays(cap) == ref


# --------------------------------------------------------------------------- hft train
def _hft_train(cap: Path, **ctx: Any) -> Any:
    from hyperlens.experiments import hft

    cfg = hft.HftTrainConfig(
        teacher="smollm2", dataset="rotten-tomatoes", train_tokens=400, heldout_tokens=120,
        layer=2, heads=(0,), window=16, capture_dir=cap, seeds=(0, 1), k1=8, k2=8, top_k=2,
        mix_heads=2, d_sketch=64, batch_size=64, features=("exact", "sketch"),
        exact_tokens=2, max_epochs=2, patience=1, online=True, n_boot=20)
    return hft.run_train(cfg, RunContext(seed=0, device="cpu", progress=False, **ctx))


@pytest.mark.integration
@pytest.mark.slow
def test_hft_train_students_on_ray_and_resumed(tmp_path: Path, ray_executor,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every (featurisation, student, seed) is a cell: the same students on Ray, and a
    killed run trains only the missing ones (speeds and memory are measured, not compared)."""
    from functools import partial

    from hyperlens.hft import checks
    from hyperlens.models import check_available

    try:
        check_available("smollm2")
    except Exception as exc:  # noqa: BLE001 - any reason the offline model is missing
        pytest.skip(f"smollm2 unavailable: {exc}")
    monkeypatch.setattr(checks, "throughput",
                        partial(checks.throughput, steps=2, repeats=1, bf16=False))
    cap = tmp_path / "cap"
    _check_local_ray_and_resume(partial(_hft_train, cap), tmp_path, ray_executor,
                                differs=("data.max_rss_mb", "data.checks A.throughput",
                                         "sections"),
                                cell_differs=("seconds", "train_seconds"))
    folder = tmp_path / "local" / "cells"
    files = sorted(p.name for p in folder.iterdir())
    npz = [f for f in files if f.endswith(".npz") and not f.startswith("baselines-")]
    weights = [f for f in files if f.endswith(".safetensors")]
    assert len(npz) == 11  # 2 x (HF, MLP, window) + 2 x 2 + the online rule
    assert len(weights) == 1  # the kept student
    assert len([f for f in files if f.startswith("baselines-")]) == 1
    # the baselines' held-out rows are read back, not scored again (the numbers equal)
    from hyperlens.hft import evaluate

    scored: list[list[str]] = []
    real = evaluate.score_many
    monkeypatch.setattr(evaluate, "score_many",
                        lambda fns, *a, **k: scored.append(list(fns)) or real(fns, *a, **k))
    # a ledger whose cells' files were lost (copied alone, or the folder cleaned) trains
    # those students again and gives the same numbers
    ref = _results(tmp_path / "local", ("data.max_rss_mb", "data.checks A.throughput",
                                        "sections", "data.cells"))
    (folder / weights[0]).unlink()
    (folder / [f for f in npz if "MLP" in f][0]).unlink()
    from hyperlens.hft import cells as hc

    monkeypatch.setattr(hc, "train_online",  # a cell like the others: read back, not rerun
                        lambda *a, **k: pytest.fail("the online rule was trained again"))
    _hft_train(cap, out=tmp_path / "local")
    res = json.loads((tmp_path / "local" / "results.json").read_text())
    assert res["data"]["cells"]["computed"] == 2
    assert scored and not any("teacher" in fns for fns in scored)
    assert _results(tmp_path / "local", ("data.max_rss_mb", "data.checks A.throughput",
                                         "sections", "data.cells")) == ref


# --------------------------------------------------------------------------- header
def _header(**ctx: Any) -> Any:
    from hyperlens.experiments.header import HeaderRunConfig, run

    cfg = HeaderRunConfig(dataset="rotten-tomatoes", n_train=32, n_val=16, n_eval=32,
                          seeds=(0, 1), arms=("hdc", "prompt"), steps=2, batch_size=8,
                          eval_every=1, hdc_dim=512, insert_layer=24, lr_grid=(3e-3, 1e-2),
                          n_boot=100, threads=1, text="present")
    return run(cfg, RunContext(device="cpu", progress=False, **ctx))


@pytest.mark.integration
@pytest.mark.slow
def test_header_cells_on_ray_and_resumed(tmp_path: Path, ray_executor) -> None:
    from hyperlens.models import check_available

    for name in ("minilm", "smollm2"):
        try:
            check_available(name)
        except Exception as exc:  # noqa: BLE001 - any reason the offline model is missing
            pytest.skip(f"{name} unavailable: {exc}")
    _check_local_ray_and_resume(_header, tmp_path, ray_executor)


# --------------------------------------------------------------------------- modulate
def _modulate(**ctx: Any) -> Any:
    from hyperlens.experiments.modulate import ModulateConfig, run

    cfg = ModulateConfig(models=("minilm",), modulators=("lerp",), seeds=(0, 1),
                         controls=("shuffled",), control_seeds=(0,), anchors=70, test=12,
                         steps=2, batch_size=4, alpha_starts=(), sweep=(0.29154,), n_boot=20,
                         n_coherence=4, alpha_lr=(0.3,))
    return run(cfg, RunContext(device="cpu", dtype="float32", seed=0, progress=False, **ctx))


def _adapter_files(out: Path) -> dict[str, Any]:
    """Tensors (as bytes) and metadata of every file under ``out/adapters`` (safetensors
    writes the metadata in no fixed order, so the files' own bytes may differ)."""
    from hyperlens.utils import load_safetensors

    files = {}
    for f in sorted((out / "adapters").iterdir()):
        tensors, meta = load_safetensors(f, what="file", fix="-")
        files[f.name] = ({k: (v.dtype, tuple(v.shape), v.numpy().tobytes())
                          for k, v in tensors.items()}, meta)
    return files


@pytest.mark.integration
def test_modulate_cells_on_ray_and_resumed(tmp_path: Path, ray_executor) -> None:
    from hyperlens.models import check_available

    try:
        check_available("minilm")
    except Exception as exc:  # noqa: BLE001 - any reason the offline model is missing
        pytest.skip(f"minilm unavailable: {exc}")
    from hyperlens.data import wordnet_reader

    try:
        wordnet_reader()
    except DataError as exc:
        pytest.skip(f"WordNet is not installed: {exc}")
    _check_local_ray_and_resume(_modulate, tmp_path, ray_executor)
    files = _adapter_files(tmp_path / "local")
    assert sorted(files) == sorted(
        f"minilm--lerp-{g}-a0=0.1-alr=0.3-sub=no-massive-seed={sd}{ext}"
        for g, sd in (("wordnet", 0), ("wordnet", 1), ("shuffled", 0))
        for ext in (".safetensors", ".reps.safetensors"))
    assert _adapter_files(tmp_path / "ray") == files  # the workers trained the same bits
