from __future__ import annotations

import json

import pytest

from hyperlens import cli
from hyperlens.models import list_models


def _available(name: str) -> bool:
    return any(r["name"] == name and r["available"] for r in list_models())


@pytest.mark.integration
def test_tour_runs_end_to_end_on_real_models(tmp_path, capsys):
    for name in ("minilm", "glove-50d"):
        if not _available(name):
            pytest.skip(f"model package for {name!r} is not installed")
    out = tmp_path / "tour"
    rc = cli.main(["tour", "--models", "minilm", "glove-50d", "--n-texts", "300", "--sections",
                   "--out", str(out), "--no-progress", "--seed", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "index.html" in printed and "minilm: best layer" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 3 and results["config"]["context"]["seed"] == 3
    assert results["config"]["n_texts"] == 300
    geo = {g["model"]: g for g in results["data"]["geometry"]}
    assert geo["minilm"]["dim"] == 384 and geo["glove-50d"]["dim"] == 50
    assert 1.0 < geo["minilm"]["participation_ratio"] < 384
    # minilm separates fresh from rotten reviews better than chance on held-out texts
    assert geo["minilm"]["best_accuracy"] > results["data"]["majority"]
    rows = [t for s in results["sections"] for t in s["tables"] if t["title"] == "Every layer"][0][
        "rows"
    ]
    assert len([r for r in rows if r[0] == "minilm"]) == 7  # embedding output + 6 layers
    for png in ("tour_probes.png", "tour_cosines.png"):
        assert (out / png).stat().st_size > 1000
    assert "Linear probes per layer" in (out / "index.html").read_text()
